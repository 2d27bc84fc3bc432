"""Options shared by the commands, their parsing (checked before any model loads), model loading, and the
display of the runner's results."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

from ..batch.runner import Result, Store, Task, Unit, run
from ..errors import CycleDiffError
from ..latent import DTYPES
from ..settings import CHOICES, RANGES, RUN, EditSettings, RunOptions, Settings, check_setting


# ---------------------------------------------------------------------------------------------------- parsing
def parse_seeds(text: str) -> list[int]:
    """'0-3,7' → [0, 1, 2, 3, 7]."""
    from .._seeds import seed_range

    try:
        return seed_range(text)
    except CycleDiffError as err:
        raise click.BadParameter(str(err)) from err


def seed_options(f: Callable) -> Callable:
    """--seed (one seed for every input) and --seeds (several, one output each); :func:`chosen_seeds` reads them."""
    f = click.option("--seeds", default=None, help="several seeds, e.g. 0-7 or 1,5,9 (one output each)")(f)
    return click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
                        help="one seed (default 0)")(f)


def chosen_seeds(opts: dict[str, Any]) -> list[int]:
    """The seeds --seed / --seeds give (distinct, in order); both at once is refused."""
    if opts["seed"] is not None and opts["seeds"] is not None:
        raise click.UsageError("give --seed or --seeds, not both")
    return list(dict.fromkeys(parse_seeds(opts["seeds"]) if opts["seeds"] is not None else [opts["seed"] or 0]))


def resolve_device(name: str) -> torch.device:
    """--device: the one device rule (:mod:`cyclediff.devices`, which job files follow too)."""
    from ..devices import resolve_device as resolve

    try:
        return resolve(name)
    except CycleDiffError as err:
        raise click.BadParameter(str(err)) from err


def _device_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    resolve_device(value)  # refused before any model loads
    return value


def _lora_option(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """--lora / --target-lora PATH[:SCALE]: the path and the scale checked before any model loads."""
    if value:
        from ..models.lora import parse_lora

        for spec in value:
            parse_lora(spec)  # its CycleDiffError is one line (the group's handler), without the usage lines
    return value


def _quiet_option(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        quiet_libraries()
    return value


def quiet_libraries() -> None:
    """--quiet: no warnings, log lines or loading bars from the libraries either."""
    import os
    import warnings

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    warnings.simplefilter("ignore")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def number(value: float) -> str:
    return f"{value:g}"


# ---------------------------------------------------------------------------------------------------- options
def setting_option(cls: type[Settings], name: str, *decls: str, **kwargs: Any) -> Callable:
    """``--name`` for the setting ``name`` of ``cls``: its default, its choices and its check come from the
    settings type (:mod:`cyclediff.settings`), so an option cannot disagree with the library."""
    default = getattr(cls(), name)
    kind, choices = RANGES.get(name, (str,))[0], CHOICES.get(name)

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return check_setting(name, value)
        except CycleDiffError as err:
            raise click.BadParameter(str(err)) from err

    if choices == (False, True):
        kwargs.setdefault("is_flag", True)
    elif choices:
        kwargs.setdefault("type", click.Choice(choices))
    else:
        kwargs.setdefault("type", kind)
    kwargs.setdefault("callback", check)
    return click.option(f"--{name.replace('_', '-')}", name, *decls, default=kwargs.pop("default", default),
                        show_default=default not in (None, False), **kwargs)


def device_option(f: Callable) -> Callable:
    return click.option("--device", default=RUN.device, show_default=True, callback=_device_option,
                        help="cpu, cuda, cuda:1, … or auto")(f)


def dtype_option(f: Callable) -> Callable:
    return setting_option(RunOptions, "dtype", help="dtype of the model weights (the sampler maths stays float32)")(f)


def loading_options(f: Callable) -> Callable:
    """How text-to-image models are changed at loading (RunOptions.loading): --quantize, --offload, --lora, …"""
    f = setting_option(RunOptions, "quantize", help="store the network's weights quantized: int8 / int4 / fp8 "
                                                    "(optimum-quanto), torchao-int8 / torchao-fp8, nf4 / bnb-int8 "
                                                    "(bitsandbytes, CUDA)")(f)
    f = setting_option(RunOptions, "offload", help="keep weights on the CPU between uses: model (whole networks), "
                                                   "sequential (layer by layer), group (blocks, streamed)")(f)
    f = setting_option(RunOptions, "text_encoders_on_cpu", help="keep the text encoders on the CPU and run them "
                                                                "there, once per prompt (frees their GPU memory)")(f)
    f = setting_option(RunOptions, "vae_tiling", help="run the VAE in overlapping tiles, one image at a time "
                                                      "(large images on small GPUs)")(f)
    f = setting_option(RunOptions, "base", help="the pipeline a single file's other parts come from (a .gguf "
                                                "network's text encoders, VAE, scheduler): hub id or folder")(f)
    return click.option("--lora", multiple=True, metavar="PATH[:SCALE]", callback=_lora_option,
                        help="a LoRA adapter on the model (a file or folder diffusers reads), at SCALE (default 1, "
                             "from -100 to 100); repeat to stack; low-noise=PATH[:SCALE]: into Wan 2.2 A14B's "
                             "low-noise transformer")(f)


def model_options(f: Callable) -> Callable:
    f = loading_options(dtype_option(device_option(f)))
    return click.option("--model", "model", required=True,
                        help="hub id, local diffusers folder, .safetensors / .ckpt checkpoint or .gguf network")(f)


def compile_option(f: Callable) -> Callable:
    return setting_option(RunOptions, "compile",
                          help="torch.compile the UNet (on CUDA replayed as CUDA graphs): faster on long jobs; each "
                               "new batch size compiles first (a minute or more)")(f)


def settings_of(cls: type[Settings], opts: dict[str, Any], **extra: Any) -> Any:
    """A task's settings from the command's options; a refused combination (η = 0 for an encoder, a knob of another
    method) is a usage error, as a bad option is."""
    try:
        return cls.from_options(opts, **extra)
    except CycleDiffError as err:
        raise click.UsageError(str(err)) from err


def sampling_options(cls: type[Settings], why: str = "", *, sweep: bool = False) -> Callable:
    """--steps, --strength, --eta with a task's defaults (its settings type); ``why`` says why the default
    strength is what it is for this task; ``sweep``: --strength takes a comma list (cli/sweep.py)."""

    def wrap(f: Callable) -> Callable:
        f = setting_option(cls, "eta", help="DDIM η in (0, 1]; 1 is DDPM's variance")(f)
        if "strength" in cls.names():
            from .sweep import parse_strengths

            extra = {"type": str, "callback": parse_strengths} if sweep else {}
            f = setting_option(cls, "strength", help="fraction of the steps run (start part-way, as img2img)"
                               + ("; a comma list (0.5,0.6,0.7) edits at each and writes a contact sheet"
                                  if sweep else "") + (f"; the default: {why}" if why else ""), **extra)(f)
        return setting_option(cls, "steps", help="steps of the sampler's grid (--strength picks how many of them "
                                                 "run)" if "strength" in cls.names() else "steps of the sampler")(f)

    return wrap


def image_options(f: Callable) -> Callable:
    f = setting_option(RunOptions, "stride", metavar="K",
                       help="clips: take every K-th frame (the frame rate divided by K)")(f)
    f = setting_option(RunOptions, "max_frames", metavar="N",
                       help="clips: at most N frames after --stride (the rest cut; default: the model's length)")(f)
    f = setting_option(RunOptions, "max_pixels", help="refuse larger images (decompression bombs)")(f)
    f = setting_option(RunOptions, "fit",
                       help="sides not a multiple of the model's factor: center-crop the rest, or resize")(f)
    return setting_option(RunOptions, "size", help="resize first: N (shorter side) or WxH; pixel models default to "
                                                   "their own size")(f)


def _mask_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "auto":
        return value
    if not Path(value).is_file():
        raise click.BadParameter(f"no such mask image: {value}; give a PNG (white = may change) or auto")
    return str(Path(value).resolve())


def _condition_option(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, Any]:
    from ..models.conditions import parse_condition

    try:
        return parse_condition(value)
    except CycleDiffError as err:
        raise click.BadParameter(str(err)) from err


def condition_option(name: str, *decls: str, side: str) -> Callable:
    """A repeatable ``KEY=VALUE`` option for one side's family condition keywords (the settings field ``name``)."""
    return click.option(*decls, name, multiple=True, metavar="KEY=VALUE", callback=_condition_option,
                        help=f"a condition keyword of the {side}'s model family beyond the prompt and guidance "
                             "scale, e.g. guidance_scale_2=3 (Wan 2.2), guidance_rescale=0.7 (LTX-Video), "
                             "true_cfg_scale=4 (FLUX), cfg_normalization=false (Lumina 2); repeatable")


def mask_options(f: Callable) -> Callable:
    f = setting_option(EditSettings, "mask_threshold",
                       help="--mask auto: the share of the largest disagreement that is masked")(f)
    return click.option("--mask", default=None, callback=_mask_option,
                        help="a mask image (white = may change; resized to the image), or auto (where the two "
                             "conditions disagree; its preview is written beside each output)")(f)


def flowedit_options(cls: type) -> Callable:
    """FlowEdit's own knobs (method flowedit; its n_max is int(steps · strength))."""

    def apply(f: Callable) -> Callable:
        f = setting_option(cls, "n_min", help="--method flowedit: the last N steps sampled plainly with the target")(f)
        return setting_option(cls, "n_avg", help="--method flowedit: noise draws averaged per step, 1 to 64 (each "
                                                 "costs two network calls a step; FlowEdit's paper uses 1)")(f)

    return apply


def quiet_option(f: Callable) -> Callable:
    return click.option("--quiet", "-q", is_flag=True, callback=_quiet_option,
                        help="no progress bars, per-item lines or library warnings")(f)


def output_options(f: Callable) -> Callable:
    f = click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")(f)
    f = quiet_option(f)
    return click.option("--overwrite", is_flag=True, help="redo outputs that already exist")(f)


# ---------------------------------------------------------------------------------------------------- models
def load_model(spec: str, run: RunOptions) -> Any:
    """The model ``spec`` on the run's device, in its dtype, compiled when asked."""
    from ..models import load

    model = load(spec, dtype=DTYPES[run.dtype], device=resolve_device(run.device), **run.loading())
    if run.compile:
        model.optimize(compile=True)
    return model


def with_recommended(settings: Any, model: Any, *, quiet: bool = False) -> Any:
    """``settings`` with the model's recommended values (its family's preset: steps, strength, guidance) for every
    option the user left at its default, said in one line."""
    from click.core import ParameterSource

    from ..models.presets import recommended

    ctx = click.get_current_context()
    unset = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    changes = {k: v for k, v in recommended(model).items() if k in settings.names() and k in ctx.params
               and ctx.get_parameter_source(k) in unset and getattr(settings, k) != v}
    if changes and not quiet:
        said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
        flags = " / ".join(f"--{k.replace('_', '-')}" for k in changes)
        click.echo(f"{getattr(model, 'kind', 'this model')}: its recommended {said} (give {flags} to choose)",
                   err=True)
    return settings.replace(**changes) if changes else settings


def load_models(source: str, target: str, run: RunOptions) -> tuple[Any, Any]:
    """A translation's source and target (one load for one spec; --target-lora makes the target its variant)."""
    from ..models import load_pair

    pair = load_pair(source, target, dtype=DTYPES[run.dtype], device=resolve_device(run.device),
                     target_lora=run.target_lora, **run.loading())
    if run.compile:
        for model in dict.fromkeys(pair):
            model.optimize(compile=True)
    return pair


def target_lora_option(f: Callable) -> Callable:
    return click.option("--target-lora", multiple=True, metavar="PATH[:SCALE]", callback=_lora_option,
                        help="a LoRA adapter on the target model only; with the source model as target, the base "
                             "weights load once (a model → its own style)")(f)


def stamp(task: str, run: RunOptions, **specs: Any) -> dict[str, Any]:
    """What every output of a command records beside its settings: the task, the model specs, how it ran."""
    return {"task": task, **specs, "dtype": run.dtype, "size": run.size, "fit": run.fit,
            **run.model_record(), **run.clip_reading()}


def note_clip_reading(run: RunOptions, inputs: Any) -> None:
    """--max-frames / --stride given with no clip among the inputs: said once (images ignore them)."""
    from .._video import is_clip

    if run.clip_reading() and not any(is_clip(p) for p in inputs):
        click.echo("note: --max-frames and --stride apply to clips only; the images ignore them", err=True)


# ---------------------------------------------------------------------------------------------------- running
def run_and_report(task: Task, units: list[Unit], store: Store, *, batch_size: int = RUN.batch_size, quiet: bool,
                   as_json: bool, asked: Path | None = None) -> None:
    """Run the units with the one runner, show each result as it comes, then a summary; exit 1 on any failure.
    ``asked``: the file -o named; an output written beside it (it holds other settings' output) is said."""
    task.progress = not quiet
    results: list[Result] = []

    def show(result: Result) -> None:
        results.append(result)
        if result.status == "failed":
            click.echo(f"FAILED {_input(result)}: {result.error}", err=True)
        elif asked is not None and result.output and Path(result.output) != asked:
            click.echo(f"-o {asked} holds an output of other settings; wrote {result.output} instead "
                       "(--overwrite replaces it)", err=True)
        elif not quiet and not as_json:
            if result.status == "skipped":
                click.echo(f"{result.output} (exists; --overwrite to redo)")
            else:
                energy = result.metrics
                note = (f"  energy {energy['energy_start']:.4f} → {energy['energy_end']:.4f}"
                        if "energy_start" in energy else "")
                note += f"  [{energy['notes']}]" if energy.get("notes") else ""  # a clip's cut, fps, fit
                note += scores_text(energy)
                click.echo(f"{result.output}  ({result.seconds:.1f}s){note}")

    run(task, units, store, batch_size=batch_size, progress=not quiet, on_result=show)
    failed = [r for r in results if r.status == "failed"]
    if as_json:
        rows = [{"input": _input(r), "output": r.output, "seed": r.unit.seed, "status": r.status, "error": r.error,
                 "seconds": r.seconds} for r in results]
        click.echo(json.dumps({"results": rows, "ok": sum(r.status == "ok" for r in results),
                               "skipped": sum(r.status == "skipped" for r in results), "failed": len(failed)},
                              indent=2))
    if failed:
        click.echo(f"{len(failed)} of {len(results)} failed: " + ", ".join(_input(r) for r in failed), err=True)
    sys.exit(1 if failed else 0)


def scores_text(metrics: dict[str, Any]) -> str:
    """An output's scores (--score) for its line: each number by name (per-frame lists left out: their mean is
    there); "" when it has none."""
    said = [f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("energy_start", "energy_end")
            and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return "  " + ", ".join(said) if said else ""


def _input(result: Result) -> str:
    return str(result.unit.input) if result.unit.input is not None else f"seed {result.unit.seed}"


def note_repeats(repeated: list[Path]) -> None:
    for path in repeated:
        click.echo(f"note: {path} is given more than once; computed once", err=True)

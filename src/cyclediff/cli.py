"""The ``cyclediff`` command line: parses options, owns devices, dtypes, seeds, progress and files; the library
does the work."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import torch
from tqdm.auto import tqdm

from . import __version__
from ._io import DEFAULT_MAX_PIXELS
from .apps.images import read_for
from .apps.outputs import PNG_KEY, as_record, check_out_file, check_out_folder, file_digest, place, slug
from .defaults import check_setting
from .errors import CycleDiffError
from .latent import DTYPES


# ---------------------------------------------------------------------------------------------------- parsing
def parse_seeds(text: str) -> list[int]:
    """'0-3,7' → [0, 1, 2, 3, 7]."""
    from ._io import seed_range

    try:
        return seed_range(text)
    except CycleDiffError as err:
        raise click.BadParameter(str(err)) from err


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise click.BadParameter(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available here; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise click.BadParameter("MPS (Apple GPU) is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise click.BadParameter(f"cyclediff runs on cpu, cuda or mps, not {device.type}; use --device cpu or auto")
    return device


def _device_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    resolve_device(value)  # refused before any model loads
    return value


def _size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ._io import parse_size

    try:
        parse_size(value)
    except CycleDiffError as err:
        raise click.BadParameter(str(err)) from err
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


# ---------------------------------------------------------------------------------------------------- running
@dataclass
class ItemResult:
    input: str
    output: str | None = None
    seed: int | None = None
    status: str = "ok"  # ok | skipped | failed
    error: str | None = None
    seconds: float = 0.0


class Reporter:
    """Progress bar, one line per item (unless --quiet), a summary, and the exit status."""

    def __init__(self, total: int, desc: str, *, quiet: bool, as_json: bool) -> None:
        self.results: list[ItemResult] = []
        self.quiet, self.as_json = quiet, as_json
        self.bar = tqdm(total=total, desc=desc, disable=quiet or total < 2, leave=False)

    def add(self, result: ItemResult) -> None:
        self.results.append(result)
        self.bar.update(1)
        if result.status == "failed":
            click.echo(f"FAILED {result.input}: {result.error}", err=True)
        elif not self.quiet and not self.as_json:
            note = " (exists; --overwrite to redo)" if result.status == "skipped" else f"  ({result.seconds:.1f}s)"
            click.echo(f"{result.output}{note}")

    def finish(self) -> None:
        self.bar.close()
        failed = [r for r in self.results if r.status == "failed"]
        if self.as_json:
            click.echo(json.dumps({"results": [asdict(r) for r in self.results],
                                   "ok": sum(r.status == "ok" for r in self.results),
                                   "skipped": sum(r.status == "skipped" for r in self.results),
                                   "failed": len(failed)}, indent=2))
        if failed:
            click.echo(f"{len(failed)} of {len(self.results)} failed: " + ", ".join(r.input for r in failed), err=True)
        sys.exit(1 if failed else 0)


def failure_text(err: BaseException) -> str:
    """One line for a failed item: the message of an error the user can fix; type and message otherwise."""
    if isinstance(err, (CycleDiffError, OSError)):
        return str(err)
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def attempt(result: ItemResult, work: Callable[[], str | None]) -> ItemResult:
    """Run one item; any failure is recorded on it (the batch goes on), never raised."""
    start = time.perf_counter()
    try:
        out = work()
        if out is not None:
            result.output = out
    except Exception as err:  # noqa: BLE001 - one bad item must not stop the others
        result.status, result.error = "failed", failure_text(err)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


# ---------------------------------------------------------------------------------------------------- models
def load_model(spec: str, device: str, dtype: str, compile_: bool = False):
    from .models import load

    model = load(spec, dtype=DTYPES[dtype], device=resolve_device(device))
    if compile_:
        model.optimize(compile=True)
    return model


def is_text_model(model: Any) -> bool:
    return hasattr(model, "encode_images")


def condition_for(model: Any, *, prompt=None, guidance_scale=None, negative_prompt=None, class_label=None) -> dict:
    """The condition keywords a model takes, refusing options it cannot use."""
    if is_text_model(model):
        if class_label is not None:
            raise CycleDiffError("--class-label is for class-conditional pixel models; this model takes --prompt")
        cond: dict[str, Any] = {}
        if prompt is not None:
            cond["prompt"] = prompt
        if guidance_scale is not None:
            cond["guidance_scale"] = guidance_scale
        if negative_prompt is not None:
            cond["negative_prompt"] = negative_prompt
        return cond
    if prompt is not None or negative_prompt is not None:
        raise CycleDiffError("this is a pixel model without text conditioning; drop --prompt / --negative-prompt")
    return {} if class_label is None else {"class_labels": class_label}


# ---------------------------------------------------------------------------------------------------- options
def device_option(f: Callable) -> Callable:
    return click.option("--device", default="auto", show_default=True, callback=_device_option,
                        help="cpu, cuda, cuda:1, … or auto")(f)


def model_options(f: Callable) -> Callable:
    f = device_option(f)
    f = click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32", show_default=True,
                     help="dtype of the model weights (the sampler maths stays float32)")(f)
    return click.option("--model", "model_spec", required=True,
                        help="hub id, local diffusers folder, or .safetensors / .ckpt checkpoint")(f)


def compile_option(f: Callable) -> Callable:
    return click.option("--compile", "compile_", is_flag=True,
                        help="torch.compile the UNet (on CUDA replayed as CUDA graphs): faster on long jobs; each "
                             "new batch size compiles first (a minute or more)")(f)


def sampling_options(strength: float, eta_default: float = 0.1) -> Callable:
    def wrap(f: Callable) -> Callable:
        f = click.option("--eta", type=click.FloatRange(0, 1), default=eta_default, show_default=True,
                         help="DDIM η in (0, 1]; 1 is DDPM's variance")(f)
        f = click.option("--strength", type=click.FloatRange(0, 1, min_open=True), default=strength,
                         show_default=True, help="fraction of the steps run (start part-way, as img2img)")(f)
        return click.option("--steps", type=click.IntRange(1), default=100, show_default=True)(f)

    return wrap


def image_options(f: Callable) -> Callable:
    f = click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
                     help="refuse larger images (decompression bombs)")(f)
    f = click.option("--fit", type=click.Choice(["crop", "resize"]), default="crop", show_default=True,
                     help="sides not a multiple of the model's factor: center-crop the rest, or resize")(f)
    return click.option("--size", default=None, callback=_size_option,
                        help="resize first: N (shorter side) or WxH; pixel models default to their own size")(f)


def output_options(f: Callable) -> Callable:
    f = click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")(f)
    f = click.option("--quiet", "-q", is_flag=True, callback=_quiet_option,
                     help="no progress bars, per-item lines or library warnings")(f)
    return click.option("--overwrite", is_flag=True, help="redo outputs that already exist")(f)


class _Group(click.Group):
    """Turns library errors (bad input the user can fix) into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CycleDiffError as err:
            raise click.ClickException(str(err)) from err


def _check_sampler(sampler: str, eta: float) -> None:
    from .transitions import check_sampler

    try:
        check_sampler(sampler, eta)
    except CycleDiffError as err:
        raise click.BadParameter(str(err), param_hint="--eta") from err


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="cyclediff")
def main() -> None:
    """The stochastic latent space of diffusion models: encode real images, decode them with other prompts or
    other models (CycleDiffusion)."""


# ---------------------------------------------------------------------------------------------------- edit
@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source-prompt", required=True, help="what the input images show")
@click.option("--prompt", required=True, help="what the edited images should show")
@model_options
@compile_option
@sampling_options(strength=0.8)
@click.option("--guidance-scale", type=click.FloatRange(0), default=3.0, show_default=True)
@click.option("--source-guidance-scale", type=click.FloatRange(0), default=1.0, show_default=True,
              help="1 (the paper's setting) needs no unconditional pass for the source")
@click.option("--negative-prompt", default=None)
@click.option("--method", type=click.Choice(["cyclediffusion", "sdedit", "ddib"]), default="cyclediffusion",
              show_default=True, help="CycleDiffusion, or a baseline on the same grid")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="one seed for every image (default 0)")
@click.option("--seeds", default=None, help="several seeds per image, e.g. 0-7 (one output each)")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True,
              help="images per UNet call (same-sized images are batched)")
@image_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("edits"), show_default=True)
@output_options
def edit(images, source_prompt, prompt, model_spec, device, dtype, compile_, steps, strength, eta, guidance_scale,
         source_guidance_scale, negative_prompt, method, seed, seeds, batch_size, size, fit, max_pixels, out,
         overwrite, quiet, as_json):
    """Edit IMAGES from SOURCE-PROMPT to PROMPT with a Stable Diffusion model (no mask, no training).

    \b
    Examples:
      cyclediff edit cat.png --source-prompt "a photo of a cat" --prompt "a photo of a dog" \\
          --model stable-diffusion-v1-5/stable-diffusion-v1-5 --dtype float16 --seeds 0-3
      cyclediff edit photos/*.jpg --source-prompt "a car" --prompt "a red car" --model model.safetensors \\
          --strength 0.7 --guidance-scale 2 --batch-size 4 --out edits/ --json

    Outputs are OUT/<image>_<prompt>_s<strength>_w<scale>_seed<seed>.png, written atomically; existing ones are
    kept unless --overwrite.
    """
    from . import edit as edit_images

    if seed is not None and seeds is not None:
        raise click.UsageError("give --seed or --seeds, not both")
    _check_sampler("ddim", eta)
    seed_list = parse_seeds(seeds) if seeds is not None else [0 if seed is None else seed]
    check_out_folder(out)
    model = load_model(model_spec, device, dtype, compile_)
    if not is_text_model(model):
        raise CycleDiffError("edit needs a text-conditioned (Stable Diffusion) model; for pixel models use "
                             "translate with --source-class / --target-class")
    settings = f"{'' if method == 'cyclediffusion' else method + '_'}s{number(strength)}_w{number(guidance_scale)}"

    def process(x: torch.Tensor, seeds_: list[int]) -> torch.Tensor:
        return edit_images(
            model, x, source_prompt=source_prompt, prompt=prompt, strength=strength, steps=steps, eta=eta,
            guidance_scale=guidance_scale, source_guidance_scale=source_guidance_scale, method=method,
            negative_prompt=negative_prompt, generator=[torch.Generator().manual_seed(s) for s in seeds_],
            progress=not quiet,
        ).images

    record = {"task": "edit", "model": model_spec, "dtype": dtype, "source_prompt": source_prompt,
              "prompt": prompt, "negative_prompt": negative_prompt, "strength": strength, "steps": steps, "eta": eta,
              "guidance_scale": guidance_scale, "source_guidance_scale": source_guidance_scale, "method": method,
              "size": size, "fit": fit}
    run_image_jobs(
        images, seed_list, read=lambda p: read_for(model, p, size=size, fit=fit, max_pixels=max_pixels),
        name=lambda stem, s: out / f"{stem}_{slug(prompt)}_{settings}_seed{s}.png", process=process,
        settings=record, batch_size=batch_size, device=model.device, desc="edit", overwrite=overwrite, quiet=quiet,
        as_json=as_json,
    )


def run_image_jobs(
    images: Iterable[Path], seeds: list[int], *, read: Callable[[Path], torch.Tensor],
    name: Callable[[str, int], Path], process: Callable[[torch.Tensor, list[int]], torch.Tensor],
    settings: dict[str, Any], batch_size: int, device: torch.device, desc: str, overwrite: bool, quiet: bool,
    as_json: bool,
) -> None:
    """Every (image, seed) job: skip outputs already made with these very settings, read images (a bad one fails
    alone), process same-sized images in batches, write each output atomically with its settings recorded in it,
    report, and exit non-zero when anything failed. An image given twice is computed once; images whose names
    repeat (``c1/cat.png``, ``c2/cat.png``) get distinct output names."""
    from ._io import distinct_paths, save_image, unique_names
    from .apps.outputs import PNG_KEY, as_record, file_digest, place

    paths, repeated = distinct_paths(list(images))
    for path in repeated:
        click.echo(f"note: {path} is given more than once; computed once", err=True)
    seeds = list(dict.fromkeys(seeds))
    jobs = [(path, stem, s) for path, stem in zip(paths, unique_names(paths)) for s in seeds]
    report = Reporter(len(jobs), desc, quiet=quiet, as_json=as_json)
    pending: list[tuple[ItemResult, torch.Tensor, Path, dict]] = []
    taken: set[Path] = set()
    for path, stem, s in jobs:
        result = ItemResult(input=str(path), seed=s)
        loaded: dict[str, Any] = {}

        def load(path=path, stem=stem, s=s, result=result, loaded=loaded) -> None:
            record = {**settings, "input": path.name, "input_sha256": file_digest(path), "seed": s}
            target, done = place(name(stem, s), record, overwrite=overwrite)
            result.output = str(target)
            loaded["record"], loaded["done"] = as_record(record), done
            if not done:
                loaded["x"] = read(path)

        if attempt(result, load).status == "failed":
            report.add(result)
            continue
        if loaded["done"] or Path(result.output) in taken:
            result.status = "skipped"
            report.add(result)
            continue
        taken.add(Path(result.output))
        pending.append((result, loaded["x"], Path(result.output), loaded["record"]))

    for batch in _batches(pending, batch_size):
        results = [r for r, _, _, _ in batch]
        start = time.perf_counter()
        try:
            outputs = process(torch.cat([img for _, img, _, _ in batch]).to(device), [r.seed for r in results])
            for img, (_, _, target, record) in zip(outputs, batch):
                save_image(img, target, text={PNG_KEY: json.dumps(record)})
        except Exception as err:  # noqa: BLE001 - the batch fails, the run goes on
            for r in results:
                r.status, r.error = "failed", failure_text(err)
        for r in results:
            r.seconds = round((time.perf_counter() - start) / len(results), 3)
            report.add(r)
    report.finish()


def _batches(items: list, size: int) -> Iterable[list]:
    """Consecutive groups of at most ``size`` items whose images share a shape."""
    group: list = []
    for item in items:
        if group and (len(group) == size or group[0][1].shape != item[1].shape):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


# ---------------------------------------------------------------------------------------------------- translate
@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source-model", required=True, help="the model of the input domain (hub id, folder, file, demo:…)")
@click.option("--target-model", required=True, help="the model of the output domain")
@click.option("--method", type=click.Choice(["cyclediffusion", "sdedit", "ddib"]), default="cyclediffusion",
              show_default=True)
@sampling_options(strength=0.85)
@click.option("--refine-steps", type=click.IntRange(0), default=0, show_default=True,
              help="re-noise the output to the r-th last step and denoise it with the target at η = 1")
@click.option("--source-class", type=int, default=None, help="class label for a class-conditional source")
@click.option("--target-class", type=int, default=None, help="class label for a class-conditional target")
@click.option("--source-prompt", default=None, help="prompt for a text-conditioned source")
@click.option("--target-prompt", default=None, help="prompt for a text-conditioned target")
@click.option("--guidance-scale", type=click.FloatRange(0), default=None, help="target guidance scale")
@click.option("--seeds", default="0", show_default=True, help="seeds per image, e.g. 0-3")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True)
@device_option
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32", show_default=True)
@compile_option
@image_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("translations"), show_default=True)
@output_options
def translate(images, source_model, target_model, method, steps, strength, eta, refine_steps, source_class,
              target_class, source_prompt, target_prompt, guidance_scale, seeds, batch_size, device, dtype,
              compile_, size, fit, max_pixels, out, overwrite, quiet, as_json):
    """Translate IMAGES from the source model's domain to the target model's (unpaired, no training).

    \b
    Examples:
      cyclediff translate three.png --source-model demo:digit-3 --target-model demo:digit-8 --seeds 0-3
      cyclediff translate cats/*.png --source-model ./ddpm-cat --target-model ./ddpm-dog --strength 0.85 \\
          --refine-steps 10 --method sdedit --out dogs/
    """
    from . import translate as translate_images

    _check_sampler("ddim", eta)
    seed_list = parse_seeds(seeds)
    check_out_folder(out)
    source = load_model(source_model, device, dtype, compile_)
    target = source if target_model == source_model else load_model(target_model, device, dtype, compile_)
    source_cond = condition_for(source, prompt=source_prompt, class_label=source_class)
    target_cond = condition_for(target, prompt=target_prompt, class_label=target_class,
                                guidance_scale=guidance_scale)
    refine = f"_r{refine_steps}" if refine_steps else ""

    def process(x: torch.Tensor, seeds_: list[int]) -> torch.Tensor:
        return translate_images(
            x, source, target, strength=strength, steps=steps, eta=eta, refine_steps=refine_steps, method=method,
            generator=[torch.Generator().manual_seed(s) for s in seeds_], source_condition=source_cond,
            target_condition=target_cond, progress=not quiet,
        ).images

    record = {"task": "translate", "source_model": source_model, "target_model": target_model, "dtype": dtype,
              "method": method, "strength": strength, "steps": steps, "eta": eta, "refine_steps": refine_steps,
              "source_condition": source_cond, "target_condition": target_cond, "size": size, "fit": fit}
    run_image_jobs(
        images, seed_list, read=lambda p: read_for(source, p, size=size, fit=fit, max_pixels=max_pixels),
        name=lambda stem, s: out / f"{stem}_{method}_s{number(strength)}{refine}_seed{s}.png", process=process,
        settings=record, batch_size=batch_size, device=source.device, desc="translate", overwrite=overwrite,
        quiet=quiet, as_json=as_json,
    )


# ---------------------------------------------------------------------------------------------------- guide
@main.command()
@model_options
@click.option("--energy", "energy_spec", required=True,
              help="clip (with --text), or module:function / path/to/file.py:function (images in [-1, 1] → (B,))")
@click.option("--text", default=None, help="the CLIP energy's text")
@click.option("--clip-model", default="openai/clip-vit-base-patch32", show_default=True)
@click.option("--augment-copies", type=click.IntRange(1), default=8, show_default=True)
@click.option("--weight", type=float, default=500.0, show_default=True, help="λ in e^{−λE}")
@click.option("--langevin-steps", type=click.IntRange(0), default=200, show_default=True)
@click.option("--step-size", type=click.FloatRange(0, min_open=True), default=0.05, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=50, show_default=True, help="sampler steps of G(z)")
@click.option("--eta", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--prompt", default=None, help="text models: the condition")
@click.option("--guidance-scale", type=click.FloatRange(0), default=None)
@click.option("--class-label", type=int, default=None, help="class-conditional models (omit: unconditional)")
@click.option("--seeds", default="0", show_default=True, help="one chain per seed, e.g. 0-7")
@click.option("--keep-best", is_flag=True, help="keep each chain's lowest-energy latent, not its last")
@click.option("--grad-steps", type=click.IntRange(1), default=None,
              help="back-propagate through the last K sampler steps only (an approximation)")
@click.option("--strip-every", type=click.IntRange(1), default=None, help="save a PNG strip of the chain every N")
@click.option("--out", type=click.Path(path_type=Path), default=Path("guided"), show_default=True)
@output_options
def guide(model_spec, device, dtype, energy_spec, text, clip_model, augment_copies, weight, langevin_steps,
          step_size, steps, eta, prompt, guidance_scale, class_label, seeds, keep_best, grad_steps, strip_every, out,
          overwrite, quiet, as_json):
    """Sample with an energy by Langevin dynamics in the latent space (no training).

    \b
    Examples:
      cyclediff guide --model google/ddpm-ema-celebahq-256 --energy clip --text "a photo of a baby" --seeds 0-3
      cyclediff guide --model demo:digits --energy my_energies.py:round_digit --weight 10 --langevin-steps 30 \\
          --steps 10 --strip-every 5
    """
    from ._io import save_image
    from .guidance import energy_from_spec
    from .guidance import guide as guide_chain

    _check_sampler("ddim", eta)
    if energy_spec == "clip" and not text:
        raise click.UsageError("--energy clip needs --text")
    seed_list = list(dict.fromkeys(parse_seeds(seeds)))
    check_out_folder(out)
    energy = energy_from_spec(energy_spec, text=text, clip_model=clip_model, augment_copies=augment_copies)
    model = load_model(model_spec, device, dtype)
    condition = condition_for(model, prompt=prompt, guidance_scale=guidance_scale, class_label=class_label)
    settings = {"task": "guide", "model": model_spec, "dtype": dtype, "energy": energy_spec, "text": text,
                "clip_model": clip_model, "augment_copies": augment_copies, "weight": weight,
                "langevin_steps": langevin_steps, "step_size": step_size, "steps": steps, "eta": eta,
                "condition": condition, "keep_best": keep_best, "grad_steps": grad_steps}
    report = Reporter(len(seed_list), "guide", quiet=True, as_json=as_json)
    todo, targets = [], {}
    for s in seed_list:
        record = as_record({**settings, "seed": s})
        targets[s], done = place(out / f"seed{s:04d}.png", record, overwrite=overwrite)
        if done:
            report.add(ItemResult(input=f"seed {s}", output=str(targets[s]), seed=s, status="skipped"))
        else:
            todo.append(s)
    strips: list[torch.Tensor] = []

    def keep_strip(n: int, images: torch.Tensor, energies: torch.Tensor) -> None:
        if strip_every and (n % strip_every == 0 or n == langevin_steps):
            strips.append(images.cpu())

    if todo:
        start = time.perf_counter()
        try:
            result = guide_chain(model, energy, weight=weight, langevin_steps=langevin_steps, step_size=step_size,
                                 steps=steps, eta=eta, condition=condition or None, batch_size=len(todo),
                                 generator=[torch.Generator().manual_seed(s) for s in todo], keep_best=keep_best,
                                 grad_steps=grad_steps, callback=keep_strip, progress=not quiet)
            for i, s in enumerate(todo):
                target = targets[s]
                save_image(result.images[i], target, text={PNG_KEY: json.dumps(as_record({**settings, "seed": s}))})
                if strips:
                    save_image(torch.cat([frame[i] for frame in strips], dim=2),
                               target.with_name(target.stem + "_chain.png"))
                energies = [round(float(e), 5) for e in result.energies[:, i]]
                report.add(ItemResult(input=f"seed {s}", output=str(target), seed=s,
                                      seconds=round((time.perf_counter() - start) / len(todo), 3)))
                if not quiet and not as_json:
                    click.echo(f"{target}  energy {energies[0]:.4f} → {energies[-1]:.4f}")
        except Exception as err:  # noqa: BLE001 - reported per seed, never a traceback
            for s in todo:
                report.add(ItemResult(input=f"seed {s}", seed=s, status="failed", error=failure_text(err)))
    report.finish()


# ---------------------------------------------------------------------------------------------------- run
@main.command("run")
@click.argument("job_file", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="redo every unit, ignoring earlier records")
@click.option("--quiet", "-q", is_flag=True, callback=_quiet_option, help="no progress bars or library warnings")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def run_job_cmd(job_file: Path, overwrite: bool, quiet: bool, as_json: bool) -> None:
    """Run a job file (.toml, .json or .yaml) over a whole dataset: resumable, on one process or many.

    \b
    Examples:
      cyclediff run job.toml
      accelerate launch --multi_gpu --num_processes 8 -m cyclediff run job.toml      # 8 GPUs
      torchrun --nproc_per_node 2 -m cyclediff run job.toml                          # 2 CPU processes (gloo)

    Outputs go to the job's out folder: images/, manifest.jsonl (one line per input × seed: input, settings,
    seed, output, metrics, status, error, seconds) and summary.json. Run the same command again after a crash to
    resume; failed units are retried. Exit status 1 when any unit failed.
    """
    from .apps.jobs import distributed, load_job, run_job

    job = load_job(job_file)
    rank, world, device, barrier, share = distributed(job.device)
    report = run_job(job, rank=rank, world=world, device=device, progress=not quiet, barrier=barrier,
                     overwrite=overwrite, share=share)
    if rank == 0:
        if as_json:
            click.echo(json.dumps({"total": report.total, "ok": report.ok, "failed": report.failed,
                                   "missing": report.missing, "manifest": str(report.manifest),
                                   "failures": [{"key": f["key"], "error": f["error"]} for f in report.failures]},
                                  indent=2))
        else:
            click.echo(f"{report.ok} of {report.total} done, {report.failed} failed -> {report.manifest}", err=True)
            for f in report.failures:
                click.echo(f"  failed {f['key']}: {f['error']}", err=True)
    sys.exit(1 if report.failed or report.missing else 0)


# ---------------------------------------------------------------------------------------------------- evaluate
@main.group()
def evaluate() -> None:
    """Benchmarks with the paper's metrics on your own data (resumable; results.jsonl, summary.csv / .md)."""


@evaluate.command("edit")
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--model", "model_spec", default=None, help="overrides the spec's model")
@click.option("--clip-model", default=None, help="overrides the spec's CLIP model")
@device_option
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("eval-edit"), show_default=True)
@click.option("--quiet", "-q", is_flag=True, callback=_quiet_option, help="no progress bars or library warnings")
def evaluate_edit_cmd(spec, model_spec, clip_model, device, dtype, out, quiet):
    """Edit every (image, source text, target text) of SPEC over its settings grid and score each output
    (CLIP score, directional CLIP, PSNR, SSIM); report single-sample and best-of-N numbers per method.

    \b
    SPEC is JSON: {"model": ID, "items": [{"image", "source", "target"}, ...], "settings": {"seeds": [0, 1],
    "strengths": [0.8], "guidance_scales": [1, 2, 3], "methods": ["cyclediffusion", "sdedit", "ddib"],
    "steps": 100, "eta": 0.1}}; a bare list in the layout of the paper's data/translate-text.json works too.
    """
    from .apps.evaluate import EditSpec, evaluate_edit
    from .metrics import ClipScorer

    plan = EditSpec.load(spec)
    if model_spec is None and plan.model is None:
        raise click.UsageError("the spec names no model; pass --model")
    model = load_model(model_spec or plan.model, device, dtype)
    scorer = ClipScorer(clip_model or plan.clip_model, device=model.device)
    failures = []
    rows = evaluate_edit(plan, out, model=model, scorer=scorer, progress=not quiet,
                         on_record=lambda r: failures.append(r) if r["status"] == "failed" else None)
    click.echo((out / "summary.md").read_text())
    for r in failures:
        click.echo(f"FAILED {r['key']} ({r['image']}): {r['error']}", err=True)
    sys.exit(1 if failures or not rows else 0)


@evaluate.command("translate")
@click.option("--source-model", required=True)
@click.option("--target-model", required=True)
@click.option("--images", type=click.Path(path_type=Path, file_okay=False), required=True, help="inputs")
@click.option("--reference", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="real images of the target domain (FID / KID)")
@click.option("--methods", default="cyclediffusion,sdedit,ddib", show_default=True)
@click.option("--seeds", default="0", show_default=True)
@sampling_options(strength=0.85)
@click.option("--refine-steps", type=click.IntRange(0), default=0, show_default=True)
@click.option("--features", default="inception", show_default=True,
              help="FID / KID features: inception (needs cyclediff[fid]), pixels, or module:function")
@device_option
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("eval-translate"), show_default=True)
@click.option("--quiet", "-q", is_flag=True, callback=_quiet_option, help="no progress bars or library warnings")
def evaluate_translate_cmd(source_model, target_model, images, reference, methods, seeds, steps, strength, eta,
                           refine_steps, features, device, dtype, out, quiet):
    """Translate every image in IMAGES with each method; FID / KID against REFERENCE, PSNR / SSIM against the
    inputs."""
    from .apps.evaluate import evaluate_translate, resolve_features

    _check_sampler("ddim", eta)
    seed_list, feature_fn = parse_seeds(seeds), resolve_features(features)  # refused before any work
    for method in methods.split(","):
        check_setting("method", method)
    source = load_model(source_model, device, dtype)
    target = source if target_model == source_model else load_model(target_model, device, dtype)
    before = sum(1 for _ in open(out / "results.jsonl")) if (out / "results.jsonl").is_file() else 0
    try:
        evaluate_translate(source, target, images, reference, out, methods=methods.split(","),
                           seeds=seed_list, strength=strength, steps=steps, eta=eta,
                           refine_steps=refine_steps, features=feature_fn, progress=not quiet)
    except ImportError as err:
        raise CycleDiffError(str(err)) from err
    click.echo((out / "summary.md").read_text())
    failed = []
    for line in (out / "results.jsonl").read_text().splitlines()[before:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("status") == "failed":
            failed.append(record)
    for r in failed:
        click.echo(f"FAILED {r['key']}: {r['error']}", err=True)
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------------------------------- demo
@main.group(invoke_without_command=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option("--quick", is_flag=True, help="fewer images and steps (a smoke test)")
@click.option("--models", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="folder holding digits/, digit-3/, digit-8/ (default: the shipped models)")
@click.pass_context
def demo(ctx: click.Context, out: Path, quick: bool, models: Path | None) -> None:
    """Run the offline demo on the shipped digits models (translation, class edits, sampling, metrics).

    `cyclediff demo train --out DIR` retrains the demo models."""
    if ctx.invoked_subcommand is not None:
        return
    from .demo.run import DemoSettings, run_demo

    settings = DemoSettings(steps=20, samples_per_class=5, edit_per_class=2, max_translate=10, guide_per_class=1,
                            guide_langevin_steps=3) if quick \
        else DemoSettings()
    run_demo(out, settings=settings, root=models)


@demo.command("train")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="where to write the three models")
@click.option("--iters", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
def demo_train(out: Path, iters: int, seed: int) -> None:
    """Train the three demo models (deterministic for a seed; the shipped ones: --iters 3000 --seed 0)."""
    from .demo.train import train_all

    for path in train_all(out, iters=iters, seed=seed):
        click.echo(str(path))


# ---------------------------------------------------------------------------------------------------- encode
@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@compile_option
@sampling_options(strength=1.0)
@click.option("--sampler", type=click.Choice(["ddim", "ddpm"]), default="ddim", show_default=True)
@click.option("--prompt", default=None, help="text models: the prompt that describes the image")
@click.option("--guidance-scale", type=click.FloatRange(0), default=None, help="text models (default 1)")
@click.option("--class-label", type=int, default=None, help="class-conditional pixel models")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="image i uses seed + i")
@image_options
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="the latent file (one image)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("latents"), show_default=True,
              help="folder for OUT/<image>.latent.safetensors")
@click.option("--store-dtype", type=click.Choice(["full", "float16"]), default="full", show_default=True,
              help="float16 halves the files; decoding is then exact to about 1e-3 only")
@output_options
def encode(images, model_spec, device, dtype, compile_, steps, strength, eta, sampler, prompt, guidance_scale,
           class_label, seed, size, fit, max_pixels, output, out, store_dtype, overwrite, quiet, as_json):
    """Encode IMAGES into latent files (decode them later with other prompts, classes or models).

    \b
    Examples:
      cyclediff encode cat.png --model stable-diffusion-v1-5/stable-diffusion-v1-5 --prompt "a cat" \\
          --strength 0.8 -o cat.latent.safetensors
      cyclediff encode digits/*.png --model google/ddpm-cat-256 --steps 100 --out latents/
    """
    from . import encode as encode_latent
    from ._io import distinct_paths, seed_limit, unique_names
    from .apps.images import to_model_space

    if output is not None and len(images) != 1:
        raise click.UsageError("-o/--output names one file; use --out DIR for several images")
    _check_sampler(sampler, eta)
    paths = distinct_paths(list(images))[0]
    seed_limit(seed + len(paths) - 1)
    check_out_file(output) if output is not None else check_out_folder(out)
    model = load_model(model_spec, device, dtype, compile_)
    condition = condition_for(model, prompt=prompt, guidance_scale=guidance_scale, class_label=class_label)
    settings = {"task": "encode", "model": model_spec, "dtype": dtype, "steps": steps, "strength": strength,
                "eta": eta, "sampler": sampler, "condition": condition, "size": size, "fit": fit,
                "store_dtype": store_dtype}
    report = Reporter(len(paths), "encode", quiet=quiet, as_json=as_json)
    for i, (path, stem) in enumerate(zip(paths, unique_names(paths))):
        result = ItemResult(input=str(path), seed=seed + i)

        def work(path=path, stem=stem, result=result) -> None:
            record = {**settings, "input": path.name, "input_sha256": file_digest(path), "seed": result.seed}
            target, done = place(output or out / f"{stem}.latent.safetensors", record, overwrite=overwrite)
            result.output = str(target)
            if done:
                result.status = "skipped"
                return
            x = read_for(model, path, size=size, fit=fit, max_pixels=max_pixels).to(model.device)
            g = torch.Generator().manual_seed(result.seed)
            z = encode_latent(to_model_space(model, x, g), model, steps=steps, strength=strength, eta=eta,
                              sampler=sampler, generator=g, progress=not quiet, **condition)
            z.save(target, dtype=torch.float16 if store_dtype == "float16" else None, record=record)

        report.add(attempt(result, work))
    report.finish()


# ---------------------------------------------------------------------------------------------------- decode
@main.command()
@click.argument("latents", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@compile_option
@click.option("--prompt", default=None, help="text models: decode under this prompt (default: the recorded one)")
@click.option("--guidance-scale", type=click.FloatRange(0), default=None)
@click.option("--negative-prompt", default=None)
@click.option("--class-label", type=int, default=None, help="decode under this class instead of the recorded one")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="the PNG (one latent)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("decoded"), show_default=True)
@output_options
def decode(latents, model_spec, device, dtype, compile_, prompt, guidance_scale, negative_prompt, class_label,
           output, out, overwrite, quiet, as_json):
    """Decode latent files into PNG images: with the recorded condition they give the encoded image back; with
    another prompt, class or model they edit or translate it.

    \b
    Examples:
      cyclediff decode cat.latent.safetensors --model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
          --prompt "a dog" --guidance-scale 3 -o dog.png
    """
    import warnings

    from . import Latent
    from . import decode as decode_latent
    from ._io import distinct_paths, save_image, unique_names
    from .apps.images import to_images

    if output is not None and len(latents) != 1:
        raise click.UsageError("-o/--output names one file; use --out DIR for several latents")
    paths = distinct_paths(list(latents))[0]
    check_out_file(output) if output is not None else check_out_folder(out)
    model = load_model(model_spec, device, dtype, compile_)
    new_condition = condition_for(model, prompt=prompt, guidance_scale=guidance_scale,
                                  negative_prompt=negative_prompt, class_label=class_label)
    settings = {"task": "decode", "model": model_spec, "dtype": dtype, "condition": new_condition}
    stems = unique_names([p.with_name(p.name.removesuffix(".safetensors").removesuffix(".latent")) for p in paths])
    report = Reporter(len(paths), "decode", quiet=quiet, as_json=as_json)
    for path, stem in zip(paths, stems):
        result = ItemResult(input=str(path))

        def work(path=path, stem=stem, result=result) -> str | None:
            record = as_record({**settings, "input": path.name, "input_sha256": file_digest(path)})
            target, done = place(output or out / f"{stem}.png", record, overwrite=overwrite)
            result.output = str(target)
            if done:
                result.status = "skipped"
                return None
            z = Latent.load(path, device=model.device)
            if z.model_id and model.model_id and z.model_id != model.model_id:
                warnings.warn(f"{path} was encoded with {z.model_id}, decoding with {model.model_id}", stacklevel=2)
            condition = {**z.condition, **new_condition} if new_condition else {}
            x = to_images(model, decode_latent(z, model, progress=not quiet, **condition))
            names = [target] if len(x) == 1 else [target.with_name(f"{target.stem}_{i}.png") for i in range(len(x))]
            text = {PNG_KEY: json.dumps(record)}
            return ", ".join(str(save_image(img, name, text=text)) for img, name in zip(x, names))

        report.add(attempt(result, work))
    report.finish()


# ---------------------------------------------------------------------------------------------------- sample
@main.command()
@model_options
@compile_option
@click.option("--steps", type=click.IntRange(1), default=50, show_default=True)
@click.option("--eta", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--sampler", type=click.Choice(["ddim", "ddpm"]), default="ddim", show_default=True)
@click.option("--seeds", default="0", show_default=True, help="seed list, e.g. 0-7 or 1,5,9")
@click.option("--prompt", default=None)
@click.option("--guidance-scale", type=click.FloatRange(0), default=None)
@click.option("--class-label", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True)
@click.option("--save-latents", is_flag=True, help="also write each sample's latent file")
@output_options
def sample(model_spec, device, dtype, compile_, steps, eta, sampler, seeds, prompt, guidance_scale, class_label, out,
           save_latents, overwrite, quiet, as_json):
    """Sample images from the prior latent N(0, I), one per seed (for pixel models, seed s gives the image
    diffusers' DDIM / DDPM pipeline gives for s)."""
    from . import decode as decode_latent
    from . import sample_latent
    from ._io import save_image
    from .apps.images import to_images

    _check_sampler(sampler, eta)
    seed_list = list(dict.fromkeys(parse_seeds(seeds)))
    check_out_folder(out)
    model = load_model(model_spec, device, dtype, compile_)
    condition = condition_for(model, prompt=prompt, guidance_scale=guidance_scale, class_label=class_label)
    settings = {"task": "sample", "model": model_spec, "dtype": dtype, "steps": steps, "eta": eta,
                "sampler": sampler, "condition": condition}
    report = Reporter(len(seed_list), "sample", quiet=quiet, as_json=as_json)
    for seed in seed_list:
        result = ItemResult(input=f"seed {seed}", seed=seed)

        def work(seed=seed, result=result) -> None:
            record = as_record({**settings, "seed": seed})
            target, done = place(out / f"seed{seed:04d}.png", record, overwrite=overwrite)
            result.output = str(target)
            if done:
                result.status = "skipped"
                return
            z = sample_latent(model, 1, steps=steps, eta=eta, sampler=sampler,
                              generator=torch.Generator().manual_seed(seed), **condition)
            if save_latents:
                z.save(target.with_name(target.name.removesuffix(".png") + ".latent.safetensors"), record=record)
            with torch.no_grad():
                save_image(to_images(model, decode_latent(z, model, progress=not quiet))[0], target,
                           text={PNG_KEY: json.dumps(record)})

        report.add(attempt(result, work))
    report.finish()


# ---------------------------------------------------------------------------------------------------- inspect
@main.command()
@click.argument("latents", nargs=-1, required=True, type=click.Path(path_type=Path))
def inspect(latents: Iterable[Path]) -> None:
    """Print what latent files hold (JSON, one object per file)."""
    from . import Latent

    failed = False
    for path in latents:
        try:
            click.echo(json.dumps({"file": str(path), **Latent.load(path).describe()}, indent=2))
        except CycleDiffError as err:
            failed = True
            click.echo(f"FAILED {path}: {err}", err=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":  # pragma: no cover
    main()

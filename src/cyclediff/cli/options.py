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

from .._io import DEFAULT_MAX_PIXELS
from ..apps.runner import Result, Store, Task, Unit, run
from ..errors import CycleDiffError
from ..latent import DTYPES


# ---------------------------------------------------------------------------------------------------- parsing
def parse_seeds(text: str) -> list[int]:
    """'0-3,7' → [0, 1, 2, 3, 7]."""
    from .._io import seed_range

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
    from .._io import parse_size

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


def check_sampler(sampler: str, eta: float) -> None:
    from ..transitions import check_sampler as check

    try:
        check(sampler, eta)
    except CycleDiffError as err:
        raise click.BadParameter(str(err), param_hint="--eta") from err


def number(value: float) -> str:
    return f"{value:g}"


# ---------------------------------------------------------------------------------------------------- options
def device_option(f: Callable) -> Callable:
    return click.option("--device", default="auto", show_default=True, callback=_device_option,
                        help="cpu, cuda, cuda:1, … or auto")(f)


def dtype_option(f: Callable) -> Callable:
    return click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32", show_default=True,
                        help="dtype of the model weights (the sampler maths stays float32)")(f)


def model_options(f: Callable) -> Callable:
    f = dtype_option(device_option(f))
    return click.option("--model", "model_spec", required=True,
                        help="hub id, local diffusers folder, or .safetensors / .ckpt checkpoint")(f)


def compile_option(f: Callable) -> Callable:
    return click.option("--compile", "compile_", is_flag=True,
                        help="torch.compile the UNet (on CUDA replayed as CUDA graphs): faster on long jobs; each "
                             "new batch size compiles first (a minute or more)")(f)


def sampling_options(defaults: dict[str, Any]) -> Callable:
    """--steps, --strength, --eta with a task's defaults (cyclediff.defaults)."""

    def wrap(f: Callable) -> Callable:
        f = click.option("--eta", type=click.FloatRange(0, 1), default=defaults["eta"], show_default=True,
                         help="DDIM η in (0, 1]; 1 is DDPM's variance")(f)
        f = click.option("--strength", type=click.FloatRange(0, 1, min_open=True), default=defaults["strength"],
                         show_default=True, help="fraction of the steps run (start part-way, as img2img)")(f)
        return click.option("--steps", type=click.IntRange(1), default=defaults["steps"], show_default=True)(f)

    return wrap


def image_options(f: Callable) -> Callable:
    f = click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
                     help="refuse larger images (decompression bombs)")(f)
    f = click.option("--fit", type=click.Choice(["crop", "resize"]), default="crop", show_default=True,
                     help="sides not a multiple of the model's factor: center-crop the rest, or resize")(f)
    return click.option("--size", default=None, callback=_size_option,
                        help="resize first: N (shorter side) or WxH; pixel models default to their own size")(f)


def _mask_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "auto":
        return value
    if not Path(value).is_file():
        raise click.BadParameter(f"no such mask image: {value}; give a PNG (white = may change) or auto")
    return str(Path(value).resolve())


def mask_options(f: Callable) -> Callable:
    f = click.option("--mask-threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
                     show_default=True, help="--mask auto: the share of the largest disagreement that is masked")(f)
    return click.option("--mask", default=None, callback=_mask_option,
                        help="a mask image (white = may change; resized to the image), or auto (where the two "
                             "conditions disagree; its preview is written beside each output)")(f)


def quiet_option(f: Callable) -> Callable:
    return click.option("--quiet", "-q", is_flag=True, callback=_quiet_option,
                        help="no progress bars, per-item lines or library warnings")(f)


def output_options(f: Callable) -> Callable:
    f = click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")(f)
    f = quiet_option(f)
    return click.option("--overwrite", is_flag=True, help="redo outputs that already exist")(f)


# ---------------------------------------------------------------------------------------------------- models
def load_model(spec: str, device: str, dtype: str, compile_: bool = False) -> Any:
    from ..models import load

    model = load(spec, dtype=DTYPES[dtype], device=resolve_device(device))
    if compile_:
        model.optimize(compile=True)
    return model


# ---------------------------------------------------------------------------------------------------- running
def run_and_report(task: Task, units: list[Unit], store: Store, *, batch_size: int = 1, quiet: bool,
                   as_json: bool) -> None:
    """Run the units with the one runner, show each result as it comes, then a summary; exit 1 on any failure."""
    task.progress = not quiet
    results: list[Result] = []

    def show(result: Result) -> None:
        results.append(result)
        if result.status == "failed":
            click.echo(f"FAILED {_input(result)}: {result.error}", err=True)
        elif not quiet and not as_json:
            if result.status == "skipped":
                click.echo(f"{result.output} (exists; --overwrite to redo)")
            else:
                energy = result.metrics
                note = (f"  energy {energy['energy_start']:.4f} → {energy['energy_end']:.4f}"
                        if "energy_start" in energy else "")
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


def _input(result: Result) -> str:
    return str(result.unit.input) if result.unit.input is not None else f"seed {result.unit.seed}"


def note_repeats(repeated: list[Path]) -> None:
    for path in repeated:
        click.echo(f"note: {path} is given more than once; computed once", err=True)

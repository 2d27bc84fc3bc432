"""The ``cyclediff`` command line: parses options, owns devices, dtypes, seeds and progress, calls the library."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import torch
from tqdm.auto import tqdm

from . import __version__
from .errors import CycleDiffError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' → [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise click.BadParameter(f"{part!r} is not a seed or a range like 0-7")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise click.BadParameter(f"range {part!r} runs backwards")
        seeds.extend(range(lo, hi + 1))
    return seeds


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise click.BadParameter(f"unknown device {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available here; use --device cpu")
    return device


def load_model(spec: str, device: torch.device, dtype: str):
    from .models import PixelDenoiser

    return PixelDenoiser.from_pretrained(spec, dtype=DTYPES[dtype], device=device)


def run_items(items: list[Any], work: Callable[[Any], str], *, desc: str) -> int:
    """Run ``work`` on each item, going on past failures; prints one line per item, returns the failure count."""
    failures = 0
    for item in tqdm(items, desc=desc, disable=len(items) < 2, leave=False):
        start = time.perf_counter()
        try:
            result = work(item)
        except (CycleDiffError, OSError) as err:
            failures += 1
            click.echo(f"FAILED {item}: {err}", err=True)
            continue
        click.echo(f"{result}  ({time.perf_counter() - start:.1f}s)")
    if failures:
        click.echo(f"{failures} of {len(items)} failed", err=True)
    return failures


def _common(f: Callable) -> Callable:
    f = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, … or auto")(f)
    f = click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32", show_default=True,
                     help="dtype of the model weights")(f)
    return click.option("--model", "model_spec", required=True, help="hub id or local diffusers folder")(f)


def _sampling(f: Callable) -> Callable:
    f = click.option("--sampler", type=click.Choice(["ddim", "ddpm"]), default="ddim", show_default=True)(f)
    f = click.option("--eta", type=click.FloatRange(0, 1), default=0.1, show_default=True,
                     help="DDIM η in (0, 1]; 1 is DDPM's variance")(f)
    return click.option("--steps", type=click.IntRange(1), default=100, show_default=True)(f)


class _Group(click.Group):
    """Turns library errors (bad input the user can fix) into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CycleDiffError as err:
            raise click.ClickException(str(err)) from err


def _check_sampler(sampler: str, eta: float) -> None:
    from .transitions import check_sampler

    check_sampler(sampler, eta)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cyclediff")
def main() -> None:
    """The stochastic latent space of diffusion models: encode real images, decode them with other models."""


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@_common
@_sampling
@click.option("--strength", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="fraction of the steps to run (start part-way, as img2img)")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="image i uses seed + i")
@click.option("--class-label", type=int, default=None, help="for class-conditional models")
@click.option("--out", type=click.Path(path_type=Path), default=Path("latents"), show_default=True)
@click.option("--store-dtype", type=click.Choice(["full", "float16"]), default="full", show_default=True,
              help="float16 halves the files; decoding is then exact to about 1e-3 only")
def encode(images, model_spec, device, dtype, steps, eta, sampler, strength, seed, class_label, out, store_dtype):
    """Encode IMAGES into latent files OUT/<name>.latent.safetensors."""
    from . import encode as encode_images
    from ._io import load_image

    _check_sampler(sampler, eta)
    den = load_model(model_spec, resolve_device(device), dtype)
    size = den.sample_shape[1:]

    def work(item: tuple[int, Path]) -> str:
        i, path = item
        x0 = load_image(path, channels=den.channels, size=size).to(den.device)
        condition = {} if class_label is None else {"class_labels": class_label}
        z = encode_images(x0, den, steps=steps, strength=strength, eta=eta, sampler=sampler,
                          generator=torch.Generator().manual_seed(seed + i), progress=True, **condition)
        target = out / f"{path.stem}.latent.safetensors"
        z.save(target, dtype=torch.float16 if store_dtype == "float16" else None)
        return str(target)

    sys.exit(1 if run_items(list(enumerate(images)), work, desc="encode") else 0)


@main.command()
@click.argument("latents", nargs=-1, required=True, type=click.Path(path_type=Path))
@_common
@click.option("--class-label", type=int, default=None, help="decode under this class instead of the recorded one")
@click.option("--out", type=click.Path(path_type=Path), default=Path("decoded"), show_default=True)
def decode(latents, model_spec, device, dtype, class_label, out):
    """Decode latent files into PNG images OUT/<name>.png (with another model or class, to translate)."""
    from . import Latent
    from . import decode as decode_latent
    from ._io import save_image

    den = load_model(model_spec, resolve_device(device), dtype)

    def work(path: Path) -> str:
        z = Latent.load(path, device=den.device)
        condition = {} if class_label is None else {"class_labels": class_label}
        x = decode_latent(z, den, progress=True, **condition)
        stem = path.name.removesuffix(".safetensors").removesuffix(".latent")
        names = [f"{stem}.png"] if len(x) == 1 else [f"{stem}_{i}.png" for i in range(len(x))]
        return ", ".join(str(save_image(img, out / name)) for img, name in zip(x, names))

    sys.exit(1 if run_items(list(latents), work, desc="decode") else 0)


@main.command()
@_common
@_sampling
@click.option("--seeds", default="0", show_default=True, help="seed list, e.g. 0-7 or 1,5,9")
@click.option("--class-label", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True)
@click.option("--save-latents", is_flag=True, help="also write each sample's latent file")
def sample(model_spec, device, dtype, steps, eta, sampler, seeds, class_label, out, save_latents):
    """Sample images from the prior latent N(0, I), one per seed (seed s gives diffusers' image for s)."""
    from . import decode as decode_latent
    from . import sample_latent
    from ._io import save_image

    _check_sampler(sampler, eta)
    den = load_model(model_spec, resolve_device(device), dtype)

    def work(seed: int) -> str:
        condition = {} if class_label is None else {"class_labels": class_label}
        z = sample_latent(den, 1, steps=steps, eta=eta, sampler=sampler,
                          generator=torch.Generator().manual_seed(seed), **condition)
        if save_latents:
            z.save(out / f"seed{seed:04d}.latent.safetensors")
        return str(save_image(decode_latent(z, den, progress=True)[0], out / f"seed{seed:04d}.png"))

    sys.exit(1 if run_items(parse_seeds(seeds), work, desc="sample") else 0)


@main.command()
@click.argument("latents", nargs=-1, required=True, type=click.Path(path_type=Path))
def inspect(latents: Iterable[Path]) -> None:
    """Print what a latent file holds (JSON, one object per file)."""
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

"""``cyclediff encode``, ``decode``, ``sample`` and ``inspect``: latent files in and out, through the runner."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import click
import torch

from .._io import distinct_paths, seed_limit, unique_names
from ..apps.outputs import check_out_file, check_out_folder
from ..apps.runner import Unit
from ..apps.stores import FileStore
from ..apps.tasks import DecodeTask, EncodeTask, ReadPolicy, SampleTask
from ..defaults import ENCODE, SAMPLE
from ..errors import CycleDiffError
from ..models.conditions import condition_for
from . import main
from .options import (
    check_sampler,
    compile_option,
    image_options,
    load_model,
    model_options,
    note_repeats,
    output_options,
    parse_seeds,
    run_and_report,
    sampling_options,
)


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@compile_option
@sampling_options(ENCODE)
@click.option("--sampler", type=click.Choice(["ddim", "ddpm", "fresh"]), default="ddim", show_default=True,
              help="fresh: new noise at every step (flow models: diffusers' stochastic_sampling)")
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
    if output is not None and len(images) != 1:
        raise click.UsageError("-o/--output names one file; use --out DIR for several images")
    check_sampler(sampler, eta)
    paths, repeated = distinct_paths(list(images))
    note_repeats(repeated)
    seed_limit(seed + len(paths) - 1)
    check_out_file(output) if output is not None else check_out_folder(out)
    model = load_model(model_spec, device, dtype, compile_)
    condition = condition_for(model, prompt=prompt, guidance_scale=guidance_scale, class_labels=class_label)
    settings = {"task": "encode", "model": model_spec, "dtype": dtype, "steps": steps, "strength": strength,
                "eta": eta, "sampler": sampler, "condition": condition, "size": size, "fit": fit,
                "store_dtype": store_dtype}
    units = [Unit(i, stem, seed + i, name=f"{stem}.latent.safetensors", settings=settings, input=path)
             for i, (path, stem) in enumerate(zip(paths, unique_names(paths)))]
    store = FileStore(lambda u: output or out / u.name, overwrite=overwrite,
                      latent_dtype=torch.float16 if store_dtype == "float16" else None)
    run_and_report(EncodeTask(model, ReadPolicy(size, fit, max_pixels)), units, store, quiet=quiet, as_json=as_json)


@main.command()
@click.argument("latents", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@compile_option
@click.option("--prompt", default=None, help="text models: decode under this prompt (default: the recorded one)")
@click.option("--guidance-scale", type=click.FloatRange(0), default=None)
@click.option("--negative-prompt", default=None)
@click.option("--class-label", type=int, default=None, help="decode under this class instead of the recorded one")
@click.option("--weights", default=None,
              help="two latents: decode the interpolation at these weights (e.g. 0,0.25,0.5,0.75,1) as one strip")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="the PNG (one latent)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("decoded"), show_default=True)
@output_options
def decode(latents, model_spec, device, dtype, compile_, prompt, guidance_scale, negative_prompt, class_label,
           weights, output, out, overwrite, quiet, as_json):
    """Decode latent files into PNG images: with the recorded condition they give the encoded image back; with
    another prompt, class or model they edit or translate it.

    \b
    Examples:
      cyclediff decode cat.latent.safetensors --model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
          --prompt "a dog" --guidance-scale 3 -o dog.png
      cyclediff decode a.latent.safetensors b.latent.safetensors --model MODEL --weights 0,0.25,0.5,0.75,1
    """
    paths, repeated = distinct_paths(list(latents))
    note_repeats(repeated)
    weight_list = _weights(weights, len(paths))
    if output is not None and len(latents) != 1 and weight_list is None:
        raise click.UsageError("-o/--output names one file; use --out DIR for several latents")
    check_out_file(output) if output is not None else check_out_folder(out)
    model = load_model(model_spec, device, dtype, compile_)
    condition = condition_for(model, prompt=prompt, guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                              class_labels=class_label)
    settings = {"task": "decode", "model": model_spec, "dtype": dtype, "condition": condition}
    stems = unique_names([p.with_name(p.name.removesuffix(".safetensors").removesuffix(".latent")) for p in paths])
    units = [Unit(i, stem, 0, name=f"{stem}.png", settings=settings, input=path)
             for i, (path, stem) in enumerate(zip(paths, stems))]
    if weight_list is not None:  # one strip: the first latent towards the second
        from ..apps.outputs import file_digest

        settings = {**settings, "weights": weight_list, "other": str(paths[1]), "other_sha256": file_digest(paths[1])}
        units = [Unit(0, f"{stems[0]}_to_{stems[1]}", 0, name=f"{stems[0]}_to_{stems[1]}.png", settings=settings,
                      input=paths[0])]
    store = FileStore(lambda u: output or out / u.name, overwrite=overwrite)
    run_and_report(DecodeTask(model), units, store, quiet=quiet, as_json=as_json)


def _weights(text: str | None, count: int) -> list[float] | None:
    """--weights 0,0.5,1 → [0.0, 0.5, 1.0]; it needs exactly two latents."""
    if text is None:
        return None
    if count != 2:
        raise click.UsageError(f"--weights interpolates between two latents; got {count}")
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise click.BadParameter(f"weights are numbers separated by commas, e.g. 0,0.5,1; got {text!r}",
                                 param_hint="--weights") from err
    if not values or not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"weights are finite numbers, e.g. 0,0.5,1; got {text!r}", param_hint="--weights")
    return values


@main.command()
@model_options
@compile_option
@click.option("--steps", type=click.IntRange(1), default=SAMPLE["steps"], show_default=True)
@click.option("--eta", type=click.FloatRange(0, 1), default=SAMPLE["eta"], show_default=True)
@click.option("--sampler", type=click.Choice(["ddim", "ddpm", "fresh"]), default="ddim", show_default=True,
              help="fresh: new noise at every step (flow models: diffusers' stochastic_sampling)")
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
    check_sampler(sampler, eta)
    seed_list = list(dict.fromkeys(parse_seeds(seeds)))
    check_out_folder(out)
    model = load_model(model_spec, device, dtype, compile_)
    condition = condition_for(model, prompt=prompt, guidance_scale=guidance_scale, class_labels=class_label)
    settings = {"task": "sample", "model": model_spec, "dtype": dtype, "steps": steps, "eta": eta,
                "sampler": sampler, "condition": condition}
    units = [Unit(i, f"seed{s}", s, name=f"seed{s:04d}.png", settings=settings) for i, s in enumerate(seed_list)]
    store = FileStore(lambda u: out / u.name, overwrite=overwrite)
    run_and_report(SampleTask(model, save_latents=save_latents), units, store, quiet=quiet, as_json=as_json)


@main.command()
@click.argument("latents", nargs=-1, required=True, type=click.Path(path_type=Path))
def inspect(latents: Iterable[Path]) -> None:
    """Print what latent files hold (JSON, one object per file)."""
    from ..latent import Latent

    failed = False
    for path in latents:
        try:
            click.echo(json.dumps({"file": str(path), **Latent.load(path).describe()}, indent=2))
        except CycleDiffError as err:
            failed = True
            click.echo(f"FAILED {path}: {err}", err=True)
    sys.exit(1 if failed else 0)

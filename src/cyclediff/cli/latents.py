"""``cyclediff encode``, ``decode``, ``sample`` and ``inspect``: latent files in and out, through the runner."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import torch

from .._paths import distinct_paths, unique_names
from .._seeds import seed_limit
from .._video import CLIP_SUFFIXES
from ..batch.outputs import check_out_file, check_out_folder, decoded_suffix
from ..batch.runner import Unit
from ..batch.stores import FileStore
from ..batch.tasks import DecodeTask, EncodeTask, SampleTask
from ..errors import CycleDiffError
from ..models.conditions import condition_for
from ..settings import DecodeSettings, EncodeSettings, RunOptions, SampleSettings
from .images import frames_option
from .main import main
from .options import (
    compile_option,
    image_options,
    load_model,
    model_options,
    note_clip_reading,
    note_repeats,
    output_options,
    parse_seeds,
    run_and_report,
    sampling_options,
    setting_option,
    settings_of,
    stamp,
)


def _condition(model: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """The condition --prompt / --guidance-scale / --negative-prompt / --class-label give, as the model takes it."""
    return condition_for(model, prompt=opts.get("prompt"), guidance_scale=opts.get("guidance_scale"),
                         negative_prompt=opts.get("negative_prompt"), class_labels=opts.get("class_label"))


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@compile_option
@sampling_options(EncodeSettings, "the whole encoding, so any later decode can start from the top")
@setting_option(EncodeSettings, "sampler", help="fresh: new noise at every step (flow models: diffusers' "
                                                "stochastic_sampling)")
@setting_option(EncodeSettings, "encoder", help="cyclediffusion: x_{t-1} from the posterior q(x_{t-1} | x_t, x0); "
                                                "edit-friendly: each x_t from q(x_t | x0) (the LEDITS++ inversion)")
@click.option("--prompt", default=None, help="text models: the prompt that describes the image")
@click.option("--guidance-scale", type=float, default=None, help="text models (default 1)")
@click.option("--class-label", type=int, default=None, help="class-conditional pixel models")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="image i uses seed + i")
@image_options
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="the latent file (one image)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("latents"), show_default=True,
              help="folder for OUT/<image>.latent.safetensors")
@click.option("--store-dtype", type=click.Choice(["full", "float16"]), default="full", show_default=True,
              help="float16 halves the files; decoding is then exact to about 1e-3 only")
@output_options
def encode(images: tuple[Path, ...], output: Path | None, out: Path, **opts: Any) -> None:
    """Encode IMAGES into latent files (decode them later with other prompts, classes or models). With a video
    model, IMAGES are clips; their files record the frame count and fps, and decode writes the clip back.

    \b
    Examples:
      cyclediff encode cat.png --model stable-diffusion-v1-5/stable-diffusion-v1-5 --prompt "a cat" \\
          --strength 0.8 -o cat.latent.safetensors
      cyclediff encode digits/*.png --model google/ddpm-cat-256 --steps 100 --out latents/
    """
    if output is not None and len(images) != 1:
        raise click.UsageError("-o/--output names one file; use --out DIR for several images")
    run, seed = RunOptions.from_options(opts), opts["seed"]
    note_clip_reading(run, images)
    settings_of(EncodeSettings, opts)  # refused before any model loads
    paths, repeated = distinct_paths(list(images))
    note_repeats(repeated)
    seed_limit(seed + len(paths) - 1)
    check_out_file(output) if output is not None else check_out_folder(out)
    model = load_model(opts["model"], run)
    settings = settings_of(EncodeSettings, opts, condition=_condition(model, opts))
    marks = {**stamp("encode", run, model=opts["model"]), "store_dtype": opts["store_dtype"]}
    units = [Unit(i, stem, seed + i, name=f"{stem}.latent.safetensors", settings=settings, input=path, stamp=marks)
             for i, (path, stem) in enumerate(zip(paths, unique_names(paths)))]
    store = FileStore(lambda u: output or out / u.name, overwrite=opts["overwrite"], named=output is not None,
                      latent_dtype=torch.float16 if opts["store_dtype"] == "float16" else None)
    run_and_report(EncodeTask(model, run), units, store, quiet=opts["quiet"], as_json=opts["as_json"], asked=output)


@main.command()
@click.argument("latents", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_options
@compile_option
@click.option("--prompt", default=None, help="text models: decode under this prompt (default: the recorded one)")
@click.option("--guidance-scale", type=float, default=None,
              help="text models: decode under this guidance scale (default: the recorded one)")
@click.option("--negative-prompt", default=None, help="text models: what the decoded image should not show")
@click.option("--class-label", type=int, default=None, help="decode under this class instead of the recorded one")
@click.option("--weights", default=None,
              help="two latents: decode the interpolation at these weights (e.g. 0,0.25,0.5,0.75,1) as one strip "
                   "(clips' latents: one clip of them side by side)")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="the PNG (one latent)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("decoded"), show_default=True,
              help="folder for OUT/<latent>.png")
@frames_option
@output_options
def decode(latents: tuple[Path, ...], weights: str | None, output: Path | None, out: Path, **opts: Any) -> None:
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
    run = RunOptions.from_options(opts)
    model = load_model(opts["model"], run)
    settings, marks = DecodeSettings(condition=_condition(model, opts)), stamp("decode", run, model=opts["model"])
    stems = unique_names([p.with_name(p.name.removesuffix(".safetensors").removesuffix(".latent")) for p in paths])
    units = [Unit(i, stem, 0, name=stem + decoded_suffix(path, frames=opts["as_frames"]), settings=settings, input=path,
                  stamp=marks) for i, (path, stem) in enumerate(zip(paths, stems))]
    if weight_list is not None:  # one strip: the first latent towards the second
        settings = settings.replace(weights=weight_list, other=str(paths[1]))
        name = f"{stems[0]}_to_{stems[1]}" + decoded_suffix(paths[0], frames=opts["as_frames"])  # clips: a clip
        units = [Unit(0, f"{stems[0]}_to_{stems[1]}", 0, name=name, settings=settings, input=paths[0], stamp=marks)]
    if output is not None:
        _check_output_kind(output, units[0].name)
    store = FileStore(lambda u: output or out / u.name, overwrite=opts["overwrite"], named=output is not None)
    run_and_report(DecodeTask(model, run), units, store, quiet=opts["quiet"], as_json=opts["as_json"], asked=output)


def _check_output_kind(output: Path, made: str) -> None:
    """-o names what the latent decodes to: an image's a .png, a clip's a clip container (or, with --frames, a
    folder); anything else is one line naming the fix (a clip written as frames into a folder called out.png)."""
    suffix = Path(made).suffix.lower()
    if suffix == ".png" and output.suffix.lower() in CLIP_SUFFIXES:
        raise click.UsageError(f"{output.name}: an image's latent decodes to an image; name the output .png")
    if suffix in CLIP_SUFFIXES and output.suffix.lower() not in CLIP_SUFFIXES:
        raise click.UsageError(f"{output.name}: a clip's latent decodes to a clip; name the output "
                               f"{' / '.join(CLIP_SUFFIXES)} (or give --frames and a folder name)")
    if not suffix and output.suffix.lower() in (".png", *CLIP_SUFFIXES):
        raise click.UsageError(f"{output.name}: --frames writes a folder of frames; give a folder name without "
                               "a suffix")


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
@sampling_options(SampleSettings)
@setting_option(SampleSettings, "sampler", help="fresh: new noise at every step (flow models: diffusers' "
                                                "stochastic_sampling)")
@click.option("--seeds", default="0", show_default=True, help="seed list, e.g. 0-7 or 1,5,9")
@click.option("--prompt", default=None, help="text models: the prompt to sample")
@click.option("--guidance-scale", type=float, default=None, help="text models: classifier-free guidance (default 1)")
@click.option("--class-label", type=int, default=None, help="class-conditional models (omit: unconditional)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True,
              help="folder for OUT/seed<NNNN>.png")
@click.option("--save-latents", is_flag=True, help="also write each sample's latent file")
@output_options
def sample(out: Path, **opts: Any) -> None:
    """Sample images from the prior latent N(0, I), one per seed (for pixel models, seed s gives the image
    diffusers' DDIM / DDPM pipeline gives for s)."""
    settings_of(SampleSettings, opts)  # refused before any model loads
    seeds = list(dict.fromkeys(parse_seeds(opts["seeds"])))
    check_out_folder(out)
    run = RunOptions.from_options(opts)
    model = load_model(opts["model"], run)
    settings = settings_of(SampleSettings, opts, condition=_condition(model, opts))
    marks = stamp("sample", run, model=opts["model"])
    units = [Unit(i, f"seed{s}", s, name=f"seed{s:04d}.png", settings=settings, stamp=marks)
             for i, s in enumerate(seeds)]
    store = FileStore(lambda u: out / u.name, overwrite=opts["overwrite"])
    run_and_report(SampleTask(model, run, save_latents=opts["save_latents"]), units, store, quiet=opts["quiet"],
                   as_json=opts["as_json"])


@main.command()
@click.argument("latents", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--values", is_flag=True, help="also print every step's timestep and residual flag and the "
                                             "tensors' values (x_start, eps)")
def inspect(latents: Iterable[Path], values: bool) -> None:
    """Print what latent files hold (JSON, one object per file, one line per field): the model, the condition,
    the shapes and the grid; --values adds the full metadata and the tensors."""
    from ..latent import Latent

    failed = False
    for path in latents:
        try:
            z = Latent.load(path)
        except CycleDiffError as err:
            failed = True
            click.echo(f"FAILED {path}: {err}", err=True)
            continue
        shown = {"file": str(path), **z.summary()}
        if values:
            shown.update(z.describe(), x_start=z.x_start.tolist(), eps=z.eps.tolist())
        lines = (f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in shown.items())
        click.echo("{\n" + ",\n".join(lines) + "\n}")
    sys.exit(1 if failed else 0)

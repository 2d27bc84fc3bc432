"""``cyclediff edit`` and ``cyclediff translate``: options → settings → units → the runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .._io import distinct_paths, unique_names
from ..apps.outputs import check_out_folder, file_digest, slug
from ..apps.runner import Unit
from ..apps.stores import FileStore
from ..apps.tasks import EditTask, ReadPolicy, TranslateTask
from ..defaults import EDIT, METHODS, TRANSLATE
from ..errors import CycleDiffError
from ..models.conditions import condition_for
from . import main
from .options import (
    check_sampler,
    compile_option,
    device_option,
    dtype_option,
    image_options,
    load_model,
    mask_options,
    model_options,
    note_repeats,
    number,
    output_options,
    parse_seeds,
    run_and_report,
    sampling_options,
)


def image_units(images: list[Path], seeds: list[int], settings: dict[str, Any],
                name: Callable[[str, int], str]) -> list[Unit]:
    """One unit per (image, seed): an image given twice is one input; images whose names repeat in different
    folders get distinct output names (:func:`~cyclediff._io.unique_names`)."""
    paths, repeated = distinct_paths(list(images))
    note_repeats(repeated)
    units = []
    for path, stem in zip(paths, unique_names(paths)):
        for s in dict.fromkeys(seeds):
            units.append(Unit(len(units), f"{stem}/seed{s}", s, name=name(stem, s), settings=settings, input=path))
    return units


def _masking(mask: str | None, threshold: float, method: str) -> dict[str, Any]:
    """The mask settings (recorded with each output, so another mask never reuses a file)."""
    if mask is None:
        return {}
    if method != "cyclediffusion":
        raise click.UsageError(f"--mask works with --method cyclediffusion, not {method}")
    return {"mask": mask, "mask_sha256": None if mask == "auto" else file_digest(Path(mask)),
            "mask_threshold": threshold if mask == "auto" else None}


def _attention(mode: str | None, cross: float, self_steps: float, reweight: tuple[str, ...],
               method: str) -> dict[str, Any]:
    """The attention-control setting, checked before any model loads."""
    from ..models.attention import AttentionEdit

    if mode is None:
        if reweight:
            raise click.UsageError("--reweight needs --attention replace or refine")
        return {}
    if method != "cyclediffusion":
        raise click.UsageError(f"--attention works with --method cyclediffusion, not {method}")
    weights = {}
    for item in reweight:
        word, sep, value = item.rpartition("=")
        try:
            weights[word.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not word.strip():
            raise click.BadParameter(f"give WORD=SCALE, e.g. red=2; got {item!r}", param_hint="--reweight")
    edit = AttentionEdit(mode=mode, cross_steps=cross, self_steps=self_steps, weights=weights)
    return {"attention": {"mode": edit.mode, "cross_steps": edit.cross_steps, "self_steps": edit.self_steps,
                          "weights": edit.weights}}


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source-prompt", required=True, help="what the input images show")
@click.option("--prompt", required=True, help="what the edited images should show")
@model_options
@compile_option
@sampling_options(EDIT)
@click.option("--guidance-scale", type=click.FloatRange(0), default=EDIT["guidance_scale"], show_default=True)
@click.option("--source-guidance-scale", type=click.FloatRange(0), default=EDIT["source_guidance_scale"],
              show_default=True, help="1 (the paper's setting) needs no unconditional pass for the source")
@click.option("--negative-prompt", default=None)
@click.option("--method", type=click.Choice(METHODS), default=EDIT["method"], show_default=True,
              help="CycleDiffusion, or a baseline on the same grid")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="one seed for every image (default 0)")
@click.option("--seeds", default=None, help="several seeds per image, e.g. 0-7 (one output each)")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True,
              help="images per UNet call (same-sized images are batched)")
@mask_options
@click.option("--attention", type=click.Choice(["replace", "refine"]), default=None,
              help="Prompt-to-Prompt: the target pass reuses the source's attention maps (replace: a word swap with "
                   "as many tokens; refine: words added or changed)")
@click.option("--attention-steps", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="share of the steps whose cross-attention maps are reused")
@click.option("--self-attention-steps", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="share of the steps whose self-attention maps are reused (keeps the layout closer)")
@click.option("--reweight", multiple=True, metavar="WORD=SCALE",
              help="scale the target's attention to a word of --prompt, e.g. red=2 (repeatable; with --attention)")
@image_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("edits"), show_default=True)
@output_options
def edit(images, source_prompt, prompt, model_spec, device, dtype, compile_, steps, strength, eta, guidance_scale,
         source_guidance_scale, negative_prompt, method, seed, seeds, batch_size, mask, mask_threshold, attention,
         attention_steps, self_attention_steps, reweight, size, fit, max_pixels, out, overwrite, quiet, as_json):
    """Edit IMAGES from SOURCE-PROMPT to PROMPT with a Stable Diffusion model (no mask, no training).

    \b
    Examples:
      cyclediff edit cat.png --source-prompt "a photo of a cat" --prompt "a photo of a dog" \\
          --model stable-diffusion-v1-5/stable-diffusion-v1-5 --dtype float16 --seeds 0-3
      cyclediff edit photos/*.jpg --source-prompt "a car" --prompt "a red car" --model model.safetensors \\
          --strength 0.7 --guidance-scale 2 --batch-size 4 --out edits/ --json

    Outputs are OUT/<image>_<prompt>_s<strength>_w<scale>_seed<seed>.png, written atomically, with their settings
    recorded inside; one made with these very settings is skipped unless --overwrite.
    """
    if seed is not None and seeds is not None:
        raise click.UsageError("give --seed or --seeds, not both")
    check_sampler("ddim", eta)
    seed_list = parse_seeds(seeds) if seeds is not None else [0 if seed is None else seed]
    check_out_folder(out)
    model = load_model(model_spec, device, dtype, compile_)
    if "prompt" not in model.condition_keys:
        raise CycleDiffError("edit needs a text-conditioned (Stable Diffusion) model; for pixel models use "
                             "translate with --source-class / --target-class")
    label = f"{'' if method == 'cyclediffusion' else method + '_'}s{number(strength)}_w{number(guidance_scale)}"
    settings = {"task": "edit", "model": model_spec, "dtype": dtype, "source_prompt": source_prompt,
                "prompt": prompt, "negative_prompt": negative_prompt, "strength": strength, "steps": steps, "eta": eta,
                "guidance_scale": guidance_scale, "source_guidance_scale": source_guidance_scale, "method": method,
                "size": size, "fit": fit, **_masking(mask, mask_threshold, method),
                **_attention(attention, attention_steps, self_attention_steps, reweight, method)}
    units = image_units(images, seed_list, settings, lambda stem, s: f"{stem}_{slug(prompt)}_{label}_seed{s}.png")
    task = EditTask(model, ReadPolicy(size, fit, max_pixels))
    run_and_report(task, units, FileStore(lambda u: out / u.name, overwrite=overwrite), batch_size=batch_size,
                   quiet=quiet, as_json=as_json)


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source-model", required=True, help="the model of the input domain (hub id, folder, file, demo:…)")
@click.option("--target-model", required=True, help="the model of the output domain")
@click.option("--method", type=click.Choice(METHODS), default=TRANSLATE["method"], show_default=True)
@sampling_options(TRANSLATE)
@click.option("--refine-steps", type=click.IntRange(0), default=TRANSLATE["refine_steps"], show_default=True,
              help="re-noise the output to the r-th last step and denoise it with the target at η = 1")
@click.option("--source-class", type=int, default=None, help="class label for a class-conditional source")
@click.option("--target-class", type=int, default=None, help="class label for a class-conditional target")
@click.option("--source-prompt", default=None, help="prompt for a text-conditioned source")
@click.option("--target-prompt", default=None, help="prompt for a text-conditioned target")
@click.option("--guidance-scale", type=click.FloatRange(0), default=None, help="target guidance scale")
@click.option("--seeds", default="0", show_default=True, help="seeds per image, e.g. 0-3")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True)
@device_option
@dtype_option
@compile_option
@mask_options
@image_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("translations"), show_default=True)
@output_options
def translate(images, source_model, target_model, method, steps, strength, eta, refine_steps, source_class,
              target_class, source_prompt, target_prompt, guidance_scale, seeds, batch_size, device, dtype,
              compile_, mask, mask_threshold, size, fit, max_pixels, out, overwrite, quiet, as_json):
    """Translate IMAGES from the source model's domain to the target model's (unpaired, no training).

    \b
    Examples:
      cyclediff translate three.png --source-model demo:digit-3 --target-model demo:digit-8 --seeds 0-3
      cyclediff translate cats/*.png --source-model ./ddpm-cat --target-model ./ddpm-dog --strength 0.85 \\
          --refine-steps 10 --method sdedit --out dogs/
    """
    check_sampler("ddim", eta)
    seed_list = parse_seeds(seeds)
    check_out_folder(out)
    source = load_model(source_model, device, dtype, compile_)
    target = source if target_model == source_model else load_model(target_model, device, dtype, compile_)
    condition_for(source, prompt=source_prompt, class_labels=source_class)  # refused now, not per image
    condition_for(target, prompt=target_prompt, class_labels=target_class, guidance_scale=guidance_scale)
    refine = f"_r{refine_steps}" if refine_steps else ""
    settings = {"task": "translate", "source_model": source_model, "target_model": target_model, "dtype": dtype,
                "method": method, "strength": strength, "steps": steps, "eta": eta, "refine_steps": refine_steps,
                "source_class": source_class, "target_class": target_class, "source_prompt": source_prompt,
                "target_prompt": target_prompt, "guidance_scale": guidance_scale, "size": size, "fit": fit,
                **_masking(mask, mask_threshold, method)}
    units = image_units(images, seed_list, settings,
                        lambda stem, s: f"{stem}_{method}_s{number(strength)}{refine}_seed{s}.png")
    task = TranslateTask(source, target, ReadPolicy(size, fit, max_pixels))
    run_and_report(task, units, FileStore(lambda u: out / u.name, overwrite=overwrite), batch_size=batch_size,
                   quiet=quiet, as_json=as_json)

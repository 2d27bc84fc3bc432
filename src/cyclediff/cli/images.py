"""``cyclediff edit`` and ``cyclediff translate``: options → settings → units → the runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .._paths import distinct_paths, unique_names
from .._video import is_clip
from ..batch.outputs import check_out_folder, slug
from ..batch.runner import Unit
from ..batch.stores import FileStore
from ..batch.tasks import EditTask, TranslateTask
from ..models.attention import AttentionEdit
from ..models.conditions import condition_for
from ..settings import EditSettings, RunOptions, Settings, TranslateSettings
from .main import main
from .options import (
    chosen_seeds,
    compile_option,
    condition_option,
    device_option,
    dtype_option,
    flowedit_options,
    image_options,
    load_model,
    load_models,
    loading_options,
    mask_options,
    model_options,
    note_clip_reading,
    note_repeats,
    number,
    output_options,
    run_and_report,
    sampling_options,
    seed_options,
    setting_option,
    settings_of,
    stamp,
    target_lora_option,
    with_recommended,
)
from .sweep import contact_sheets, strengths_of, sweep_units


def image_units(images: list[Path], seeds: list[int], settings: Settings, stamp: dict[str, Any],
                name: Callable[[str, int], str], *, frames: bool = False) -> list[Unit]:
    """One unit per (image, seed): an image given twice is one input; images whose names repeat in different
    folders get distinct output names (:func:`~cyclediff._paths.unique_names`). A clip's output is written in its
    own container (a folder of frames: a folder of PNGs; ``frames``: every clip as one)."""
    paths, repeated = distinct_paths(list(images))
    note_repeats(repeated)
    units = []
    for path, stem in zip(paths, unique_names(paths)):
        for s in dict.fromkeys(seeds):
            out = name(stem, s)
            if is_clip(path):
                out = out.removesuffix(".png") + ("" if frames or path.is_dir() else path.suffix.lower())
            units.append(Unit(len(units), f"{stem}/seed{s}", s, name=out, settings=settings, input=path,
                              stamp=stamp))
    return units


frames_option = click.option("--frames", "as_frames", is_flag=True,
                             help="clips: write each output clip as a folder of PNG frames instead of its container")
score_option = click.option("--score", is_flag=True,
                            help="score each output against its input (PSNR, SSIM; clips: their frames' means and the "
                                 "background's under a mask), print the scores on its line and record them in it")


def _scoring(opts: dict[str, Any], clip_model: str | None, model: Any) -> tuple[bool, Any]:
    """--score / --clip-model: whether outputs are scored, and the CLIP scorer (None: the pixel scores only)."""
    if clip_model is None:
        return opts["score"], None
    from ..metrics import ClipScorer

    return True, ClipScorer(clip_model, device=model.device)


def _attention(opts: dict[str, Any]) -> dict[str, Any] | None:
    """The attention-control setting from --attention, --attention-steps, --self-attention-steps, --reweight."""
    if opts["attention"] is None:
        if opts["reweight"]:
            raise click.UsageError("--reweight needs --attention replace or refine")
        return None
    weights = {}
    for item in opts["reweight"]:
        word, sep, value = item.rpartition("=")
        try:
            weights[word.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not word.strip():
            raise click.BadParameter(f"give WORD=SCALE, e.g. red=2; got {item!r}", param_hint="--reweight")
    return {"mode": opts["attention"], "cross_steps": opts["attention_steps"],
            "self_steps": opts["self_attention_steps"], "weights": weights}


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source-prompt", default=None, help="text models: what the input images show")
@click.option("--prompt", "--target-prompt", "prompt", default=None, help="text models: what the edited images "
                                                                        "should show")
@click.option("--source-class", type=int, default=None, help="class-conditional models: the input images' class")
@click.option("--target-class", type=int, default=None, help="class-conditional models: the class to edit to")
@model_options
@compile_option
@sampling_options(EditSettings, "the paper's text-guided editing setting (it skips 15–50 of about 100 "
                                 "steps; 0.8 sits inside)", sweep=True)
@setting_option(EditSettings, "guidance_scale", help="classifier-free guidance scale of the target prompt or class")
@setting_option(EditSettings, "source_guidance_scale",
                help="1 (the paper's setting) needs no unconditional pass for the source")
@click.option("--negative-prompt", default=None, help="text models: what the edited images should not show")
@condition_option("condition", "--condition", "--target-condition", side="target")
@condition_option("source_condition", "--source-condition", side="source")
@setting_option(EditSettings, "method", help="cyclediffusion (the posterior chain), edit-friendly (the LEDITS++ "
                                             "inversion's independent draws), flowedit (flow models), or a baseline")
@flowedit_options(EditSettings)
@seed_options
@setting_option(RunOptions, "batch_size", help="images per UNet call (same-sized images are batched)")
@mask_options
@click.option("--attention", type=click.Choice(["replace", "refine"]), default=None,
              help="Prompt-to-Prompt: the target pass reuses the source's attention maps (replace: a word swap with "
                   "as many tokens; refine: words added or changed)")
@click.option("--attention-steps", type=float, default=AttentionEdit.cross_steps, show_default=True,
              help="share of the steps whose cross-attention maps are reused")
@click.option("--self-attention-steps", type=float, default=AttentionEdit.self_steps, show_default=True,
              help="share of the steps whose self-attention maps are reused (keeps the layout closer)")
@click.option("--reweight", multiple=True, metavar="WORD=SCALE",
              help="scale the target's attention to a word of --prompt, e.g. red=2 (repeatable; with --attention)")
@image_options
@frames_option
@score_option
@setting_option(EditSettings, "clip_model", "--clip", metavar="MODEL",
                help="score with this CLIP too (implies --score): CLIP score, directional CLIP; clips: per frame and "
                     "temporal consistency (a hub id or local folder)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edits"), show_default=True,
              help="folder for the edited images")
@output_options
def edit(images: tuple[Path, ...], **opts: Any) -> None:
    """Edit IMAGES from SOURCE-PROMPT to PROMPT with a text-to-image model, or from SOURCE-CLASS to TARGET-CLASS with
    a class-conditional one (optionally inside a mask). With a video model, IMAGES are clips (.mp4, .webm, .mov,
    .gif, folders of frames), written back in their container at their frame rate.

    \b
    Examples:
      cyclediff edit three.png --model demo:digits --source-class 3 --target-class 8 --guidance-scale 1
      cyclediff edit cat.png --source-prompt "a photo of a cat" --prompt "a photo of a dog" \\
          --model stable-diffusion-v1-5/stable-diffusion-v1-5 --dtype float16 --seeds 0-3
      cyclediff edit photos/*.jpg --source-prompt "a car" --prompt "a red car" --model model.safetensors \\
          --strength 0.7 --guidance-scale 2 --batch-size 4 --out edits/ --json

    Outputs are OUT/<image>_<prompt>_s<strength>_w<scale>_seed<seed>.png, written atomically, with their settings
    recorded inside; one made with these very settings is skipped unless --overwrite.
    """
    seeds = chosen_seeds(opts)
    strengths, opts = strengths_of(opts)
    settings = settings_of(EditSettings, opts, attention=_attention(opts))  # refused before any model loads
    run = RunOptions.from_options(opts)
    note_clip_reading(run, images)
    check_out_folder(opts["out"])
    model = load_model(settings.model, run)
    settings = with_recommended(settings, model, quiet=opts["quiet"])
    strengths = strengths if len(strengths) > 1 else (settings.strength,)  # the model's recommended one, if taken
    if opts["source_class"] is not None or opts["target_class"] is not None or "prompt" not in model.condition_keys:
        return _class_edit(model, images, seeds, settings, run, opts, strengths)
    condition_for(model, prompt=settings.source_prompt, side="source",  # class options were handled above
                  extra=settings.source_condition)
    condition_for(model, prompt=settings.prompt, side="target", extra=settings.condition)
    if settings.source_prompt is None or settings.prompt is None:
        raise click.UsageError("a text model edits from --source-prompt to --prompt: give both")
    method = "" if settings.method == "cyclediffusion" else settings.method + "_"

    def units_at(strength: float) -> list[Unit]:
        label = f"{method}s{number(strength)}_w{number(settings.guidance_scale)}"
        return image_units(images, seeds, settings.replace(strength=strength), stamp("edit", run),
                           lambda stem, s: f"{stem}_{slug(settings.prompt)}_{label}_seed{s}.png",
                           frames=opts["as_frames"])

    units, (score, scorer) = sweep_units(strengths, units_at), _scoring(opts, settings.clip_model, model)
    with contact_sheets(units, opts["out"], strengths, quiet=opts["quiet"]):
        run_and_report(EditTask(model, run, score=score, scorer=scorer), units,
                       FileStore(lambda u: opts["out"] / u.name, overwrite=opts["overwrite"], scores=score),
                       batch_size=run.batch_size, quiet=opts["quiet"], as_json=opts["as_json"])


def _class_edit(model: Any, images: tuple[Path, ...], seeds: list[int], edit_settings: EditSettings,
                run: RunOptions, opts: dict[str, Any], strengths: tuple[float, ...]) -> None:
    """``edit`` on a class-conditional model: the translation between two of its classes (as the API's and the
    web app's class edits)."""
    if edit_settings.attention is not None:
        raise click.UsageError("--attention needs a text-conditioned UNet model; class edits have no prompts")
    if edit_settings.clip_model is not None:
        raise click.UsageError("--clip-model scores against prompts; class edits have none: give --score alone")
    condition_for(model, prompt=edit_settings.source_prompt, class_labels=opts["source_class"], side="source",
                  extra=edit_settings.source_condition)
    condition_for(model, prompt=edit_settings.prompt, class_labels=opts["target_class"], side="target",
                  guidance_scale=edit_settings.guidance_scale, extra=edit_settings.condition)
    if opts["source_class"] is None or opts["target_class"] is None:
        raise click.UsageError("a class edit needs --source-class (what the images show) and --target-class")
    shared = {k: getattr(edit_settings, k) for k in set(EditSettings.names()) & set(TranslateSettings.names())}
    settings = TranslateSettings(source_model=edit_settings.model, target_model=edit_settings.model,
                                 source_class=opts["source_class"], target_class=opts["target_class"], **shared)
    method = "" if settings.method == "cyclediffusion" else settings.method + "_"

    def units_at(strength: float) -> list[Unit]:
        label = f"{method}s{number(strength)}_w{number(settings.guidance_scale)}"
        return image_units(images, seeds, settings.replace(strength=strength), stamp("edit", run),
                           lambda stem, s: f"{stem}_class{settings.target_class}_{label}_seed{s}.png",
                           frames=opts["as_frames"])

    units = sweep_units(strengths, units_at)
    with contact_sheets(units, opts["out"], strengths, quiet=opts["quiet"]):
        task = TranslateTask(model, model, run, score=opts["score"])
        task.desc = "edit"  # a class edit is the model's translation to itself; its progress bar says edit
        run_and_report(task, units,
                       FileStore(lambda u: opts["out"] / u.name, overwrite=opts["overwrite"], scores=opts["score"]),
                       batch_size=run.batch_size, quiet=opts["quiet"], as_json=opts["as_json"])


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source-model", required=True, help="the model of the input domain (hub id, folder, file, demo:…)")
@click.option("--target-model", required=True, help="the model of the output domain")
@setting_option(TranslateSettings, "method", help="cyclediffusion (the posterior chain), edit-friendly (independent "
                                                  "draws), flowedit (flow models), or a baseline (sdedit, ddib)")
@flowedit_options(TranslateSettings)
@sampling_options(TranslateSettings, "the paper's unpaired translation setting (start at t = 850 of 1000)")
@setting_option(TranslateSettings, "refine_steps",
                help="re-noise the output to the r-th last step and denoise it with the target at η = 1")
@click.option("--source-class", type=int, default=None, help="class label for a class-conditional source")
@click.option("--target-class", type=int, default=None, help="class label for a class-conditional target")
@click.option("--source-prompt", default=None, help="prompt for a text-conditioned source")
@click.option("--target-prompt", default=None, help="prompt for a text-conditioned target")
@setting_option(TranslateSettings, "guidance_scale", type=float, help="target guidance scale")
@condition_option("source_condition", "--source-condition", side="source")
@condition_option("target_condition", "--target-condition", side="target")
@seed_options
@setting_option(RunOptions, "batch_size", help="images per UNet call (same-sized images are batched)")
@loading_options
@target_lora_option
@device_option
@dtype_option
@compile_option
@mask_options
@image_options
@frames_option
@score_option
@click.option("--out", type=click.Path(path_type=Path), default=Path("translations"), show_default=True,
              help="folder for the translated images")
@output_options
def translate(images: tuple[Path, ...], **opts: Any) -> None:
    """Translate IMAGES from the source model's domain to the target model's (unpaired, no training).

    \b
    Examples:
      cyclediff translate three.png --source-model demo:digit-3 --target-model demo:digit-8 --seeds 0-3
      cyclediff translate cats/*.png --source-model ./ddpm-cat --target-model ./ddpm-dog --strength 0.85 \\
          --refine-steps 10 --method sdedit --out dogs/
      cyclediff translate photo.png --source-model M --target-model M --target-lora watercolor.safetensors:0.9 \\
          --source-prompt "a photo" --target-prompt "a watercolor painting"   # one load: M → its own style
    """
    settings = settings_of(TranslateSettings, opts)
    run, seeds = RunOptions.from_options(opts), chosen_seeds(opts)
    note_clip_reading(run, images)
    check_out_folder(opts["out"])
    source, target = load_models(settings.source_model, settings.target_model, run)
    condition_for(source, prompt=settings.source_prompt, class_labels=settings.source_class,
                  side="source", extra=settings.source_condition)  # refused now
    condition_for(target, prompt=settings.target_prompt, class_labels=settings.target_class,
                  guidance_scale=settings.guidance_scale, side="target", extra=settings.target_condition)
    refine = f"_r{settings.refine_steps}" if settings.refine_steps else ""
    units = image_units(images, seeds, settings, stamp("translate", run),
                        lambda stem, s: f"{stem}_{settings.method}_s{number(settings.strength)}{refine}_seed{s}.png",
                        frames=opts["as_frames"])
    run_and_report(TranslateTask(source, target, run, score=opts["score"]), units,
                   FileStore(lambda u: opts["out"] / u.name, overwrite=opts["overwrite"], scores=opts["score"]),
                   batch_size=run.batch_size, quiet=opts["quiet"], as_json=opts["as_json"])

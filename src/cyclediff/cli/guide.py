"""``cyclediff guide``: Langevin guidance in the latent space, one chain per seed, through the runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..batch.outputs import check_out_folder
from ..batch.runner import Unit
from ..batch.stores import FileStore
from ..batch.tasks import GuideTask
from ..guidance.energies import DIGITS_CLASSIFIER
from ..models.conditions import condition_for
from ..settings import GuideSettings, RunOptions
from .main import main
from .options import (
    chosen_seeds,
    load_model,
    model_options,
    output_options,
    run_and_report,
    seed_options,
    setting_option,
    settings_of,
    stamp,
)


@main.command()
@model_options
@click.option("--energy", required=True,
              help="clip (with --text), classifier (with --target-class), or module:function / "
                   "path/to/file.py:function (images in [-1, 1] → (B,))")
@click.option("--classifier", default=None,
              help="--energy classifier: module:function of a torch classifier (logits out; default on the demo "
                   "models: the digits classifier)")
@setting_option(GuideSettings, "target_class", type=int, help="--energy classifier: the class to draw the chains to")
@click.option("--text", default=None, help="the CLIP energy's text")
@setting_option(GuideSettings, "clip_model", help="the CLIP energy's model (hub id or folder)")
@setting_option(GuideSettings, "augment_copies",
                help="the CLIP energy: differentiably augmented copies of each image it scores")
@setting_option(GuideSettings, "weight", help="λ in e^{−λE}")
@setting_option(GuideSettings, "langevin_steps", help="Langevin updates of the latent per chain")
@setting_option(GuideSettings, "step_size", help="Langevin step size s: z ← z − (s/2)∇U(z) + √s·ω")
@setting_option(GuideSettings, "steps", help="sampler steps of G(z)")
@setting_option(GuideSettings, "eta", help="DDIM η of G(z) in (0, 1]; 1 is DDPM's variance")
@click.option("--prompt", default=None, help="text models: the condition")
@setting_option(GuideSettings, "guidance_scale", type=float, help="text models: classifier-free guidance scale")
@click.option("--class-label", type=int, default=None, help="class-conditional models (omit: unconditional)")
@seed_options
@setting_option(GuideSettings, "keep_best", help="keep each chain's lowest-energy latent, not its last")
@setting_option(GuideSettings, "grad_steps", type=int,
                help="back-propagate through the last K sampler steps only (an approximation)")
@click.option("--strip-every", type=click.IntRange(1), default=None, help="save a PNG strip of the chain every N")
@click.option("--out", type=click.Path(path_type=Path), default=Path("guided"), show_default=True,
              help="folder for OUT/seed<NNNN>.png")
@output_options
def guide(**opts: Any) -> None:
    """Sample with an energy by Langevin dynamics in the latent space (no training).

    \b
    Examples:
      cyclediff guide --model google/ddpm-ema-celebahq-256 --energy clip --text "a photo of a baby" --seeds 0-3
      cyclediff guide --model demo:digits --energy classifier --target-class 7 --weight 10 --langevin-steps 30 \\
          --steps 10 --strip-every 5
      cyclediff guide --model demo:digits --energy my_energies.py:round_digit --weight 10
    """
    from ..guidance import energy_from_spec

    if opts["energy"] == "classifier" and opts["classifier"] is None and str(opts["model"]).startswith("demo:"):
        opts = {**opts, "classifier": DIGITS_CLASSIFIER}
    settings, run = settings_of(GuideSettings, opts), RunOptions.from_options(opts)
    if settings.energy == "clip" and not settings.text:
        raise click.UsageError("--energy clip needs --text")
    if (settings.energy == "classifier") != (settings.target_class is not None):
        raise click.UsageError("--energy classifier and --target-class go together")
    if settings.energy == "classifier" and settings.classifier is None:
        raise click.UsageError("--energy classifier needs --classifier module:function (a torch classifier)")
    seeds = chosen_seeds(opts)  # one chain per seed
    check_out_folder(opts["out"])
    energy = _classifier_energy(settings) if settings.energy == "classifier" else energy_from_spec(
        settings.energy, text=settings.text, clip_model=settings.clip_model, augment_copies=settings.augment_copies)
    model = load_model(settings.model, run)
    condition_for(model, prompt=settings.prompt, guidance_scale=settings.guidance_scale,
                  class_labels=settings.class_label)  # refused now
    units = [Unit(i, f"seed{s}", s, name=f"seed{s:04d}.png", settings=settings, stamp=stamp("guide", run))
             for i, s in enumerate(seeds)]
    task = GuideTask(model, lambda _: energy, strip_every=opts["strip_every"])
    # all chains in one batch: one decoder pass per Langevin step for every seed
    run_and_report(task, units, FileStore(lambda u: opts["out"] / u.name, overwrite=opts["overwrite"]),
                   batch_size=len(units), quiet=opts["quiet"], as_json=opts["as_json"])


def _classifier_energy(settings: GuideSettings) -> Any:
    """−log p(target class | image) under the named classifier (checked now: a class it lacks is one line)."""
    from ..guidance import ClassifierEnergy
    from ..guidance.energies import load_classifier

    return ClassifierEnergy(load_classifier(settings.classifier), settings.target_class)

"""``cyclediff guide``: Langevin guidance in the latent space, one chain per seed, through the runner."""

from __future__ import annotations

from pathlib import Path

import click

from ..apps.outputs import check_out_folder
from ..apps.runner import Unit
from ..apps.stores import FileStore
from ..apps.tasks import GuideTask
from ..defaults import GUIDE
from ..models.conditions import condition_for
from . import main
from .options import check_sampler, load_model, model_options, output_options, parse_seeds, run_and_report


@main.command()
@model_options
@click.option("--energy", "energy_spec", required=True,
              help="clip (with --text), or module:function / path/to/file.py:function (images in [-1, 1] → (B,))")
@click.option("--text", default=None, help="the CLIP energy's text")
@click.option("--clip-model", default=GUIDE["clip_model"], show_default=True)
@click.option("--augment-copies", type=click.IntRange(1), default=GUIDE["augment_copies"], show_default=True)
@click.option("--weight", type=float, default=GUIDE["weight"], show_default=True, help="λ in e^{−λE}")
@click.option("--langevin-steps", type=click.IntRange(0), default=GUIDE["langevin_steps"], show_default=True)
@click.option("--step-size", type=click.FloatRange(0, min_open=True), default=GUIDE["step_size"], show_default=True)
@click.option("--steps", type=click.IntRange(1), default=GUIDE["steps"], show_default=True,
              help="sampler steps of G(z)")
@click.option("--eta", type=click.FloatRange(0, 1), default=GUIDE["eta"], show_default=True)
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
    from ..guidance import energy_from_spec

    check_sampler("ddim", eta)
    if energy_spec == "clip" and not text:
        raise click.UsageError("--energy clip needs --text")
    seed_list = list(dict.fromkeys(parse_seeds(seeds)))
    check_out_folder(out)
    energy = energy_from_spec(energy_spec, text=text, clip_model=clip_model, augment_copies=augment_copies)
    model = load_model(model_spec, device, dtype)
    condition_for(model, prompt=prompt, guidance_scale=guidance_scale, class_labels=class_label)  # refused now
    settings = {"task": "guide", "model": model_spec, "dtype": dtype, "energy": energy_spec, "text": text,
                "clip_model": clip_model, "augment_copies": augment_copies, "weight": weight,
                "langevin_steps": langevin_steps, "step_size": step_size, "steps": steps, "eta": eta,
                "prompt": prompt, "guidance_scale": guidance_scale, "class_label": class_label,
                "keep_best": keep_best, "grad_steps": grad_steps}
    units = [Unit(i, f"seed{s}", s, name=f"seed{s:04d}.png", settings=settings) for i, s in enumerate(seed_list)]
    task = GuideTask(model, lambda _: energy, strip_every=strip_every)
    # all chains in one batch: one decoder pass per Langevin step for every seed
    run_and_report(task, units, FileStore(lambda u: out / u.name, overwrite=overwrite), batch_size=len(units),
                   quiet=quiet, as_json=as_json)

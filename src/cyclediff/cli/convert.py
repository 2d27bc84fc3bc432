"""``cyclediff convert``: foreign checkpoints into diffusers folders that ``--model DIR`` loads."""

from __future__ import annotations

from pathlib import Path

import click

from .main import main


@main.group()
def convert() -> None:
    """Convert checkpoints of other codebases into diffusers folders."""


@convert.command("guided-diffusion")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--flags", required=True,
              help="the model's flags: a JSON file or text, or guided-diffusion's command line in quotes, e.g. "
                   "\"--image_size 256 --num_channels 128 --learn_sigma True ...\"")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="the diffusers folder to write")
@click.option("--overwrite", is_flag=True, help="replace what a non-empty --out folder holds")
def convert_guided_diffusion(checkpoint: Path, flags: str, out: Path, overwrite: bool) -> None:
    """Convert a guided-diffusion / improved-diffusion CHECKPOINT (.pt state dict: OpenAI's ADM, ILVR's and the
    CycleDiffusion paper's AFHQ models) into a diffusers folder for --model / PixelDenoiser.from_pretrained.

    \b
    Example:
      cyclediff convert guided-diffusion afhq_dog_4m.pt --out afhq-dog --flags "--attention_resolutions 16 \\
          --num_channels 128 --num_head_channels 64 --num_res_blocks 1 --resblock_updown True \\
          --use_scale_shift_norm True --learn_sigma True --image_size 256 --diffusion_steps 1000 \\
          --noise_schedule linear"
    """
    from ..batch.outputs import check_out_folder
    from ..models.guided_diffusion import convert as convert_checkpoint

    check_out_folder(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise click.UsageError(f"{out} is not empty; give a new or empty folder, or --overwrite to replace it")
    click.echo(str(convert_checkpoint(checkpoint, flags, out)))

"""``cyclediff demo``: the offline digits demo, and retraining its models."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .main import main


# ---------------------------------------------------------------------------------------------------- demo
def _threads(threads: int | None) -> str:
    """Set torch's thread count and say why: --threads, else OMP_NUM_THREADS, else one thread on a machine of
    one or two cores (faster there, where the cores are often shared), else torch's default."""
    import torch

    cores = os.cpu_count() or 1
    if threads is not None:
        torch.set_num_threads(threads)
        return f"{threads} thread{'s' * (threads > 1)} (--threads)"
    if os.environ.get("OMP_NUM_THREADS"):
        return f"{torch.get_num_threads()} thread(s) (OMP_NUM_THREADS)"
    if cores <= 2:
        torch.set_num_threads(1)
        return f"1 thread ({cores} CPU cores here; --threads N to change)"
    return f"{torch.get_num_threads()} threads ({cores} CPU cores; --threads N to change)"


@main.group(invoke_without_command=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="folder for demo.png, demo.json and demo.md; a folder holding only a previous demo's files is "
                   "rewritten, any other non-empty one needs --overwrite")
@click.option("--overwrite", is_flag=True, help="write into a non-empty --out folder (its demo files are replaced)")
@click.option("--quick", is_flag=True, help="fewer images and steps (a smoke test, under a minute)")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch (default: 1 on a machine of 1–2 cores, else torch's choice; "
                   "OMP_NUM_THREADS is honoured)")
@click.option("--quiet", "-q", is_flag=True,
              help="print nothing: no stage lines, progress bars or table (the results are in --out)")
@click.option("--models", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="folder holding digits/, digit-3/, digit-8/ (default: the shipped models)")
@click.pass_context
def demo(ctx: click.Context, out: Path, overwrite: bool, quick: bool, threads: int | None, quiet: bool,
         models: Path | None) -> None:
    """Run the offline demo on the shipped digits models (translation, class edits, sampling, metrics).

    It takes a few minutes on a laptop (4–11 on two busy cores); --quick runs every stage on fewer images and
    steps in under a minute. `cyclediff demo train --out DIR` retrains the demo models."""
    if ctx.invoked_subcommand is not None:
        return
    from ..batch.outputs import check_out_folder
    from ..demo.run import DemoSettings, check_demo_out, run_demo

    check_demo_out(check_out_folder(out), overwrite=overwrite)
    how = "--quick: fewer images and steps, under a minute" if quick else \
        "a few minutes (4–11 on two busy cores); --quick does every stage on fewer images and steps in under a minute"
    line = f"cyclediff demo → {out}: {how}; {_threads(threads)}"
    if not quiet:
        click.echo(line)
    settings = DemoSettings(steps=20, samples_per_class=5, edit_per_class=2, max_translate=10, guide_per_class=1,
                            guide_langevin_steps=3, video_clips=4) if quick \
        else DemoSettings()
    run_demo(out, settings=settings, root=models, quiet=quiet)


@demo.command("train")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="where to write the four models")
@click.option("--iters", type=click.IntRange(1), default=3000, show_default=True,
              help="training iterations per model")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="seed of the weights' initialisation and the batches (same seed, same models)")
def demo_train(out: Path, iters: int, seed: int) -> None:
    """Train the four demo models (deterministic for a seed; the shipped ones: --iters 3000 --seed 0)."""
    from ..demo.train import train_all

    for path in train_all(out, iters=iters, seed=seed):
        click.echo(str(path))

"""``cyclediff demo``: the offline digits demo, and retraining its models."""

from __future__ import annotations

from pathlib import Path

import click

from .main import main


# ---------------------------------------------------------------------------------------------------- demo
@main.group(invoke_without_command=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option("--quick", is_flag=True, help="fewer images and steps (a smoke test)")
@click.option("--models", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="folder holding digits/, digit-3/, digit-8/ (default: the shipped models)")
@click.pass_context
def demo(ctx: click.Context, out: Path, quick: bool, models: Path | None) -> None:
    """Run the offline demo on the shipped digits models (translation, class edits, sampling, metrics).

    `cyclediff demo train --out DIR` retrains the demo models."""
    if ctx.invoked_subcommand is not None:
        return
    from ..demo.run import DemoSettings, run_demo

    settings = DemoSettings(steps=20, samples_per_class=5, edit_per_class=2, max_translate=10, guide_per_class=1,
                            guide_langevin_steps=3) if quick \
        else DemoSettings()
    run_demo(out, settings=settings, root=models)


@demo.command("train")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="where to write the four models")
@click.option("--iters", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
def demo_train(out: Path, iters: int, seed: int) -> None:
    """Train the four demo models (deterministic for a seed; the shipped ones: --iters 3000 --seed 0)."""
    from ..demo.train import train_all

    for path in train_all(out, iters=iters, seed=seed):
        click.echo(str(path))

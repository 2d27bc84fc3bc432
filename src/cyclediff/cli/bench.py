"""``cyclediff bench``: the benchmarks the field reports (:mod:`cyclediff.bench`), edited on the job runner and
scored as their official code scores."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from ..bench.run import PIE_EDIT
from ..settings import EditSettings, RunOptions
from .main import main
from .options import device_option, dtype_option, loading_options, quiet_option, setting_option


@main.group()
def bench() -> None:
    """Benchmarks: edit a downloaded benchmark with each method, score it as the official code does."""


@bench.command("pie-bench")
@click.argument("data", type=click.Path(path_type=Path, file_okay=False))
@click.option("--model", required=True, help="the model to edit with (hub id, folder, checkpoint, demo:…)")
@click.option("--method", "methods", default="cyclediffusion", show_default=True,
              help="methods, comma-separated: cyclediffusion, edit-friendly, flowedit, sdedit, ddib")
@click.option("--out", type=click.Path(path_type=Path), default=Path("pie-bench"), show_default=True,
              help="folder for the edits, results.csv and the summary")
@setting_option(EditSettings, "steps", default=PIE_EDIT.steps, help="steps of the sampler's grid")
@setting_option(EditSettings, "strength", help="fraction of the steps run (start part-way, as img2img)")
@setting_option(EditSettings, "eta", help="DDIM η in (0, 1]; 1 is DDPM's variance")
@setting_option(EditSettings, "guidance_scale", default=PIE_EDIT.guidance_scale, help="target guidance scale")
@setting_option(EditSettings, "source_guidance_scale", help="guidance scale of the source prompt")
@setting_option(EditSettings, "n_avg", help="flowedit: noise draws averaged per step")
@setting_option(EditSettings, "n_min", help="flowedit: the last N steps sampled plainly")
@click.option("--seeds", default="0", show_default=True, help="seeds per image, e.g. 0-3")
@click.option("--best-of", is_flag=True, help="keep each image's seed of largest directional CLIP (needs "
                                              "--rank-clip): the paper's best of N")
@click.option("--rank-clip", default=None, help="the CLIP that ranks seeds for --best-of (hub id or folder)")
@click.option("--types", default=None, help="edit types to run, e.g. 0,1,2 (default: all ten)")
@click.option("--split", type=click.Choice(["700", "620"]), default="700", show_default=True,
              help="620 leaves out the style edits (type 9)")
@click.option("--limit", type=click.IntRange(1), default=None, help="the first N images only")
@click.option("--dino", default="facebook/dino-vitb8", show_default=True, help="the structure distance's DINO")
@click.option("--clip", default="openai/clip-vit-large-patch14", show_default=True, help="CLIP similarity's CLIP")
@click.option("--lpips-weights", default=None,
              help="squeezenet1_1 weights for LPIPS (a state dict file or URL) [default: torchvision's download]")
@click.option("--score-only", is_flag=True, help="score the outputs already in --out, edit nothing")
@setting_option(RunOptions, "batch_size", help="images per model call")
@loading_options
@device_option
@dtype_option
@quiet_option
def pie_bench_cmd(data, model, methods, out, quiet, score_only, dino, clip, lpips_weights, **opts):
    """Edit PIE-Bench (a folder you downloaded: mapping_file.json and annotation_images/) with each method and
    score it with the official metrics; writes OUT/results.csv, OUT/summary.md and OUT/summary.json.

    \b
    Examples:
      cyclediff bench pie-bench PIE-Bench_v1 --model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
          --method cyclediffusion,edit-friendly,sdedit,ddib --steps 50 --strength 0.8 --out pie-sd15
      accelerate launch --multi_gpu --num_processes 8 -m cyclediff bench pie-bench PIE-Bench_v1 --model M
      cyclediff bench pie-bench PIE-Bench_v1 --model M --split 620 --types 0,1 --limit 20
    """
    from ..bench.run import PieBenchRun, export, grid_of, prepare, score_all, write_results
    from ..bench.score import Scorers
    from ..jobs.run import distributed, job_model, load_job, run_job, task_for
    from ..metrics.lpips import SQUEEZENET_URL

    run = {"device": opts["device"], "dtype": opts["dtype"], "batch_size": opts["batch_size"],
           **_absolute(RunOptions.from_options(opts).loading())}
    names = [m.strip() for m in methods.split(",") if m.strip()]
    # one method: its knobs checked against it; several: each runs with its own (a job's sweep)
    edit = EditSettings.from_options(opts, model=model, method=names[0] if len(names) == 1 else None)
    run_settings = PieBenchRun(data=data, out=out, methods=names, edit=edit, seeds=opts["seeds"],
                               best_of=opts["best_of"], rank_clip=opts["rank_clip"], types=opts["types"],
                               split=opts["split"], limit=opts["limit"], run=run, score_only=score_only)
    items, failures, job_file = prepare(run_settings)
    job = load_job(job_file)
    rank, world, device, barrier, share = distributed(job.run.device)
    # the scoring models are loaded (on the CPU) before any edit runs: a bad --dino / --clip / --lpips-weights
    # fails now, on every rank, not after hours of edits
    scorers = Scorers(dino=dino, clip=clip, lpips=lpips_weights or SQUEEZENET_URL).check(run_settings.metrics)
    if rank != 0:
        del scorers  # checked; rank 0 scores
    tasks: list = []  # the edit task run_job made (its model): the count of evaluations reads its grid
    if not score_only:
        report = run_job(job, rank=rank, world=world, device=device, progress=not quiet, barrier=barrier,
                         share=share, make_task=lambda *a: tasks.append(task_for(*a)) or tasks[-1])
        if rank == 0:
            click.echo(f"edited {report.ok} of {report.total}, {report.failed} failed -> {job.out}", err=True)
    if rank != 0:
        return
    rows = score_all(run_settings, items, export(run_settings, items), scorers.to(device))
    # the model's grid (its own strength cut); a resumed or --score-only run loaded none: load it for its schedule
    model_ran = tasks[0].model if tasks else job_model(job, job.settings.model, torch.device("cpu"))
    write_results(run_settings, rows, failures, model, grid_of(model_ran, run_settings))
    click.echo((out / "summary.md").read_text())
    failed = [row for row in [*failures, *rows] if row.get("error")]
    for row in failed:
        click.echo(f"  failed {row['key']} {row.get('method') or ''}: {row['error']}", err=True)
    if failed:
        raise SystemExit(1)


def _absolute(loading: dict) -> dict:
    """The loading options that are set, local paths made absolute as a job file's are (the job file is written
    in --out, the paths were given from here)."""
    from ..jobs.file import local_lora, local_spec

    out = {k: v for k, v in loading.items() if v}
    if out.get("lora"):
        out["lora"] = [local_lora(Path.cwd(), spec) for spec in out["lora"]]
    if out.get("base"):
        out["base"] = local_spec(Path.cwd(), out["base"])
    return out


__all__ = ["bench", "pie_bench_cmd"]

"""``cyclediff run`` (job files) and ``cyclediff evaluate`` (the paper's benchmarks): thin configurations of the
runner through :mod:`cyclediff.jobs.run` and :mod:`cyclediff.jobs.evaluate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..settings import RunOptions, TranslateSettings, check_setting
from .main import main
from .options import (
    device_option,
    dtype_option,
    load_model,
    load_models,
    loading_options,
    parse_seeds,
    quiet_option,
    sampling_options,
    setting_option,
    settings_of,
    target_lora_option,
)


# ---------------------------------------------------------------------------------------------------- run
@main.command("run")
@click.argument("job_file", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="redo every unit, ignoring earlier records")
@quiet_option
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def run_job_cmd(job_file: Path, overwrite: bool, quiet: bool, as_json: bool) -> None:
    """Run a job file (.toml, .json or .yaml) over a whole dataset: resumable, on one process or many.

    \b
    Examples:
      cyclediff run job.toml
      accelerate launch --multi_gpu --num_processes 8 -m cyclediff run job.toml      # 8 GPUs
      torchrun --nproc_per_node 2 -m cyclediff run job.toml                          # 2 CPU processes (gloo)

    Outputs go to the job's out folder: images/, manifest.jsonl (one line per input × seed: input, settings,
    seed, output, metrics, status, error, seconds) and summary.json. Run the same command again after a crash to
    resume; failed units are retried. Exit status 1 when any unit failed.
    """
    from ..jobs.run import distributed, load_job, run_job

    job = load_job(job_file)
    rank, world, device, barrier, share = distributed(job.run.device)
    report = run_job(job, rank=rank, world=world, device=device, progress=not quiet, barrier=barrier,
                     overwrite=overwrite, share=share)
    if rank == 0:
        if as_json:
            click.echo(json.dumps({"total": report.total, "ok": report.ok, "failed": report.failed,
                                   "missing": report.missing, "manifest": str(report.manifest),
                                   "failures": [{"key": f["key"], "error": f["error"]} for f in report.failures]},
                                  indent=2))
        else:
            click.echo(f"{report.ok} of {report.total} done, {report.failed} failed -> {report.manifest}", err=True)
            for f in report.failures:
                click.echo(f"  failed {f['key']}: {f['error']}", err=True)
    sys.exit(1 if report.failed or report.missing else 0)


# ---------------------------------------------------------------------------------------------------- evaluate
@main.group()
def evaluate() -> None:
    """Benchmarks with the paper's metrics on your own data (resumable; results.jsonl, summary.csv / .md)."""


@evaluate.command("edit")
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--model", "model_spec", default=None, help="overrides the spec's model")
@click.option("--clip-model", default=None, help="overrides the spec's CLIP model")
@device_option
@dtype_option
@click.option("--out", type=click.Path(path_type=Path), default=Path("eval-edit"), show_default=True,
              help="folder for the outputs, the records and summary.md")
@quiet_option
def evaluate_edit_cmd(spec, model_spec, clip_model, out, quiet, **opts):
    """Edit every (image, source text, target text) of SPEC over its settings grid and score each output
    (CLIP score, directional CLIP, PSNR, SSIM); report single-sample and best-of-N numbers per method.

    \b
    SPEC is JSON: {"model": ID, "items": [{"image", "source", "target"}, ...], "settings": {"seeds": [0, 1],
    "strengths": [0.8], "guidance_scales": [1, 2, 3], "methods": ["cyclediffusion", "sdedit", "ddib"],
    "steps": 100, "eta": 0.1}} (the settings: those lists and any edit setting, e.g. n_avg, mask, attention); a
    bare list in the layout of the paper's data/translate-text.json works too.
    """
    from ..jobs.evaluate import EditSpec, evaluate_edit
    from ..metrics import ClipScorer

    plan = EditSpec.load(spec)
    if model_spec is None and plan.model is None:
        raise click.UsageError("the spec names no model; pass --model")
    model = load_model(model_spec or plan.model, RunOptions.from_options(opts))
    scorer = ClipScorer(clip_model or plan.clip_model, device=model.device)
    failures = []
    rows = evaluate_edit(plan, out, model=model, scorer=scorer, progress=not quiet,
                         on_record=lambda r: failures.append(r) if r["status"] == "failed" else None)
    click.echo((out / "summary.md").read_text())
    for r in failures:
        click.echo(f"FAILED {r['key']} ({r['image']}): {r['error']}", err=True)
    sys.exit(1 if failures or not rows else 0)


@evaluate.command("translate")
@click.option("--source-model", required=True, help="the model of the input domain (hub id, folder, file, demo:…)")
@click.option("--target-model", required=True, help="the model of the output domain")
@click.option("--images", type=click.Path(path_type=Path, file_okay=False), required=True, help="inputs")
@click.option("--reference", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="real images of the target domain (FID / KID)")
@click.option("--methods", default="cyclediffusion,sdedit,ddib", show_default=True,
              help="methods, comma-separated: cyclediffusion, edit-friendly, flowedit, sdedit, ddib")
@click.option("--seeds", default="0", show_default=True, help="seeds per image, e.g. 0-3")
@sampling_options(TranslateSettings)
@setting_option(TranslateSettings, "refine_steps",
                help="re-noise the output to the r-th last step and denoise it with the target at η = 1")
@setting_option(RunOptions, "features", help="FID / KID features: inception (needs cyclediff[fid]), pixels, or "
                                             "module:function")
@loading_options
@target_lora_option
@device_option
@dtype_option
@click.option("--out", type=click.Path(path_type=Path), default=Path("eval-translate"), show_default=True,
              help="folder for the outputs, the records and summary.md")
@quiet_option
def evaluate_translate_cmd(source_model, target_model, images, reference, methods, seeds, out, quiet, **opts):
    """Translate every image in IMAGES with each method; FID / KID against REFERENCE, PSNR / SSIM against the
    inputs."""
    from ..jobs.evaluate import evaluate_translate, resolve_features

    seed_list, feature_fn = parse_seeds(seeds), resolve_features(opts["features"])  # refused before any work
    for method in methods.split(","):
        check_setting("method", method)
    run, settings = RunOptions.from_options(opts), settings_of(TranslateSettings, opts)
    source, target = load_models(source_model, target_model, run)
    failed: list[dict] = []
    evaluate_translate(source, target, images, reference, out, methods=methods.split(","), seeds=seed_list,
                       strength=settings.strength, steps=settings.steps, eta=settings.eta,
                       refine_steps=settings.refine_steps, features=feature_fn,
                       progress=not quiet, on_record=lambda r: failed.append(r) if r["status"] == "failed" else None)
    click.echo((out / "summary.md").read_text())
    for r in failed:
        click.echo(f"FAILED {r['key']}: {r['error']}", err=True)
    sys.exit(1 if failed else 0)

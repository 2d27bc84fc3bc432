"""Whole datasets as resumable jobs: ``cyclediff run JOB.toml``, on one process or many through accelerate.

The job file (:mod:`cyclediff.jobs.file`) gives the units; the runner (:mod:`cyclediff.batch.runner`) runs them
with the task the job names. Units are grouped into batches in one global order fixed by the job alone, and batch
i goes to rank i mod world size, so every batch has the same members whatever the number of processes (and each
unit has its own generator).

Each rank appends its records to ``manifest.rank-R.jsonl`` (one JSON line per unit: key, input, seed, settings,
output, metrics, status, error, seconds), a batch's lines in one synced write after its images were written
atomically. A unit is finished when an ok record made with the job's present settings names an existing output:
a restarted job skips finished units and only they, whichever rank or world size recorded them (a unit whose
settings changed is computed again). At the end rank 0 merges all parts into
``manifest.jsonl`` (one line per unit, in job order) and ``summary.json``; failed units are retried by the next
run. Rank 0 holds a lock on the output folder for the whole run, so a second run of the same job refuses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._files import FolderLock, atomic_write
from ..batch.runner import Result, Unit, rank_batches, run
from ..batch.stores import RecordStore, read_records
from ..batch.tasks import EditTask, GuideTask, TranslateTask, settings_signature
from ..devices import resolve_device
from ..errors import CycleDiffError
from ..latent import DTYPES
from ..settings import RUN
from .evaluate import means
from .file import Job, load_job


@dataclass
class JobReport:
    total: int
    ok: int
    failed: int
    missing: int  # units with no record (a rank that did not finish)
    manifest: Path
    failures: list[dict]


def _part_path(out: Path, rank: int) -> Path:
    return out / f"manifest.rank-{rank}.jsonl"


def _all_records(out: Path) -> list[dict]:
    return list(read_records([out / "manifest.jsonl"] + sorted(out.glob("manifest.rank-*.jsonl"))))


def finished_keys(out: Path, settings: dict[str, Any] | None = None) -> set[str]:
    """Units recorded ok whose output file exists (in the merged manifest or any rank's part); with ``settings``
    (key → what the unit records now) only those recorded with these very settings: a unit whose settings changed
    since (other steps, another model) is computed again, never kept under the new settings' name."""
    keys = set()
    for r in _all_records(out):
        if r.get("status") == "ok" and r.get("output") and (out / r["output"]).is_file():
            if settings is None or _same(r.get("settings"), settings.get(r["key"])):
                keys.add(r["key"])
            else:
                keys.discard(r["key"])  # a later record with other settings makes an earlier one stale too
    return keys


def _same(recorded: Any, now: Any) -> bool:
    return json.dumps(recorded, sort_keys=True, default=str) == json.dumps(now, sort_keys=True, default=str)


def run_job(job: Job, *, rank: int = 0, world: int = 1, device: torch.device | None = None,
            progress: bool = True, barrier: Callable[[], None] = lambda: None,
            overwrite: bool = False, share: Callable[[Any], Any] = lambda value: value,
            make_task: Callable[[Job, torch.device], Any] | None = None) -> JobReport:
    """Run this rank's share of the job; rank 0 merges all shares once every rank is done (``barrier``).
    ``make_task``: how the task (its models) is made when there is work, :func:`task_for` unless given.

    Rank 0 first takes the output folder's lock, and ``share`` (a broadcast of rank 0's value to every rank)
    tells the others whether it got it: a second run of the same job while one is going refuses at once, on
    every rank, instead of computing every unit twice."""
    job.out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(job.out / ".cyclediff-run.lock") if rank == 0 else None
    holder = lock.acquire() if lock is not None else None
    holder = share(holder)
    if holder is not None:
        raise CycleDiffError(f"another cyclediff run ({holder}) is working on {job.out}; wait for it to finish "
                             "(then run again to resume) or give this job another out folder")
    try:
        units = job.units()
        done = set() if overwrite else finished_keys(job.out, {u.key: _settings_record(job, u) for u in units})
        mine = rank_batches(units, settings_signature, job.run.batch_size, rank, world)
        if any(u.key not in done for b in mine for u in b):  # load the models only when there is work
            store = RecordStore(job.out, _part_path(job.out, rank), lambda r: _record(job, r, rank), done=done)
            task = (make_task or task_for)(job, device or torch.device("cpu"))
            run(task, units, store, batches=mine, progress=progress, report_skipped=False)
        barrier()
        if rank == 0:
            _merge(job)
        barrier()
        return _report(job)
    finally:
        if lock is not None:
            lock.release()


def job_model(job: Job, spec: str, device: torch.device) -> Any:
    """The model ``spec`` as the job loads it (its dtype, loading options, compiled when asked)."""
    from ..models import load

    model = load(spec, dtype=DTYPES[job.run.dtype], device=device, **job.run.loading())
    return model.optimize(compile=True) if job.run.compile else model


def task_for(job: Job, device: torch.device) -> Any:
    """The job's task with its models loaded once per process (jobs always score: PSNR / SSIM, CLIP)."""
    from ..guidance import energy_from_spec

    s, run = job.settings, job.run

    def get(spec: str) -> Any:
        return job_model(job, spec, device)

    if job.task == "translate":
        from ..models import load_pair

        pair = load_pair(s.source_model, s.target_model, dtype=DTYPES[run.dtype], device=device,
                         target_lora=run.target_lora, **run.loading())
        for model in (dict.fromkeys(pair) if run.compile else ()):  # a model that is both source and target: once
            model.optimize(compile=True)
        return TranslateTask(*pair, run, score=True)
    model = get(s.model)
    if job.task == "edit":
        scorer = None
        if s.clip_model:
            from ..metrics import ClipScorer

            scorer = ClipScorer(s.clip_model, device=device)
        return EditTask(model, run, score=True, scorer=scorer)
    energies: dict[str, Any] = {}

    def energy(settings: Any) -> Any:
        key = json.dumps([settings.energy, settings.text])
        if key not in energies:
            energies[key] = energy_from_spec(settings.energy, text=settings.text, clip_model=settings.clip_model,
                                             augment_copies=settings.augment_copies)
        return energies[key]

    return GuideTask(model, energy, run)


def _record(job: Job, result: Result, rank: int) -> dict:
    unit: Unit = result.unit
    return {"key": unit.key, "index": unit.index, "id": unit.item,
            "input": None if unit.input is None else str(unit.input), "seed": unit.seed,
            "task": job.task, "method": unit.method, "settings": _settings_record(job, unit),
            "output": result.output, "metrics": result.metrics, "status": result.status, "error": result.error,
            "rank": rank, "time": time.time(), "seconds": result.seconds}


def _settings_record(job: Job, unit: Unit) -> dict[str, Any]:
    """What a unit's record says made it: its settings and how the job reads and runs (dtype, size, fit)."""
    return {**unit.settings.record(), **{k: getattr(job.run, k) for k in ("dtype", "size", "fit")},
            **job.run.model_record(), **job.run.clip_reading()}


def _merge(job: Job) -> None:
    """One line per unit (the latest record; one made with the job's present settings before a stale one, ok before
    failed), in job order, written atomically; then the rank parts go. A crash in between leaves both, which read
    the same."""
    units = job.units()
    now = {u.key: _settings_record(job, u) for u in units}

    def rank(rec: dict) -> tuple:
        return (_same(rec.get("settings"), now.get(rec["key"])), rec.get("status") == "ok", rec.get("time", 0))

    latest: dict[str, dict] = {}
    for rec in _all_records(job.out):
        prev = latest.get(rec["key"])
        if prev is None or rank(rec) >= rank(prev):
            latest[rec["key"]] = rec
    order = {u.key: u.index for u in units}
    merged = sorted((r for k, r in latest.items() if k in order), key=lambda r: order[r["key"]])
    text = "".join(json.dumps(r) + "\n" for r in merged)
    atomic_write(job.out / "manifest.jsonl", lambda tmp: Path(tmp).write_text(text))
    for part in job.out.glob("manifest.rank-*.jsonl"):
        part.unlink(missing_ok=True)
    ok = [r for r in merged if r["status"] == "ok"]
    summary = {"task": job.task, "job": str(job.source), "units": len(order), "ok": len(ok),
               "failed": sum(r["status"] == "failed" for r in merged), "missing": len(order) - len(merged),
               "mean_metrics": means(ok), "settings": job.settings.record()}
    if job.methods:  # a comparison: every metric per method, and FID / KID against the reference images
        summary["by_method"] = {m: {"ok": len(mine), **means(mine)}
                                for m in job.methods for mine in [[r for r in ok if r.get("method") == m]]}
    if job.reference:  # FID / KID of each method's outputs against the job's reference images
        from .evaluate import fid_kid, resolve_features

        features = resolve_features(job.run.features)
        for method in job.methods or [None]:
            mine = [job.out / r["output"] for r in ok if r.get("method") == method]
            if len(mine) >= 2:
                where = summary["by_method"][method] if method else summary.setdefault("distribution", {})
                where.update(fid_kid(mine, job.reference, features))
    atomic_write(job.out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))


def _report(job: Job) -> JobReport:
    recs = {r["key"]: r for r in _all_records(job.out)}
    total = len(job.units())
    failures = [r for r in recs.values() if r.get("status") == "failed"]
    ok = sum(r.get("status") == "ok" for r in recs.values())
    return JobReport(total=total, ok=ok, failed=len(failures), missing=total - ok - len(failures),
                     manifest=job.out / "manifest.jsonl", failures=failures)


def distributed(device: str = RUN.device) -> tuple[int, int, torch.device, Callable[[], None], Callable[[Any], Any]]:
    """(rank, world size, device, barrier, broadcast from rank 0) from accelerate: one process when not launched
    by accelerate / torchrun, on ``device`` (the command line's rule, :mod:`cyclediff.devices`); under
    ``accelerate launch`` each rank gets its own GPU (or the CPU, over gloo)."""
    from accelerate import PartialState

    wanted = resolve_device(device)
    state = PartialState(cpu=wanted.type == "cpu")
    if state.num_processes == 1:
        return 0, 1, wanted, state.wait_for_everyone, _broadcast(state)
    if device not in ("auto", "cpu", "cuda"):
        raise CycleDiffError(f"under accelerate launch each rank takes its own GPU: give device cuda, auto or cpu, "
                             f"not {device!r}")
    return state.process_index, state.num_processes, state.device, state.wait_for_everyone, _broadcast(state)


def _broadcast(state: Any) -> Callable[[Any], Any]:
    """rank 0's value on every rank (a picklable object), through accelerate's collective."""

    def share(value: Any) -> Any:
        if state.num_processes == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    return share


__all__ = ["FolderLock", "Job", "JobReport", "distributed", "finished_keys", "load_job", "run_job"]

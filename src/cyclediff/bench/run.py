"""``cyclediff bench pie-bench``: every PIE-Bench image edited by each method on the job runner (resume, sharding
over processes, per-item failures), the outputs laid out as PIE-Bench's own folders, then scored officially.

OUT holds ``items.jsonl`` and ``job.toml`` (the edit job: ``cyclediff run OUT/job.toml`` or ``accelerate launch -m
cyclediff run OUT/job.toml`` runs the same units), ``edits/`` (the job's images and manifest),
``<method>/annotation_images/<image_path>`` (the layout the official ``evaluate.py`` reads), ``results.csv`` (one
row per image × method, every metric), ``summary.md`` (the paper-style table) and ``summary.json`` (all it takes
to reproduce the run).
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write
from .._paths import safe_id
from ..errors import CycleDiffError
from ..jobs.sweep import variant
from ..methods import evaluations as method_evaluations
from ..schedule import Grid
from ..settings import EDIT, EditSettings, check_setting
from .pie_bench import DEFAULT_METRICS, REPORT_SCALE, PieItem, decode_mask, load_pie, read_pie_image
from .score import Scorers, score

COLUMNS = ("key", "type", "method", "seed", "seconds")  # then the metrics, then "error"


# not a default of another task: PIE-Bench's protocol where it differs from an edit's (50 steps, guidance 7.5)
PIE_EDIT = EditSettings(steps=50, guidance_scale=7.5)


@dataclass
class PieBenchRun:
    """What one benchmark run does: the edit settings every method runs with (model, steps, strength, guidance,
    the methods' knobs: :class:`~cyclediff.settings.EditSettings`, ``method`` left to ``methods``) and the
    benchmark's own axes."""

    data: Path
    out: Path
    methods: list[str]
    edit: EditSettings = PIE_EDIT
    seeds: str = "0"
    best_of: bool = False  # keep, per image and method, the seed with the largest directional CLIP
    rank_clip: str | None = None  # the CLIP that ranks best-of-N (the paper's protocol)
    types: Any = None
    split: str = "700"
    limit: int | None = None
    run: dict[str, Any] = field(default_factory=dict)  # device, dtype, batch_size, size
    metrics: tuple[str, ...] = DEFAULT_METRICS
    score_only: bool = False  # score the edits OUT holds, edit nothing

    @property
    def model(self) -> str | None:
        return self.edit.model

    def settings(self, method: str) -> EditSettings:
        """The edit settings ``method`` runs with: another method's knobs left at their defaults (a job's sweep)."""
        return variant(self.edit, {}, method)

    def check(self) -> None:
        self.methods = list(dict.fromkeys(self.methods))  # a method named twice is run (and counted) once
        if not self.methods:
            raise CycleDiffError("give at least one method (--method cyclediffusion,sdedit,…)")
        for method in self.methods:
            check_setting("method", method, required=True)
            self.settings(method).options()  # FlowEdit's steps × strength, a knob of no method run: now
        if self.score_only and not (self.out / "edits" / "manifest.jsonl").is_file():
            raise CycleDiffError(f"{self.out} holds no PIE-Bench edits to score (no edits/manifest.jsonl): run "
                                 "without --score-only first, or give the --out of that run")
        if self.best_of and not self.rank_clip:
            raise CycleDiffError("best-of-N ranks the seeds by directional CLIP: give the CLIP to rank with "
                                 "(--rank-clip)")


def prepare(bench: PieBenchRun) -> tuple[list[PieItem], list[dict], Path]:
    """Read the data, write OUT/items.jsonl and OUT/job.toml; returns (items, failures, job file). An item that is
    malformed, or whose image is missing, not an image or not 512 × 512, is left out and reported (the others go
    on). Refused at once: an OUT whose outputs would land in the data's annotation_images/, and an OUT whose
    results.csv / summary.* this command did not write."""
    bench.check()
    refused: list[dict] = []
    items = load_pie(bench.data, types=bench.types, split=bench.split, limit=bench.limit, refused=refused)
    failures = [{**r, "method": None} for r in refused]
    ok = []
    for item in items:
        try:
            read_pie_image(item.image, f"item {item.key}")
            ok.append(item)
        except CycleDiffError as err:
            failures.append({"key": item.key, "method": None, "error": str(err)})
    if not ok:
        raise CycleDiffError(f"no PIE-Bench item to edit in {bench.data} ({len(failures)} refused)")
    _check_out(bench)
    bench.out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"id": i.key, "input": str(i.image), "source_prompt": i.source_prompt,
                                "prompt": i.target_prompt}) + "\n" for i in ok)
    atomic_write(bench.out / "items.jsonl", lambda tmp: Path(tmp).write_text(lines))
    settings = {**_record(bench.edit), "method": bench.methods,
                **({"clip_model": bench.rank_clip} if bench.best_of else {})}
    top = {"task": "edit", "inputs": "items.jsonl", "out": "edits", "seeds": bench.seeds, **bench.run}
    job = bench.out / "job.toml"
    atomic_write(job, lambda tmp: Path(tmp).write_text(_toml(top) + "\n[settings]\n" + _toml(settings)))
    return ok, failures, job


def _check_out(bench: PieBenchRun) -> None:
    inputs = (bench.data / "annotation_images").resolve()
    for method in bench.methods:
        outputs = (bench.out / method / "annotation_images").resolve()
        if outputs.is_relative_to(inputs) or inputs.is_relative_to(outputs):
            raise CycleDiffError(f"--out {bench.out} would write the {method} edits over the PIE-Bench images in "
                                 f"{bench.data}; give an --out outside the data folder")
    for name, ours in (("results.csv", _our_csv), ("summary.json", _our_summary), ("summary.md", _our_table)):
        path = bench.out / name
        if path.exists() and not ours(path):
            raise CycleDiffError(f"{path} was not written by cyclediff bench pie-bench; move it, or give another "
                                 "--out (it would be replaced)")


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as f:
            return f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _our_csv(path: Path) -> bool:
    return _first_line(path).startswith(",".join(COLUMNS[:5]) + ",") and _first_line(path).endswith(",error")


def _our_table(path: Path) -> bool:
    return _first_line(path).startswith("PIE-Bench (")


def _our_summary(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("benchmark") == "PIE-Bench"
    except (OSError, ValueError, AttributeError):
        return False


def _record(settings: EditSettings) -> dict[str, Any]:
    """The settings' record, only what differs from an edit's defaults (the job file stays short)."""
    return {k: v for k, v in settings.record().items() if v != getattr(EDIT, k)}


def _toml(table: dict[str, Any]) -> str:
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items() if v is not None)


def _toml_value(value: Any) -> str:
    """A TOML value: JSON's spelling of strings, numbers, booleans and lists; an inline table for a dict
    (attention's fields)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def export(bench: PieBenchRun, items: list[PieItem]) -> list[dict]:
    """Each (image, method)'s output copied into ``OUT/<method>/annotation_images/<image_path>``: the first seed,
    or with best-of-N the seed of the largest directional CLIP. Returns the chosen records. The files keep the
    benchmark's names (``….jpg``, which the official script looks for) with the lossless PNG bytes the edit wrote:
    what is scored is the edit itself (the official run scripts save JPEG by that extension)."""
    manifest = bench.out / "edits" / "manifest.jsonl"
    if not manifest.is_file():
        raise CycleDiffError(f"{bench.out} holds no PIE-Bench edits to score (no edits/manifest.jsonl): run without "
                             "--score-only first")
    by_id = {safe_id(i.key): i for i in items}  # the job's ids: keys made file-name safe ('a b' → 'a-b-…')
    chosen: dict[tuple[str, str], dict] = {}
    failed: dict[tuple[str, str], str] = {}
    for rec in (json.loads(line) for line in manifest.read_text().splitlines() if line.strip()):
        item, method = by_id.get(rec.get("id")), rec.get("method") or (rec.get("settings") or {}).get("method")
        if item is None or method not in bench.methods:
            continue
        slot = (item.key, method)
        if rec.get("status") == "failed":
            failed.setdefault(slot, rec.get("error") or "failed")
        best = chosen.get(slot)
        if rec.get("status") == "ok" and (best is None or (bench.best_of and _direction(rec) > _direction(best))):
            chosen[slot] = {**rec, "id": item.key, "method": method}
    out: list[dict] = []
    for item in items:
        for method in bench.methods:
            rec = chosen.get((item.key, method))
            error = failed.get((item.key, method), "not edited: no record of it in edits/manifest.jsonl (run "
                                                   "without --score-only)")
            if rec is not None:
                try:
                    rec["exported"] = str(_export_one(bench, item, method, bench.out / "edits" / rec["output"]))
                    out.append(rec)
                    continue
                except CycleDiffError as err:
                    error = str(err)
            out.append({"failed": {"key": item.key, "method": method, "error": error}})
    return out


def _export_one(bench: PieBenchRun, item: PieItem, method: str, src: Path) -> Path:
    """Copy one edit to OUT/<method>/annotation_images/<image_path>, never outside that folder (a link in OUT)
    nor over an input image."""
    folder = (bench.out / method / "annotation_images").resolve()
    target = bench.out / method / "annotation_images" / item.image_path
    target.parent.mkdir(parents=True, exist_ok=True)
    real = target.resolve()
    if not real.is_relative_to(folder) or real == item.image:
        raise CycleDiffError(f"item {item.key}: {target} leads outside {folder} (a link); not written")
    atomic_write(target, lambda tmp: shutil.copyfile(src, tmp))
    return target


def _direction(rec: dict) -> float:
    value = (rec.get("metrics") or {}).get("directional_clip")
    return -math.inf if value is None else float(value)


def score_all(bench: PieBenchRun, items: list[PieItem], chosen: list[dict], scorers: Scorers) -> list[dict]:
    """One row per scored (image, method): its metrics in the official names (failures as rows with an error)."""
    by_key = {i.key: i for i in items}
    rows = []
    for rec in chosen:
        if "failed" in rec:
            item = by_key.get(rec["failed"]["key"])
            rows.append({**rec["failed"], "type": item.type_id if item else None})
            continue
        item = by_key[rec["id"]]  # export gave each record its item's key
        base = {"key": item.key, "type": item.type_id, "method": rec["method"], "seed": rec["seed"],
                "seconds": rec.get("seconds")}
        try:
            src = read_pie_image(item.image, f"item {item.key}")
            tgt = read_pie_image(Path(rec["exported"]), f"item {item.key} ({rec['method']})")
            values = score(src, tgt, decode_mask(item.mask), item.source_prompt, item.target_prompt,
                           metrics=bench.metrics, models=scorers)
            rows.append({**base, **values})
        except CycleDiffError as err:
            rows.append({**base, "error": str(err)})
    return rows


def write_results(bench: PieBenchRun, rows: list[dict], failures: list[dict], model_id: str | None,
                  grid: Grid) -> dict:
    """results.csv, summary.md and summary.json; ``grid``: the one the edits ran on (:func:`grid_of`), which
    the evaluations per edit are counted on."""
    columns = [*COLUMNS, *bench.metrics, "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in [*failures, *rows]:
        writer.writerow(row)
    atomic_write(bench.out / "results.csv", lambda tmp: Path(tmp).write_text(buffer.getvalue()))
    summary = {"benchmark": "PIE-Bench", "data": str(bench.data), "split": bench.split, "types": bench.types,
               "model": bench.model, "model_id": model_id, "settings": _settings(bench),
               "seeds": bench.seeds, "best_of": bench.best_of, "rank_clip": bench.rank_clip,
               "device": _device_name(bench.run.get("device")), "python": platform.python_version(),
               "torch": torch.__version__, "units": {k: "×" + f"{v:g}" for k, v in REPORT_SCALE.items()},
               "failures": [r for r in [*failures, *rows] if r.get("error")], "by_method": {},
               "images": len({r["key"] for r in [*failures, *rows]})}  # every item read: scored or refused
    for method in bench.methods:
        mine = [r for r in rows if r.get("method") == method and not r.get("error")]
        means = {m: _mean(mine, m) for m in bench.metrics}
        seconds = [r["seconds"] for r in mine if isinstance(r.get("seconds"), (int, float))]
        summary["by_method"][method] = {"images": len(mine), **means,
                                        "evaluations_per_edit": evaluations(bench, method, grid),
                                        "seconds_per_edit": statistics.median(seconds) if seconds else None}
    atomic_write(bench.out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))
    atomic_write(bench.out / "summary.md", lambda tmp: Path(tmp).write_text(markdown(bench, summary)))
    return summary


def _mean(rows: list[dict], metric: str) -> float | None:
    """The mean over the rows where the metric is a number (the official "nan" strings left out)."""
    values = [float(r[metric]) for r in rows if isinstance(r.get(metric), (int, float)) and not math.isnan(r[metric])]
    return statistics.fmean(values) if values else None


def _settings(bench: PieBenchRun) -> dict[str, Any]:
    """The edit settings of the run (the model, the methods and the per-item prompts are recorded on their own),
    and how it ran."""
    own = EditSettings.front_end | EditSettings.batched | {"method"}
    return {k: v for k, v in bench.edit.record().items() if k not in own} | {"run": bench.run}


def _device_name(device: Any) -> str:
    if torch.cuda.is_available() and device in (None, "auto", "cuda"):
        return torch.cuda.get_device_name()
    return "cpu"


def grid_of(model: Any, bench: PieBenchRun) -> Grid:
    """The grid the benchmark's edits ran on: ``model``'s schedule for a PIE-Bench image (512 × 512), cut at the
    run's steps and strength by that model's own rule."""
    factor = getattr(model.codec, "factor", 1)  # pixel models: 1
    return model.schedule_for((1, model.codec.channels, 512 // factor, 512 // factor)).plan(bench.edit.steps,
                                                                                        bench.edit.strength)


def evaluations(bench: PieBenchRun, method: str, grid: Grid) -> int:
    """Network rows one edit evaluates (each image at each call) on ``grid`` (:func:`grid_of` the model that
    ran): the method's own count, a branch with a guidance scale other than 1 taking two rows (conditional and
    unconditional)."""
    return method_evaluations(bench.settings(method).options(), grid,
                              source_guidance=bench.edit.source_guidance_scale != 1,
                              target_guidance=bench.edit.guidance_scale != 1)


def markdown(bench: PieBenchRun, summary: dict) -> str:
    """The paper-style table: one row per method, each metric's mean in the official units."""
    def unit(metric: str) -> float:
        return next((v for k, v in REPORT_SCALE.items() if metric.startswith(k)), 1.0)

    names = {m: m + (f" ×10^{int(math.log10(unit(m)))}" if unit(m) != 1 else "") for m in bench.metrics}
    head = ["method", "images", *names.values(), "model evaluations per edit", "seconds per edit"]
    split = " of the 620-image split (no style edits)" if summary["split"] == "620" else ""
    count = f"{summary['images']} image{'' if summary['images'] == 1 else 's'}"
    lines = [f"PIE-Bench ({count}{split}{', types ' + str(bench.types) if bench.types else ''}), "
             f"model {bench.model}, {bench.edit.steps} steps at strength {bench.edit.strength}, seeds {bench.seeds}"
             + (" (best of the seeds by directional CLIP)" if bench.best_of else "") + ".", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, r in summary["by_method"].items():
        cells = ["–" if r[m] is None else f"{r[m] * unit(m):.2f}" for m in bench.metrics]
        seconds = "–" if r["seconds_per_edit"] is None else f"{r['seconds_per_edit']:.2f}"
        lines.append(f"| {method} | {r['images']} | " + " | ".join(cells) + f" | {r['evaluations_per_edit']} | "
                     f"{seconds} |")
    return "\n".join(lines) + "\n"


__all__ = ["PIE_EDIT", "PieBenchRun", "evaluations", "export", "grid_of", "markdown", "prepare", "score_all",
           "write_results"]

"""Evaluation harness: the paper's protocol for editing and translation, on the user's own data.

Every output is written once (PNG, atomically) and scored into ``results.jsonl`` (one JSON object per output:
inputs, settings, seed, output path, metrics, status, error, seconds). A re-run skips outputs already recorded
as ok, so an interrupted run resumes; a failing item is recorded and the run goes on. The summary is written as
``summary.csv`` and ``summary.md``.

Editing reports, per method, the **single-sample** result (the first seed at the first setting of the grid)
and the **best of N** (per item, the output with the highest directional CLIP among all seeds and settings:
the paper's selection protocol), because the two differ a lot and must not be mixed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write
from .._images import load_image
from .._paths import IMAGE_SUFFIXES, list_images
from ..batch.runner import Result, Unit, run
from ..batch.stores import Records, RecordStore
from ..batch.tasks import EditTask, TranslateTask
from ..errors import CycleDiffError
from ..metrics import distribution_scores, pair_scores
from ..settings import (
    CLIP_MODEL,
    EDIT,
    METHODS,
    RUN,
    TRANSLATE,
    EditSettings,
    RunOptions,
    TranslateSettings,
    check_setting,
)
from .sweep import variant

__all__ = ["IMAGE_SUFFIXES", "EditSpec", "Records", "distribution_scores", "evaluate_edit", "evaluate_translate",
           "fid_kid", "list_images", "means", "pair_scores", "resolve_features", "summarize_edit"]

METRICS_EDIT = ("clip_score", "directional_clip", "psnr", "ssim")
# a clip's too (metrics.video): summarised when the items are clips
METRICS_VIDEO = ("temporal_consistency", "background_psnr", "background_ssim")


def _write_tables(out: Path, rows: list[dict], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) for k in columns})
    atomic_write(out / "summary.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write(out / "summary.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def means(records: Iterable[dict]) -> dict[str, float]:
    """The mean of each numeric metric over records (rounded to 5 decimals, as metrics are recorded)."""
    records = list(records)
    out: dict[str, float] = {}
    for name in sorted({m for r in records for m in r.get("metrics", {})}):
        values = [r["metrics"][name] for r in records if isinstance(r["metrics"].get(name), (int, float))]
        if values:
            out[name] = round(sum(values) / len(values), 5)
    return out


# ---------------------------------------------------------------------------------------------------- editing
AXES = ("methods", "strengths", "guidance_scales", "seeds")  # what an edit evaluation sweeps
SINGULAR = {"method": "methods", "strength": "strengths", "guidance_scale": "guidance_scales", "seed": "seeds"}


@dataclass
class EditSpec:
    """An evaluation of editing: the edit settings every output shares (``base``: steps, η, the source's guidance,
    a mask, the methods' knobs — :class:`~cyclediff.settings.EditSettings`) and the axes it sweeps; each unit is
    ``base`` under one method (another method's knobs left out, as a job's sweep does), strength and guidance."""

    items: list[dict]  # {"image": path, "source": text, "target": text}
    base: EditSettings = field(default_factory=lambda: EditSettings(clip_model=CLIP_MODEL))
    methods: list[str] = field(default_factory=lambda: [EDIT.method])
    strengths: list[float] = field(default_factory=lambda: [EDIT.strength])
    guidance_scales: list[float] = field(default_factory=lambda: [EDIT.guidance_scale])
    seeds: list[int] = field(default_factory=lambda: [0])
    size: str | None = None  # resize the images first (RunOptions.size)

    @property
    def model(self) -> str | None:
        return self.base.model

    @property
    def clip_model(self) -> str | None:
        return self.base.clip_model

    def settings(self, item: dict, method: str, strength: float, guidance_scale: float) -> EditSettings:
        """One unit's edit settings."""
        return variant(self.base, {"source_prompt": item["source"], "prompt": item["target"], "strength": strength,
                                   "guidance_scale": guidance_scale}, method)

    def check(self) -> EditSpec:
        """Every method with every strength checked now (FlowEdit's steps × strength, a knob the method does
        not take), not when its units run."""
        for method, strength, w in product(self.methods, self.strengths, self.guidance_scales):
            check_setting("method", method, required=True)
            self.settings({"source": None, "target": None}, method, strength, w).options()
        return self

    @classmethod
    def load(cls, path: str | Path) -> EditSpec:
        """A JSON file: either {"items": [...], "model": ..., "settings": {...}} or a bare list of items. Items use
        image/source/target, or the paper's img_path/encode_text/decode_text; relative image (and mask) paths are
        taken from the spec's folder (then the working directory). The settings are the axes (methods, strengths,
        guidance_scales, seeds), size, and any edit setting (steps, eta, n_avg, mask, attention, …)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CycleDiffError(f"cannot read the evaluation spec {path}: {err}") from err
        data = {"items": raw} if isinstance(raw, list) else dict(raw)
        items = _spec_items(path, data.pop("items", []))
        settings = {**{k: v for k, v in data.items() if k != "settings"}, **dict(data.get("settings") or {})}
        singular = sorted(set(settings) & set(SINGULAR))
        if singular:
            raise CycleDiffError(f"{path}: {', '.join(singular)}: an evaluation sweeps lists; give "
                                 f"{', '.join(SINGULAR[k] for k in singular)} (e.g. [{SINGULAR[singular[0]]}])")
        known = {*AXES, "size", *EditSettings.names()} - EditSettings.batched
        unknown = set(settings) - known
        if unknown:
            raise CycleDiffError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
        axes = {k: settings.pop(k) for k in (*AXES, "size") if k in settings}
        methods = axes.get("methods", [EDIT.method])
        if isinstance(settings.get("mask"), str) and settings["mask"] != "auto":
            mask = Path(settings["mask"])
            settings["mask"] = str(mask if mask.is_absolute() or not (path.parent / mask).exists()
                                   else path.parent / mask)
        try:  # one method: its knobs checked against it; several: each its own (as a job's sweep)
            base = EditSettings.from_mapping({"clip_model": CLIP_MODEL, **settings,
                                              "method": methods[0] if len(methods) == 1 else None})
            return cls(items=items, base=base, **axes).check()
        except CycleDiffError as err:
            raise CycleDiffError(f"{path}: {err}") from err


def _spec_items(path: Path, raw: list) -> list[dict]:
    items = []
    for i, item in enumerate(raw):
        try:
            image = item.get("image") or item["img_path"]
            source = item.get("source", item.get("encode_text"))
            target = item.get("target", item.get("decode_text"))
        except (KeyError, AttributeError) as err:
            raise CycleDiffError(f"{path}: item {i} needs image, source and target") from err
        if source is None or target is None:
            raise CycleDiffError(f"{path}: item {i} needs source and target texts")
        resolved = Path(image) if Path(image).is_absolute() else path.parent / image
        items.append({"image": str(resolved if resolved.exists() else Path(image)), "source": source,
                      "target": target})
    if not items:
        raise CycleDiffError(f"{path}: no items to evaluate")
    return items


def evaluate_edit(spec: EditSpec, out: Path, *, model: Any, scorer: Any, progress: bool = True,
                  on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every item × method × strength × guidance × seed, score, and summarise (see the module doc)."""
    grid = product(range(len(spec.items)), spec.methods, spec.strengths, spec.guidance_scales, spec.seeds)
    units, item_of = [], {}
    for i, method, strength, w, seed in grid:
        item, key = spec.items[i], f"{i:04d}_{method}_s{strength:g}_w{w:g}_seed{seed}"
        settings = spec.settings(item, method, strength, w)
        units.append(Unit(len(units), key, seed, name=key, settings=settings, input=Path(item["image"])))
        item_of[key] = i

    def line(r: Result) -> dict:
        i = item_of[r.unit.key]
        item, s = spec.items[i], r.unit.settings
        shared = {k: v for k, v in s.record().items() if k not in EditSettings.batched}
        return {"key": r.unit.key, "item": i, **item, "method": s.method, "strength": s.strength,
                "guidance_scale": s.guidance_scale, "seed": r.unit.seed, "output": r.output,
                "metrics": r.metrics, "status": r.status, "error": r.error, "seconds": r.seconds,
                "settings": shared}

    store = _store(out, line, on_record)
    run(EditTask(model, RunOptions(size=spec.size), score=True, scorer=scorer), units, store, progress=progress,
        report_skipped=False)
    rows = summarize_edit(store.records.ok(), spec)
    video = [m for m in METRICS_VIDEO if any(row.get(m) is not None for row in rows)]
    _write_tables(out, rows, ["method", "selection", "items", *METRICS_EDIT, *video])
    return rows


def _store(out: Path, line: Callable[[Result], dict], on_record: Callable[[dict], None] | None) -> RecordStore:
    """results.jsonl beside images/ (absolute output paths, as the harness has always recorded them)."""
    path = out / "results.jsonl"
    return RecordStore(out, path, line, relative=False, on_line=on_record)


def summarize_edit(ok: list[dict], spec: EditSpec) -> list[dict]:
    rows = []
    for method in spec.methods:
        mine = [r for r in ok if r["method"] == method]
        single = [r for r in mine if r["seed"] == spec.seeds[0] and r["strength"] == spec.strengths[0]
                  and r["guidance_scale"] == spec.guidance_scales[0]]
        best: dict[int, dict] = {}
        for r in mine:
            if r["item"] not in best or r["metrics"]["directional_clip"] > best[r["item"]]["metrics"][
                    "directional_clip"]:
                best[r["item"]] = r
        n = len(spec.seeds) * len(spec.strengths) * len(spec.guidance_scales)
        for selection, chosen in (("single sample", single), (f"best of {n} by directional CLIP", best.values())):
            chosen = list(chosen)
            mean = means(chosen)
            rows.append({"method": method, "selection": selection, "items": len(chosen),
                         **{m: mean.get(m) for m in METRICS_EDIT},
                         **{m: mean[m] for m in METRICS_VIDEO if m in mean}})
    return rows


# ---------------------------------------------------------------------------------------------------- translation
def resolve_features(spec: str) -> Any:
    """FID / KID features from a name: "inception" (needs the fid extra), "pixels", or module:function."""
    from ..metrics import pixel_features

    if spec == "inception":
        try:
            import torch_fidelity  # noqa: F401
        except ImportError as err:
            raise CycleDiffError(
                "the default Inception features need torch-fidelity (pip install 'cyclediff[fid]'); "
                "or use features pixels, or module:function"
            ) from err
        return "inception"
    if spec == "pixels":
        return pixel_features()
    if ":" not in spec:
        raise CycleDiffError(f"features must be inception, pixels or module:function; got {spec!r}")
    from ..guidance import load_energy

    return load_energy(spec).fn


def fid_kid(outputs: list[Path], reference: list[Path], features: Any) -> dict[str, float]:
    """FID / KID of written outputs against reference images, read at the outputs' size and channels."""
    from PIL import Image

    with Image.open(outputs[0]) as first:
        channels = 1 if first.mode in ("L", "I;16", "I") else 3
    made = torch.cat([load_image(p, channels=channels) for p in outputs])
    c, h, w = made.shape[1:]
    real = torch.cat([load_image(p, channels=c, size=(h, w)) for p in reference])
    return {k: round(v, 5) for k, v in distribution_scores(made, real, features).items()}


def evaluate_translate(
    source: Any, target: Any, images: Path, reference: Path, out: Path, *, methods: list[str] | None = None,
    seeds: list[int] | None = None, strength: float = TRANSLATE.strength, steps: int = TRANSLATE.steps,
    eta: float = TRANSLATE.eta,
    refine_steps: int = TRANSLATE.refine_steps, features: Any = RUN.features, progress: bool = True,
    on_record: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Translate every image of ``images`` with each method, score PSNR / SSIM against the inputs, then FID and
    KID of each method's outputs against the ``reference`` folder."""
    methods = methods or list(METHODS)
    for m in methods:
        check_setting("method", m)
    units = []
    for path, method, seed in product(list_images(images), methods, seeds or [0]):
        key = f"{path.stem}_{method}_seed{seed}"
        settings = TranslateSettings(strength=strength, steps=steps, eta=eta, refine_steps=refine_steps, method=method)
        units.append(Unit(len(units), key, seed, name=key, settings=settings, input=path))

    def line(r: Result) -> dict:
        return {"key": r.unit.key, "input": str(r.unit.input), "method": r.unit.settings.method,
                "seed": r.unit.seed, "strength": strength, "output": r.output, "metrics": r.metrics,
                "status": r.status, "error": r.error, "seconds": r.seconds}

    store = _store(out, line, on_record)
    policy = RunOptions(size="{1}x{0}".format(*(source.codec.image_size or source.codec.default_size)))
    run(TranslateTask(source, target, policy, score=True), units, store, progress=progress, report_skipped=False)
    reference_images, rows = list_images(reference), []
    for method in methods:
        mine = [r for r in store.records.ok() if r["method"] == method]
        row: dict[str, Any] = {"method": method, "images": len(mine), **means(mine)}
        if len(mine) >= 2:
            row.update(fid_kid([Path(r["output"]) for r in mine], reference_images, features))
        rows.append(row)
    _write_tables(out, rows, ["method", "images", "fid", "kid", "kid_std", "psnr", "ssim"])
    return rows

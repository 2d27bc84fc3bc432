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
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import torch

from .._io import as_written, atomic_write, load_image, save_image
from ..defaults import CLIP_MODEL, EDIT, TRANSLATE
from ..errors import CycleDiffError
from ..metrics import fid, kid, psnr, ssim
from .methods import METHODS, check_method

METRICS_EDIT = ("clip_score", "directional_clip", "psnr", "ssim")


# ---------------------------------------------------------------------------------------------------- records
class Records:
    """results.jsonl: appended one line per output, flushed and synced; unreadable (torn) lines are ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("status") == "ok" and Path(rec.get("output", "")).is_file():
                    self.done[rec["key"]] = rec
        self.new: list[dict] = []

    def add(self, record: dict) -> None:
        self.add_many([record])

    def add_many(self, records: list[dict]) -> None:
        """Several lines in one synced write (a crash tears at most the last line, which readers skip)."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r) + "\n" for r in records)
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a line torn by a crash: end it, so that it cannot swallow this one
                    text = "\n" + text
        with open(self.path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        for record in records:
            self.new.append(record)
            if record["status"] == "ok":
                self.done[record["key"]] = record

    def ok(self) -> list[dict]:
        return list(self.done.values())


def pair_scores(inputs01: torch.Tensor, outputs01: torch.Tensor) -> dict[str, list[float]]:
    """PSNR and SSIM of each output against its input."""
    return {"psnr": psnr(outputs01, inputs01).tolist(), "ssim": ssim(outputs01, inputs01).tolist()}


def distribution_scores(outputs01: torch.Tensor, reference01: torch.Tensor, features: Any) -> dict[str, float]:
    """FID and KID (mean, std) of outputs against reference images on ``features``."""
    kid_mean, kid_std = kid(outputs01, reference01, features=features,
                            subset_size=min(len(outputs01), len(reference01), 50))
    return {"fid": fid(outputs01, reference01, features=features), "kid": kid_mean, "kid_std": kid_std}


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


def _mean(records: Iterable[dict], metric: str) -> float | None:
    values = [r["metrics"][metric] for r in records if r["metrics"].get(metric) is not None]
    return float(sum(values) / len(values)) if values else None


# ---------------------------------------------------------------------------------------------------- editing
@dataclass
class EditSpec:
    items: list[dict]  # {"image": path, "source": text, "target": text}
    model: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    strengths: list[float] = field(default_factory=lambda: [EDIT["strength"]])
    guidance_scales: list[float] = field(default_factory=lambda: [EDIT["guidance_scale"]])
    source_guidance_scale: float = EDIT["source_guidance_scale"]
    methods: list[str] = field(default_factory=lambda: [EDIT["method"]])
    steps: int = EDIT["steps"]
    eta: float = EDIT["eta"]
    clip_model: str = CLIP_MODEL
    size: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> EditSpec:
        """A JSON file: either {"items": [...], "model": ..., "settings": {...}} or a bare list of items. Items use
        image/source/target, or the paper's img_path/encode_text/decode_text; relative image paths are taken
        from the spec's folder (then the working directory)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CycleDiffError(f"cannot read the evaluation spec {path}: {err}") from err
        data = {"items": raw} if isinstance(raw, list) else dict(raw)
        settings = dict(data.pop("settings", {}))
        items = []
        for i, item in enumerate(data.pop("items", [])):
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
        known = {f for f in cls.__dataclass_fields__} - {"items"}
        unknown = set(settings) | (set(data) - known)
        unknown -= known
        if unknown:
            raise CycleDiffError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
        spec = cls(items=items, **{k: v for k, v in data.items() if k in known}, **settings)
        for m in spec.methods:
            check_method(m)
        return spec


def evaluate_edit(spec: EditSpec, out: Path, *, model: Any, scorer: Any, progress: bool = True,
                  on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every item × method × strength × guidance × seed, score, and summarise (see the module doc)."""
    from tqdm.auto import tqdm

    from ..metrics import clip_score, directional_clip
    from .edit import edit

    records = Records(out / "results.jsonl")
    grid = list(product(range(len(spec.items)), spec.methods, spec.strengths, spec.guidance_scales, spec.seeds))
    for i, method, strength, w, seed in tqdm(grid, desc="evaluate edit", disable=not progress, leave=False):
        item = spec.items[i]
        key = f"{i:04d}_{method}_s{strength:g}_w{w:g}_seed{seed}"
        if key in records.done:
            continue
        target = out / "images" / f"{key}.png"
        record = {"key": key, "item": i, **item, "method": method, "strength": strength, "guidance_scale": w,
                  "seed": seed, "output": str(target), "metrics": {}, "status": "ok", "error": None}
        start = time.perf_counter()
        try:
            x = load_image(item["image"], channels=3, size=_size(spec.size), multiple=model.image_multiple)
            result = edit(model, x.to(model.device), source_prompt=item["source"], prompt=item["target"],
                          strength=strength, steps=spec.steps, eta=spec.eta, guidance_scale=w,
                          source_guidance_scale=spec.source_guidance_scale, method=method,
                          generator=torch.Generator().manual_seed(seed))
            out_img = as_written(result.images)  # metrics of the very file written: as reproducible as it
            save_image(out_img[0], target)
            record["metrics"] = {
                "clip_score": float(clip_score(out_img, item["target"], scorer)[0]),
                "directional_clip": float(directional_clip(x, out_img, item["source"], item["target"], scorer)[0]),
                **{k: v[0] for k, v in pair_scores(x, out_img).items()},
            }
        except (CycleDiffError, OSError, ValueError) as err:
            record.update(status="failed", error=str(err))
        record["seconds"] = round(time.perf_counter() - start, 3)
        records.add(record)
        if on_record:
            on_record(record)
    rows = summarize_edit(records.ok(), spec)
    _write_tables(out, rows, ["method", "selection", "items", *METRICS_EDIT])
    return rows


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
            rows.append({"method": method, "selection": selection, "items": len(chosen),
                         **{m: _mean(chosen, m) for m in METRICS_EDIT}})
    return rows


def _size(size: str | None):
    from .._io import parse_size

    return parse_size(size)


# ---------------------------------------------------------------------------------------------------- translation
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


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


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CycleDiffError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CycleDiffError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_batch(paths: list[Path], model: Any) -> torch.Tensor:
    c, h, w = model.sample_shape
    if hasattr(model, "image_multiple"):
        h, w = h * model.vae_scale_factor, w * model.vae_scale_factor
    return torch.cat([load_image(p, channels=c if c in (1, 3) else 3, size=(h, w)) for p in paths])


def evaluate_translate(
    source: Any, target: Any, images: Path, reference: Path, out: Path, *, methods: list[str] | None = None,
    seeds: list[int] | None = None, strength: float = TRANSLATE["strength"], steps: int = TRANSLATE["steps"],
    eta: float = TRANSLATE["eta"],
    refine_steps: int = TRANSLATE["refine_steps"], features: Any = "inception", progress: bool = True,
) -> list[dict]:
    """Translate every image of ``images`` with each method, score PSNR / SSIM against the inputs, then FID and
    KID of each method's outputs against the ``reference`` folder."""
    from tqdm.auto import tqdm

    from .translate import translate

    methods = methods or list(METHODS)
    for m in methods:
        check_method(m)
    seeds = seeds or [0]
    records = Records(out / "results.jsonl")
    for path, method, seed in tqdm(list(product(list_images(images), methods, seeds)), desc="evaluate translate",
                                   disable=not progress, leave=False):
        key = f"{path.stem}_{method}_seed{seed}"
        if key in records.done:
            continue
        target_path = out / "images" / f"{key}.png"
        record = {"key": key, "input": str(path), "method": method, "seed": seed, "strength": strength,
                  "output": str(target_path), "metrics": {}, "status": "ok", "error": None}
        start = time.perf_counter()
        try:
            x = read_batch([path], source)
            y = translate(x.to(getattr(source, "device", "cpu")), source, target, strength=strength, steps=steps,
                          eta=eta, refine_steps=refine_steps, method=method,
                          generator=torch.Generator().manual_seed(seed)).images
            y = as_written(y)  # metrics of the very file written: as reproducible as it
            save_image(y[0], target_path)
            record["metrics"] = {k: v[0] for k, v in pair_scores(x, y).items()}
        except (CycleDiffError, OSError, ValueError) as err:
            record.update(status="failed", error=str(err))
        record["seconds"] = round(time.perf_counter() - start, 3)
        records.add(record)
    reference_images = read_batch(list_images(reference), target)
    rows = []
    for method in methods:
        mine = [r for r in records.ok() if r["method"] == method]
        row: dict[str, Any] = {"method": method, "images": len(mine), "psnr": _mean(mine, "psnr"),
                               "ssim": _mean(mine, "ssim")}
        if len(mine) >= 2:
            outputs = torch.cat([load_image(r["output"], channels=reference_images.shape[1]) for r in mine])
            row.update(distribution_scores(outputs, reference_images, features))
        rows.append(row)
    _write_tables(out, rows, ["method", "images", "fid", "kid", "kid_std", "psnr", "ssim"])
    return rows

"""Whole datasets as resumable jobs: ``cyclediff run JOB.toml``, on one process or many through accelerate.

A job file names the task (edit, translate, guide), the inputs (a folder, a glob, a JSONL manifest of items with
per-item prompts / labels / seeds, or a list of paths), the seeds and the task's settings. Every (item, seed)
is a *unit* with a stable key; units are grouped into batches in one global order fixed by the job alone, and
batch i goes to rank i mod world size. So every batch is computed with the same members whatever the number of
processes, and the images do not depend on it (each unit also has its own generator).

Each rank appends its records to ``manifest.rank-R.jsonl`` (one JSON line per unit: key, input, seed, settings,
output, metrics, status, error, seconds), all of a batch's lines in one synced write after its images were
written atomically. A unit is finished when an ok record names an existing output: a restarted job skips
finished units and only they, whichever rank or world size recorded them. At the end rank 0 merges all parts
into ``manifest.jsonl`` (one line per unit, in job order) and ``summary.json``; failed units are retried by the
next run of the same command.
"""

from __future__ import annotations

import glob
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import (
    DEFAULT_MAX_PIXELS,
    as_written,
    atomic_write,
    distinct_paths,
    load_image,
    safe_id,
    save_image,
    seed_limit,
    seed_range,
    unique_names,
)
from ..defaults import EDIT, GUIDE, TRANSLATE, check_settings
from ..errors import CycleDiffError
from ..latent import DTYPES
from .evaluate import IMAGE_SUFFIXES, Records, distribution_scores, pair_scores, resolve_features
from .images import read_for
from .methods import check_method

TASKS = ("edit", "translate", "guide")
TOP_LEVEL = {"task", "inputs", "out", "seeds", "batch_size", "device", "dtype", "compile", "size", "fit",
             "max_pixels", "settings", "reference", "features"}
# settings each task takes (beyond these nothing is accepted, so a typo is an error, not a silent default)
SETTINGS: dict[str, dict[str, Any]] = {
    "edit": {"model": None, "source_prompt": None, "prompt": None, **EDIT, "negative_prompt": None,
             "clip_model": None},
    "translate": {"source_model": None, "target_model": None, **TRANSLATE, "source_class": None,
                  "target_class": None, "source_prompt": None, "target_prompt": None, "guidance_scale": None},
    "guide": {"model": None, "energy": None, "text": None, **GUIDE, "prompt": None, "guidance_scale": None,
              "class_label": None, "keep_best": False, "grad_steps": None},
}
REQUIRED = {"edit": ("model",), "translate": ("source_model", "target_model"), "guide": ("model", "energy")}
# per-item fields a manifest line may set; "batched" ones may differ inside one batch (one value per image)
PER_ITEM = {"edit": {"prompt", "source_prompt", "negative_prompt"},
            "translate": {"source_class", "target_class", "source_prompt", "target_prompt"},
            "guide": {"text", "class_label", "prompt"}}
BATCHED = {"edit": {"prompt", "source_prompt", "negative_prompt"},
           "translate": {"source_class", "target_class", "source_prompt", "target_prompt"},
           "guide": {"class_label"}}


# ---------------------------------------------------------------------------------------------------- the job
@dataclass(frozen=True)
class Item:
    id: str
    input: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Unit:
    """One output: an item at one seed (and one method, when the job compares several)."""

    index: int
    item: Item
    seed: int
    method: str | None = None

    @property
    def key(self) -> str:
        middle = f"/{self.method}" if self.method else ""
        return f"{self.item.id}{middle}/seed{self.seed}"


@dataclass
class Job:
    task: str
    items: list[Item]
    out: Path
    seeds: list[int]
    settings: dict[str, Any]
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "float32"
    compile: bool = False
    size: str | None = None
    fit: str = "crop"
    max_pixels: int = DEFAULT_MAX_PIXELS
    source: Path | None = None
    methods: list[str] | None = None  # several methods: every item × method × seed, compared in the summary
    reference: list[Path] | None = None  # target-domain images for FID / KID per method
    features: str = "inception"

    def units(self) -> list[Unit]:
        units = []
        for item in self.items:
            for method in self.methods or [None]:
                for seed in item.seeds or self.seeds:
                    units.append(Unit(len(units), item, seed, method))
        return units

    def settings_for(self, unit: Unit) -> dict[str, Any]:
        merged = {**self.settings, **unit.item.overrides}
        if unit.method:
            merged["method"] = unit.method
        return merged

    def output_for(self, unit: Unit) -> Path:
        middle = f"_{unit.method}" if unit.method else ""
        return self.out / "images" / f"{unit.item.id}{middle}_seed{unit.seed}.png"

    def batches(self) -> list[list[Unit]]:
        """Consecutive units in job order, at most batch_size each, sharing every setting that cannot differ
        inside a batch. Fixed by the job file alone (not by ranks or by what is already done)."""
        batches: list[list[Unit]] = []
        for unit in self.units():
            sig = self._signature(unit)
            if batches and len(batches[-1]) < self.batch_size and self._signature(batches[-1][0]) == sig:
                batches[-1].append(unit)
            else:
                batches.append([unit])
        return batches

    def _signature(self, unit: Unit) -> str:
        fixed = {k: v for k, v in unit.item.overrides.items() if k not in BATCHED[self.task]}
        return json.dumps([unit.method, fixed], sort_keys=True)


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
    except Exception as err:  # noqa: BLE001 - each parser raises its own kind
        raise CycleDiffError(f"{path}: not a valid {suffix[1:].upper()} job file: {err}") from err
    raise CycleDiffError(f"{path}: job files are .toml, .json or .yaml; got {suffix or 'no suffix'}")


def parse_seed_list(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [seed_limit(value)]
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value) and value:
        return [seed_limit(v) for v in value]
    if isinstance(value, str):
        try:
            return seed_range(value)
        except CycleDiffError:
            pass
    raise CycleDiffError(f"seeds must be an integer, a list of integers or a range like '0-3'; got {value!r}")


def load_job(path: str | Path) -> Job:
    """Read and validate a job file; every mistake is one error naming the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CycleDiffError(f"no such job file: {path}")
    path = path.resolve()
    raw = _read_file(path)
    if not isinstance(raw, dict):
        raise CycleDiffError(f"{path}: a job file holds a table of settings")
    unknown = set(raw) - TOP_LEVEL
    if unknown:
        raise CycleDiffError(f"{path}: unknown keys {sorted(unknown)}; a job takes {sorted(TOP_LEVEL)} "
                             "(task settings go under [settings])")
    task = raw.get("task")
    if task not in TASKS:
        raise CycleDiffError(f"{path}: task must be one of {', '.join(TASKS)}; got {task!r}")
    given = raw.get("settings") or {}
    if not isinstance(given, dict):
        raise CycleDiffError(f"{path}: settings must be a table")
    bad = set(given) - set(SETTINGS[task])
    if bad:
        raise CycleDiffError(f"{path}: the {task} task has no settings {sorted(bad)}; it takes "
                             f"{sorted(SETTINGS[task])}")
    settings = {**SETTINGS[task], **check_settings(given)}
    missing = [k for k in REQUIRED[task] if not settings.get(k)]
    if missing:
        raise CycleDiffError(f"{path}: the {task} task needs settings {missing}")
    base = path.parent
    for key in ("model", "source_model", "target_model", "energy", "clip_model"):  # relative to the job file
        if isinstance(settings.get(key), str):
            settings[key] = _local_spec(base, settings[key])
    methods = None
    if task != "guide":
        given_methods = settings["method"] if isinstance(settings["method"], list) else [settings["method"]]
        for m in given_methods:
            check_method(m)
        if len(given_methods) > 1:
            methods, settings["method"] = list(given_methods), None
        else:
            settings["method"] = given_methods[0]
    reference = None
    if raw.get("reference") is not None:
        if task != "translate":
            raise CycleDiffError(f"{path}: reference (FID / KID of the outputs) is for translate jobs")
        reference = [it.input for it in _items(raw["reference"], base, task) if it.input is not None]
    batch_size = raw.get("batch_size", 1)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise CycleDiffError(f"{path}: batch_size must be a positive integer; got {batch_size!r}")
    items = _items(raw.get("inputs"), base, task)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise CycleDiffError(f"{path}: item ids repeat ({dup[:5]}); give each manifest line a unique \"id\"")
    for item in items:
        if task != "guide" and item.input is None:
            raise CycleDiffError(f"{path}: item {item.id!r} has no input image; the {task} task needs one")
    top = _check_top_level(raw, path, task)
    out = Path(raw.get("out") or f"{path.stem}-out")
    out = out if out.is_absolute() else base / out
    if out.exists() and not out.is_dir():
        raise CycleDiffError(f"{path}: out {out} is a file; name a folder for the job's outputs")
    return Job(task=task, items=items, out=out, seeds=parse_seed_list(raw.get("seeds", 0)), settings=settings,
               batch_size=batch_size, source=path, methods=methods, reference=reference, **top)


def _check_top_level(raw: dict[str, Any], path: Path, task: str) -> dict[str, Any]:
    """device, dtype, compile, size, fit, max_pixels and features, each checked before any work is done."""
    from .._io import parse_size
    from .evaluate import resolve_features

    dtype = raw.get("dtype", "float32")
    if dtype not in DTYPES:
        raise CycleDiffError(f"{path}: dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    device = raw.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise CycleDiffError(f"{path}: device must be auto, cpu or cuda (each rank takes its own GPU); got {device!r}")
    compile_ = raw.get("compile", False)
    if not isinstance(compile_, bool):
        raise CycleDiffError(f"{path}: compile must be true or false; got {compile_!r}")
    size = raw.get("size")
    if size is not None:
        size = str(size)
        parse_size(size)
    fit = raw.get("fit", "crop")
    if fit not in ("crop", "resize"):
        raise CycleDiffError(f"{path}: fit must be crop or resize; got {fit!r}")
    max_pixels = raw.get("max_pixels", DEFAULT_MAX_PIXELS)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise CycleDiffError(f"{path}: max_pixels must be a positive integer; got {max_pixels!r}")
    features = raw.get("features", "inception")
    if not isinstance(features, str):
        raise CycleDiffError(f"{path}: features must be inception, pixels or module:function; got {features!r}")
    if raw.get("reference") is not None:
        resolve_features(features)  # an unknown or uninstalled backend fails now, not after every unit ran
    return {"device": device, "dtype": dtype, "compile": compile_, "size": size, "fit": fit,
            "max_pixels": max_pixels, "features": features}


def _items(inputs: Any, base: Path, task: str) -> list[Item]:
    """Items from a folder, a glob, a JSONL manifest, or a list of paths (relative to the job file)."""
    if inputs is None:
        if task == "guide":
            return [Item(id="sample", input=None)]
        raise CycleDiffError(f"the {task} task needs inputs: a folder, a glob, a .jsonl manifest or a list")
    if isinstance(inputs, list):
        return _dedupe_ids([_path(base, p) for p in inputs])
    if not isinstance(inputs, str):
        raise CycleDiffError(f"inputs must be a folder, a glob, a .jsonl manifest or a list; got {inputs!r}")
    where = _path(base, inputs)
    if inputs.endswith(".jsonl"):
        return _manifest(where, task)
    if where.is_dir():
        files = sorted(p for p in where.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CycleDiffError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {where}")
        return _dedupe_ids(files)
    if glob.has_magic(inputs):
        files = sorted(Path(p) for p in glob.glob(str(where), recursive=True) if Path(p).is_file())
        if not files:
            raise CycleDiffError(f"the glob {inputs!r} matches no files (relative to {base})")
        return _dedupe_ids(files)
    raise CycleDiffError(f"inputs {inputs!r}: no such folder, and neither a glob nor a .jsonl manifest")


def _local_spec(base: Path, spec: str) -> str:
    """A model folder / checkpoint or an energy ``file.py:function`` beside the job file becomes absolute; hub
    ids, ``demo:…`` and ``module:function`` specs stay as written."""
    if spec.startswith("demo:") or Path(spec).is_absolute():
        return spec
    file_part, sep, func = spec.partition(".py:")
    if sep:
        target = base / f"{file_part}.py"
        return f"{target.resolve()}:{func}" if target.is_file() else spec
    return str((base / spec).resolve()) if (base / spec).exists() else spec


def _path(base: Path, p: Any) -> Path:
    p = Path(str(p))
    return p if p.is_absolute() else base / p


def _dedupe_ids(files: list[Path]) -> list[Item]:
    """Ids are file stems, made distinct where stems repeat (:func:`unique_names`); a file listed twice is one
    item."""
    files = distinct_paths(files)[0]
    return [Item(id=name, input=f) for name, f in zip(unique_names(files), files)]


def _manifest(path: Path, task: str) -> list[Item]:
    if not path.is_file():
        raise CycleDiffError(f"no such manifest: {path}")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise CycleDiffError(f"{path}:{n}: not a JSON line ({err})") from err
        if not isinstance(rec, dict):
            raise CycleDiffError(f"{path}:{n}: each line must be a JSON object")
        extra = set(rec) - {"id", "input", "seeds"} - PER_ITEM[task]
        if extra:
            raise CycleDiffError(f"{path}:{n}: unknown fields {sorted(extra)}; a {task} item takes id, input, "
                                 f"seeds and {sorted(PER_ITEM[task])}")
        image = _path(path.parent, rec["input"]) if rec.get("input") else None
        ident = rec.get("id") or (image.stem if image else f"item{n}")
        seeds = tuple(parse_seed_list(rec["seeds"])) if "seeds" in rec else None
        overrides = {k: v for k, v in rec.items() if k in PER_ITEM[task]}
        items.append(Item(id=safe_id(str(ident)), input=image, overrides=overrides, seeds=seeds))
    if not items:
        raise CycleDiffError(f"{path}: the manifest has no items")
    return items


# ---------------------------------------------------------------------------------------------------- tasks
class Task:
    """Loads the models once per process; turns a batch of units (+ their images) into images and metrics."""

    def __init__(self, job: Job, device: torch.device) -> None:
        from ..models import load

        self.job, self.device = job, device
        s = job.settings
        dtype = DTYPES[job.dtype]

        def get(spec: str) -> Any:
            model = load(spec, dtype=dtype, device=device)
            return model.optimize(compile=True) if job.compile else model

        if job.task == "translate":
            self.model = get(s["source_model"])
            self.target = self.model if s["target_model"] == s["source_model"] else get(s["target_model"])
        else:
            self.model = get(s["model"])
        self.energy_cache: dict[str, Any] = {}
        self.scorer = None
        if job.task == "edit" and s.get("clip_model"):
            from ..metrics import ClipScorer

            self.scorer = ClipScorer(s["clip_model"], device=device)

    def read(self, unit: Unit) -> torch.Tensor | None:
        if unit.item.input is None:
            return None
        return read_for(self.model, unit.item.input, size=self.job.size, fit=self.job.fit,
                        max_pixels=self.job.max_pixels)

    def process(self, units: list[Unit], images: torch.Tensor | None) -> tuple[torch.Tensor, list[dict]]:
        """The batch's output images as they will be written (8-bit) and their metrics, computed from those."""
        gens = [torch.Generator().manual_seed(u.seed) for u in units]
        per = [self.job.settings_for(u) for u in units]
        x = None if images is None else images.to(self.device)
        if self.job.task == "edit":
            from .edit import edit

            s = per[0]
            out = edit(self.model, x, source_prompt=[_need(p, "source_prompt") for p in per],
                       prompt=[_need(p, "prompt") for p in per], strength=s["strength"], steps=s["steps"],
                       eta=s["eta"], guidance_scale=s["guidance_scale"],
                       source_guidance_scale=s["source_guidance_scale"],
                       negative_prompt=_listed(per, "negative_prompt"), generator=gens, method=s["method"]).images
            out = as_written(out)
            metrics = _pairs(x, out)
            if self.scorer is not None:
                from ..metrics import clip_score, directional_clip

                sources, targets = [p["source_prompt"] for p in per], [p["prompt"] for p in per]
                scores = clip_score(out, targets, self.scorer).tolist()
                directions = directional_clip(x, out, sources, targets, self.scorer).tolist()
                for m, score, direction in zip(metrics, scores, directions):
                    m.update(clip_score=round(score, 5), directional_clip=round(direction, 5))
            return out, metrics
        if self.job.task == "translate":
            from .translate import translate

            s = per[0]
            out = translate(x, self.model, self.target, strength=s["strength"], steps=s["steps"], eta=s["eta"],
                            refine_steps=s["refine_steps"], method=s["method"], generator=gens,
                            source_condition=_condition(self.model, per, "source"),
                            target_condition=_condition(self.target, per, "target")).images
            out = as_written(out)
            return out, _pairs(x, out)
        return self._guide(units, per, gens, x)

    def _guide(self, units, per, gens, x) -> tuple[torch.Tensor, list[dict]]:
        from ..guidance import guide

        s = per[0]
        condition: dict[str, Any] = {}
        if hasattr(self.model, "encode_images"):
            if s["prompt"] is not None:
                condition["prompt"] = s["prompt"]
        elif any(p["class_label"] is not None for p in per):
            condition["class_labels"] = [p["class_label"] for p in per]
        if s["guidance_scale"] is not None:
            condition["guidance_scale"] = s["guidance_scale"]
        latent = None
        if x is not None:
            from ..encoder import encode
            from .images import to_model_space

            x0 = to_model_space(self.model, x, gens)
            latent = encode(x0, self.model, steps=s["steps"], strength=1.0, eta=s["eta"], generator=gens,
                            **condition)
        result = guide(self.model, self._energy(s), weight=s["weight"], langevin_steps=s["langevin_steps"],
                       step_size=s["step_size"], steps=s["steps"], eta=s["eta"], condition=condition or None,
                       batch_size=len(units), latent=latent, generator=gens, keep_best=s["keep_best"],
                       grad_steps=s["grad_steps"])
        metrics = [{"energy_start": float(result.energies[0, i]), "energy_end": float(result.energies[-1, i])}
                   for i in range(len(units))]
        return as_written(result.images), metrics

    def _energy(self, s: dict) -> Any:
        from ..guidance import energy_from_spec

        key = json.dumps([s["energy"], s["text"]])
        if key not in self.energy_cache:
            self.energy_cache[key] = energy_from_spec(s["energy"], text=s["text"], clip_model=s["clip_model"],
                                                      augment_copies=s["augment_copies"])
        return self.energy_cache[key]


def _need(settings: dict, key: str) -> Any:
    if settings.get(key) is None:
        raise CycleDiffError(f"no {key}: set it under [settings] or per item in the manifest")
    return settings[key]


def _listed(per: list[dict], key: str) -> list[Any] | None:
    values = [p.get(key) for p in per]
    return None if all(v is None for v in values) else [v or "" for v in values]


def _condition(model: Any, per: list[dict], side: str) -> dict[str, Any]:
    cond: dict[str, Any] = {}
    if hasattr(model, "encode_images"):
        prompts = _listed(per, f"{side}_prompt")
        if prompts is not None:
            cond["prompt"] = prompts
    else:
        labels = [p.get(f"{side}_class") for p in per]
        if any(v is not None for v in labels):
            if any(v is None for v in labels):
                raise CycleDiffError(f"{side}_class is set for some items of a batch and not others")
            cond["class_labels"] = labels
    if side == "target" and per[0].get("guidance_scale") is not None:
        cond["guidance_scale"] = per[0]["guidance_scale"]
    return cond


def _pairs(x: torch.Tensor, out: torch.Tensor) -> list[dict]:
    scores = pair_scores(x.float().cpu(), out.float().cpu())
    return [{name: round(values[i], 5) for name, values in scores.items()} for i in range(len(out))]


# ---------------------------------------------------------------------------------------------------- running
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


def _all_records(out: Path) -> Iterable[dict]:
    paths = [out / "manifest.jsonl"] + sorted(out.glob("manifest.rank-*.jsonl"))
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash
            if isinstance(rec, dict) and "key" in rec:
                yield rec


def finished_keys(out: Path) -> set[str]:
    """Units recorded ok whose output file exists (in the merged manifest or any rank's part)."""
    return {r["key"] for r in _all_records(out)
            if r.get("status") == "ok" and r.get("output") and (out / r["output"]).is_file()}


def run_job(job: Job, *, rank: int = 0, world: int = 1, device: torch.device | None = None,
            progress: bool = True, barrier: Callable[[], None] = lambda: None,
            overwrite: bool = False, share: Callable[[Any], Any] = lambda value: value) -> JobReport:
    """Run this rank's share of the job; rank 0 merges all shares once every rank is done (``barrier``).

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
        return _run_locked(job, rank=rank, world=world, device=device or torch.device("cpu"), progress=progress,
                           barrier=barrier, overwrite=overwrite)
    finally:
        if lock is not None:
            lock.release()


class FolderLock:
    """An exclusive advisory lock (flock) on a file in the output folder; the kernel drops it when the process
    dies, so a killed run never leaves a stale lock behind."""

    def __init__(self, path: Path) -> None:
        self.path, self.handle = path, None

    def acquire(self) -> str | None:
        """None when the lock is ours now; else a description of the run that holds it."""
        import fcntl
        import os

        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            who = handle.read().strip() or "unknown process"
            handle.close()
            return who
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        self.handle = handle
        return None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None


def _run_locked(job: Job, *, rank: int, world: int, device: torch.device, progress: bool,
                barrier: Callable[[], None], overwrite: bool) -> JobReport:
    from tqdm.auto import tqdm

    batches = job.batches()
    done = set() if overwrite else finished_keys(job.out)
    mine = [b for i, b in enumerate(batches) if i % world == rank and any(u.key not in done for u in b)]
    todo = sum(1 for b in mine for u in b if u.key not in done)
    records = Records(_part_path(job.out, rank))
    if mine:
        task = Task(job, device)
        bar = tqdm(total=todo, desc=f"{job.task} rank {rank}/{world}", unit="item", position=rank,
                   disable=not progress, dynamic_ncols=True)
        for batch in mine:
            lines = _run_batch(job, task, batch, done, rank)
            records.add_many(lines)
            bar.update(len(lines))
        bar.close()
    barrier()
    if rank == 0:
        _merge(job, batches)
    barrier()
    return _report(job)


def _run_batch(job: Job, task: Task, batch: list[Unit], done: set[str], rank: int) -> list[dict]:
    """Images of the batch's unfinished units, written atomically; their records. An unreadable input fails
    alone; when the batch fails as a whole, each unit is retried alone so one bad item cannot sink the others."""
    start = time.perf_counter()
    lines: dict[str, dict] = {}
    ready: list[tuple[Unit, torch.Tensor | None]] = []
    for unit in batch:
        try:
            ready.append((unit, task.read(unit)))
        except (CycleDiffError, OSError) as err:
            lines[unit.key] = _record(job, unit, rank, status="failed", error=str(err))
    groups: dict[tuple, list[tuple[Unit, torch.Tensor | None]]] = {}
    for unit, image in ready:  # images of other sizes form their own sub-batch
        groups.setdefault(None if image is None else tuple(image.shape[1:]), []).append((unit, image))
    for group in groups.values():
        try:
            _compute(job, task, group, done, lines, rank)
        except Exception as err:  # noqa: BLE001 - any failure of an item (a user's energy too) is recorded
            if len(group) == 1:
                unit = group[0][0]
                lines[unit.key] = _record(job, unit, rank, status="failed", error=_message(err))
                continue
            for member in group:
                try:
                    _compute(job, task, [member], done, lines, rank)
                except Exception as single:  # noqa: BLE001
                    unit = member[0]
                    lines[unit.key] = _record(job, unit, rank, status="failed", error=_message(single))
    seconds = round((time.perf_counter() - start) / max(len(batch), 1), 3)
    out = []
    for unit in batch:
        if unit.key in lines and unit.key not in done:  # a finished unit keeps its record, whatever happened now
            lines[unit.key]["seconds"] = seconds
            out.append(lines[unit.key])
    return out


def _compute(job: Job, task: Task, group: list, done: set[str], lines: dict, rank: int) -> None:
    units = [u for u, _ in group]
    images = None if group[0][1] is None else torch.cat([img for _, img in group])
    outputs, metrics = task.process(units, images)
    for unit, img, m in zip(units, outputs, metrics):
        if unit.key in done:
            continue  # finished in an earlier run: computed again only because it shares this batch
        target = job.output_for(unit)
        save_image(img, target)
        lines[unit.key] = _record(job, unit, rank, status="ok", output=target.relative_to(job.out).as_posix(),
                                  metrics=m)


def _message(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _record(job: Job, unit: Unit, rank: int, *, status: str, output: str | None = None,
            metrics: dict | None = None, error: str | None = None) -> dict:
    return {"key": unit.key, "index": unit.index, "id": unit.item.id,
            "input": None if unit.item.input is None else str(unit.item.input), "seed": unit.seed,
            "task": job.task, "method": unit.method, "settings": _jsonable(job.settings_for(unit)),
            "output": output,
            "metrics": metrics or {}, "status": status, "error": error, "rank": rank, "time": time.time()}


def _jsonable(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if v is None or isinstance(v, (str, int, float, bool, list))}


def _merge(job: Job, batches: list[list[Unit]]) -> None:
    """One line per unit (the latest record; ok before failed), in job order, written atomically; then the
    rank parts go. A crash in between leaves both, which read the same."""
    latest: dict[str, dict] = {}
    for rec in _all_records(job.out):
        prev = latest.get(rec["key"])
        better = prev is None or (rec.get("status") == "ok") > (prev.get("status") == "ok") or (
            (rec.get("status") == "ok") == (prev.get("status") == "ok") and rec.get("time", 0) >= prev.get("time", 0))
        if better:
            latest[rec["key"]] = rec
    order = {u.key: u.index for b in batches for u in b}
    merged = sorted((r for k, r in latest.items() if k in order), key=lambda r: order[r["key"]])
    text = "".join(json.dumps(r) + "\n" for r in merged)
    atomic_write(job.out / "manifest.jsonl", lambda tmp: Path(tmp).write_text(text))
    for part in job.out.glob("manifest.rank-*.jsonl"):
        part.unlink(missing_ok=True)
    ok = [r for r in merged if r["status"] == "ok"]
    summary = {"task": job.task, "job": str(job.source), "units": len(order), "ok": len(ok),
               "failed": sum(r["status"] == "failed" for r in merged), "missing": len(order) - len(merged),
               "mean_metrics": _means(ok), "settings": _jsonable(job.settings)}
    if job.methods:  # a comparison: every metric per method, and FID / KID against the reference images
        summary["by_method"] = {}
        for method in job.methods:
            mine = [r for r in ok if r.get("method") == method]
            row: dict[str, Any] = {"ok": len(mine), **_means(mine)}
            summary["by_method"][method] = row
    if job.reference:
        features = resolve_features(job.features)
        for method in job.methods or [None]:
            mine = [r for r in ok if r.get("method") == method]
            if len(mine) < 2:
                continue
            from PIL import Image

            with Image.open(job.out / mine[0]["output"]) as first:
                channels = 1 if first.mode in ("L", "I;16", "I") else 3
            outputs = torch.cat([load_image(job.out / r["output"], channels=channels) for r in mine])
            c, h, w = outputs.shape[1:]
            reference = torch.cat([load_image(p, channels=c, size=(h, w)) for p in job.reference])
            scores = {k: round(v, 5) for k, v in distribution_scores(outputs, reference, features).items()}
            if method is None:
                summary["distribution"] = scores
            else:
                summary["by_method"][method].update(scores)
    atomic_write(job.out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))


def _means(records: list[dict]) -> dict[str, float]:
    means: dict[str, float] = {}
    for name in sorted({m for r in records for m in r.get("metrics", {})}):
        values = [r["metrics"][name] for r in records if isinstance(r["metrics"].get(name), (int, float))]
        if values:
            means[name] = round(sum(values) / len(values), 5)
    return means


def _report(job: Job) -> JobReport:
    recs = {r["key"]: r for r in _all_records(job.out)}
    total = len(job.units())
    failures = [r for r in recs.values() if r.get("status") == "failed"]
    ok = sum(r.get("status") == "ok" for r in recs.values())
    return JobReport(total=total, ok=ok, failed=len(failures), missing=total - ok - len(failures),
                     manifest=job.out / "manifest.jsonl", failures=failures)


def distributed(device: str = "auto") -> tuple[int, int, torch.device, Callable[[], None], Callable[[Any], Any]]:
    """(rank, world size, device, barrier, broadcast from rank 0) from accelerate: one process when not launched
    by accelerate / torchrun; under ``accelerate launch`` each rank gets its own GPU (or the CPU, over gloo)."""
    from accelerate import PartialState

    if device not in ("auto", "cpu", "cuda"):
        raise CycleDiffError(f"a job's device is auto, cpu or cuda (each rank takes its own GPU); got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise CycleDiffError("the job asks for device cuda but CUDA is not available here; use auto or cpu")
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    return state.process_index, state.num_processes, state.device, state.wait_for_everyone, _broadcast(state)


def _broadcast(state: Any) -> Callable[[Any], Any]:
    """rank 0's value on every rank (a picklable object), through accelerate's collective."""

    def share(value: Any) -> Any:
        if state.num_processes == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    return share


__all__ = ["Job", "JobReport", "distributed", "finished_keys", "load_job", "run_job"]

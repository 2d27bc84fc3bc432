"""Job files (``cyclediff run JOB.toml``): reading and checking them, and the units they describe (how they
run: :mod:`cyclediff.jobs.run`). The ``[settings]`` table is the task's settings type (:mod:`cyclediff.settings`),
the top level its :class:`~cyclediff.settings.RunOptions`."""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._paths import IMAGE_SUFFIXES, distinct_paths, list_images, safe_id, unique_names
from .._seeds import seed_limit, seed_range
from .._video import CLIP_SUFFIXES, list_clips
from ..batch.runner import Unit, plan
from ..batch.tasks import settings_signature
from ..checks import is_int, json_object
from ..devices import check_device
from ..errors import CycleDiffError
from ..settings import RUN, TASKS, RunOptions, Settings
from .sweep import variant

JOB_TASKS = ("edit", "translate", "guide")
RUN_KEYS = RunOptions.names()  # a job's top level: how it runs (the command line's options), then its own keys
TOP_LEVEL = {"task", "inputs", "out", "seeds", "settings", "reference", *RUN_KEYS}
SPECS = ("model", "source_model", "target_model", "energy", "clip_model", "mask")  # relative to the job file


# ---------------------------------------------------------------------------------------------------- the job
@dataclass(frozen=True)
class Item:
    id: str
    input: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None


@dataclass
class Job:
    task: str
    items: list[Item]
    out: Path
    seeds: list[int]
    settings: Settings
    run: RunOptions = RUN
    source: Path | None = None
    methods: list[str] | None = None  # several methods: every item × method × seed, compared in the summary
    reference: list[Path] | None = None  # target-domain images for FID / KID per method

    def units(self) -> list[Unit]:
        """One unit per item × method × seed, in job order, with the item's settings."""
        units: list[Unit] = []
        for item in self.items:
            for method in self.methods or [None]:
                settings = variant(self.settings, item.overrides, method)
                for seed in item.seeds or self.seeds:
                    middle = f"_{method}" if method else ""
                    units.append(Unit(len(units), f"{item.id}{'/' + method if method else ''}/seed{seed}", seed,
                                      name=f"{item.id}{middle}_seed{seed}", settings=settings, input=item.input,
                                      item=item.id, method=method))
        return units

    def output_for(self, unit: Unit) -> Path:
        return self.out / "images" / f"{unit.name}.png"

    def batches(self) -> list[list[Unit]]:
        """Consecutive units in job order, at most batch_size each, sharing every setting that cannot differ
        inside a batch (the runner's plan). Fixed by the job file alone (not by ranks or by what is done)."""
        return plan(self.units(), settings_signature, self.run.batch_size)


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
    if is_int(value):
        return [seed_limit(value)]
    if isinstance(value, list) and value and all(is_int(v) for v in value):
        return [seed_limit(v) for v in value]
    why = ""
    if isinstance(value, str):
        try:
            return seed_range(value)
        except CycleDiffError as err:
            why = f" ({err})"
    raise CycleDiffError(f"seeds must be an integer, a list of integers or a range like '0-3'; got {value!r}{why}")


def load_job(path: str | Path) -> Job:
    """Read and validate a job file; every mistake is one error naming the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CycleDiffError(f"no such job file: {path}")
    path = path.resolve()
    raw = _read_file(path)
    try:
        return _job(raw, path)
    except CycleDiffError as err:
        message = str(err)
        raise CycleDiffError(message if message.startswith(str(path)) else f"{path}: {message}") from err


def _job(raw: Any, path: Path) -> Job:
    if not isinstance(raw, dict):
        raise CycleDiffError("a job file holds a table of settings")
    unknown = set(raw) - TOP_LEVEL
    if unknown:
        raise CycleDiffError(f"unknown keys {sorted(unknown)}; a job takes {sorted(TOP_LEVEL)} (task settings go "
                             "under [settings])")
    task = raw.get("task")
    if task not in JOB_TASKS:
        raise CycleDiffError(f"task must be one of {', '.join(JOB_TASKS)}; got {task!r}")
    if task != "translate" and raw.get("target_lora"):
        article = "an" if task[0] in "aeiou" else "a"
        raise CycleDiffError(f"target_lora (adapters on a translation's target model only) is for translate jobs; "
                             f"{article} {task} job has one model: put the adapters under lora, or make it a "
                             "translate job with source_model = target_model")
    settings, methods = _settings(TASKS[task], raw.get("settings") or {}, path.parent)
    for key in ("lora", "target_lora"):  # adapter files beside the job file are found from anywhere
        if isinstance(raw.get(key), list):
            raw = {**raw, key: [local_lora(path.parent, v) if isinstance(v, str) else v for v in raw[key]]}
    if isinstance(raw.get("base"), str):  # a GGUF network's pipeline folder beside the job file
        raw = {**raw, "base": local_spec(path.parent, raw["base"])}
    reference = None
    if raw.get("reference") is not None:
        if task != "translate":
            raise CycleDiffError("reference (FID / KID of the outputs) is for translate jobs")
        reference = [it.input for it in _items(raw["reference"], path.parent, task) if it.input is not None]
    out = Path(raw.get("out") or f"{path.stem}-out")
    out = out if out.is_absolute() else path.parent / out
    if out.exists() and not out.is_dir():
        raise CycleDiffError(f"out {out} is a file; name a folder for the job's outputs")
    items = [it for it in _items(raw.get("inputs"), path.parent, task) if not _inside(it.input, out)]
    if not items:
        raise CycleDiffError(f"the inputs {raw.get('inputs')!r} hold only the job's own outputs (in {out})")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise CycleDiffError(f"item ids repeat ({dup[:5]}); give each manifest line a unique \"id\"")
    for item in items:
        if task != "guide" and item.input is None:
            raise CycleDiffError(f"item {item.id!r} has no input image; the {task} task needs one")
        for method in methods or [None]:  # an item's settings are checked now, not when its unit runs
            variant(settings, item.overrides, method)
    return Job(task=task, items=items, out=out, seeds=parse_seed_list(raw.get("seeds", 0)), settings=settings,
               run=_run_options(raw), source=path, methods=methods, reference=reference)


def _settings(kind: type[Settings], given: Any, base: Path) -> tuple[Settings, list[str] | None]:
    """The task's settings (model specs and files relative to the job) and, when ``method`` lists several, the
    methods to compare."""
    if not isinstance(given, dict):
        raise CycleDiffError("settings must be a table")
    misplaced = sorted(set(given) & set(RUN_KEYS) - set(kind.names()))
    if misplaced:
        what = "are job-level keys: write them" if len(misplaced) > 1 else "is a job-level key: write it"
        raise CycleDiffError(f"{', '.join(misplaced)} {what} at the top of the job file, above [settings]")
    given = {k: local_spec(base, v) if k in SPECS and isinstance(v, str) else v for k, v in given.items()}
    method = given.get("method")
    methods = list(method) if isinstance(method, list) and len(method) > 1 else None
    if isinstance(method, list):
        given["method"] = None if methods else (method[0] if method else kind().method)
    settings = kind.from_mapping(given)  # each method's variant is checked with each item's (_job)
    missing = [k for k in kind.required if not getattr(settings, k)]
    if missing:
        raise CycleDiffError(f"the {kind.task} task needs settings {missing}")
    return settings, methods


def _run_options(raw: dict[str, Any]) -> RunOptions:
    """device, dtype, compile, size, fit, max_pixels, batch_size and features, checked before any work is done."""
    from .evaluate import resolve_features

    check_device(raw.get("device", RUN.device))  # the command line's rule; whether it is here: when the job runs
    if not isinstance(raw.get("features", RUN.features), str):
        raise CycleDiffError(f"features must be inception, pixels or module:function; got {raw['features']!r}")
    run = RunOptions.from_mapping({k: raw[k] for k in RUN_KEYS if k in raw})
    if raw.get("reference") is not None:
        resolve_features(run.features)  # an unknown or uninstalled backend fails now, not after every unit ran
    return run


def _items(inputs: Any, base: Path, task: str) -> list[Item]:
    """Items from a folder, one image, a glob, a JSONL manifest, or a list of paths (relative to the job file)."""
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
    if where.is_dir():  # a folder of clips (video models: one item per clip), else of images
        return _dedupe_ids(list_clips(where) or list_images(where))
    if where.is_file():  # one image or clip
        if where.suffix.lower() not in IMAGE_SUFFIXES + CLIP_SUFFIXES:
            raise CycleDiffError(f"inputs {inputs!r} is a file but not an image ({', '.join(IMAGE_SUFFIXES)}) or a "
                                 "clip; give an image, a clip, a folder, a glob, a .jsonl manifest or a list")
        return _dedupe_ids([where])
    if glob.has_magic(inputs):
        files = sorted(Path(p) for p in glob.glob(str(where), recursive=True) if Path(p).is_file())
        if not files:
            raise CycleDiffError(f"the glob {inputs!r} matches no files (relative to {base})")
        return _dedupe_ids(files)
    raise CycleDiffError(f"inputs {inputs!r}: no such folder, and neither a glob nor a .jsonl manifest")


def _inside(path: Path | None, folder: Path) -> bool:
    """Whether an input lies in the job's out folder (a recursive glob over the job's folder finds its outputs:
    they are never fed back in as inputs)."""
    return path is not None and path.resolve().is_relative_to(folder.resolve())


def local_lora(base: Path, spec: str) -> str:
    """A LoRA file beside the job file becomes absolute (its stage prefix, ``low-noise=``, kept)."""
    from ..models.lora import lora_stage, parse_lora

    stage, rest = lora_stage(spec)
    file, scale = parse_lora(rest)
    where = Path(file) if Path(file).is_absolute() else base / file
    return f"{stage + '=' if stage else ''}{where}:{scale:g}" if where.exists() else spec


def local_spec(base: Path, spec: str) -> str:
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
        rec = json_object(line, f"{path}:{n}")
        per_item = TASKS[task].per_item
        extra = set(rec) - {"id", "input", "seeds"} - per_item
        if extra:
            raise CycleDiffError(f"{path}:{n}: unknown fields {sorted(extra)}; a {task} item takes id, input, "
                                 f"seeds and {sorted(per_item)}")
        image = _path(path.parent, rec["input"]) if rec.get("input") else None
        ident = rec.get("id") or (image.stem if image else f"item{n}")
        seeds = tuple(parse_seed_list(rec["seeds"])) if "seeds" in rec else None
        overrides = {k: v for k, v in rec.items() if k in per_item}
        items.append(Item(id=safe_id(str(ident)), input=image, overrides=overrides, seeds=seeds))
    if not items:
        raise CycleDiffError(f"{path}: the manifest has no items")
    return items

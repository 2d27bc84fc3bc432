"""Job files (``cyclediff run JOB.toml``): reading and checking them, and the units they describe (how they
run: :mod:`cyclediff.apps.jobs`)."""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import (
    DEFAULT_MAX_PIXELS,
    distinct_paths,
    json_object,
    list_images,
    safe_id,
    seed_limit,
    seed_range,
    unique_names,
)
from ..defaults import EDIT, GUIDE, TRANSLATE, check_settings
from ..errors import CycleDiffError
from ..latent import DTYPES
from .methods import check_method
from .runner import Unit as RunUnit
from .runner import plan
from .tasks import EditTask, GuideTask, TranslateTask, settings_signature

TASKS = ("edit", "translate", "guide")
MASKING = {"mask": None, "mask_threshold": 0.5}  # a mask image (relative to the job file) or "auto"
TOP_LEVEL = {"task", "inputs", "out", "seeds", "batch_size", "device", "dtype", "compile", "size", "fit",
             "max_pixels", "settings", "reference", "features"}
# settings each task takes (beyond these nothing is accepted, so a typo is an error, not a silent default)
SETTINGS: dict[str, dict[str, Any]] = {
    "edit": {"model": None, "source_prompt": None, "prompt": None, **EDIT, "negative_prompt": None,
             "clip_model": None, **MASKING, "attention": None},
    "translate": {"source_model": None, "target_model": None, **TRANSLATE, "source_class": None,
                  "target_class": None, "source_prompt": None, "target_prompt": None, "guidance_scale": None,
                  **MASKING},
    "guide": {"model": None, "energy": None, "text": None, **GUIDE, "prompt": None, "guidance_scale": None,
              "class_label": None, "keep_best": False, "grad_steps": None},
}
REQUIRED = {"edit": ("model",), "translate": ("source_model", "target_model"), "guide": ("model", "energy")}
# per-item fields a manifest line may set; "batched" ones may differ inside one batch (one value per image)
PER_ITEM = {"edit": {"prompt", "source_prompt", "negative_prompt"},
            "translate": {"source_class", "target_class", "source_prompt", "target_prompt"},
            "guide": {"text", "class_label", "prompt"}}
BATCHED = {"edit": EditTask.batched, "translate": TranslateTask.batched, "guide": GuideTask.batched}


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

    def runner_units(self) -> list[RunUnit]:
        """The units as the runner takes them: key, seed, output name, merged settings, input."""
        return [RunUnit(u.index, u.key, u.seed, name=self.output_for(u).stem, settings=self.settings_for(u),
                        input=u.item.input) for u in self.units()]

    def batches(self) -> list[list[Unit]]:
        """Consecutive units in job order, at most batch_size each, sharing every setting that cannot differ
        inside a batch (the runner's plan). Fixed by the job file alone (not by ranks or by what is done)."""
        units = self.units()
        batched = BATCHED[self.task]
        return [[units[r.index] for r in batch]
                for batch in plan(self.runner_units(), lambda r: settings_signature(r, batched), self.batch_size)]


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
    if settings.get("attention") is not None:
        from ..models.attention import AttentionEdit

        AttentionEdit.of(settings["attention"])  # a bad mode or weight fails now, not in every unit
    missing = [k for k in REQUIRED[task] if not settings.get(k)]
    if missing:
        raise CycleDiffError(f"{path}: the {task} task needs settings {missing}")
    base = path.parent
    for key in ("model", "source_model", "target_model", "energy", "clip_model", "mask"):  # relative to the job
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


# top-level keys beside task / inputs / out / seeds / batch_size / settings / reference: default and allowed values
TOP_DEFAULTS = {"device": "auto", "dtype": "float32", "compile": False, "size": None, "fit": "crop",
                "max_pixels": DEFAULT_MAX_PIXELS, "features": "inception"}
CHOICES = {"device": ("auto", "cpu", "cuda"), "dtype": tuple(DTYPES), "compile": (False, True),
           "fit": ("crop", "resize")}


def _check_top_level(raw: dict[str, Any], path: Path, task: str) -> dict[str, Any]:
    """device, dtype, compile, size, fit, max_pixels and features, each checked before any work is done."""
    from .._io import parse_size
    from .evaluate import resolve_features

    top = {key: raw.get(key, default) for key, default in TOP_DEFAULTS.items()}
    for key, allowed in CHOICES.items():
        if top[key] not in allowed or type(top[key]) is not type(allowed[0]):  # compile = 1 is not a bool
            names = [str(a).lower() for a in allowed]
            raise CycleDiffError(f"{path}: {key} must be {', '.join(names[:-1])} or {names[-1]}; got {top[key]!r}"
                                 + (" (each rank takes its own GPU)" if key == "device" else ""))
    if top["size"] is not None:
        top["size"] = str(top["size"])
        parse_size(top["size"])
    if isinstance(top["max_pixels"], bool) or not isinstance(top["max_pixels"], int) or top["max_pixels"] < 1:
        raise CycleDiffError(f"{path}: max_pixels must be a positive integer; got {top['max_pixels']!r}")
    if not isinstance(top["features"], str):
        raise CycleDiffError(f"{path}: features must be inception, pixels or module:function; got {top['features']!r}")
    if raw.get("reference") is not None:
        resolve_features(top["features"])  # an unknown or uninstalled backend fails now, not after every unit ran
    return top


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
        return _dedupe_ids(list_images(where))
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
        rec = json_object(line, f"{path}:{n}")
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

"""The settings' shared parts: the names, ranges and choices of every setting a user may give, the one check by
name (:func:`check_setting`) and :class:`Settings`, the behaviour every settings type shares (the types themselves:
:mod:`cyclediff.settings`, :mod:`cyclediff.run_options`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from . import options as opt
from .checks import check_choice, check_count, check_number, check_text, parse_size
from .errors import CycleDiffError

# where an encoder's x_{t-1} comes from: the posterior q(x_{t-1} | x_t, x0) (CycleDiffusion's DPM-Encoder) or an
# independent marginal q(x_{t-1} | x0) per step (the edit-friendly DDPM inversion of Huberman-Spiegelglas et al.)
ENCODERS = ("cyclediffusion", "edit-friendly")
METHODS, MASKED_METHODS = opt.METHODS, opt.KEEPS_SOURCE  # the latter: their source trajectory ends at the input
SAMPLERS = ("ddim", "ddpm", "fresh")
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")
CLIP_MODEL = "openai/clip-vit-base-patch32"
MAX_PIXELS = 4096 * 4096  # larger images are refused (decompression bombs)

# name -> (kind, low, high, low open?, high open?) for every number a user may set; None: unbounded
RANGES: dict[str, tuple[type, float | None, float | None, bool, bool]] = {
    "strength": (float, 0.0, 1.0, True, False),
    "steps": (int, 1, None, False, False),
    "guidance_scale": (float, 0.0, None, False, False),
    "source_guidance_scale": (float, 0.0, None, False, False),
    "refine_steps": (int, 0, None, False, False),
    "weight": (float, None, None, False, False),
    "langevin_steps": (int, 0, None, False, False),
    "step_size": (float, 0.0, None, True, False),
    "augment_copies": (int, 1, None, False, False),
    "grad_steps": (int, 1, None, False, False),
    "source_class": (int, 0, None, False, False),
    "target_class": (int, 0, None, False, False),
    "class_label": (int, 0, None, False, False),
    **opt.KNOB_RANGES,  # the methods' own: eta, mask_threshold, n_avg, n_min
    "max_pixels": (int, 1, None, False, False),
    "batch_size": (int, 1, None, False, False),
    "max_seeds": (int, 1, None, False, False),
    "max_frames": (int, 1, None, False, False),
    "stride": (int, 1, None, False, False),
}
# --quantize: optimum-quanto's int8 / int4 / fp8, torchao's, bitsandbytes' (CUDA) (cyclediff.models.quantize)
QUANTIZE = ("int8", "int4", "fp8", "torchao-int8", "torchao-fp8", "nf4", "bnb-int8")
CHOICES: dict[str, tuple[Any, ...]] = {"method": opt.METHODS, "encoder": ENCODERS, "sampler": SAMPLERS,
                                       "fit": ("crop", "resize"), "dtype": DTYPE_NAMES, "compile": (False, True),
                                       "keep_best": (False, True),
                                       "quantize": QUANTIZE, "vae_tiling": (False, True),
                                       "offload": ("model", "sequential", "group"),
                                       "text_encoders_on_cpu": (False, True)}
# positive integers (their RANGES entry gives the kind)
COUNTS = ("max_pixels", "batch_size", "max_seeds", "max_frames", "stride")
# tables of condition keywords: encode's whole condition; edit's and translate's family keywords (--condition)
CONDITIONS = ("condition", "source_condition", "target_condition")
TEXTS = ("prompt", "source_prompt", "target_prompt", "negative_prompt", "text")
NAMES = ("model", "source_model", "target_model", "energy", "clip_model", "mask", "other", "features", "device",
         "base", "classifier")


def check_setting(name: str, value: Any, *, required: bool = False) -> Any:
    """One setting checked by its name (numbers by range, texts as strings, choices by name); None passes unless
    ``required``."""
    if value is None and not required:
        return None
    if name in COUNTS:
        return check_count(name, value)
    if name in opt.KNOB_RANGES:
        return opt.check_knob(name, value)
    if name in RANGES:
        return check_number(name, value, *RANGES[name])
    if name in CHOICES:
        return check_choice(name, value, CHOICES[name])
    if name == "size":  # "N" (shorter side) or "WxH"
        parse_size(str(value))
        return str(value)
    if name in CONDITIONS:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
            raise CycleDiffError(f"{name} is a table of condition keywords (KEY = VALUE, e.g. guidance_scale_2 = 3); "
                                 f"got {value!r}")
        return dict(value)
    if name in TEXTS:
        return check_text(name, value)
    if name in NAMES:
        return check_text(name, value, many=False)
    return value


@dataclass(frozen=True)
class Settings:
    """The shared behaviour of every settings type (see the module doc)."""

    task: ClassVar[str] = ""
    #: fields that may differ inside one batch (one value per image: prompts, class labels)
    batched: ClassVar[frozenset[str]] = frozenset()
    #: fields a job manifest line may set for its item
    per_item: ClassVar[frozenset[str]] = frozenset()
    #: fields a job file must set
    required: ClassVar[tuple[str, ...]] = ()
    #: fields naming files whose bytes change the result (their digests are recorded with each output)
    files: ClassVar[tuple[str, ...]] = ()
    #: fields recorded only when set (added after outputs were made: an output made without them keeps its record)
    recorded_when_set: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, check_setting(f.name, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Checks across fields (a subclass's)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "") -> Any:
        """The settings from a table (a job file's ``[settings]``, a web form); an unknown key is an error."""
        if not isinstance(mapping, Mapping):
            raise CycleDiffError(f"{where}settings must be a table; got {mapping!r}")
        unknown = set(mapping) - set(cls.names())
        if unknown:
            raise CycleDiffError(f"{where}the {cls.task} task has no settings {sorted(unknown)}; it takes "
                                 f"{sorted(cls.names())}")
        return cls(**mapping)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **extra: Any) -> Any:
        """The settings from parsed command-line options (those that are not settings are left out)."""
        given = {**options, **extra}
        return cls(**{name: given[name] for name in cls.names() if name in given})

    def record(self) -> dict[str, Any]:
        """Every field by name, as JSON takes it (file stamps, manifests)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) or f.name not in self.recorded_when_set}

    def shared(self) -> dict[str, Any]:
        """What a batch must share: every field but the ``batched`` ones."""
        return {k: v for k, v in self.record().items() if k not in self.batched}

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    #: fields the front ends consume themselves (model ids, files they read, per-item conditions they build)
    front_end: ClassVar[frozenset[str]] = frozenset()

    def api(self, **given: Any) -> dict[str, Any]:
        """The keywords of the task's Python API function these settings give, written out field by field (a
        renamed keyword fails loudly instead of dropping a setting), with ``given`` (per-batch values: prompts,
        generators, masks) on top. tests/test_settings_reach.py checks every field reaches it or is front-end."""
        raise NotImplementedError(f"the {self.task} task has no single API call")


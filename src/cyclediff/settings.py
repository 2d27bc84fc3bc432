"""Settings as types: every task's settings, with its defaults and valid ranges, written here once.

Each task has a frozen dataclass (:class:`EditSettings`, :class:`TranslateSettings`, :class:`GuideSettings`,
:class:`EncodeSettings`, :class:`DecodeSettings`, :class:`SampleSettings`) and every run has
:class:`RunOptions`. They are validated on construction (a bad value is one error naming the setting and its
range), built from a mapping by :meth:`Settings.from_mapping` (job files, web forms: an unknown key is one error
naming the valid ones) or from parsed command-line options by :meth:`Settings.from_options`, recorded by
:meth:`Settings.record` (file stamps, manifests) and say in ``batched`` which fields may differ inside one batch.
The Python API takes its defaults from the default instances (:data:`EDIT`, :data:`TRANSLATE`, …), the CLI its
options' defaults and ranges (:func:`cyclediff.cli.options.setting_option`), so nothing can drift apart.

Adding an edit setting: a field here (with its range in :data:`RANGES` if it is a number), its use (the task or
the API), and a ``setting_option(EditSettings, "name")`` line on the command (docs/design.md has an example). A
method's own knobs (η, n_avg, …) are not written here: Edit and Translate settings take them from the methods'
options types (:mod:`cyclediff.options`), with their defaults and ranges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, make_dataclass
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
}
# --quantize: optimum-quanto's int8 / int4 / fp8, torchao's, bitsandbytes' (CUDA) (cyclediff.models.quantize)
QUANTIZE = ("int8", "int4", "fp8", "torchao-int8", "torchao-fp8", "nf4", "bnb-int8")
CHOICES: dict[str, tuple[Any, ...]] = {"method": opt.METHODS, "encoder": ENCODERS, "sampler": SAMPLERS,
                                       "fit": ("crop", "resize"), "dtype": DTYPE_NAMES, "compile": (False, True),
                                       "keep_best": (False, True),
                                       "quantize": QUANTIZE, "vae_tiling": (False, True),
                                       "offload": ("model", "sequential", "group"),
                                       "text_encoders_on_cpu": (False, True)}
COUNTS = ("max_pixels", "batch_size", "max_seeds")  # positive integers (their RANGES entry gives the kind)
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
        return {f.name: getattr(self, f.name) for f in fields(self)}

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


@dataclass(frozen=True)
class Masked(Settings):
    """A mask image (white = may change), or "auto" (where the two conditions disagree, thresholded)."""

    mask: str | None = None
    files: ClassVar[tuple[str, ...]] = ("mask",)


def _knobs(name: str, *, leave_out: tuple[str, ...] = ()) -> type:
    """A settings base holding every method's own knobs as flat fields (job files, command lines), each with its
    options type's default — so that a new method's knob needs no line here."""
    names = dict.fromkeys(k for c in opt.OPTIONS.values() for k in c.knobs() if k != "mask" and k not in leave_out)
    return make_dataclass(name, [(k, Any, field(default=opt.knob_default(k))) for k in names], bases=(Masked,),
                          frozen=True)


@dataclass(frozen=True)
class MethodSettings(_knobs("MethodKnobs")):  # type: ignore[misc]
    """The settings of a task that runs a method: its knobs checked against it, its options built from them."""

    def check(self) -> None:
        method = getattr(self, "method", None)
        if isinstance(method, str):  # a sweep's list of methods is checked per method
            self.options()

    def options(self, mask: Any = None, *, strict: bool = True) -> opt.Options:
        """The method's options from these settings; ``mask``: the mask as the API takes it (the settings hold
        a file name or "auto")."""
        if self.mask is not None and self.method not in MASKED_METHODS:
            raise CycleDiffError(f"masks work with methods {' and '.join(MASKED_METHODS)}; not with {self.method}")
        knobs = {k: getattr(self, k) for k in self.names() if opt.owners(k) and k != "mask"}
        mask = "auto" if mask is None and self.mask == "auto" else mask
        options = opt.options_of(self.method, strict=strict, **knobs, mask=mask)
        options.check_grid(self.steps, self.strength)  # FlowEdit: steps × strength leaves steps to run
        return options


@dataclass(frozen=True)
class EditSettings(MethodSettings):
    """Text-guided editing (:func:`cyclediff.edit`)."""

    model: str | None = None
    source_prompt: str | list[str] | None = None
    prompt: str | list[str] | None = None
    negative_prompt: str | list[str] | None = None
    strength: float = 0.8
    steps: int = 100
    guidance_scale: float = 3.0
    source_guidance_scale: float = 1.0
    method: str = "cyclediffusion"
    clip_model: str | None = None  # jobs: score each edit with this CLIP

    task: ClassVar[str] = "edit"
    batched: ClassVar[frozenset[str]] = frozenset({"prompt", "source_prompt", "negative_prompt"})
    per_item: ClassVar[frozenset[str]] = batched
    required: ClassVar[tuple[str, ...]] = ("model",)
    front_end: ClassVar[frozenset[str]] = frozenset({"model", "clip_model"})

    def api(self, mask: Any = None, **given: Any) -> dict[str, Any]:
        """:func:`cyclediff.edit`'s keywords (``mask``: as the API takes it; the settings hold its file)."""
        return {"source_prompt": self.source_prompt, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "strength": self.strength, "steps": self.steps, "guidance_scale": self.guidance_scale,
                "source_guidance_scale": self.source_guidance_scale, "method": self.options(mask), **given}

    def check(self) -> None:
        super().check()
        if self.attention is not None:  # recorded as a dict of its fields (a bad mode fails now, not per unit)
            from .options import AttentionEdit

            object.__setattr__(self, "attention", dataclasses.asdict(AttentionEdit.of(self.attention)))


@dataclass(frozen=True)
class TranslateSettings(_knobs("TranslateKnobs", leave_out=("attention",)), MethodSettings):  # type: ignore[misc]
    """Translation between two models, or two conditions of one (:func:`cyclediff.translate`)."""

    source_model: str | None = None
    target_model: str | None = None
    strength: float = 0.85
    steps: int = 100
    refine_steps: int = 0
    method: str = "cyclediffusion"
    source_class: int | None = None
    target_class: int | None = None
    source_prompt: str | list[str] | None = None
    target_prompt: str | list[str] | None = None
    guidance_scale: float | None = None

    task: ClassVar[str] = "translate"
    batched: ClassVar[frozenset[str]] = frozenset({"source_class", "target_class", "source_prompt",
                                                   "target_prompt"})
    per_item: ClassVar[frozenset[str]] = batched
    required: ClassVar[tuple[str, ...]] = ("source_model", "target_model")
    # the conditions: built per item by the front ends (condition_for: prompts, labels, the target's guidance)
    front_end: ClassVar[frozenset[str]] = frozenset({"source_model", "target_model"}) | batched | {"guidance_scale"}

    def api(self, mask: Any = None, **given: Any) -> dict[str, Any]:
        """:func:`cyclediff.translate`'s keywords (conditions given by the caller)."""
        return {"strength": self.strength, "steps": self.steps, "refine_steps": self.refine_steps,
                "method": self.options(mask), **given}


@dataclass(frozen=True)
class GuideSettings(Settings):
    """Langevin guidance in the latent space (:func:`cyclediff.guide`)."""

    model: str | None = None
    energy: str | None = None
    text: str | None = None
    weight: float = 500.0
    langevin_steps: int = 200
    step_size: float = 0.05
    steps: int = 50
    eta: float = 1.0
    augment_copies: int = 8
    clip_model: str = CLIP_MODEL
    prompt: str | None = None
    guidance_scale: float | None = None
    class_label: int | None = None
    keep_best: bool = False
    grad_steps: int | None = None
    classifier: str | None = None  # energy "classifier": module:function of a torch classifier (logits out)
    target_class: int | None = None  # energy "classifier": the class the chains are drawn towards

    task: ClassVar[str] = "guide"
    batched: ClassVar[frozenset[str]] = frozenset({"class_label"})
    per_item: ClassVar[frozenset[str]] = frozenset({"text", "class_label", "prompt"})
    required: ClassVar[tuple[str, ...]] = ("model", "energy")
    # the energy (built from energy / text / clip_model / augment_copies / classifier / target_class) and the
    # condition (prompt, guidance_scale, class_label) are the front ends'
    front_end: ClassVar[frozenset[str]] = frozenset({"model", "energy", "text", "clip_model", "augment_copies",
                                                     "classifier", "target_class", "prompt", "guidance_scale",
                                                     "class_label"})

    def api(self, **given: Any) -> dict[str, Any]:
        """:func:`cyclediff.guide`'s keywords."""
        return {"weight": self.weight, "langevin_steps": self.langevin_steps, "step_size": self.step_size,
                "steps": self.steps, "eta": self.eta, "keep_best": self.keep_best, "grad_steps": self.grad_steps,
                **given}


@dataclass(frozen=True)
class EncodeSettings(Settings):
    """Images → latent files (:func:`cyclediff.encode`); ``condition`` as the model takes it."""

    steps: int = 100
    strength: float = 1.0
    eta: float = 0.1
    sampler: str = "ddim"
    encoder: str = "cyclediffusion"
    condition: dict[str, Any] = field(default_factory=dict)

    task: ClassVar[str] = "encode"

    def check(self) -> None:
        opt.refuse_deterministic(self.eta)

    def api(self, **given: Any) -> dict[str, Any]:
        """:func:`cyclediff.encode`'s keywords."""
        return {"steps": self.steps, "strength": self.strength, "eta": self.eta, "sampler": self.sampler,
                "encoder": self.encoder, **self.condition, **given}


@dataclass(frozen=True)
class SampleSettings(Settings):
    """Samples from the prior latent (:func:`cyclediff.sample_latent`)."""

    steps: int = 50
    eta: float = 1.0
    sampler: str = "ddim"
    condition: dict[str, Any] = field(default_factory=dict)

    task: ClassVar[str] = "sample"

    def api(self, **given: Any) -> dict[str, Any]:
        """:func:`cyclediff.sample_latent`'s keywords."""
        return {"steps": self.steps, "eta": self.eta, "sampler": self.sampler, **self.condition, **given}


@dataclass(frozen=True)
class DecodeSettings(Settings):
    """Latent files → images (:func:`cyclediff.decode`): under a new ``condition`` when given, else the recorded
    one; with ``weights`` a strip of the interpolation towards the latent file ``other``."""

    condition: dict[str, Any] = field(default_factory=dict)
    weights: list[float] | None = None
    other: str | None = None

    task: ClassVar[str] = "decode"
    files: ClassVar[tuple[str, ...]] = ("other",)


@dataclass(frozen=True)
class RunOptions(Settings):
    """How a run reads its inputs and runs its models (the CLI's options, a job file's top level)."""

    device: str = "auto"
    dtype: str = "float32"
    compile: bool = False
    size: str | None = None  # resize first: "N" (shorter side) or "WxH"
    fit: str = "crop"
    max_pixels: int = MAX_PIXELS
    batch_size: int = 1
    features: str = "inception"  # FID / KID features: inception, pixels or module:function
    max_seeds: int = 10_000  # seeds (outputs per input) one command or job may ask for
    lora: tuple[str, ...] = ()  # LoRA adapters on the model: "PATH[:scale]" each
    target_lora: tuple[str, ...] = ()  # translation: LoRA adapters on the target only (one load for one model)
    quantize: str | None = None  # the network's weights quantized: one of QUANTIZE
    vae_tiling: bool = False  # the VAE in overlapping tiles, one image at a time (large images, less memory)
    offload: str | None = None  # weights on the CPU between uses: model, sequential or group (GPU runs)
    text_encoders_on_cpu: bool = False  # the text encoders stay on the CPU and run there, once per prompt
    base: str | None = None  # where a single file's other parts come from (a GGUF network's pipeline)

    task: ClassVar[str] = "run"

    def loading(self) -> dict[str, Any]:
        """The keywords of :func:`cyclediff.models.load` that change a model at loading (the front ends pass
        these; dtype and device are theirs to resolve)."""
        return {"lora": self.lora, "quantize": self.quantize, "vae_tiling": self.vae_tiling, "offload": self.offload,
                "text_encoders_on_cpu": self.text_encoders_on_cpu, "base": self.base}

    def model_record(self) -> dict[str, Any]:
        """How the model was changed at loading (LoRA, quantization, VAE tiling, offloading, base), for the records
        of its outputs: only what is set, so that outputs made without them keep their records."""
        record = {**self.loading(), "target_lora": self.target_lora}
        return {k: list(v) if k.endswith("lora") else v for k, v in record.items() if v}

    def check(self) -> None:
        for name in ("lora", "target_lora"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value or ()):
                raise CycleDiffError(f"{name} is a list of 'PATH[:scale]' strings; got {value!r}")
            object.__setattr__(self, name, tuple(value or ()))


TASKS: dict[str, type[Settings]] = {c.task: c for c in (EditSettings, TranslateSettings, GuideSettings,
                                                        EncodeSettings, DecodeSettings, SampleSettings)}
EDIT, TRANSLATE, GUIDE = EditSettings(), TranslateSettings(), GuideSettings()
ENCODE, SAMPLE, RUN = EncodeSettings(), SampleSettings(), RunOptions()

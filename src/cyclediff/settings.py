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
from dataclasses import dataclass, field, make_dataclass
from typing import Any, ClassVar

from . import options as opt
from .errors import CycleDiffError
from .run_options import RUN, RunOptions  # noqa: F401 - re-exported: how a run reads and runs
from .settings_base import (  # noqa: F401 - re-exported: the settings' names, ranges, choices and base
    CHOICES,
    CLIP_MODEL,
    COUNTS,
    DTYPE_NAMES,
    ENCODERS,
    MASKED_METHODS,
    MAX_PIXELS,
    METHODS,
    NAMES,
    QUANTIZE,
    RANGES,
    SAMPLERS,
    TEXTS,
    Settings,
    check_setting,
)


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
    condition: dict[str, Any] = field(default_factory=dict)  # the target's family keywords (guidance_scale_2 …)
    source_condition: dict[str, Any] = field(default_factory=dict)  # the source's (its family's defaults if unset)

    task: ClassVar[str] = "edit"
    batched: ClassVar[frozenset[str]] = frozenset({"prompt", "source_prompt", "negative_prompt"})
    per_item: ClassVar[frozenset[str]] = batched
    required: ClassVar[tuple[str, ...]] = ("model",)
    front_end: ClassVar[frozenset[str]] = frozenset({"model", "clip_model"})
    recorded_when_set: ClassVar[frozenset[str]] = frozenset({"condition", "source_condition"})

    def api(self, mask: Any = None, **given: Any) -> dict[str, Any]:
        """:func:`cyclediff.edit`'s keywords (``mask``: as the API takes it; the settings hold its file); the
        family keywords ride with the prompts (a prompt given as a dict of condition keywords)."""
        keywords = {"source_prompt": self.source_prompt, "prompt": self.prompt,
                    "negative_prompt": self.negative_prompt, "strength": self.strength, "steps": self.steps,
                    "guidance_scale": self.guidance_scale, "source_guidance_scale": self.source_guidance_scale,
                    "method": self.options(mask), **given}
        for key, own in (("source_prompt", self.source_condition), ("prompt", self.condition)):
            if own and keywords[key] is not None:
                keywords[key] = {"prompt": keywords[key], **own}
        return keywords

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
    source_condition: dict[str, Any] = field(default_factory=dict)  # each side's family keywords (--source-condition)
    target_condition: dict[str, Any] = field(default_factory=dict)

    task: ClassVar[str] = "translate"
    batched: ClassVar[frozenset[str]] = frozenset({"source_class", "target_class", "source_prompt",
                                                   "target_prompt"})
    per_item: ClassVar[frozenset[str]] = batched
    required: ClassVar[tuple[str, ...]] = ("source_model", "target_model")
    # the conditions: built per item by the front ends (condition_for: prompts, labels, the target's guidance)
    front_end: ClassVar[frozenset[str]] = (frozenset({"source_model", "target_model", "source_condition",
                                                      "target_condition"}) | batched | {"guidance_scale"})
    recorded_when_set: ClassVar[frozenset[str]] = frozenset({"source_condition", "target_condition"})

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



TASKS: dict[str, type[Settings]] = {c.task: c for c in (EditSettings, TranslateSettings, GuideSettings,
                                                        EncodeSettings, DecodeSettings, SampleSettings)}
EDIT, TRANSLATE, GUIDE = EditSettings(), TranslateSettings(), GuideSettings()
ENCODE, SAMPLE = EncodeSettings(), SampleSettings()

"""What each editing method takes: its own options as one small typed record, its capabilities beside them.

An edit's common head — the grid (steps, strength), the conditions (prompts, guidance scales), the generator — is
the same for every method. What differs lives here, one type per method (k-diffusion's model: each sampler its own
knobs): CycleDiffusion's η, mask and attention control; the edit-friendly inversion's η and mask; FlowEdit's
``n_avg`` / ``n_min``; SDEdit's η; DDIB's nothing. The defaults are written here once: the settings types derive
the flat fields of job files and command lines from these types (:mod:`cyclediff.settings`), and
:mod:`cyclediff.methods` gives each type its algorithm and its cost.

Adding a method: its algorithm module, an options type here (with its capabilities), a :class:`cyclediff.methods.Method`
record, and a command-line option helper for its knobs (docs/design.md walks through it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .checks import check_number
from .errors import CycleDiffError

# knob -> (kind, low, high, low open?, high open?): the ranges of every method's numeric options
KNOB_RANGES: dict[str, tuple[type, float | None, float | None, bool, bool]] = {
    "eta": (float, 0.0, 1.0, False, False),  # 0: the ODE; the encoders refuse it (nothing to encode into)
    "mask_threshold": (float, 0.0, 1.0, True, True),
    "n_avg": (int, 1, 64, False, False),  # FlowEdit's paper averages 1; each draw is two network calls a step
    "n_min": (int, 0, None, False, False),
}
ATTENTION_MODES = ("replace", "refine")


def check_knob(name: str, value: Any) -> Any:
    """One method option checked by its range (None passes: not given)."""
    if value is None or name not in KNOB_RANGES:
        return value
    return check_number(name, value, *KNOB_RANGES[name])


def refuse_deterministic(eta: Any) -> None:
    """An encoder's η = 0: no draws to encode into (sampling and SDEdit take it: the ODE)."""
    if eta == 0:
        raise CycleDiffError("eta = 0 is deterministic DDIM and has no stochastic latent; use eta in (0, 1]")


@dataclass(frozen=True)
class AttentionEdit:
    """How CycleDiffusion's target pass reuses the source pass's attention (Prompt-to-Prompt; the processors are
    :mod:`cyclediff.models.attention`'s): ``mode`` replace (a word swap) or refine, the shares of the steps whose
    cross- and self-attention maps are reused, and per-word scales of the target's attention."""

    mode: str = "refine"
    cross_steps: float = 0.8
    self_steps: float = 0.0
    weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ATTENTION_MODES:
            raise CycleDiffError(f"attention mode must be replace (word swap) or refine; got {self.mode!r}")
        for name in ("cross_steps", "self_steps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise CycleDiffError(f"attention {name} is the share of the steps, in [0, 1]; got {value!r}")
        for word, scale in self.weights.items():
            if not isinstance(word, str) or not word.strip():
                raise CycleDiffError(f"attention weights map words to scales; got the key {word!r}")
            if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale < 0:
                raise CycleDiffError(f"the attention weight of {word!r} must be a finite number ≥ 0; got {scale!r}")

    @classmethod
    def of(cls, value: Any) -> AttentionEdit:
        """An AttentionEdit from itself, a mode name or a dict of its fields."""
        if isinstance(value, AttentionEdit):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                raise CycleDiffError(f"attention takes mode, cross_steps, self_steps and weights; got "
                                     f"{sorted(unknown)}")
            return cls(**value)
        raise CycleDiffError(f"attention is 'replace', 'refine', a dict or an AttentionEdit; got {value!r}")


@dataclass(frozen=True)
class Options:
    """The shared behaviour of a method's options (see the module doc). Capabilities are class constants."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: its output comes with a recorded latent (decode it again under other conditions)
    records_latent: ClassVar[bool] = False
    #: it needs rectified-flow models (velocities)
    flow_only: ClassVar[bool] = False
    #: the source condition's unconditional rows are the negative prompt's (FlowEdit's own convention)
    negative_on_source: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, check_knob(f.name, getattr(self, f.name)))

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def keeps_source(cls) -> bool:
        """Its source trajectory ends at the input and is shared: masks and many targets from one pass."""
        return "mask" in cls.knobs()

    @classmethod
    def attention_control(cls) -> bool:
        return "attention" in cls.knobs()

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    def check_grid(self, steps: int, strength: float) -> None:
        """Refuse a (steps, strength) this method cannot run, naming the fix (most run any)."""


@dataclass(frozen=True)
class _Stochastic(Options):
    eta: float = 0.1  # the sampler's η: the share of the DDPM posterior's variance each step draws


@dataclass(frozen=True)
class _Masked(_Stochastic):
    #: (B, 1, H, W) in [0, 1] at image size (white = may change), "auto" (where the two conditions' predictions
    #: disagree, at ``mask_threshold``) or None
    mask: Any = None
    mask_threshold: float = 0.5
    records_latent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        refuse_deterministic(self.eta)  # an encoder: its latent is its draws
        if isinstance(self.mask, str) and self.mask != "auto":
            raise CycleDiffError(f"mask must be a tensor, a mask image or 'auto'; got {self.mask!r}")


@dataclass(frozen=True)
class CycleDiffusion(_Masked):
    """CycleDiffusion (Wu & De la Torre 2023): the DPM-Encoder's posterior draws, decoded under the target."""

    attention: Any = None  # Prompt-to-Prompt: "refine", "replace", a dict of AttentionEdit's fields or one
    name: ClassVar[str] = "cyclediffusion"
    title: ClassVar[str] = "CycleDiffusion"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.attention is not None:
            object.__setattr__(self, "attention", AttentionEdit.of(self.attention))


@dataclass(frozen=True)
class EditFriendly(_Masked):
    """The edit-friendly DDPM inversion (Huberman-Spiegelglas et al. 2024): independent marginals q(x_t | x0)."""

    name: ClassVar[str] = "edit-friendly"
    title: ClassVar[str] = "edit-friendly DDPM"


@dataclass(frozen=True)
class FlowEdit(Options):
    """FlowEdit (Kulikov et al. 2025): inversion-free, fresh noise at every step, on rectified-flow models."""

    n_avg: int = 1  # velocity differences averaged per step
    n_min: int = 0  # the last steps sampled plainly with the target
    name: ClassVar[str] = "flowedit"
    title: ClassVar[str] = "FlowEdit"
    flow_only: ClassVar[bool] = True
    negative_on_source: ClassVar[bool] = True

    def check_grid(self, steps: int, strength: float) -> None:
        self.n_max(steps, strength, self.n_min)

    @staticmethod
    def n_max(steps: int, strength: float, n_min: int) -> int:
        """FlowEdit's n_max: it runs the last int(steps · strength) steps of the grid (its own rule, the
        variance-preserving cut); refused in one line naming the fix when that rounds to 0 or leaves no step to
        edit before the n_min plain ones."""
        from .schedule import steps_run

        n_max = steps_run(steps, strength, "floor")
        if n_max < 1:
            raise CycleDiffError(f"FlowEdit runs int(steps × strength) steps, and {steps} × {strength:g} rounds to 0 "
                                 f"steps; give more steps (≥ {math.ceil(1 / strength)} at this strength) or a "
                                 f"larger strength (≥ {1 / steps:.3g} at {steps} steps)")
        if n_min >= n_max:
            raise CycleDiffError(f"n_min ({n_min}) must be less than the {n_max} steps FlowEdit runs (int(steps × "
                                 f"strength) = int({steps} × {strength:g})): lower n_min, or give more steps or a "
                                 "larger strength")
        return n_max


@dataclass(frozen=True)
class SDEdit(_Stochastic):
    """SDEdit (Meng et al. 2022): one marginal draw at the first step, then the target's sampler, fresh noise;
    η = 0 samples the ODE from that draw, as diffusers' img2img pipelines do (a seed gives their image)."""

    name: ClassVar[str] = "sdedit"
    title: ClassVar[str] = "SDEdit"


@dataclass(frozen=True)
class DDIB(Options):
    """DDIB (Su et al. 2023): the deterministic DDIM inversion under the source, the target's ODE back."""

    name: ClassVar[str] = "ddib"
    title: ClassVar[str] = "DDIB"


OPTIONS: dict[str, type[Options]] = {c.name: c for c in (CycleDiffusion, SDEdit, DDIB, EditFriendly, FlowEdit)}
METHODS = tuple(OPTIONS)
KEEPS_SOURCE = tuple(n for n, c in OPTIONS.items() if c.keeps_source())


def owners(knob: str) -> list[type[Options]]:
    return [c for c in OPTIONS.values() if knob in c.knobs()]


def knob_default(knob: str) -> Any:
    """A knob's default (one value, whichever methods share it)."""
    defaults = {f.default for c in owners(knob) for f in fields(c) if f.name == knob}
    assert len(defaults) == 1, f"the methods that share {knob} disagree on its default"
    return defaults.pop()


def options_of(method: str | Options, *, strict: bool = True, **knobs: Any) -> Options:
    """A method's options from themselves, or from its name and flat knobs (settings, command lines; None: not
    given). With ``strict``, a knob of other methods set away from its default is one error naming the fix;
    without it (a sweep over methods) such knobs are left out."""
    if isinstance(method, Options):
        return method
    if not isinstance(method, str) or method not in OPTIONS:
        raise CycleDiffError(f"method must be one of {', '.join(METHODS)} or a method's options (e.g. "
                             f"FlowEdit(n_avg=2)); got {method!r}")
    cls = OPTIONS[method]
    if knobs.get("mask") is not None and not cls.keeps_source():
        raise CycleDiffError(f"masks work with methods {' and '.join(KEEPS_SOURCE)}; not with {method}")
    own = {k: v for k, v in knobs.items() if k in cls.knobs() and v is not None}
    foreign = [k for k, v in knobs.items() if k not in cls.knobs() and v is not None and owners(k)
               and v != knob_default(k)]
    if strict and foreign:
        whose = " / ".join(sorted({o.title for k in foreign for o in owners(k)}))
        them = "them" if len(foreign) > 1 else "it"
        methods = " or ".join(sorted({o.name for k in foreign for o in owners(k)}))
        raise CycleDiffError(f"{' and '.join(foreign)} {'are' if len(foreign) > 1 else 'is'} {whose}'s; method "
                             f"{method} does not use {them}: drop {' and '.join(foreign)} or use method {methods}")
    return cls(**own)


__all__ = ["DDIB", "KEEPS_SOURCE", "METHODS", "OPTIONS", "AttentionEdit", "CycleDiffusion", "EditFriendly",
           "FlowEdit", "Options", "SDEdit", "options_of"]

"""Every task setting's default and valid range, defined once: the Python API's signatures, the CLI's options and
job files all read them from here, so they cannot drift apart."""

from __future__ import annotations

import math
from typing import Any

from .errors import CycleDiffError

METHODS = ("cyclediffusion", "sdedit", "ddib")
CLIP_MODEL = "openai/clip-vit-base-patch32"

EDIT: dict[str, Any] = {"strength": 0.8, "steps": 100, "eta": 0.1, "guidance_scale": 3.0,
                        "source_guidance_scale": 1.0, "method": "cyclediffusion"}
TRANSLATE: dict[str, Any] = {"strength": 0.85, "steps": 100, "eta": 0.1, "refine_steps": 0,
                             "method": "cyclediffusion"}
GUIDE: dict[str, Any] = {"weight": 500.0, "langevin_steps": 200, "step_size": 0.05, "steps": 50, "eta": 1.0,
                         "augment_copies": 8, "clip_model": CLIP_MODEL}
ENCODE: dict[str, Any] = {"steps": 100, "strength": 1.0, "eta": 0.1}
SAMPLE: dict[str, Any] = {"steps": 50, "eta": 1.0}

# name -> (kind, low, high, low open?) for the numeric settings a user may type; None: unbounded
_RANGES: dict[str, tuple[type, float | None, float | None, bool]] = {
    "strength": (float, 0.0, 1.0, True),
    "steps": (int, 1, None, False),
    "eta": (float, 0.0, 1.0, True),
    "guidance_scale": (float, 0.0, None, False),
    "source_guidance_scale": (float, 0.0, None, False),
    "refine_steps": (int, 0, None, False),
    "weight": (float, None, None, False),
    "langevin_steps": (int, 0, None, False),
    "step_size": (float, 0.0, None, True),
    "augment_copies": (int, 1, None, False),
    "grad_steps": (int, 1, None, False),
    "source_class": (int, 0, None, False),
    "target_class": (int, 0, None, False),
    "class_label": (int, 0, None, False),
}
_TEXT = ("prompt", "source_prompt", "target_prompt", "negative_prompt", "text")


def check_number(name: str, value: Any, kind: type = float, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> Any:
    """``value`` as ``kind`` when it is a finite number in range; else one error naming the setting and the range."""
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok_type = ok_type and float(value).is_integer()
    if not ok_type or not math.isfinite(value):
        what = "an integer" if kind is int else "a finite number"
        raise CycleDiffError(f"{name} must be {what}; got {value!r}")
    if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise CycleDiffError(f"{name} must lie in {'(' if low_open else '['}{lo}, {hi}]; got {value!r}")
    return kind(value)


def check_setting(name: str, value: Any) -> Any:
    """Validate one task setting by name (numbers by range, texts as strings, methods by name); None passes."""
    if value is None:
        return None
    if name in _RANGES:
        kind, low, high, low_open = _RANGES[name]
        if name == "eta" and value == 0:
            raise CycleDiffError("eta = 0 is deterministic DDIM and has no stochastic latent; use eta in (0, 1]")
        return check_number(name, value, kind, low, high, low_open)
    if name in _TEXT and not (isinstance(value, str) or (isinstance(value, list)
                                                        and all(isinstance(v, str) for v in value))):
        raise CycleDiffError(f"{name} must be a string; got {value!r}")
    if name == "method":
        for m in value if isinstance(value, list) else [value]:
            if m not in METHODS:
                raise CycleDiffError(f"method must be one of {', '.join(METHODS)}; got {m!r}")
    return value


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Every setting of a task checked up front (before any model loads or any unit runs)."""
    return {name: check_setting(name, value) for name, value in settings.items()}

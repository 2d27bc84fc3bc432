"""What the web forms send, read as settings: the settings a form gives (:func:`form_settings`), its numbers
(:func:`whole`, :func:`label_of`), its comma list of strengths and its field of a family's own condition keywords
(:func:`family_keywords`)."""

from __future__ import annotations

from typing import Any

from ..batch.sheets import strengths_from
from ..errors import CycleDiffError
from ..jobs.sweep import variant
from ..models.conditions import family_condition, parse_condition
from ..settings import Settings, check_setting
from .uploads import public

LABEL_MAX = 2**31 - 1  # the largest class label a form takes


def form_settings(kind: type[Settings], form: dict[str, Any]) -> Any:
    """The settings a form gives, through the job files' constructor (``from_mapping``: an unknown field is one
    error). The form sends every knob it shows (η always); the chosen method takes its own, and the knobs it does
    not take are left at their defaults, as a job's sweep over methods leaves them."""
    method = check_setting("method", form.get("method"), required=True)
    return variant(kind.from_mapping({**form, "method": None}), {}, method)


def family_keywords(model: Any, text: Any) -> dict[str, Any]:
    """The form's "target's own condition keywords" (``KEY=VALUE`` per line), checked against the model (one line
    naming what it takes)."""
    try:
        return family_condition(model, parse_condition(str(text or "")), side="target")
    except CycleDiffError as err:
        raise CycleDiffError(f"own condition keywords: {public(str(err), 300)}") from err


def strengths_of(text: Any) -> tuple[float, ...] | None:
    """The form's "strengths to compare" (a comma list), or None when it is empty (the slider's strength)."""
    if not str(text or "").strip():
        return None
    try:
        return strengths_from(text)
    except CycleDiffError as err:
        raise CycleDiffError(f"strengths to compare: {public(str(err), 200)}") from err


def whole(value: Any) -> Any:
    """Sliders send floats (6.0): whole numbers as int, anything else as given (then refused by the checks)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def label_of(value: Any, what: str) -> int:
    """A class label from a form's text or number box; anything else is one error naming ``what``."""
    try:
        if isinstance(value, float) and not value.is_integer():  # NaN, inf, 2.5 from a number box
            raise ValueError(value)
        number = int(value) if isinstance(value, float) else int(str(value).strip())
    except (ValueError, OverflowError) as err:
        raise CycleDiffError(f"{what} must be a whole number; got {public(repr(value), 200)}") from err
    if number < 0:
        raise CycleDiffError(f"{what} must be 0 or more; got {number}")
    if number > LABEL_MAX:  # no model has that many classes (and torch takes 64-bit ones only)
        raise CycleDiffError(f"{what} must be at most {LABEL_MAX}; got {number:.4g}")
    return number

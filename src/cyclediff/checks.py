"""The number, choice and JSON-object checks every layer shares: one error naming the setting, what it must be and
what it got. (A bool is never a number here: ``True`` is not a step count.)"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from .errors import CycleDiffError


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_number(name: str, value: Any, kind: type = float, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, error: type[Exception] = CycleDiffError) -> Any:
    """``value`` as ``kind`` when it is a finite number in range; else one error naming the setting and the range."""
    ok_type = is_number(value) and (kind is not int or float(value).is_integer())
    if not ok_type:
        what = "an integer" if kind is int else "a finite number"
        raise error(f"{name} must be {what}; got {value!r}")
    if (low is not None and (value < low or (low_open and value == low))) or (
            high is not None and (value > high or (high_open and value == high))):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise error(f"{name} must lie in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}; "
                    f"got {value!r}")
    return kind(value)


def check_count(name: str, value: Any, low: int = 1, error: type[Exception] = CycleDiffError) -> int:
    """An integer ≥ ``low`` (a batch size, a number of copies)."""
    if not is_int(value) or value < low:
        what = "a positive integer" if low == 1 else f"an integer ≥ {low}"
        raise error(f"{name} must be {what}; got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any], error: type[Exception] = CycleDiffError) -> Any:
    """One of ``choices`` (of the same type: 1 is not True)."""
    choices = tuple(choices)
    if not any(value == c and type(value) is type(c) for c in choices):
        names = [str(c).lower() if isinstance(c, bool) else str(c) for c in choices]
        raise error(f"{name} must be one of {', '.join(names)}; got {value!r}")
    return value


def check_text(name: str, value: Any, *, many: bool = True) -> Any:
    """A string (or, with ``many``, a list of strings: one per image)."""
    if isinstance(value, str) or (many and isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return value
    raise CycleDiffError(f"{name} must be a string; got {value!r}")


def parse_size(text: str | None) -> tuple[int, int] | int | None:
    """'512' (shorter side) or '768x512' (width × height) → 512 or (512, 768) as (H, W)."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < 1:
        raise CycleDiffError(f"size must be N (shorter side) or WxH, e.g. 512 or 768x512; got {text!r}")
    if max(values) > 65536:
        raise CycleDiffError(f"size {text!r} is over 65536 pixels a side; give a smaller --size")
    return values[0] if len(values) == 1 else (values[1], values[0])


def json_object(text: str, where: str, error: type[Exception] = CycleDiffError) -> dict:
    """``text`` parsed as a JSON object, or one ``error`` naming ``where`` (a file, a file and line)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{where}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise error(f"{where}: must be a JSON object; got {type(value).__name__}")
    return value

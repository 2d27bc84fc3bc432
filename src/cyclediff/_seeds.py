"""Seeds as the user writes them ('0-3,7'), counted before they are expanded, each one a torch seed."""

from __future__ import annotations

import re

from .errors import CycleDiffError
from .settings import RUN


def seed_range(text: str, limit: int = RUN.max_seeds) -> list[int]:
    """'0-3,7' → [0, 1, 2, 3, 7]. The seeds are counted before any range is expanded: more than ``limit`` is one
    error (a typo like 0-99999999 must not fill the memory)."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise CycleDiffError(f"{part!r} is not a seed or a range like 0-7")
        lo, hi = seed_limit(int(m[1])), seed_limit(int(m[2] or m[1]))
        if hi < lo:
            raise CycleDiffError(f"range {part!r} runs backwards")
        ranges.append((lo, hi))
    check_seed_count(sum(hi - lo + 1 for lo, hi in ranges), limit)
    return [s for lo, hi in ranges for s in range(lo, hi + 1)]


def check_seed_count(count: int, limit: int = RUN.max_seeds) -> int:
    """At most ``limit`` seeds (results) in one request, or one error saying so."""
    if count > limit:
        raise CycleDiffError(f"at most {limit} seeds per run; got {count} (give a shorter range)")
    return count


def seed_limit(seed: int) -> int:
    """A seed as torch.Generator.manual_seed takes it (0..2^63 − 1 here, so that it is also a signed 64-bit JSON
    number everywhere), or one error."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise CycleDiffError(f"seeds must be integers from 0 to 2^63 - 1; got {seed!r}")
    return seed

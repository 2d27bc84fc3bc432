"""A sweep over methods (a job's list of methods, an evaluation's, a benchmark's): each unit is the shared
settings under one method, the other methods' knobs left at their defaults."""

from __future__ import annotations

from typing import Any

from ..options import OPTIONS, knob_default, owners
from ..settings import Settings, check_setting


def variant(settings: Settings, overrides: dict[str, Any], method: str | None) -> Settings:
    """An item's settings under one method of a sweep: a method's knobs (FlowEdit's n_avg, n_min, …) are its own,
    so the sweep's other methods run (and record) their defaults."""
    changes = dict(overrides)
    if method:
        changes["method"] = check_setting("method", method, required=True)  # before its knobs are looked up
        changes.update({k: knob_default(k) for k in settings.names() if owners(k) and k != "mask"
                        and k not in OPTIONS[method].knobs()})
    return settings.replace(**changes)


__all__ = ["variant"]

"""The edit settings people use with a model: its family record's defaults (models/families.py), then the model's
own (a distilled checkpoint's few steps, a demo model's ``cyclediff.json``). Front ends apply them where the user
gave no value (the command line's options left at their defaults, the web form's starting values)."""

from __future__ import annotations

from typing import Any

from .families import FAMILIES


def recommended(model: Any) -> dict[str, Any]:
    """``{setting: value}`` recommended for ``model`` ({}: the settings' own defaults serve)."""
    name = getattr(model, "family", None)
    record = next((f for f in FAMILIES if f.name == name), None)
    return {**(dict(record.defaults) if record is not None else {}), **(getattr(model, "defaults", None) or {})}


__all__ = ["recommended"]

"""The demo models: the shipped ones (``demo:<name>``, package data loaded by :func:`cyclediff.models.load`) or
those ``cyclediff demo train --out DIR`` wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CycleDiffError


def load_demo(name: str, *, root: Path | None = None, device: Any = None) -> Any:
    """The demo model ``name`` in float32: the shipped one, or the one trained into ``root``."""
    import torch

    from ..models import load
    from ..models.pixel import PixelDenoiser

    if root is None:
        return load(f"demo:{name}", device=device)
    path = Path(root) / name
    if not (path / "config.json").is_file():
        raise CycleDiffError(f"the demo model {name} is missing at {path}; make it with `cyclediff demo train`")
    model = PixelDenoiser.from_pretrained(path, dtype=torch.float32, device=device)
    model.model_id = f"demo:{name}"
    return model

"""The demo models shipped inside the package, addressed as ``demo:<name>``."""

from __future__ import annotations

from pathlib import Path

from ..errors import CycleDiffError
from .train import MODELS

WEIGHTS = Path(__file__).parent / "weights"


def demo_path(name: str, root: Path | None = None) -> Path:
    """The folder of demo model ``name`` (digits, digit-3, digit-8)."""
    if name not in MODELS:
        names = ", ".join(f"demo:{m}" for m in MODELS)
        raise CycleDiffError(f"unknown demo model {name!r}; the demo models are {names}")
    path = (root or WEIGHTS) / name
    if not (path / "config.json").is_file():
        raise CycleDiffError(f"the demo model {name} is missing at {path}; make it with `cyclediff demo train`")
    return path


def load_demo(name: str, *, root: Path | None = None, device=None):
    """The demo model ``name`` in float32 (the shipped weights are stored in float16 to keep the package small)."""
    import torch

    from ..models.pixel import PixelDenoiser

    den = PixelDenoiser.from_pretrained(demo_path(name, root), dtype=torch.float32, device=device)
    den.model_id = f"demo:{name}"
    return den

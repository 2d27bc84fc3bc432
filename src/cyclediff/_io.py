"""Files: atomic writes and image reading / writing."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .errors import CycleDiffError


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    Readers see the old file or the new one, never a partial one; on failure no temporary file is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_image(path: str | os.PathLike, *, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image file as a (1, C, H, W) float32 tensor in [-1, 1]; resized (bicubic) to ``size`` = (H, W)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert({1: "L", 3: "RGB"}.get(channels, "RGB"))
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.float32) / 127.5 - 1
    except (OSError, UnidentifiedImageError) as err:
        raise CycleDiffError(f"cannot read image {path}: {err}") from err
    if channels not in (1, 3):
        raise CycleDiffError(f"images can be read for 1- or 3-channel models only; this model has {channels}")
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))[None]


def save_image(x: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write one (C, H, W) image in [-1, 1] as PNG, atomically."""
    from PIL import Image

    array = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    img = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))

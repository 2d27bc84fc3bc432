"""Files: atomic writes and image reading / writing."""

from __future__ import annotations

import os
import re
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


DEFAULT_MAX_PIXELS = 4096 * 4096


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
    return values[0] if len(values) == 1 else (values[1], values[0])


def load_image(
    path: str | os.PathLike,
    *,
    channels: int = 3,
    size: tuple[int, int] | int | None = None,
    multiple: int = 1,
    fit: str = "crop",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Read any image Pillow reads as a (1, C, H, W) float32 tensor in [0, 1].

    EXIF orientation is applied; RGBA / LA are composited on white; palette, CMYK, grayscale and 16-bit images
    are converted (16-bit keeps its precision). Size policy: ``size`` (H, W) resizes to exactly that; an int
    resizes the shorter side to it, keeping the aspect ratio. Sides are then brought to a multiple of
    ``multiple``: ``fit="crop"`` center-crops the remainder (at most multiple − 1 pixels), ``fit="resize"``
    resizes to the nearest multiple. Images over ``max_pixels`` are refused before their pixels are decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if fit not in ("crop", "resize"):
        raise CycleDiffError(f"fit must be 'crop' or 'resize'; got {fit!r}")
    path = Path(path)
    if not path.is_file():
        raise CycleDiffError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise CycleDiffError(
                    f"{path} is {w}×{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; "
                    "downscale it first (or raise --max-pixels if you trust the file)"
                )
            img = ImageOps.exif_transpose(img)
            array = _to_float_array(img, channels)
    except CycleDiffError:
        raise
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
        raise CycleDiffError(f"cannot read image {path}: {err}") from err
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]
    return _resize(x, size=size, multiple=multiple, fit=fit)


def _to_float_array(img, channels: int) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] from a PIL image of any mode."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale: keep the precision
        gray = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if img.mode.startswith("I;16") or gray.max() > 255 else 255.0
        gray = np.clip(gray / scale, 0, 1)[..., None]
        return gray if channels == 1 else np.repeat(gray, 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    img = img.convert("L" if channels == 1 else "RGB")
    array = np.asarray(img, dtype=np.float32) / 255.0
    return array[..., None] if array.ndim == 2 else array


def _resize(x: torch.Tensor, *, size, multiple: int, fit: str) -> torch.Tensor:
    import torch.nn.functional as F

    h, w = x.shape[2:]
    if isinstance(size, int):
        scale = size / min(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size is not None and tuple(size) != (h, w):
        x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        h, w = x.shape[2:]
    if multiple > 1 and (h % multiple or w % multiple):
        if fit == "crop" and h >= multiple and w >= multiple:
            nh, nw = max(multiple, h - h % multiple), max(multiple, w - w % multiple)
            top, left = (h - nh) // 2, (w - nw) // 2
            x = x[:, :, top:top + nh, left:left + nw]
        else:
            nh, nw = (max(multiple, round(v / multiple) * multiple) for v in (h, w))
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    return x


def save_image(x: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write one (C, H, W) image in [0, 1] as PNG, atomically."""
    from PIL import Image

    array = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    img = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def seed_range(text: str) -> list[int]:
    """'0-3,7' → [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise CycleDiffError(f"{part!r} is not a seed or a range like 0-7")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise CycleDiffError(f"range {part!r} runs backwards")
        seeds.extend(range(lo, hi + 1))
    return seeds

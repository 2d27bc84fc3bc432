"""Image files: any image Pillow reads, sized and brought to a multiple on the way in; 8-bit PNG out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ._files import atomic_write
from .errors import CycleDiffError
from .settings import RUN, check_setting


def load_image(
    path: str | os.PathLike,
    *,
    channels: int = 3,
    size: tuple[int, int] | int | None = None,
    multiple: int = 1,
    fit: str = RUN.fit,
    max_pixels: int = RUN.max_pixels,
) -> torch.Tensor:
    """Read any image Pillow reads as a (1, C, H, W) float32 tensor in [0, 1].

    EXIF orientation is applied; RGBA / LA are composited on white; palette, CMYK, grayscale and 16-bit images
    are converted (16-bit keeps its precision). Size policy: ``size`` (H, W) resizes to exactly that; an int
    resizes the shorter side to it, keeping the aspect ratio. Sides are then brought to a multiple of
    ``multiple``: ``fit="crop"`` center-crops the remainder (at most multiple − 1 pixels), ``fit="resize"``
    resizes to the nearest multiple. Images over ``max_pixels`` are refused before their pixels are decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    check_setting("fit", fit, required=True)
    path = Path(path)
    if path.is_dir():
        raise CycleDiffError(f"{path} is a folder, not an image; give its image files (e.g. {path}/*.png)")
    if not path.is_file():
        raise CycleDiffError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            _check_pixels(path, (h, w), max_pixels, "")
            _check_pixels(path, _target_size((h, w), size, multiple, fit), max_pixels, "after resizing")
            if _is_16bit_color_png(path):
                array = _png16_array(path, img, channels)
            else:
                img = ImageOps.exif_transpose(img)
                array = _to_float_array(img, channels)
    except CycleDiffError:
        raise
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
        raise CycleDiffError(f"cannot read image {path}: {err}") from err
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]
    return _resize(x, size=size, multiple=multiple, fit=fit)


def _check_pixels(path: Path, hw: tuple[int, int], max_pixels: int, when: str) -> None:
    h, w = hw
    if w * h > max_pixels:
        raise CycleDiffError(
            f"{path} is {w}×{h} = {w * h:,} pixels{' ' + when if when else ''}, over the limit of {max_pixels:,}; "
            + ("give a smaller --size" if when else "downscale it first")
            + " (or raise --max-pixels if you trust the file)"
        )


def _scaled_size(hw: tuple[int, int], size) -> tuple[int, int]:
    """(H, W) after ``size``: an int for the shorter side (aspect kept), (H, W) exactly, or None (unchanged)."""
    h, w = hw
    if isinstance(size, int):
        scale = size / min(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))
    return (h, w) if size is None else (int(size[0]), int(size[1]))


def _multiple_size(hw: tuple[int, int], multiple: int, fit: str) -> tuple[tuple[int, int], bool]:
    """((H, W) brought to a multiple of ``multiple``, whether by center-cropping rather than resizing)."""
    h, w = hw
    if multiple <= 1 or not (h % multiple or w % multiple):
        return (h, w), False
    if fit == "crop" and h >= multiple and w >= multiple:
        return (max(multiple, h - h % multiple), max(multiple, w - w % multiple)), True
    return (max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple)), False


def _target_size(hw: tuple[int, int], size, multiple: int, fit: str) -> tuple[int, int]:
    """The (H, W) :func:`_resize` will produce, computed before any pixel is decoded."""
    return _multiple_size(_scaled_size(hw, size), multiple, fit)[0]


def _is_16bit_color_png(path: Path) -> bool:
    """A PNG with 16 bits per sample in colour (RGB or RGBA), which Pillow reads at 8 bits."""
    with open(path, "rb") as f:
        head = f.read(29)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 6)


def _png16_array(path: Path, img, channels: int) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] of a 16-bit colour PNG at full precision (pypng), alpha composited on white,
    EXIF orientation applied."""
    import png

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        data = np.vstack([np.asarray(r, dtype=np.float32) for r in rows])
    except png.Error as err:
        raise CycleDiffError(f"cannot read image {path}: {err}") from err
    planes = info["planes"]
    x = data.reshape(height, width, planes) / float(2 ** info["bitdepth"] - 1)
    if planes in (2, 4):  # alpha
        x = x[..., :-1] * x[..., -1:] + (1 - x[..., -1:])
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    x = _orient(x, img.getexif().get(0x0112, 1))
    if channels == 1:  # ITU-R 601 luma, as Pillow's "L" conversion
        x = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    return np.ascontiguousarray(x, dtype=np.float32)


def _orient(x: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, C) array."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}
    return ops[orientation](x) if orientation in ops else x


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

    def resample(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(t, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)

    h, w = x.shape[2:]
    scaled = _scaled_size((h, w), size)
    if scaled != (h, w):
        x = resample(x, scaled)
    (nh, nw), crop = _multiple_size(scaled, multiple, fit)
    if (nh, nw) != scaled:
        if crop:
            top, left = (scaled[0] - nh) // 2, (scaled[1] - nw) // 2
            x = x[:, :, top:top + nh, left:left + nw]
        else:
            x = resample(x, (nh, nw))
    return x


def as_written(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] exactly as :func:`save_image` writes them (8 bits a channel), as float32 on the CPU.
    Metrics recorded for an output are computed from this, so they are as reproducible as the file itself."""
    return _to_uint8(x).float() / 255


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)


def save_image(x: torch.Tensor, path: str | os.PathLike, *, text: dict[str, str] | None = None) -> Path:
    """Write one (C, H, W) image in [0, 1] as PNG, atomically; ``text`` goes into PNG text chunks."""
    from PIL import Image, PngImagePlugin

    array = _to_uint8(x).numpy()
    img = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG", pnginfo=info))

"""Clip files as a video model takes them: (1, C, F, H, W) in [0, 1], cut and sized the way the model's pipeline
requires (its ``fit_clip``), every change said in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .._video import Clip, read_clip
from ..errors import IncompatibleModelError
from ..models.base import Model
from ..models.video import is_video_model
from ..settings import RUN


def check_video_model(model: Any, path: Path) -> None:
    """An image model given a clip: one line naming the fix."""
    if not is_video_model(model):
        raise IncompatibleModelError(
            f"{Path(path).name} is a clip, but the model is {getattr(model, 'kind', 'an image model')}, which edits "
            "images; give a video model (e.g. a Wan folder), or the clip's frames as images (FRAMES/*.png)")


def read_clip_for(model: Model, path: Any, *, size: str | None, fit: str, max_pixels: int,
                  max_frames: int | None = RUN.max_frames, stride: int = RUN.stride) -> Clip:
    """A clip file (or folder of frames) as ``model`` takes it: its channels, sides brought to its multiple (``size``
    resizes first, as for images), at most ``max_frames`` frames (by default the model's own clip length), then
    ``model.fit_clip(F, H, W)``'s frames and size where the model has one. :attr:`Clip.notes` says each change."""
    from ..checks import parse_size

    check_video_model(model, path)
    codec = model.codec
    clip = read_clip(path, max_frames=max_frames or model.frames, stride=stride, channels=codec.channels,
                     size=parse_size(size) or codec.image_size, multiple=codec.multiple, fit=fit,
                     max_pixels=max_pixels)
    frames, notes = clip.frames, list(clip.notes)
    fit_clip = getattr(model, "fit_clip", None)
    if fit_clip is not None:
        f, h, w, note = fit_clip(*frames.shape[:1], *frames.shape[2:])
        frames = _fitted(frames[:f], (h, w), fit)
        if note:
            notes.append(f"{Path(path).name}: {note}")
    return Clip(frames.contiguous(), clip.fps, notes)


def _fitted(frames: torch.Tensor, hw: tuple[int, int], fit: str) -> torch.Tensor:
    """Frames brought to (H, W): center-cropped where smaller (``fit="crop"``), else resized."""
    import torch.nn.functional as F

    h, w = frames.shape[2:]
    if (h, w) == tuple(hw):
        return frames
    if fit == "crop" and hw[0] <= h and hw[1] <= w:
        top, left = (h - hw[0]) // 2, (w - hw[1]) // 2
        return frames[:, :, top:top + hw[0], left:left + hw[1]]
    return F.interpolate(frames, size=tuple(hw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def clip_frames(x: torch.Tensor) -> torch.Tensor:
    """One clip (C, F, H, W) of a (B, C, F, H, W) batch as frames (F, C, H, W), as :func:`write_clip` takes them."""
    return x.transpose(0, 1)

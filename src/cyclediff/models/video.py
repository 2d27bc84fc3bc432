"""What the video families share about clips and their latents (Wan, LTX-Video, HunyuanVideo): whether a model makes
clips, the frames and size a clip is cut to (the first 1 + temporal·k frames, sides down to a multiple), and the
check of 5-D latents."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import IncompatibleModelError


def is_video_model(model: Any) -> bool:
    """Whether ``model`` makes clips: it says the frames of its default clip (``model.frames``) and its samples
    have a frame axis ((C, f, h, w))."""
    frames = getattr(model, "frames", None)
    return isinstance(frames, int) and not isinstance(frames, bool) and len(getattr(model, "sample_shape", ())) == 4


def fit_clip_to(name: str, frames: int, height: int, width: int, *, temporal: int,
                multiple: int) -> tuple[int, int, int, str]:
    """(F', H', W', note) for a clip of ``frames`` at H×W: the first 1 + ``temporal``·k frames (a clip cannot be
    lengthened), the sides cut down to multiples of ``multiple``; the note says what changed ("" when nothing)."""
    if frames < 1 or height < multiple or width < multiple:
        raise IncompatibleModelError(f"{name} takes clips of at least 1 frame of {multiple}×{multiple} pixels; got "
                                     f"{frames} frames of {height}×{width}")
    f = (frames - 1) // temporal * temporal + 1
    h, w = height // multiple * multiple, width // multiple * multiple
    notes = ([f"{frames} frames cut to {f} ({name} takes 1 + {temporal}·k)"] if f != frames else []) + (
        [f"{height}×{width} cut to {h}×{w} (multiples of {multiple})"] if (h, w) != (height, width) else [])
    return f, h, w, "; ".join(notes)


def check_video_latents(x: torch.Tensor, channels: int, patch: tuple[int, int] = (1, 1)) -> None:
    """``x`` must be (B, channels, f, h, w) latents whose sides are multiples of the transformer's ``patch``."""
    if x.ndim != 5 or x.shape[1] != channels:
        raise IncompatibleModelError(f"this model works on {channels}-channel video latents (B, {channels}, f, h, w); "
                                     f"got shape {tuple(x.shape)}. Encode clips with model.codec first")
    if x.shape[3] % patch[0] or x.shape[4] % patch[1]:
        raise IncompatibleModelError(f"latent sides must be multiples of {patch[0]}; got {tuple(x.shape[3:])}")


__all__ = ["check_video_latents", "fit_clip_to", "is_video_model"]

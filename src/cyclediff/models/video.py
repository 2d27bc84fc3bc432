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


#: what a user can do about a clip too short (or too small) for a model
SHORT_CLIP_FIX = "give a longer (or larger) clip, a smaller --stride, or a larger --max-frames"


def frame_count(n: int) -> str:
    """``n`` frames in words ("1 frame", "8 frames")."""
    return "1 frame" if n == 1 else f"{n} frames"


def fit_clip_to(name: str, frames: int, height: int, width: int, *, temporal: int, multiple: int,
                patch_t: int = 1) -> tuple[int, int, int, str]:
    """(F', H', W', note) for a clip of ``frames`` at H×W: the first 1 + ``temporal``·k frames whose latent frames
    (k + 1) are a multiple of the transformer's temporal patch ``patch_t`` (a clip cannot be lengthened), the sides
    cut down to multiples of ``multiple``; the note says what changed ("" when nothing)."""
    least = 1 + temporal * (patch_t - 1)
    if frames < least or height < multiple or width < multiple:
        counted = frame_count(least)
        raise IncompatibleModelError(f"{name} takes clips of at least {counted} of {multiple}×{multiple} pixels; got "
                                     f"{frame_count(frames)} of {height}×{width}: {SHORT_CLIP_FIX}")
    f = ((frames - 1) // temporal + 1) // patch_t * patch_t * temporal - temporal + 1
    h, w = height // multiple * multiple, width // multiple * multiple
    takes = f"1 + {temporal}·k" + (f", k + 1 a multiple of {patch_t}" if patch_t > 1 else "")
    notes = ([f"{frames} frames cut to {f} ({name} takes {takes})"] if f != frames else []) + (
        [f"{height}×{width} cut to {h}×{w} (multiples of {multiple})"] if (h, w) != (height, width) else [])
    return f, h, w, "; ".join(notes)


def check_video_latents(x: torch.Tensor, channels: int, patch: tuple[int, int] = (1, 1), patch_t: int = 1) -> None:
    """``x`` must be (B, channels, f, h, w) latents whose sides are multiples of the transformer's ``patch`` and
    whose frames are a multiple of its temporal patch ``patch_t``."""
    if x.ndim != 5 or x.shape[1] != channels:
        raise IncompatibleModelError(f"this model works on {channels}-channel video latents (B, {channels}, f, h, w); "
                                     f"got shape {tuple(x.shape)}. Encode clips with model.codec first")
    if x.shape[3] % patch[0] or x.shape[4] % patch[1]:
        raise IncompatibleModelError(f"latent sides must be multiples of the transformer's {patch[0]}×{patch[1]} "
                                     f"patches; got {tuple(x.shape[3:])} (model.fit_clip(F, H, W) gives the size)")
    if x.shape[2] % patch_t:
        raise IncompatibleModelError(f"latent frames must be a multiple of the transformer's temporal patch "
                                     f"{patch_t}; got {x.shape[2]} (model.fit_clip(F, H, W) gives the frames to keep)")


__all__ = ["check_video_latents", "fit_clip_to", "is_video_model"]

"""Pixel-space video models: a rectified-flow ``UNet2DModel`` over clips whose frames are folded into its channels
(F frames of C channels: a UNet of F·C input and output channels). The core sees the clips as they are, 5-D samples
(B, C, F, H, W) in [−1, 1]; only the network call folds and unfolds the frame axis. The shipped
``demo:moving-digits`` is one (its ``cyclediff.json`` says ``"frames"``, which picks this adapter)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ._accel import UNetRunner
from .codec import Codec, PixelCodec
from .pixel import FlowPixelDenoiser


class _FramesFolded(torch.nn.Module):
    """A UNet2DModel called on (B, C, F, H, W) clips: frames folded into channels for the call (channel-major,
    (C, F) → C·F), its output unfolded back."""

    def __init__(self, unet: torch.nn.Module, frames: int) -> None:
        super().__init__()
        self.unet, self.frames = unet, frames

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        b, c, f, h, w = x.shape
        out = self.unet(x.reshape(b, c * f, h, w), timesteps, return_dict=False, **kwargs)[0]
        return (out.reshape(b, c, f, h, w),)


class PixelClipCodec(PixelCodec):
    """Clips (B, C, F, H, W) in [0, 1] ↔ samples in [−1, 1], for a model of ``frames`` frames (no time
    compression: ``temporal`` is 1)."""

    def __init__(self, channels: int, image_size: tuple[int, int], frames: int, *,
                 foreground: str | None = None) -> None:
        super().__init__(channels, image_size, foreground=foreground)
        self.frames = frames

    def encode(self, images01: torch.Tensor, generator: Any = None) -> torch.Tensor:
        if images01.ndim != 5 or images01.shape[2] != self.frames:
            raise IncompatibleModelError(
                f"this video model encodes clips (B, {self.channels}, {self.frames}, H, W) in [0, 1]; got shape "
                f"{tuple(images01.shape)} (model.fit_clip(F, H, W) gives the frames to keep)")
        return super().encode(images01, generator)

    def same_space(self, other: Codec) -> bool:
        return isinstance(other, PixelClipCodec) and other.frames == self.frames


class FlowPixelVideo(FlowPixelDenoiser):
    """A rectified-flow UNet2DModel whose channels are ``frames`` frames of C channels each, over 5-D samples
    (B, C, F, H, W); conditions and guidance as :class:`~cyclediff.models.pixel.PixelDenoiser` (class labels)."""

    kind = "a pixel-space video UNet (frames folded into channels; no text encoder)"
    family = "flow-pixel-video"  # its record in models/families.py

    def __init__(self, unet: torch.nn.Module, scheduler_config: Any, *, frames: int, **kwargs: Any) -> None:
        super().__init__(unet, scheduler_config, **kwargs)
        channels = int(self.unet.config.in_channels)
        if not isinstance(frames, int) or frames < 1 or channels % frames or \
                int(self.unet.config.out_channels) != channels:
            raise CycleDiffError(f"a frames-folded video UNet needs in_channels = out_channels = frames × C; this "
                                 f"one has {channels} in, {self.unet.config.out_channels} out for frames={frames!r}")
        self.frames = frames
        self.runner = UNetRunner(_FramesFolded(self.unet, frames))

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels) // self.frames

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        """(C, F, H, W) of the clips it was trained on."""
        c, h, w = super().sample_shape
        return (c, self.frames, h, w)

    @property
    def codec(self) -> PixelClipCodec:
        c, _, h, w = self.sample_shape
        return PixelClipCodec(c, (h, w), self.frames, foreground=self.foreground)

    @property
    def _factor(self) -> int:
        return 2 ** (len(self.unet.config.down_block_types) - 1)

    def fit_clip(self, frames: int, height: int, width: int) -> tuple[int, int, int, str]:
        """(F', H', W', note): the first ``self.frames`` frames (a shorter clip is refused), the sides cut down to
        multiples of the UNet's factor; the note says what changed ("" when nothing)."""
        m = self._factor
        if frames < self.frames or height < m or width < m:
            raise IncompatibleModelError(f"this model takes clips of {self.frames} frames of at least {m}×{m} pixels; "
                                         f"got {frames} frames of {height}×{width}")
        h, w = height // m * m, width // m * m
        notes = ([f"{frames} frames cut to {self.frames} (this model takes {self.frames})"]
                 if frames != self.frames else []) + (
            [f"{height}×{width} cut to {h}×{w} (multiples of {m})"] if (h, w) != (height, width) else [])
        return self.frames, h, w, "; ".join(notes)

    def check_sample(self, x: torch.Tensor) -> None:
        c, f, _, _ = self.sample_shape
        if x.ndim != 5 or x.shape[1] != c or x.shape[2] != f:
            raise IncompatibleModelError(f"this video model works on clips (B, {c}, {f}, H, W); got shape "
                                         f"{tuple(x.shape)} (model.fit_clip(F, H, W) gives the frames to keep)")
        m = self._factor
        if x.shape[3] % m or x.shape[4] % m:
            raise IncompatibleModelError(f"frame size {tuple(x.shape[3:])} is not a multiple of {m}, which this UNet "
                                         f"needs; resize to its training size {tuple(self.sample_shape[2:])}")


__all__ = ["FlowPixelVideo", "PixelClipCodec"]

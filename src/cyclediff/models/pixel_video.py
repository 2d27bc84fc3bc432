"""Pixel-space video models: a rectified-flow ``UNet2DModel`` over clips whose frames are folded into its channels
(F frames of C channels: a UNet of F·C input and output channels), or laid out as one picture, a grid of frame tiles
(``frame_grid`` (rows, columns): a UNet of C channels over rows·H × columns·W pictures, its convolutions shared by
every frame). The core sees the clips as they are, 5-D samples (B, C, F, H, W) in [−1, 1]; only the network call
changes the layout. The shipped ``demo:moving-digits`` is one (its ``cyclediff.json`` says ``"frames"`` and
``"frame_grid"``, which pick this adapter)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ._accel import UNetRunner
from .codec import Codec, PixelCodec
from .pixel import FlowPixelDenoiser
from .video import SHORT_CLIP_FIX, frame_count


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


def tile_frames(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, C, F, H, W) → (B, C, rows·H, columns·W): the frames as tiles, row by row."""
    b, c, _, h, w = x.shape
    rows, cols = grid
    return x.reshape(b, c, rows, cols, h, w).permute(0, 1, 2, 4, 3, 5).reshape(b, c, rows * h, cols * w)


def untile_frames(y: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`tile_frames`."""
    b, c, height, width = y.shape
    rows, cols = grid
    h, w = height // rows, width // cols
    return y.reshape(b, c, rows, h, cols, w).permute(0, 1, 2, 4, 3, 5).reshape(b, c, rows * cols, h, w)


class _FramesTiled(torch.nn.Module):
    """A UNet2DModel called on (B, C, F, H, W) clips laid out as a grid of frame tiles, its output cut back."""

    def __init__(self, unet: torch.nn.Module, grid: tuple[int, int]) -> None:
        super().__init__()
        self.unet, self.grid = unet, grid

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        out = self.unet(tile_frames(x, self.grid), timesteps, return_dict=False, **kwargs)[0]
        return (untile_frames(out, self.grid),)


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

    kind = "a pixel-space video UNet (its frames tiled or folded into channels; no text encoder)"
    family = "flow-pixel-video"  # its record in models/families.py

    def __init__(self, unet: torch.nn.Module, scheduler_config: Any, *, frames: int,
                 frame_grid: tuple[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(unet, scheduler_config, **kwargs)
        channels = int(self.unet.config.in_channels)
        grid = tuple(frame_grid) if frame_grid is not None else None
        if not isinstance(frames, int) or frames < 1 or int(self.unet.config.out_channels) != channels or (
                grid is None and channels % frames) or (grid is not None and (
                len(grid) != 2 or grid[0] * grid[1] != frames or any(n % k for n, k in zip(self._picture, grid)))):
            raise CycleDiffError(f"a video UNet needs in_channels = out_channels = frames × C (frames folded) or a "
                                 f"frame_grid of rows × columns = frames dividing its sample size (tiled); this one "
                                 f"has {channels} in, {self.unet.config.out_channels} out, sample size "
                                 f"{self._picture} for frames={frames!r}, frame_grid={frame_grid!r}")
        self.frames, self.frame_grid = frames, grid
        self.runner = UNetRunner(_FramesTiled(self.unet, grid) if grid else _FramesFolded(self.unet, frames))

    @property
    def _picture(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels) // (1 if self.frame_grid else self.frames)

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        """(C, F, H, W) of the clips it was trained on."""
        c, h, w = super().sample_shape
        if self.frame_grid:
            h, w = h // self.frame_grid[0], w // self.frame_grid[1]
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
                                         f"got {frame_count(frames)} of {height}×{width}: {SHORT_CLIP_FIX}")
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


__all__ = ["FlowPixelVideo", "PixelClipCodec", "tile_frames", "untile_frames"]

"""What the flow transformers over 2×2-patch tokens share (FLUX.1, Chroma, LongCat-Image, Qwen-Image): samples of
a quarter of the transformer's packed input channels with even sides, at the pipeline's default sample size, and a
grid shifted by the μ of the sample's h/2 · w/2 tokens, asked for each sample shape (never left behind by a check).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..flow import FlowSchedule, image_shift
from .pipelines import check_latents
from .steps import FlowCoordinates


def image_size_grid(schedule: FlowSchedule, size: tuple[int, ...]) -> FlowSchedule:
    """``schedule`` with the μ its pipeline computes for latents of ``size`` (h, w): (h/2)·(w/2) image tokens."""
    mu = image_shift(schedule.config, (size[0] // 2) * (size[1] // 2))
    return schedule if schedule.mu == mu else dataclasses.replace(schedule, mu=mu)


class PackedLatents(FlowCoordinates):
    """The sample shape, its check and the per-shape grid of a transformer over 2×2-packed latents."""

    pipe: Any
    transformer: Any
    schedule: FlowSchedule
    #: the grid of a sample size (a family whose μ applies only under dynamic shifting overrides it)
    _grid = staticmethod(image_size_grid)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = int(getattr(self.pipe, "default_sample_size", 128))
        return (int(self.transformer.config.in_channels) // 4, size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.transformer.config.in_channels) // 4, 2)

    def schedule_for(self, shape: tuple[int, ...]) -> FlowSchedule:
        """The grid for latents of ``shape`` (…, h, w): shifted by the image-size μ the pipeline computes."""
        return self._grid(self.schedule, tuple(shape[-2:]))


__all__ = ["PackedLatents", "image_size_grid"]

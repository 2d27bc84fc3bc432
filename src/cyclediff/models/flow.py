"""Rectified-flow pixel models: a diffusers UNet2DModel trained to predict the velocity v = ε − x0 on
x_σ = (1 − σ)·x0 + σ·ε, with a FlowMatchEulerDiscreteScheduler config (shift, grids).

The core sees the model in variance-preserving coordinates (:class:`cyclediff.flow.FlowSchedule`): a sample x at
timestep t = σ·T is the flow sample divided by c = √((1 − σ)² + σ²), so the adapter hands the UNet c·x and the
timestep σ·T, and returns x̂0 = c·x − σ·v̂ (the same x0 in both coordinates; the schedule reads it as a "sample"
prediction, which stays finite at σ = 1, where ᾱ = 0 and an ε̂ would not give x̂0). Everything built on the core
(encode, decode, edit / translate, masks, guidance, jobs) then works on flow models unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from ..flow import FlowSchedule
from .pixel import PixelDenoiser


class FlowCoordinates:
    """The network's view of a step for velocity-predicting models on a :class:`FlowSchedule`."""

    schedule: FlowSchedule

    def model_timesteps(self, t: float, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)

    def model_input(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.schedule.scale_at(t) * x

    def model_output(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.schedule.scale_at(t) * x - self.schedule.sigma_at(t) * out  # x̂0 from the velocity


class FlowPixelDenoiser(FlowCoordinates, PixelDenoiser):
    """A rectified-flow UNet2DModel (velocity prediction) behind the same protocols as :class:`PixelDenoiser`."""

    @staticmethod
    def schedule_from(config: Any) -> FlowSchedule:
        return FlowSchedule.from_flow_config(dict(config))  # a FlowMatchEulerDiscreteScheduler config mapping


__all__ = ["FlowCoordinates", "FlowPixelDenoiser"]

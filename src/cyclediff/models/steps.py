"""The network's view of a step: which timestep it is given, what input, and how its output reads. DDPM-family
models take integer timesteps and the sample as it is; rectified-flow models (velocity prediction) take σ·T and
the flow sample, and their output becomes x̂0 (see :class:`FlowCoordinates`)."""

from __future__ import annotations

from typing import Any

import torch

from ..flow import FlowSchedule
from ..schedule import Schedule


class OneGrid:
    """A model with one timestep grid for every sample shape."""

    schedule: Schedule

    def schedule_for(self, shape: tuple[int, ...]) -> Schedule:
        return self.schedule


class DiscreteSteps(OneGrid):
    """DDPM-family models: integer timesteps, the sample as it is, the output as the schedule reads it."""

    def model_timesteps(self, t: float, x: Any) -> Any:
        return torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)

    def model_input(self, x: Any, t: float) -> Any:
        return x

    def model_output(self, out: Any, x: Any, t: float) -> Any:
        return out


class FlowCoordinates(OneGrid):
    """Velocity-predicting models on a :class:`~cyclediff.flow.FlowSchedule`.

    The core sees the model in variance-preserving coordinates: a sample x at timestep t = σ·T is the flow sample
    divided by c = √((1 − σ)² + σ²), so the adapter hands the network c·x and the timestep σ·T, and returns
    x̂0 = c·x − σ·v̂ (the same x0 in both coordinates; the schedule reads it as a "sample" prediction, which stays
    finite at σ = 1, where ᾱ = 0 and an ε̂ would not give x̂0). Everything built on the core (encode, decode,
    edit / translate, masks, guidance, jobs) then works on flow models unchanged."""

    schedule: FlowSchedule

    def model_timesteps(self, t: float, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)

    def model_input(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.schedule.scale_at(t) * x

    def model_output(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.schedule.scale_at(t) * x - self.schedule.sigma_at(t) * out  # x̂0 from the velocity


__all__ = ["DiscreteSteps", "FlowCoordinates", "OneGrid"]

"""The stochastic step for a general Gaussian path x_t = a_t·x0 + s_t·ε, written out directly: the oracle that
the core's VP-coordinate step (:mod:`cyclediff.transitions` over :class:`cyclediff.flow.FlowSchedule`) and
diffusers' flow-matching schedulers are checked against. Only the tests use it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cyclediff.errors import ConfigError
from cyclediff.flow import rectified_flow


def variance_preserving(alpha_bar: float) -> tuple[float, float]:
    """(a, s) of the variance-preserving path at ᾱ."""
    return math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)


def posterior_std(t: tuple[float, float], s: tuple[float, float]) -> float:
    """Std of q(x_s | x_t, x0) for the path's Markov forward process, from (a_t, s_t) and (a_s, s_s)."""
    (a_t, s_t), (a_s, s_s) = t, s
    if s_t == 0:
        return 0.0
    var_ts = max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)
    return math.sqrt(var_ts * s_s**2) / s_t


def step_mean(x0: torch.Tensor, eps: torch.Tensor, s: tuple[float, float], std: float) -> torch.Tensor:
    """a_s·x̂0 + √(s_s² − std²)·ε̂: the mean of a step to s with the given std."""
    a_s, s_s = s
    return a_s * x0 + math.sqrt(max(s_s**2 - std**2, 0.0)) * eps


def encoder_mean(x_t: torch.Tensor, x0: torch.Tensor, t: tuple[float, float], s: tuple[float, float],
                 std: float) -> torch.Tensor:
    """Mean of the encoder's draw of x_s given x_t and the true x0 (the step's mean with ε = (x_t − a_t·x0)/s_t)."""
    a_t, s_t = t
    return step_mean(x0, (x_t - a_t * x0) / s_t, s, std)


def velocity_to_x0_eps(v: torch.Tensor, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂0, ε̂) from a rectified-flow model's velocity v = ε − x0 at x = (1 − σ)·x0 + σ·ε."""
    return x - sigma * v, x + (1.0 - sigma) * v


@dataclass(frozen=True)
class FlowStep:
    """One rectified-flow step σ_t → σ_s: mean, std (0 for a deterministic step) and x̂0."""

    mean: torch.Tensor
    std: float
    x0: torch.Tensor


def flow_step(v: torch.Tensor, x_t: torch.Tensor, sigma_t: float, sigma_s: float, eta: float) -> FlowStep:
    """The stochastic step for a velocity prediction (η in [0, 1]; the step into σ = 0 has std 0)."""
    if not 0 <= eta <= 1:
        raise ConfigError(f"eta must lie in [0, 1]; got {eta}")
    x0, eps = velocity_to_x0_eps(v, x_t, sigma_t)
    t, s = rectified_flow(sigma_t), rectified_flow(sigma_s)
    std = eta * posterior_std(t, s)
    return FlowStep(mean=step_mean(x0, eps, s, std), std=std, x0=x0)


def fresh_noise_step(v: torch.Tensor, x_t: torch.Tensor, sigma_t: float, sigma_s: float,
                     noise: torch.Tensor) -> torch.Tensor:
    """x_s = (1 − σ_s)·x̂0 + σ_s·ω: diffusers' stochastic flow-matching step, given its draw ω."""
    x0 = x_t - sigma_t * v
    return (1.0 - sigma_s) * x0 + sigma_s * noise

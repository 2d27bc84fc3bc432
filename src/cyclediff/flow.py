"""The stochastic step for any Gaussian path x_t = a_t·x0 + s_t·ε, and rectified-flow grids (pure functions).

Variance preserving: a = √ᾱ, s = √(1 − ᾱ). Rectified flow (SD3, FLUX): a = 1 − σ, s = σ, and the model predicts
the velocity v = ε − x0. One step t → s (s less noisy): from the model's x̂0 and ε̂,

    mean = a_s·x̂0 + √(s_s² − std²)·ε̂,        std = η · std of q(x_s | x_t, x0),

where q(x_s | x_t, x0) is the posterior of the path's Markov forward process q(x_t | x_s) = N((a_t/a_s)·x_s,
(s_t² − (a_t/a_s)²·s_s²)·I). η = 1 is the ancestral step, η → 0 the probability-flow ODE (for rectified flow
exactly Euler's step x_t + (σ_s − σ_t)·v). The DPM-Encoder samples x_s from the same posterior, with mean
a_s·x0 + √(s_s² − std²)·(x_t − a_t·x0)/s_t, and records the draw that makes the step land there. For VP paths
this is DDIM(η) / DDPM exactly as :mod:`cyclediff.transitions` computes it; the core runs flow models in VP
coordinates (:class:`FlowSchedule`), and the tests check that against the general step written out for each
path (``tests/gaussian_paths.py``).

The fresh-noise step x_s = a_s·x̂0 + s_s·ω is what diffusers' ``FlowMatchEulerDiscreteScheduler(stochastic_sampling=
True)`` does. Grids come from diffusers' own scheduler (shift, dynamic shifting with FLUX's μ, shift_terminal,
Karras / exponential / beta sigmas, the final σ = 0), cut by ``strength`` as its SD3 / FLUX img2img pipelines cut
them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .schedule import Schedule, steps_run


def rectified_flow(sigma: float) -> tuple[float, float]:
    """(a, s) of the rectified-flow path at noise level σ ∈ [0, 1]."""
    return 1.0 - sigma, sigma


# ---------------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class FlowGrid:
    """Noise levels σ_0 > σ_1 > … > σ_K (= 0 after the last step) and the model's timesteps (σ·T) for the K
    steps. ``sigmas[k] → sigmas[k + 1]`` is step k."""

    sigmas: tuple[float, ...]
    timesteps: tuple[float, ...]

    def pairs(self) -> list[tuple[float, float, float]]:
        """(model timestep, σ_t, σ_s) per step."""
        return [(self.timesteps[k], self.sigmas[k], self.sigmas[k + 1]) for k in range(len(self.timesteps))]


def image_shift(config: Any, image_seq_len: int) -> float:
    """FLUX's resolution-dependent μ for ``image_seq_len`` latent tokens, as its pipelines compute it from the
    scheduler config (base / max image sequence length and shift)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    c = dict(config)
    return calculate_shift(image_seq_len, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                           c.get("base_shift", 0.5), c.get("max_shift", 1.15))


def flow_grid(config: Any, steps: int, strength: float = 1.0, *, mu: float | None = None,
              flux_sigmas: bool = False) -> FlowGrid:
    """The grid diffusers' FlowMatchEulerDiscreteScheduler builds for ``steps`` (with ``mu`` when the config
    shifts dynamically), cut by ``strength`` as the SD3 / FLUX img2img pipelines cut it (:func:`steps_run`,
    ``"skip"``). ``flux_sigmas``: the levels FLUX's pipelines pass, linspace(1, 1/steps, steps), before the shift.
    The scheduler is built once per (config, steps, μ, levels)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"steps must be a positive integer; got {steps!r}")
    if not 0 < strength <= 1:
        raise ConfigError(f"strength must lie in (0, 1]; got {strength}")
    sigmas, timesteps = _full_grid(json.dumps(dict(config), sort_keys=True, default=str), steps, mu, flux_sigmas)
    start = steps - steps_run(steps, strength, "skip")
    if start >= steps:
        raise ConfigError(f"strength {strength} leaves no step of {steps}; raise strength or steps")
    return FlowGrid(sigmas=sigmas[start:], timesteps=timesteps[start:])


@functools.lru_cache(maxsize=64)
def _full_grid(config: str, steps: int, mu: float | None, flux_sigmas: bool) -> tuple[tuple, tuple]:
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(json.loads(config))
    if scheduler.config.use_dynamic_shifting and mu is None:
        raise ConfigError("this scheduler shifts its grid by the image size: pass mu (image_shift(config, tokens))")
    if flux_sigmas:
        import numpy as np

        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    else:
        scheduler.set_timesteps(steps, mu=mu)
    return tuple(float(v) for v in scheduler.sigmas), tuple(float(v) for v in scheduler.timesteps)


# ---------------------------------------------------------------------------------------------------- schedules
@dataclass(frozen=True, eq=False)
class FlowSchedule(Schedule):
    """A rectified-flow model's schedule, seen by the core in variance-preserving coordinates.

    x_σ = (1 − σ)·x0 + σ·ε is the VP sample √ᾱ·x0 + √(1 − ᾱ)·ε scaled by c = √((1 − σ)² + σ²), with
    ᾱ = (1 − σ)²/c². A step of the general form (module doc) commutes with that scaling, so the core's encoder,
    decoder, cycle and guidance run unchanged on a flow model whose adapter scales its inputs by c and returns
    x̂0 = x_σ − σ·v̂ (a "sample" prediction; :class:`cyclediff.models.flow.FlowPixelDenoiser`). Timesteps are the
    model's σ·T of the grid diffusers builds (:func:`flow_grid`); after the last step σ = 0 (ᾱ = 1: a
    deterministic, recorded residual).
    """

    mu: float | None = None  # FLUX-style dynamic shifting: the image-size shift
    flux_sigmas: bool = False  # FLUX pipelines' levels, linspace(1, 1/N, N) before the shift
    path = "rectified_flow"

    @classmethod
    def from_flow_config(cls, config: Any, *, mu: float | None = None, flux_sigmas: bool = False) -> FlowSchedule:
        cfg = {k: v for k, v in dict(config).items() if not k.startswith("_")}
        n = int(cfg.get("num_train_timesteps", 1000))
        sigma = torch.arange(n, dtype=torch.float64) / n  # the unshifted levels (the table only sizes the model)
        alpha_bar = (1 - sigma) ** 2 / ((1 - sigma) ** 2 + sigma**2)
        return cls(alpha_bar=alpha_bar, final_alpha_bar=1.0, prediction_type="sample", timestep_spacing="linspace",
                   config=cfg, mu=mu, flux_sigmas=flux_sigmas)

    def sigma_at(self, t: float) -> float:
        """σ of a model timestep (t < 0: after the last step, σ = 0)."""
        return 0.0 if t < 0 else float(t) / self.num_train_timesteps

    def scale_at(self, t: float) -> float:
        """c = √((1 − σ)² + σ²): the flow sample is c times the VP one."""
        sigma = self.sigma_at(t)
        return math.sqrt((1 - sigma) ** 2 + sigma**2)

    def alpha_bar_at(self, t: float) -> float:  # type: ignore[override]
        a, s = rectified_flow(self.sigma_at(t))
        return a * a / (a * a + s * s)

    def fingerprint(self) -> str:
        text = json.dumps(["rectified_flow", self.config, self.mu, self.flux_sigmas], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    cut = "skip"  # the flow-matching img2img pipelines' strength cut (schedule.steps_run)

    def cut_rule(self, steps: int, strength: float) -> str:
        return f"{steps} − int({steps} − {steps} × {strength})"

    def grid(self, steps: int) -> list[float]:  # type: ignore[override]
        return list(flow_grid(self.config, steps, 1.0, mu=self.mu, flux_sigmas=self.flux_sigmas).timesteps)


@dataclass(frozen=True, eq=False)
class UniPCFlowSchedule(FlowSchedule):
    """The grid of a UniPC scheduler with flow sigmas (HiDream-I1-Full's, Wan's checkpoints'): σ_k = shift(s_k),
    s = linspace(1, 1/T, N + 1) without its last, shift(s) = f·s / (1 + (f − 1)·s) with f = ``flow_shift``, σ_0
    lowered by 1e-6 when it is 1; then σ = 0. Timesteps are σ·T as floats (the core reads σ back); the network sees
    their integer part (the core's first-order step is UniPC's at one or two steps)."""

    def grid(self, steps: int) -> list[float]:  # type: ignore[override]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"steps must be a positive integer; got {steps!r}")
        n, shift = self.num_train_timesteps, float(self.config.get("flow_shift", 1.0))
        levels = np.linspace(1, 1 / n, steps + 1)[:-1]
        sigmas = shift * levels / (1 + (shift - 1) * levels)
        if abs(sigmas[0] - 1) < 1e-6:
            sigmas[0] -= 1e-6
        return [float(t) for t in sigmas * n]

    def fingerprint(self) -> str:
        text = json.dumps(["unipc-flow", self.config], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["FlowGrid", "FlowSchedule", "UniPCFlowSchedule", "flow_grid", "image_shift", "rectified_flow"]

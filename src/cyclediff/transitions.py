"""One sampling step t → s as a Gaussian (mean, std), and the forward posterior the encoder samples.

Both the decoder (x_s = mean + std · ε) and the DPM-Encoder (ε = (x_s − mean) / std) call :func:`transition`,
so they can never disagree about a step. Schedule values are Python floats computed in float64; tensors keep
their own dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .schedule import Schedule

SAMPLERS = ("ddim", "ddpm")


@dataclass(frozen=True)
class Transition:
    """The sampler's Gaussian for x_s given x_t: x_s = mean + std · ε. ``std`` is 0 for a deterministic step."""

    mean: torch.Tensor
    std: float | torch.Tensor
    x0: torch.Tensor  # the (clipped / thresholded) x̂0 the mean was built from

    @property
    def deterministic(self) -> bool:
        # A tensor std (learned variance) is exp(finite) > 0 in float32/64: never deterministic. Not testing it
        # elementwise keeps the step loop free of host synchronisation on accelerators.
        return not isinstance(self.std, torch.Tensor) and self.std == 0


def check_sampler(sampler: str, eta: float | None) -> float:
    """Validate a sampler / η pair; returns the η to record (1.0 for DDPM, whose step has no η)."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if sampler == "ddpm":
        return 1.0
    if eta is None or isinstance(eta, bool) or not isinstance(eta, (int, float)):
        raise ConfigError(f"the ddim sampler needs eta, a number in (0, 1]; got {eta!r}")
    if eta == 0:
        raise ConfigError(
            "eta = 0 is deterministic DDIM: it draws no noise, so it has no stochastic latent to encode into. "
            "Use eta in (0, 1] (the paper uses 0.1 for editing, 1.0 is DDPM) or sampler='ddpm'"
        )
    if not 0 < eta <= 1:
        raise ConfigError(f"eta must lie in (0, 1]; got {eta}")
    return float(eta)


def predict_x0_eps(
    model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar_t: float, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert an ε-, v- or x0-prediction at x_t into (x̂0, ε̂)."""
    a, b = math.sqrt(alpha_bar_t), math.sqrt(1 - alpha_bar_t)
    if prediction_type == "epsilon":
        return (x_t - b * model_output) / a, model_output
    if prediction_type == "v_prediction":
        return a * x_t - b * model_output, a * model_output + b * x_t
    if prediction_type == "sample":
        return model_output, (x_t - a * model_output) / b
    raise ConfigError(f"unknown prediction_type {prediction_type!r}")


def dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Imagen's dynamic thresholding, per sample: clamp to the ``ratio`` quantile s of |x̂0| and divide by s."""
    flat = x0.reshape(x0.shape[0], -1)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(work.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(work, -s, s) / s).to(x0.dtype).reshape(x0.shape)


def clip_x0(x0: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """Apply the config's x̂0 thresholding or clipping (thresholding wins, as in diffusers)."""
    if schedule.thresholding:
        return dynamic_threshold(x0, schedule.dynamic_thresholding_ratio, schedule.sample_max_value)
    if schedule.clip_sample:
        return x0.clamp(-schedule.clip_sample_range, schedule.clip_sample_range)
    return x0


def ddim_std(alpha_bar_t: float, alpha_bar_s: float, eta: float) -> float:
    """σ_t(η) = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)  (DDIM eq. 16). η = 1 gives the DDPM posterior std."""
    var = (1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s)
    return eta * math.sqrt(max(var, 0.0))


def split_model_output(
    model_output: torch.Tensor, channels: int, schedule: Schedule
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a learned-variance output (2·C channels) into (prediction, variance values in [-1, 1])."""
    if model_output.shape[1] == channels:
        if schedule.variance_type == "learned_range":
            raise ConfigError(
                f"the config says variance_type 'learned_range' but the model outputs {channels} channels, "
                f"not {2 * channels}; fix variance_type in the scheduler config"
            )
        return model_output, None
    if model_output.shape[1] == 2 * channels:
        pred, var = model_output.split(channels, dim=1)
        return pred, (var if schedule.variance_type == "learned_range" else None)
    raise ConfigError(
        f"the model outputs {model_output.shape[1]} channels for {channels}-channel samples; "
        f"expected {channels} (or {2 * channels} with learned variance)"
    )


def transition(
    schedule: Schedule,
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    s: int,
    *,
    sampler: str,
    eta: float,
) -> Transition:
    """The sampler's step t → s (s = -1: after the last step) as (mean, std).

    ``sampler="ddim"``: DDIM eq. 12 with σ_t(η); x̂0 clipped as the config says, ε̂ not re-derived (diffusers'
    default). ``sampler="ddpm"``: the ancestral step with the schedule's variance type (fixed-small, fixed-large
    or learned-range); as diffusers does, the step at t = 0 adds no noise.
    """
    pred, var_values = split_model_output(model_output, x_t.shape[1], schedule)
    ab_t, ab_s = schedule.alpha_bar_at(t), schedule.alpha_bar_at(s)
    x0, eps = predict_x0_eps(pred, x_t, ab_t, schedule.prediction_type)
    x0 = clip_x0(x0, schedule)
    if sampler == "ddim":
        std = ddim_std(ab_t, ab_s, eta)
        mean = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - std**2, 0.0)) * eps
        return Transition(mean=mean, std=std, x0=x0)
    if sampler != "ddpm":
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    alpha_t = ab_t / ab_s
    beta_t = 1 - alpha_t
    mean = (math.sqrt(ab_s) * beta_t / (1 - ab_t)) * x0 + (math.sqrt(alpha_t) * (1 - ab_s) / (1 - ab_t)) * x_t
    small = (1 - ab_s) / (1 - ab_t) * beta_t  # β̃: the posterior variance
    std: float | torch.Tensor
    if t == 0:
        std = 0.0
    elif schedule.variance_type == "fixed_small":
        std = math.sqrt(max(small, 0.0))
    elif schedule.variance_type == "fixed_large":
        std = math.sqrt(beta_t)
    else:  # learned_range: interpolate log-variances between β̃ and β with the model's output in [-1, 1]
        frac = (var_values + 1) / 2
        log_var = frac * math.log(beta_t) + (1 - frac) * math.log(max(small, 1e-20))
        std = torch.exp(0.5 * log_var)
    return Transition(mean=mean, std=std, x0=x0)


def is_deterministic(schedule: Schedule, t: int, s: int, *, sampler: str, eta: float) -> bool:
    """Whether the step t → s has std 0 whatever the model says (then no Gaussian draw can carry it)."""
    ab_t, ab_s = schedule.alpha_bar_at(t), schedule.alpha_bar_at(s)
    if sampler == "ddim":
        return ddim_std(ab_t, ab_s, eta) == 0
    return t == 0 or (schedule.variance_type == "fixed_small" and ddim_std(ab_t, ab_s, 1.0) == 0)


def posterior_mean(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar_t: float, alpha_bar_s: float, std: float):
    """Mean of q(x_s | x_t, x0) for the DDIM family with posterior std ``std``.

    √ᾱ_s x0 + √(1−ᾱ_s−σ²) ê with ê = (x_t − √ᾱ_t x0)/√(1−ᾱ_t); at σ = σ(η=1) it is the DDPM posterior.
    """
    e_hat = (x_t - math.sqrt(alpha_bar_t) * x0) / math.sqrt(1 - alpha_bar_t)
    return math.sqrt(alpha_bar_s) * x0 + math.sqrt(max(1 - alpha_bar_s - std**2, 0.0)) * e_hat

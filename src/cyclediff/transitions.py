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

SAMPLERS = ("ddim", "ddpm", "fresh")  # fresh: x_s = √ᾱ_s·x̂0 + √(1 − ᾱ_s)·ω (new noise each step)


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


def check_sampler(sampler: str, eta: float | None, *, sampling: bool = False) -> float:
    """Validate a sampler / η pair; returns the η to record (1.0 for DDPM and fresh, whose steps have no η).

    ``sampling``: η = 0 (deterministic DDIM, the probability-flow ODE: ordinary generation) is accepted, as a draw
    from the prior needs no noise after x_T; encoding refuses it (it leaves no draws to encode into)."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if sampler in ("ddpm", "fresh"):
        return 1.0
    if eta is None or isinstance(eta, bool) or not isinstance(eta, (int, float)):
        raise ConfigError(f"the ddim sampler needs eta, a number in (0, 1]; got {eta!r}")
    if eta == 0 and sampling:
        return 0.0
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


def model_prediction(
    schedule: Schedule, model_output: torch.Tensor, x: torch.Tensor, alpha_bar: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x̂0 clipped as the config says, ε̂, learned variance values or None) from a raw model output at x, read as
    a sample at noise level ``alpha_bar``. Every step (sampling, encoding, inversion) reads the model through this."""
    pred, var_values = split_model_output(model_output, x.shape[1], schedule)
    x0, eps = predict_x0_eps(pred, x, alpha_bar, schedule.prediction_type)
    return clip_x0(x0, schedule), eps, var_values


def is_deterministic(schedule: Schedule, t: int, s: int, *, sampler: str, eta: float) -> bool:
    """Whether the step t → s has std 0 whatever the model outputs; the one place that decides it.

    DDIM: σ_t(η) = 0 (a step into ᾱ = 1). DDPM: the step at t = 0 (diffusers adds no noise there) and every step
    whose posterior variance β̃ is 0 (a step into ᾱ = 1), whatever the variance type: fixed-large and learned-range
    variances would otherwise put noise (or a near-zero std and a huge "draw") where the posterior has none.
    """
    ab_t, ab_s = schedule.alpha_bar_at(t), schedule.alpha_bar_at(s)
    if sampler == "ddim":
        return ddim_std(ab_t, ab_s, eta) == 0
    if sampler == "fresh":
        return ab_s == 1
    return t == 0 or ddim_std(ab_t, ab_s, 1.0) == 0


def draw_std(alpha_bar_t: float, alpha_bar_s: float, *, sampler: str, eta: float) -> float:
    """Std of the encoder's draw of x_s given x_t and x0: the DDIM(η) posterior (DDPM: η = 1); for the fresh
    sampler x_s ~ N(√ᾱ_s·x0, (1 − ᾱ_s)·I), which ignores x_t."""
    if sampler == "fresh":
        return math.sqrt(max(1 - alpha_bar_s, 0.0))
    return ddim_std(alpha_bar_t, alpha_bar_s, eta)


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
    or learned-range). ``sampler="fresh"``: √ᾱ_s·x̂0 with std √(1 − ᾱ_s), new noise at every step (for flow models
    diffusers' ``FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)``). A step that
    :func:`is_deterministic` calls deterministic gets std 0.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    ab_t, ab_s = schedule.alpha_bar_at(t), schedule.alpha_bar_at(s)
    x0, eps, var_values = model_prediction(schedule, model_output, x_t, ab_t)
    deterministic = is_deterministic(schedule, t, s, sampler=sampler, eta=eta)
    std: float | torch.Tensor
    if sampler == "ddim":
        std = 0.0 if deterministic else ddim_std(ab_t, ab_s, eta)
        return Transition(mean=posterior_mean(x_t, x0, ab_t, ab_s, std, eps=eps), std=std, x0=x0)
    if sampler == "fresh":
        return Transition(mean=math.sqrt(ab_s) * x0, std=0.0 if deterministic else math.sqrt(1 - ab_s), x0=x0)
    beta_t = 1 - ab_t / ab_s
    small = (1 - ab_s) / (1 - ab_t) * beta_t  # β̃: the posterior variance
    mean = posterior_mean(x_t, x0, ab_t, ab_s, math.sqrt(max(small, 0.0)))  # Ho et al. eq. 7
    if deterministic:
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


def ddim_inversion_step(
    schedule: Schedule, model_output: torch.Tensor, x_s: torch.Tensor, s: int, t: int
) -> torch.Tensor:
    """One step of deterministic DDIM inversion, from level s up to t > s (s = -1: the clean end), with the model
    evaluated at (x_s, t) as usual.

    The model output goes through :func:`model_prediction` (learned variance split off) and is read as the noise
    ε̂ it predicts at the timestep it was called with, whatever its parameterisation (ε, v or x0), so the step is
    the same for models that agree on ε̂. Then x̂0 = (x_s − √(1−ᾱ_s) ε̂)/√ᾱ_s, clipped as the config says, and
    x_t = √ᾱ_t x̂0 + √(1−ᾱ_t) ε̂ (DDIM, η = 0). For ε-prediction this is diffusers' DDIMInverseScheduler step.
    """
    ab_s, ab_t = schedule.alpha_bar_at(s), schedule.alpha_bar_at(t)
    eps = model_prediction(schedule, model_output, x_s, ab_t)[1]
    x0 = clip_x0((x_s - math.sqrt(1 - ab_s) * eps) / math.sqrt(ab_s), schedule)
    return math.sqrt(ab_t) * x0 + math.sqrt(1 - ab_t) * eps


def posterior_mean(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar_t: float, alpha_bar_s: float, std: float,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
    """√ᾱ_s x0 + √(1−ᾱ_s−σ²) ε: the mean of q(x_s | x_t, x0) for the DDIM family with std σ (at σ(η=1) the DDPM
    posterior), and the sampler's mean when x0, ε are the model's x̂0, ε̂.

    ``eps`` defaults to ê = (x_t − √ᾱ_t x0)/√(1−ᾱ_t), the noise that x0 implies at x_t (the encoder's posterior);
    the DDIM sampler passes the model's ε̂ (which it does not re-derive after clipping x̂0).
    """
    if eps is None:
        eps = (x_t - math.sqrt(alpha_bar_t) * x0) / math.sqrt(1 - alpha_bar_t)
    return math.sqrt(alpha_bar_s) * x0 + math.sqrt(max(1 - alpha_bar_s - std**2, 0.0)) * eps

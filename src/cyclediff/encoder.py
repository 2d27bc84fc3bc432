"""The DPM-Encoder: the Gaussian draws that make a stochastic sampler produce a given image."""

from __future__ import annotations

from typing import Any

import torch

from ._noise import Generators, check_generators, gaussian_like, seeds_of
from .errors import IncompatibleModelError
from .latent import Latent
from .models.base import Denoiser
from .sampler import progress_steps
from .transitions import check_sampler, ddim_std, posterior_mean, transition

# Images slightly outside [-1, 1] (resampling overshoot) are accepted; anything further is a scaling mistake.
_RANGE_SLACK = 1e-3


def check_images(x0: torch.Tensor, data_range: tuple[float, float] | None = (-1.0, 1.0)) -> None:
    """x0 must be a finite floating (B, C, H, W) tensor within the model's data range (None: unbounded)."""
    if not isinstance(x0, torch.Tensor) or x0.ndim != 4:
        shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise IncompatibleModelError(f"x0 must be a (B, C, H, W) tensor; got {shape}")
    if not x0.is_floating_point():
        raise IncompatibleModelError(f"x0 must be a floating tensor in [-1, 1]; got {x0.dtype} (use x / 127.5 - 1)")
    if not torch.isfinite(x0).all():
        raise IncompatibleModelError("x0 contains NaN or Inf values")
    if data_range is None:
        return
    lo, hi = float(x0.min()), float(x0.max())
    if lo < data_range[0] - _RANGE_SLACK or hi > data_range[1] + _RANGE_SLACK:
        raise IncompatibleModelError(
            f"x0 must lie in [-1, 1]; got values in [{lo:.3g}, {hi:.3g}] (images in [0, 1] map with x * 2 - 1)"
        )


@torch.no_grad()
def encode(
    x0: torch.Tensor,
    denoiser: Denoiser,
    *,
    steps: int = 100,
    strength: float = 1.0,
    eta: float | None = 0.1,
    sampler: str = "ddim",
    generator: Generators = None,
    progress: bool = False,
    **condition: Any,
) -> Latent:
    """Encode images x0 (B, C, H, W) in [-1, 1] into a latent of ``denoiser``'s stochastic sampler.

    Samples x_start ~ q(x_{t_K} | x0), then at every step the posterior x_s ~ q(x_s | x_t, x0) of the sampler
    (x_s := x0 after the last step), and records ε = (x_s − mean) / std with the sampler's own (mean, std).
    ``decode(latent, denoiser)`` with the same condition gives back x0 up to floating point.

    ``sampler="ddim"`` uses ``eta`` in (0, 1]; ``sampler="ddpm"`` the ancestral step with the config's variance.
    ``generator`` is one torch.Generator or a list with one per sample (then sample i depends on generator i
    alone). Condition keywords (``class_labels=``) go to the model.
    """
    eta = check_sampler(sampler, eta)
    check_images(x0, getattr(denoiser, "data_range", (-1.0, 1.0)))
    denoiser.check_sample(x0)
    schedule = denoiser.schedule
    timesteps = schedule.timesteps(steps, strength)
    batch = x0.shape[0]
    gens = check_generators(generator, batch)
    cond = denoiser.prepare_condition(batch, **condition)

    # Phase 1: the starting point, a draw from q(x_{t_K} | x0).
    ab_start = schedule.alpha_bar_at(timesteps[0])
    x_start = ab_start**0.5 * x0 + (1 - ab_start) ** 0.5 * gaussian_like(x0, gens)

    # Phase 2: walk the grid; at each step draw the posterior and record the draw the sampler would need.
    x_t, eps, residual = x_start, [], []
    last = len(timesteps) - 1
    for k, t, s in progress_steps(timesteps, progress=progress, desc="encode"):
        step = transition(schedule, denoiser(x_t, t, cond), x_t, t, s, sampler=sampler, eta=eta)
        if k == last:
            x_s = x0
        else:
            ab_t, ab_s = schedule.alpha_bar_at(t), schedule.alpha_bar_at(s)
            post_std = ddim_std(ab_t, ab_s, eta)  # DDPM: eta is 1, the true posterior β̃
            x_s = posterior_mean(x_t, x0, ab_t, ab_s, post_std) + post_std * gaussian_like(x0, gens)
        if step.deterministic:
            e = x_s - step.mean  # no draw can carry this step: keep the exact residual
            x_t = step.mean + e
        else:
            e = (x_s - step.mean) / step.std
            x_t = step.mean + step.std * e  # the decoder's own arithmetic, so both walk the same path
        eps.append(e)
        residual.append(step.deterministic)

    return Latent(
        x_start=x_start,
        eps=torch.stack(eps),
        timesteps=tuple(timesteps),
        residual=tuple(residual),
        sampler=sampler,
        eta=eta,
        steps=steps,
        strength=float(strength),
        num_train_timesteps=schedule.num_train_timesteps,
        schedule_fingerprint=schedule.fingerprint(),
        variance_type=schedule.variance_type,
        model_id=denoiser.model_id,
        condition=cond.record,
        seeds=seeds_of(gens, batch),
    )

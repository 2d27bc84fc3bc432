"""The DPM-Encoder: the Gaussian draws that make a stochastic sampler produce a given image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ._noise import Generators, NoiseStream, check_generators, seeds_of
from .errors import IncompatibleModelError
from .latent import Latent
from .models.base import Condition, Denoiser
from .models.conditions import merge_condition
from .sampler import decoder_step, progress_steps
from .schedule import Schedule
from .settings import ENCODE, check_setting
from .transitions import Transition, check_sampler, draw_std, posterior_mean, transition

# Images slightly outside [-1, 1] (resampling overshoot) are accepted; anything further is a scaling mistake.
_RANGE_SLACK = 1e-3


def check_images(x0: torch.Tensor, data_range: tuple[float, float] | None = (-1.0, 1.0), *, name: str = "x0",
                 fix: str = "use x / 127.5 - 1; images in [0, 1] map with x * 2 - 1") -> None:
    """``x0`` must be a finite floating (B, C, H, W) tensor with data ((B, C, F, H, W) for clips), within
    ``data_range`` (None: unbounded); one error naming ``name`` and, for values out of range or integers, ``fix``."""
    if not isinstance(x0, torch.Tensor) or x0.ndim not in (4, 5):
        shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise IncompatibleModelError(f"{name} must be a (B, C, H, W) tensor (or (B, C, F, H, W) for clips); got "
                                     f"{shape}")
    if x0.shape[0] == 0:
        raise IncompatibleModelError(f"{name} is an empty batch (0 images); pass at least one image")
    if x0.is_meta:
        raise IncompatibleModelError(f"{name} is a meta tensor (a shape without data); pass real values")
    bounds = "" if data_range is None else f" in [{data_range[0]:g}, {data_range[1]:g}]"
    if not x0.is_floating_point():
        raise IncompatibleModelError(f"{name} must be a floating tensor{bounds}; got {x0.dtype} ({fix})")
    if not torch.isfinite(x0).all():
        raise IncompatibleModelError(f"{name} contains NaN or Inf values")
    if data_range is None:
        return
    lo, hi = float(x0.min()), float(x0.max())
    if lo < data_range[0] - _RANGE_SLACK or hi > data_range[1] + _RANGE_SLACK:
        raise IncompatibleModelError(f"{name} must lie{bounds}; got values in [{lo:.3g}, {hi:.3g}] ({fix})")


@dataclass(frozen=True)
class Prepared:
    """What every run over real samples starts from: the checked η, the grid, the generators, the condition."""

    eta: float | None
    timesteps: list[int]
    gens: Any
    condition: Condition


def prepare(x0: torch.Tensor, denoiser: Denoiser, *, steps: int, strength: float, condition: dict[str, Any] | None,
            sampler: str | None = None, eta: float | None = None, generator: Generators = None,
            timesteps: list[int] | None = None, sampling: bool = False) -> Prepared:
    """The checks and set-up that encode, cycle, SDEdit and DDIB share: sampler and η (when the run has a
    sampler), the samples against the model, the grid (or ``timesteps`` given), generators, the condition."""
    eta = check_sampler(sampler, eta, sampling=sampling) if sampler is not None else None
    check_images(x0, denoiser.data_range)
    denoiser.check_sample(x0)
    timesteps = list(timesteps or denoiser.schedule_for(tuple(x0.shape)).timesteps(steps, strength))
    gens = check_generators(generator, x0.shape[0])
    return Prepared(eta, timesteps, gens, denoiser.prepare_condition(x0.shape[0], **(condition or {})))


def start_point(x0: torch.Tensor, alpha_bar: float, noise: torch.Tensor) -> torch.Tensor:
    """A draw from q(x_t | x0) = N(√ᾱ x0, (1 − ᾱ) I), given the N(0, I) draw ``noise``."""
    return alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise


def encoder_step(
    schedule: Schedule, step: Transition, x_t: torch.Tensor, x0: torch.Tensor, t: int, s: int, *,
    last: bool, eta: float, draw: Callable[[], torch.Tensor], sampler: str = ENCODE.sampler,
    x_s: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """One encoder step: land on x_s — drawn from q(x_s | x_t, x0) (the DPM-Encoder), or given (the edit-friendly
    encoder's independent q(x_s | x0)), x0 itself after the last step — and return (x_s as the decoder will
    recompute it, the draw ε the sampler needs, whether ε is a residual)."""
    if last:
        x_s = x0
    elif x_s is None:
        ab_t, ab_s = schedule.alpha_bar_at(t), schedule.alpha_bar_at(s)
        post_std = draw_std(ab_t, ab_s, sampler=sampler, eta=eta)  # DDPM: eta is 1, the true posterior β̃
        x_s = posterior_mean(x_t, x0, ab_t, ab_s, post_std) + post_std * draw()
    if step.deterministic:
        e = x_s - step.mean  # no draw can carry this step: keep the exact residual
    else:
        e = (x_s - step.mean) / step.std
    # the decoder's own arithmetic, so that encoder and decoder walk the same path
    return decoder_step(step, e, step.deterministic), e, step.deterministic


@dataclass
class EncodingRun:
    """Validated settings of one encoding pass, and the draws it records."""

    x0: torch.Tensor
    denoiser: Denoiser
    sampler: str
    eta: float
    steps: int
    strength: float
    timesteps: list[int]
    gens: Any
    condition: Condition
    x_start: torch.Tensor | None = None
    noise: NoiseStream | None = None
    eps: list[torch.Tensor] = field(default_factory=list)
    residual: list[bool] = field(default_factory=list)
    encoder: str = ENCODE.encoder
    marginals: list[torch.Tensor] | None = None  # edit-friendly: x_t ~ q(x_t | x0) at each grid timestep

    @classmethod
    def prepare(cls, x0, denoiser, *, steps, strength, eta, sampler, generator, condition,
                encoder=ENCODE.encoder, timesteps=None) -> EncodingRun:
        check_setting("encoder", encoder, required=True)
        p = prepare(x0, denoiser, steps=steps, strength=strength, sampler=sampler, eta=eta, generator=generator,
                    condition=condition, timesteps=timesteps)
        # one draw for x_start and one per step but the last (which lands on x0 itself)
        noise = NoiseStream(x0, p.gens, count=len(p.timesteps))
        run = cls(x0, denoiser, sampler, p.eta, steps, float(strength), p.timesteps, p.gens, p.condition,
                  noise=noise, encoder=encoder)
        if encoder == "edit-friendly":  # every x_t drawn up front, least noisy first (LEDITS++'s order)
            ab = denoiser.schedule.alpha_bar_at
            drawn = {t: start_point(x0, ab(t), noise.next()) for t in reversed(p.timesteps)}
            run.marginals = [drawn[t] for t in p.timesteps]
        return run

    def start(self) -> torch.Tensor:
        if self.marginals is not None:
            self.x_start = self.marginals[0]
            return self.x_start
        ab = self.denoiser.schedule.alpha_bar_at(self.timesteps[0])
        self.x_start = start_point(self.x0, ab, self.noise.next())
        return self.x_start

    def step(self, k: int, t: int, s: int, model_output: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """Record step k's draw from the model output at x_t; returns the next x."""
        schedule = self.denoiser.schedule
        step = transition(schedule, model_output, x_t, t, s, sampler=self.sampler, eta=self.eta)
        last = k == len(self.timesteps) - 1
        given = None if self.marginals is None or last else self.marginals[k + 1]
        x_s, e, residual = encoder_step(schedule, step, x_t, self.x0, t, s, last=last, eta=self.eta,
                                        draw=self.noise.next, sampler=self.sampler, x_s=given)
        self.eps.append(e)
        self.residual.append(residual)
        return x_s

    def latent(self) -> Latent:
        schedule = self.denoiser.schedule_for(tuple(self.x0.shape))
        return Latent.from_draws(schedule, self.denoiser.model_id, x_start=self.x_start,
                                 eps=torch.stack(self.eps), timesteps=self.timesteps, residual=self.residual,
                                 sampler=self.sampler, eta=self.eta, steps=self.steps, strength=self.strength,
                                 condition=self.condition.record, seeds=seeds_of(self.gens, self.x0.shape[0]),
                                 encoder=self.encoder, model_kind=getattr(self.denoiser, "kind", None))


@torch.no_grad()
def encode(
    x0: torch.Tensor,
    denoiser: Denoiser,
    *,
    steps: int = ENCODE.steps,
    strength: float = ENCODE.strength,
    eta: float | None = ENCODE.eta,
    sampler: str = ENCODE.sampler,
    encoder: str = ENCODE.encoder,
    generator: Generators = None,
    progress: bool = False,
    condition: Any = None,
    **keywords: Any,
) -> Latent:
    """Encode x0 (B, C, H, W) into a latent of ``denoiser``'s stochastic sampler.

    x0 lives in the model's sample space: images in [-1, 1] for pixel models, scaled VAE latents for latent
    diffusion (``model.encode_images``). Samples x_start ~ q(x_{t_K} | x0), then at every step the posterior
    x_s ~ q(x_s | x_t, x0) of the sampler (x_s := x0 after the last step), and records ε = (x_s − mean) / std with
    the sampler's own (mean, std). ``decode(latent, denoiser)`` with the same condition gives back x0 up to
    floating point.

    ``encoder="edit-friendly"`` is the edit-friendly DDPM inversion (Huberman-Spiegelglas et al., CVPR 2024; the
    inversion of diffusers' LEDITS++ pipelines): every x_t is drawn independently from q(x_t | x0), least noisy
    first, instead of from the posterior chain; the draws are recorded the same way, so the latent (which
    records its encoder) decodes back to x0 exactly like CycleDiffusion's.

    ``sampler="ddim"`` uses ``eta`` in (0, 1]; ``sampler="ddpm"`` the ancestral step with the config's variance.
    ``generator`` is one torch.Generator or a list with one per sample (then sample i depends on generator i
    alone). The condition: ``condition=`` (a dict of keywords, a prompt, or class label(s)) and / or keywords
    (``class_labels=``, ``prompt=``), which go to the model (a keyword it does not take is one clear error).
    """
    run = EncodingRun.prepare(x0, denoiser, steps=steps, strength=strength, eta=eta, sampler=sampler,
                              generator=generator, condition=merge_condition(condition, keywords), encoder=encoder)
    x_t = run.start()
    for k, t, s in progress_steps(run.timesteps, progress=progress, desc="encode"):
        x_t = run.step(k, t, s, denoiser(x_t, t, run.condition), x_t)
    return run.latent()

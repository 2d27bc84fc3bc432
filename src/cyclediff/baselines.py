"""The baselines CycleDiffusion is compared with, in the model's sample space and on the same grid.

- **SDEdit** (Meng et al. 2022): noise x0 to the first timestep with q(x_t | x0) and sample with the target
  model and *fresh* noise: nothing ties the output to the input but the starting point.
- **DDIB** (Su et al. 2023): invert x0 deterministically with the source ODE (DDIM, η = 0) to the first
  timestep, then integrate the target ODE back down.
- **FlowEdit** (Kulikov et al. 2025): inversion-free editing of rectified-flow models, fresh noise at every step
  (:mod:`cyclediff.flowedit`; :func:`flowedit` takes prompts as FlowEdit's own functions do).
"""

from __future__ import annotations

from typing import Any

import torch

from ._noise import Generators, gaussian_like
from ._progress import stepping
from .encoder import prepare, start_point
from .flowedit import FLOWEDIT, flow_edit
from .models.base import Condition, Denoiser
from .sampler import check_grid, fresh_draws, progress_steps, replay
from .schedule import step_pairs
from .settings import ENCODE, SAMPLE, TRANSLATE
from .transitions import ddim_inversion_step, transition


@torch.no_grad()
def sdedit(
    x0: torch.Tensor,
    target: Denoiser,
    *,
    steps: int = TRANSLATE.steps,
    strength: float = TRANSLATE.strength,
    eta: float | None = SAMPLE.eta,
    sampler: str = ENCODE.sampler,
    generator: Generators = None,
    target_condition: dict[str, Any] | None = None,
    timesteps: list[int] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """SDEdit: x_t ~ q(x_t | x0) at the strength's first timestep, then the target's sampler with new noise.

    ``timesteps`` overrides the grid (used by refinement: the last r steps of the grid).
    """
    p = prepare(x0, target, steps=steps, strength=strength, sampler=sampler, eta=eta, generator=generator,
                condition=target_condition, timesteps=timesteps, sampling=True)  # η = 0: the img2img ODE
    schedule = target.schedule
    x_start = start_point(x0, schedule.alpha_bar_at(p.timesteps[0]), gaussian_like(x0, p.gens))
    eps, residual = fresh_draws(x0, schedule, p.timesteps, sampler=sampler, eta=p.eta, gens=p.gens)
    return replay(target, p.condition, x_start, p.timesteps, eps, residual, sampler=sampler, eta=p.eta,
                  progress=progress, desc="sdedit")


def ddim_invert(x0: torch.Tensor, denoiser: Denoiser, cond: Condition, timesteps: list[int], *,
                progress: bool = False) -> torch.Tensor:
    """Integrate the deterministic DDIM ODE upwards from x0 to ``timesteps[0]`` (the usual inversion: the model
    is evaluated at the next, noisier timestep on the current sample), one :func:`ddim_inversion_step` a step."""
    x = x0
    pairs = list(reversed(step_pairs(timesteps)))  # (t, s) with s the current level, t the next one up
    for t, s in stepping(pairs, desc="invert", progress=progress):
        x = ddim_inversion_step(denoiser.schedule, denoiser(x, t, cond), x, s, t)
    return x


def ddim_generate(x_start: torch.Tensor, denoiser: Denoiser, cond: Condition, timesteps: list[int], *,
                  progress: bool = False) -> torch.Tensor:
    """Integrate the deterministic DDIM ODE (η = 0) down from x_start at ``timesteps[0]``."""
    x = x_start
    for _, t, s in progress_steps(timesteps, progress=progress, desc="ddim"):
        # not a default: the deterministic ODE is DDIM at η = 0
        x = transition(denoiser.schedule, denoiser(x, t, cond), x, t, s, sampler="ddim", eta=0.0).mean
    return x


@torch.no_grad()
def ddib(
    x0: torch.Tensor,
    source: Denoiser,
    target: Denoiser | None = None,
    *,
    steps: int = TRANSLATE.steps,
    strength: float = TRANSLATE.strength,
    source_condition: dict[str, Any] | None = None,
    target_condition: dict[str, Any] | None = None,
    progress: bool = False,
    timesteps: list[Any] | None = None,
) -> torch.Tensor:
    """DDIB: the deterministic DDIM latent of x0 under the source, decoded by the target's ODE (``timesteps``: the
    grid the caller computed for (steps, strength))."""
    target = source if target is None else target
    p = prepare(x0, source, steps=steps, strength=strength, condition=source_condition, timesteps=timesteps)
    if target is not source:
        check_grid(target, num_train_timesteps=source.schedule.num_train_timesteps, steps=steps, strength=strength,
                   timesteps=p.timesteps, sample=x0)
    target_cond = target.prepare_condition(x0.shape[0], **(target_condition or {}))
    x_start = ddim_invert(x0, source, p.condition, p.timesteps, progress=progress)
    return ddim_generate(x_start, target, target_cond, p.timesteps, progress=progress)


def flowedit(x0: torch.Tensor, model: Denoiser, *, source_prompt: str | list[str], prompt: str | list[str],
             negative_prompt: str = "", steps: int, n_max: int, n_min: int = FLOWEDIT.n_min,
             n_avg: int = FLOWEDIT.n_avg, source_guidance_scale: float, guidance_scale: float, noise: Any = None,
             generator: Generators = None, progress: bool = False) -> torch.Tensor:
    """FlowEdit with prompts, as ``FlowEditSD3`` / ``FlowEditFLUX`` take them: x0 in the model's sample space
    (SD3 / FLUX: normalised, unpacked VAE latents), the target samples out. The guidance scales are the model's
    own kind: classifier-free for SD3 (the negative prompt as its unconditional row), FLUX's embedded guidance.
    ``noise``: an iterator of tensors shaped like x0 (FLUX: unpacked), consumed in FlowEdit's draw order."""
    from .models.conditions import condition_for

    negative = negative_prompt or None
    source = condition_for(model, prompt=source_prompt, negative_prompt=negative, guidance_scale=source_guidance_scale)
    target = condition_for(model, prompt=prompt, negative_prompt=negative, guidance_scale=guidance_scale)
    return flow_edit(x0, model, steps=steps, n_max=n_max, n_min=n_min, n_avg=n_avg, source_condition=source,
                     target_condition=target, noise=noise, generator=generator, progress=progress)


__all__ = ["ddib", "ddim_generate", "ddim_invert", "flow_edit", "flowedit", "sdedit"]

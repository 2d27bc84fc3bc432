"""CycleDiffusion in one pass: encode with the source (model, condition) and decode the same draws with the target.

The encoder and the decoder walk the grid together; at each step both model evaluations go into one batched
call when source and target are the same model (editing), so the latent never has to be stored.
"""

from __future__ import annotations

from typing import Any

import torch

from ._noise import Generators
from .defaults import EDIT
from .encoder import EncodingRun
from .latent import Latent
from .models.base import Denoiser
from .sampler import check_grid, decoder_step, evaluate, progress_steps
from .transitions import transition


@torch.no_grad()
def cycle(
    x0: torch.Tensor,
    source: Denoiser,
    target: Denoiser | None = None,
    *,
    steps: int = EDIT["steps"],
    strength: float = EDIT["strength"],
    eta: float | None = EDIT["eta"],
    sampler: str = "ddim",
    generator: Generators = None,
    source_condition: dict[str, Any] | None = None,
    target_condition: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, Latent]:
    """x0 (model sample space) → z ~ DPMEnc(z | x0, source) → G_target(z). Returns (output, latent).

    ``target`` defaults to ``source`` (editing by condition alone). The output equals
    ``decode(encode(x0, source, ...), target, **target_condition)`` with the same generator.
    """
    target = source if target is None else target
    run = EncodingRun.prepare(x0, source, steps=steps, strength=strength, eta=eta, sampler=sampler,
                              generator=generator, condition=source_condition or {})
    check_grid(target, num_train_timesteps=source.schedule.num_train_timesteps, steps=steps, strength=strength,
               timesteps=run.timesteps, sample=x0)
    target_cond = target.prepare_condition(x0.shape[0], **(target_condition or {}))

    x_source = x_target = run.start()
    for k, t, s in progress_steps(run.timesteps, progress=progress, desc="cycle"):
        out_source, out_target = evaluate([(source, x_source, run.condition), (target, x_target, target_cond)], t)
        # encoder: draw the source posterior, record ε; decoder: spend the same ε on the target's step
        x_source = run.step(k, t, s, out_source, x_source)
        step = transition(target.schedule, out_target, x_target, t, s, sampler=run.sampler, eta=run.eta)
        x_target = decoder_step(step, run.eps[-1], run.residual[-1])
    return x_target, run.latent()

"""CycleDiffusion in one pass: encode with the source (model, condition) and decode the same draws with the target.

The encoder and the decoder walk the grid together; at each step both model evaluations go into one batched
call when source and target are the same model (editing), so the latent never has to be stored.
"""

from __future__ import annotations

from typing import Any

import torch

from ._noise import Generators
from .encoder import EncodingRun
from .errors import CycleDiffError
from .latent import Latent
from .masks import blend, check_mask
from .models.base import Denoiser
from .sampler import check_grid, decoder_step, evaluate, progress_steps
from .settings import EDIT, ENCODE
from .transitions import transition


@torch.no_grad()
def cycle(
    x0: torch.Tensor,
    source: Denoiser,
    target: Denoiser | None = None,
    *,
    steps: int = EDIT.steps,
    strength: float = EDIT.strength,
    eta: float | None = EDIT.eta,
    sampler: str = ENCODE.sampler,
    generator: Generators = None,
    source_condition: dict[str, Any] | None = None,
    target_condition: dict[str, Any] | None = None,
    copies: int = 1,
    mask: torch.Tensor | None = None,
    encoder: str = ENCODE.encoder,
    progress: bool = False,
    timesteps: list[Any] | None = None,
) -> tuple[torch.Tensor, Latent]:
    """x0 (model sample space) → z ~ DPMEnc(z | x0, source) → G_target(z). Returns (output, latent).

    ``target`` defaults to ``source`` (editing by condition alone). The output equals
    ``decode(encode(x0, source, ...), target, **target_condition)`` with the same generator.

    ``copies`` k decodes each input under k target conditions from its one encoding (the target condition then
    holds B·k entries, each input's k in a row; the output is (B·k, …) in that order), in the same batched
    model calls. ``mask`` (B, 1, h, w) at the sample size, in [0, 1]: after every step the output is the target
    trajectory inside it and the source trajectory outside (:func:`cyclediff.masks.blend`), which ends at x0.
    ``encoder="edit-friendly"``: the source trajectory is the edit-friendly inversion's (independent marginals
    q(x_t | x0)); decoding those draws with the target is the edit-friendly DDPM edit. ``timesteps``: the grid
    already computed for (steps, strength) by the caller (it is computed here otherwise).
    """
    target = source if target is None else target
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
        raise CycleDiffError(f"copies must be a positive integer; got {copies!r}")
    run = EncodingRun.prepare(x0, source, steps=steps, strength=strength, eta=eta, sampler=sampler,
                              generator=generator, condition=source_condition or {}, encoder=encoder,
                              timesteps=timesteps)
    if target is not source:  # one model: one grid
        check_grid(target, num_train_timesteps=source.schedule.num_train_timesteps, steps=steps, strength=strength,
                   timesteps=run.timesteps, sample=x0)
    target_cond = target.prepare_condition(x0.shape[0] * copies, **(target_condition or {}))

    def each(x: torch.Tensor) -> torch.Tensor:  # an input's tensor for each of its k decodings
        return x if copies == 1 else x.repeat_interleave(copies, dim=0)

    keep = None
    if mask is not None:  # one mask per input, or one per output
        per_output = copies > 1 and isinstance(mask, torch.Tensor) and mask.shape[0] == x0.shape[0] * copies
        keep = check_mask(mask, mask.shape[0] if per_output else x0.shape[0], tuple(x0.shape[2:])).to(x0)
        keep = keep if per_output else each(keep)
    x_source = run.start()
    x_target = each(x_source)
    for k, t, s in progress_steps(run.timesteps, progress=progress, desc="cycle"):
        out_source, out_target = evaluate([(source, x_source, run.condition), (target, x_target, target_cond)], t)
        # encoder: draw the source posterior, record ε; decoder: spend the same ε on the target's step
        x_source = run.step(k, t, s, out_source, x_source)
        step = transition(target.schedule, out_target, x_target, t, s, sampler=run.sampler, eta=run.eta)
        # outside the mask: the source trajectory, which after the last step is x0 itself (not x0 up to rounding)
        known = x0 if k == len(run.timesteps) - 1 else x_source
        x_target = blend(keep, decoder_step(step, each(run.eps[-1]), run.residual[-1]), each(known))
    return x_target, run.latent()

"""FlowEdit (Kulikov et al., ICCV 2025): inversion-free editing of rectified-flow models.

No code of the input is computed. On the model's full grid σ_0 > … > σ_T = 0, the first T − n_max steps are
skipped; at each kept step i a fresh draw n gives z_src = (1 − σ_i)·x_src + σ_i·n (a marginal of the input's
path) and z_tar = z_edit + z_src − x_src, and the edit moves by the difference of the velocities,

    z_edit ← z_edit + (σ_{i+1} − σ_i) · mean over n_avg draws of [v_target(z_tar) − v_source(z_src)],

starting from z_edit = x_src. The last n_min steps instead sample plainly with the target from z_edit plus a
fresh marginal's noise (x_tar = z_edit + (1 − σ)·x_src + σ·n − x_src). The velocities come from the adapters'
predictions read as x̂0 and ε̂ (v̂ = ε̂ − x̂0, the flow's dz/dσ), with the conditions' guidance (classifier-free,
or FLUX's embedded guidance) as each adapter applies it; source and target go through one batched call when
they are one model.

Compared with its family (:mod:`cyclediff.api.methods`): the noise of each step is drawn fresh, independent of
the previous steps — not the posterior chain of CycleDiffusion, nor the per-step marginals the edit-friendly
inversion records — so there is no latent to store or decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from ._noise import Generators, check_generators, gaussian_like
from ._progress import stepping
from .encoder import check_images
from .errors import CycleDiffError, IncompatibleModelError
from .models.base import Condition, Denoiser
from .options import FlowEdit
from .sampler import evaluate
from .settings import RANGES
from .transitions import model_prediction

FLOWEDIT = FlowEdit()  # its knobs' defaults


def check_flowedit(steps: Any, n_max: Any, n_min: Any, n_avg: Any) -> None:
    """FlowEdit's step counts, each refused in one line naming the fix."""
    for name, value, low in (("steps", steps, 1), ("n_max", n_max, 1), ("n_min", n_min, 0), ("n_avg", n_avg, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise CycleDiffError(f"FlowEdit's {name} must be an integer ≥ {low}; got {value!r}")
    most = RANGES["n_avg"][2]
    if n_avg > most:
        raise CycleDiffError(f"FlowEdit's n_avg must lie in [1, {most}]; got {n_avg} (each draw costs two network "
                             "calls a step; FlowEdit's paper averages 1)")
    if n_max > steps:
        raise CycleDiffError(f"FlowEdit's n_max ({n_max}) is more than its steps ({steps}); give n_max ≤ steps "
                             "(the edit runs the last n_max steps of the grid)")
    if n_min >= n_max:
        raise CycleDiffError(f"FlowEdit's n_min ({n_min}) must be less than n_max ({n_max}): the last n_min of the "
                             "n_max steps are sampled plainly, the others edit")


def draws_needed(n_max: int, n_min: int, n_avg: int) -> int:
    """How many noise draws one FlowEdit run takes, in its order: n_avg per edited step, one more to start the
    plain sampling of the last n_min steps."""
    return (n_max - n_min) * n_avg + (n_min > 0)


class _Draws:
    """FlowEdit's noise: from ``noise`` (an iterator of tensors shaped like the samples), else drawn per sample
    from the generators (sample i from generator i alone: the result does not depend on the batch)."""

    def __init__(self, x0: torch.Tensor, noise: Iterable[torch.Tensor] | None, generator: Generators,
                 needed: int) -> None:
        self.x0, self.needed, self.taken = x0, needed, 0
        self.noise: Iterator[torch.Tensor] | None = None if noise is None else iter(noise)
        self.gens = check_generators(generator, x0.shape[0]) if noise is None else None

    def next(self) -> torch.Tensor:
        self.taken += 1
        if self.noise is None:
            return gaussian_like(self.x0, self.gens)
        try:
            n = next(self.noise)
        except StopIteration:
            raise CycleDiffError(f"the noise ran out after {self.taken - 1} draws; this FlowEdit takes "
                                 f"{self.needed} (n_avg per edited step, one more when n_min > 0)") from None
        if not isinstance(n, torch.Tensor) or tuple(n.shape) != tuple(self.x0.shape):
            shape = tuple(n.shape) if isinstance(n, torch.Tensor) else type(n).__name__
            raise CycleDiffError(f"noise draw {self.taken} has shape {shape}; each must be shaped like the samples "
                                 f"{tuple(self.x0.shape)} (FLUX: unpacked latents)")
        if not torch.isfinite(n).all():
            raise CycleDiffError(f"noise draw {self.taken} holds NaN or Inf values; give finite noise (N(0, I) draws)")
        return n.to(self.x0)


def _velocities(branches: list[tuple[Denoiser, torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
    """v̂ = ε̂ − x̂0 of each (model, flow sample z, condition) at model timestep t, in one batched call per model
    (the core sees flow models in VP coordinates: z / c)."""
    schedules = [den.schedule_for(tuple(z.shape)) for den, z, _ in branches]
    inputs = [(den, z / schedule.scale_at(t), cond) for (den, z, cond), schedule in zip(branches, schedules)]
    velocities = []
    for (_, x, _), schedule, out in zip(inputs, schedules, evaluate(inputs, t)):
        x0, eps, _ = model_prediction(schedule, out, x, schedule.alpha_bar_at(t))
        velocities.append(eps - x0)
    return velocities


def _check_flow(model: Denoiser, shape: tuple[int, ...], role: str) -> Any:
    schedule = model.schedule_for(shape)
    if getattr(schedule, "path", "vp") != "rectified_flow":
        raise IncompatibleModelError(
            f"FlowEdit needs a rectified-flow model (SD3, FLUX, a flow pixel UNet); the {role} model is "
            f"{getattr(model, 'kind', type(model).__name__)}: use method cyclediffusion, edit-friendly, sdedit or "
            "ddib with it")
    return schedule


@torch.no_grad()
def flow_edit(x0: torch.Tensor, source: Denoiser, target: Denoiser | None = None, *, steps: int, n_max: int,
              n_min: int = FLOWEDIT.n_min, n_avg: int = FLOWEDIT.n_avg, source_condition: dict[str, Any] | None = None,
              target_condition: dict[str, Any] | None = None, noise: Iterable[torch.Tensor] | None = None,
              generator: Generators = None, progress: bool = False, timesteps: list[Any] | None = None) -> torch.Tensor:
    """FlowEdit of x0 (the model's sample space) from the source (model, condition) to the target's; returns the
    target samples. ``target`` defaults to ``source`` (an edit by condition alone); two models must share the
    sample space. ``noise``: every draw, in FlowEdit's order (see :func:`draws_needed`), else drawn from
    ``generator`` (one, or one per sample). ``timesteps``: the whole grid for ``steps``, when the caller computed
    it."""
    target = source if target is None else target
    check_flowedit(steps, n_max, n_min, n_avg)
    check_images(x0, source.data_range)
    source.check_sample(x0)
    shape = tuple(x0.shape)
    schedule = _check_flow(source, shape, "source")
    timesteps = list(timesteps or schedule.grid(steps))
    if target is not source and tuple(_check_flow(target, shape, "target").grid(steps)) != tuple(timesteps):
        raise IncompatibleModelError("the source and target models build different grids for these steps; FlowEdit "
                                     "needs one grid (align their scheduler configs)")
    sigmas = [schedule.sigma_at(t) for t in timesteps] + [0.0]
    src = source.prepare_condition(x0.shape[0], **(source_condition or {}))
    tar = target.prepare_condition(x0.shape[0], **(target_condition or {}))
    draws = _Draws(x0, noise, generator, draws_needed(n_max, n_min, n_avg))
    z_edit, x_tar = x0.clone(), None
    for i in stepping(range(steps - n_max, steps), desc="flowedit", progress=progress):
        t, sigma, dsigma = timesteps[i], sigmas[i], sigmas[i + 1] - sigmas[i]
        if steps - i > n_min:
            delta = torch.zeros_like(x0)
            for _ in range(n_avg):
                z_src = (1 - sigma) * x0 + sigma * draws.next()
                z_tar = z_edit + z_src - x0
                v_src, v_tar = _velocities([(source, z_src, src), (target, z_tar, tar)], t)
                delta = delta + (1 / n_avg) * (v_tar - v_src)
            z_edit = z_edit + dsigma * delta
        else:  # the last n_min steps: plain sampling with the target, from the edit plus a fresh marginal
            if x_tar is None:
                x_tar = z_edit + (sigma * draws.next() + (1 - sigma) * x0) - x0
            (v_tar,) = _velocities([(target, x_tar, tar)], t)
            x_tar = x_tar + dsigma * v_tar
    return z_edit if x_tar is None else x_tar


__all__ = ["check_flowedit", "draws_needed", "flow_edit"]

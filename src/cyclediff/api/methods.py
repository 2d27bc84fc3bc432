"""One switch over the ways of carrying an image from a source to a target (model, condition).

They differ in where each step's noise comes from: CycleDiffusion's posterior chain q(x_{t−1} | x_t, x0), the
edit-friendly inversion's independent marginals q(x_t | x0), FlowEdit's fresh draw at every step (no inversion),
SDEdit's fresh sampler noise after one marginal draw, DDIB's none (the deterministic ODE both ways)."""

from __future__ import annotations

from typing import Any

import torch

from ..baselines import ddib, flow_edit, sdedit
from ..checks import is_int
from ..cycle import cycle
from ..errors import CycleDiffError
from ..latent import Latent
from ..settings import EDIT, MASKED_METHODS, check_flowedit_knobs, check_setting, flowedit_n_max


def run_method(
    method: str, x0: torch.Tensor, source: Any, target: Any, *, steps: int, strength: float, eta: float,
    generator: Any, source_condition: dict[str, Any], target_condition: dict[str, Any], progress: bool,
    mask: torch.Tensor | None = None, copies: int = 1, n_avg: int = EDIT.n_avg, n_min: int = EDIT.n_min,
) -> tuple[torch.Tensor, Latent | None]:
    """(output in the model's sample space, the latent or None for the methods without one).

    ``mask`` (at the sample size) and ``copies`` are those of the encoders' methods (:func:`cyclediff.cycle.cycle`:
    cyclediffusion, edit-friendly). FlowEdit runs the last ``int(steps · strength)`` steps of the grid (its
    n_max), with ``n_avg`` and ``n_min``."""
    check_setting("method", method, required=True)
    check_flowedit_knobs(method, n_avg=n_avg, n_min=n_min)
    if method in MASKED_METHODS:
        return cycle(x0, source, target, steps=steps, strength=strength, eta=eta, generator=generator,
                     source_condition=source_condition, target_condition=target_condition, copies=copies,
                     mask=mask, progress=progress, encoder=method)
    if mask is not None or copies != 1:
        raise CycleDiffError(f"masks and many targets at once work with methods {' and '.join(MASKED_METHODS)} "
                             f"(their source trajectory ends at the input and is shared); not with {method}")
    if method == "flowedit":
        steps = check_setting("steps", steps, required=True)
        strength = check_setting("strength", strength, required=True)
        n_max = flowedit_n_max(steps, strength, n_min if is_int(n_min) else 0)  # a bad n_min: flow_edit's error
        return flow_edit(x0, source, target, steps=steps, n_max=n_max, n_min=n_min, n_avg=n_avg,
                         generator=generator, source_condition=source_condition,
                         target_condition=target_condition, progress=progress), None
    if method == "sdedit":
        return sdedit(x0, target, steps=steps, strength=strength, eta=eta, generator=generator,
                      target_condition=target_condition, progress=progress), None
    return ddib(x0, source, target, steps=steps, strength=strength, source_condition=source_condition,
                target_condition=target_condition, progress=progress), None


def resolve_mask(mask: Any, x0: torch.Tensor, image_size: tuple[int, int], source: Any, target: Any, *,
                 method: str, timesteps: list[float], generator: Any, source_condition: dict[str, Any],
                 target_condition: dict[str, Any], threshold: float = 0.5,
                 copies: int = 1) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(the mask at the sample size for :func:`run_method`, the mask at image size as used) from a user's mask:
    None, a (B, 1, H, W) tensor at image size, or "auto" (from the two conditions' disagreement, each target's
    own with many targets; drawn from copies of the generators, so the edit's own draws are unchanged)."""
    from .._noise import clone_generators
    from ..masks import auto_mask, check_mask, to_image_mask, to_sample_mask

    if mask is None:
        return None, None
    if method not in MASKED_METHODS:
        raise CycleDiffError(f"masks work with methods {' and '.join(MASKED_METHODS)}; not with {method}")
    size = tuple(x0.shape[2:])
    if isinstance(mask, str):
        if mask != "auto":
            raise CycleDiffError(f"mask must be a tensor, a mask image or 'auto'; got {mask!r}")
        xs = x0.repeat_interleave(copies, dim=0)
        n = xs.shape[0]
        gens = clone_generators(generator)
        if isinstance(gens, list):
            gens = [g for g in gens for _ in range(copies)] if copies > 1 else gens
        keep = auto_mask(xs, source, target, timesteps,
                         source_condition=source.prepare_condition(n, **_repeat(source_condition, copies)),
                         target_condition=target.prepare_condition(n, **target_condition), threshold=threshold,
                         generator=gens)
        return keep, to_image_mask(keep, image_size)
    if not isinstance(mask, torch.Tensor):
        raise CycleDiffError(f"mask must be a (B, 1, H, W) tensor, a mask image or 'auto'; got {type(mask).__name__}")
    given = check_mask(mask.to(x0.device), mask.shape[0] if mask.shape[0] > 1 else x0.shape[0], image_size)
    keep = to_sample_mask(given, size)
    return keep, to_image_mask(keep, image_size) if size != image_size else given


def _repeat(condition: dict[str, Any], copies: int) -> dict[str, Any]:
    """A condition of B inputs for B·copies rows (lists repeated element-wise; scalars stay)."""
    if copies == 1:
        return condition
    return {k: [v for v in val for _ in range(copies)] if isinstance(val, list) else val
            for k, val in condition.items()}

"""Local edits: where an edit may change the image.

A mask is (B, 1, H, W) in [0, 1] at image size, 1 where the output may change. The cycle blends, after every
step, the target trajectory inside the mask with the source trajectory outside it; the source trajectory is the
encoder's, which ends exactly at the input, so outside a binary mask the output *is* the input (for latent
models: its VAE latents, so the decoded pixels are the VAE reconstruction there).

:func:`auto_mask` finds the region from the disagreement of the source- and target-conditioned noise predictions
on noised copies of the input over the first steps of the grid (as DiffEdit does).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._noise import Generators, check_generators, gaussian_like
from .encoder import start_point
from .errors import CycleDiffError
from .options import knob_default
from .sampler import evaluate
from .transitions import model_prediction


def check_mask(mask: Any, batch: int, size: tuple[int, int]) -> torch.Tensor:
    """A mask as (B, 1, H, W) float in [0, 1] for ``batch`` images of ``size`` (H, W); one error otherwise."""
    if not isinstance(mask, torch.Tensor) or mask.is_meta:
        raise CycleDiffError(f"a mask is a (B, 1, H, W) tensor in [0, 1] (or 'auto'); got {type(mask).__name__}")
    m = mask.float()
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[:, None] if m.shape[0] == batch and m.shape[0] != 1 else m[None]
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] not in (1, batch) or tuple(m.shape[2:]) != tuple(size):
        raise CycleDiffError(f"the mask must be (B, 1, H, W) = ({batch}, 1, {size[0]}, {size[1]}) (the images' size "
                             f"after resizing); got {tuple(mask.shape)}")
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise CycleDiffError("the mask's values must lie in [0, 1] (1 = may change)")
    return m.expand(batch, -1, -1, -1)


def to_sample_mask(mask: torch.Tensor, sample_size: tuple[int, int]) -> torch.Tensor:
    """An image-size mask at the model's sample size (latent models: 1/8 of the image): a sample cell may change
    when any of its pixels may (max-pooling), so nothing the user masked is kept and nothing outside changes."""
    h, w = mask.shape[2:]
    if (h, w) == tuple(sample_size):
        return mask
    if h % sample_size[0] or w % sample_size[1]:
        raise CycleDiffError(f"mask {h}×{w} does not divide into the model's {sample_size[0]}×{sample_size[1]}")
    return F.max_pool2d(mask, kernel_size=(h // sample_size[0], w // sample_size[1]))


def to_image_mask(mask: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """A sample-size mask shown at image size (nearest: each cell a block), for previews."""
    return F.interpolate(mask, size=tuple(image_size), mode="nearest")


def blend(keep: torch.Tensor | None, x_target: torch.Tensor, x_source: torch.Tensor) -> torch.Tensor:
    """Target inside the mask, source outside (exactly the source where the mask is 0)."""
    return x_target if keep is None else keep * x_target + (1 - keep) * x_source


@torch.no_grad()
def auto_mask(x0: torch.Tensor, source: Any, target: Any, timesteps: list[int], *, source_condition: Any,
              target_condition: Any, threshold: float = knob_default("mask_threshold"), probe_steps: int = 5,
              generator: Generators = None) -> torch.Tensor:
    """A binary mask (B, 1, h, w) at the sample size where the target condition disagrees with the source.

    For each of the first ``probe_steps`` timesteps of the grid, x0 is noised with q(x_t | x0) and both models
    (or one model under both conditions, in one batched call) predict the noise; |ε̂_target − ε̂_source| is
    averaged over channels and timesteps, scaled to [0, 1] per image, and thresholded."""
    if not 0 < threshold < 1:
        raise CycleDiffError(f"the mask threshold must lie in (0, 1); got {threshold}")
    gens = check_generators(generator, x0.shape[0])
    total = torch.zeros(x0.shape[0], 1, *x0.shape[2:], device=x0.device)
    scale = torch.zeros(x0.shape[0], 1, 1, 1, device=x0.device)
    for t in timesteps[: max(1, probe_steps)]:
        ab = source.schedule.alpha_bar_at(t)
        x_t = start_point(x0, ab, gaussian_like(x0, gens))
        out_s, out_t = evaluate([(source, x_t, source_condition), (target, x_t, target_condition)], t)
        eps_s = model_prediction(source.schedule, out_s, x_t, ab)[1]
        eps_t = model_prediction(target.schedule, out_t, x_t, target.schedule.alpha_bar_at(t))[1]
        total += (eps_t - eps_s).abs().float().mean(dim=1, keepdim=True)
        scale += eps_s.abs().float().mean(dim=(1, 2, 3), keepdim=True)
    # disagreement at float-rounding level (identical conditions computed in different rows) is no disagreement:
    # scaled against at least 1e-4 of the noise's own size, it stays far below any threshold
    peak = torch.maximum(total.amax(dim=(1, 2, 3), keepdim=True), 1e-4 * scale).clamp_min(1e-12)
    return (total / peak >= threshold).float()


__all__ = ["auto_mask", "blend", "check_mask", "to_image_mask", "to_sample_mask"]

"""Local edits: where an edit may change the image.

A mask is (B, 1, H, W) in [0, 1] at image size, 1 where the output may change. The cycle blends, after every
step, the target trajectory inside the mask with the source trajectory outside it; the source trajectory is the
encoder's, which ends exactly at the input, so outside a binary mask the output *is* the input (for latent
models: its VAE latents; the API then keeps the input's own pixels there, :func:`cyclediff.api.head.outside_kept`,
as the VAE decoder would move them).

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


def check_mask(mask: Any, batch: int, size: tuple[int, ...]) -> torch.Tensor:
    """A mask as (B, 1, H, W) float in [0, 1] for ``batch`` images of ``size`` (H, W); for clips of ``size``
    (F, H, W), (B, 1, F, H, W): a mask per frame, or a (B, 1, H, W) one for every frame. One error otherwise."""
    if not isinstance(mask, torch.Tensor) or mask.is_meta:
        raise CycleDiffError(f"a mask is a (B, 1, H, W) tensor in [0, 1] (or 'auto'); got {type(mask).__name__}")
    m = mask.float()
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[:, None] if m.shape[0] == batch and m.shape[0] != 1 else m[None]
    if len(size) == 3 and m.dim() == 4 and tuple(m.shape[2:]) == tuple(size[1:]):
        m = m.unsqueeze(2).expand(-1, -1, size[0], -1, -1)  # one mask for every frame
    if m.dim() != 2 + len(size) or m.shape[1] != 1 or m.shape[0] not in (1, batch) or tuple(m.shape[2:]) != tuple(
            size):
        want = ", ".join(str(n) for n in (batch, 1, *size))
        axes = "(B, 1, F, H, W) or (B, 1, H, W)" if len(size) == 3 else "(B, 1, H, W)"
        raise CycleDiffError(f"the mask must be {axes} = ({want}) (the {'clips' if len(size) == 3 else 'images'}' "
                             f"size after resizing); got {tuple(mask.shape)}")
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise CycleDiffError("the mask's values must lie in [0, 1] (1 = may change)")
    return m.expand(batch, *m.shape[1:])


def to_sample_mask(mask: torch.Tensor, sample_size: tuple[int, ...]) -> torch.Tensor:
    """An image-size mask at the model's sample size (latent models: 1/8 of the image): a sample cell may change
    when any of its pixels may (max-pooling), so nothing the user masked is kept and nothing outside changes. A clip's
    (B, 1, F, H, W) mask is pooled in time as a causal video VAE groups frames (:func:`frame_groups`)."""
    if mask.dim() == 5:
        groups = frame_groups(mask.shape[2], sample_size[0])
        mask = torch.stack([mask[:, :, a:b].amax(dim=2) for a, b in groups], dim=2)
        b, _, f, h, w = mask.shape
        return to_sample_mask(mask.transpose(1, 2).reshape(b * f, 1, h, w), sample_size[1:]).reshape(
            b, f, 1, *sample_size[1:]).transpose(1, 2)
    h, w = mask.shape[2:]
    if (h, w) == tuple(sample_size):
        return mask
    if h % sample_size[0] or w % sample_size[1]:
        raise CycleDiffError(f"mask {h}×{w} does not divide into the model's {sample_size[0]}×{sample_size[1]}")
    return F.max_pool2d(mask, kernel_size=(h // sample_size[0], w // sample_size[1]))


def frame_groups(frames: int, latent_frames: int) -> list[tuple[int, int]]:
    """The frames [a, b) behind each latent frame of a causal video VAE (Wan's, LTX's, HunyuanVideo's): the first
    frame alone, then groups of k = (F − 1)/(f − 1); one group per frame when F = f."""
    if frames == latent_frames:
        return [(i, i + 1) for i in range(frames)]
    if latent_frames < 1 or (latent_frames == 1 and frames != 1) or (frames - 1) % max(latent_frames - 1, 1):
        raise CycleDiffError(f"a mask of {frames} frames does not group into the model's {latent_frames} latent "
                             "frames (1 + k·(f − 1) frames)")
    k = (frames - 1) // (latent_frames - 1)
    return [(0, 1)] + [(1 + k * i, 1 + k * (i + 1)) for i in range(latent_frames - 1)]


def to_image_mask(mask: torch.Tensor, image_size: tuple[int, ...]) -> torch.Tensor:
    """A sample-size mask shown at image size (nearest: each cell a block; a latent frame over its frames), for
    previews."""
    if mask.dim() == 5:
        index = [i for i, (a, b) in enumerate(frame_groups(image_size[0], mask.shape[2])) for _ in range(a, b)]
        return F.interpolate(mask[:, :, index], size=tuple(image_size), mode="nearest")
    return F.interpolate(mask, size=tuple(image_size), mode="nearest")


def blend(keep: torch.Tensor | None, x_target: torch.Tensor, x_source: torch.Tensor) -> torch.Tensor:
    """Target inside the mask, source outside (exactly the source where the mask is 0)."""
    return x_target if keep is None else keep * x_target + (1 - keep) * x_source


@torch.no_grad()
def auto_mask(x0: torch.Tensor, source: Any, target: Any, timesteps: list[int], *, source_condition: Any,
              target_condition: Any, threshold: float = knob_default("mask_threshold"), probe_steps: int = 5,
              generator: Generators = None, copies: int = 1) -> torch.Tensor:
    """A binary mask (B·copies, 1, h, w) at the sample size where the target condition disagrees with the source.

    For each of the first ``probe_steps`` timesteps of the grid, x0 is noised with q(x_t | x0) and both models
    (or one model under both conditions, in one batched call) predict the noise; |ε̂_target − ε̂_source| is
    averaged over channels and timesteps, scaled to [0, 1] per image, and thresholded. With ``copies`` targets per
    input (the conditions' rows input-major), the noised input is drawn once and shared by its targets: target i's
    mask is the mask of an edit to target i alone with the same generator."""
    if not 0 < threshold < 1:
        raise CycleDiffError(f"the mask threshold must lie in (0, 1); got {threshold}")
    gens = check_generators(generator, x0.shape[0])
    n = x0.shape[0] * copies
    total = torch.zeros(n, 1, *x0.shape[2:], device=x0.device)
    axes = tuple(range(1, x0.dim()))
    scale = torch.zeros(n, *[1] * (x0.dim() - 1), device=x0.device)
    for t in timesteps[: max(1, probe_steps)]:
        ab = source.schedule.alpha_bar_at(t)
        x_t = start_point(x0, ab, gaussian_like(x0, gens)).repeat_interleave(copies, dim=0)
        out_s, out_t = evaluate([(source, x_t, source_condition), (target, x_t, target_condition)], t)
        eps_s = model_prediction(source.schedule, out_s, x_t, ab)[1]
        eps_t = model_prediction(target.schedule, out_t, x_t, target.schedule.alpha_bar_at(t))[1]
        total += (eps_t - eps_s).abs().float().mean(dim=1, keepdim=True)
        scale += eps_s.abs().float().mean(dim=axes, keepdim=True)
    # disagreement at float-rounding level (identical conditions computed in different rows) is no disagreement:
    # scaled against at least 1e-4 of the noise's own size, it stays far below any threshold
    peak = torch.maximum(total.amax(dim=axes, keepdim=True), 1e-4 * scale).clamp_min(1e-12)
    return (total / peak >= threshold).float()


__all__ = ["auto_mask", "blend", "check_mask", "frame_groups", "to_image_mask", "to_sample_mask"]

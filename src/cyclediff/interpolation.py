"""Interpolation between two latents of the same grid: a path of codes whose decodings morph one image into
another while each Gaussian draw stays a plausible N(0, I) draw (spherical interpolation keeps its norm)."""

from __future__ import annotations

import dataclasses
import math

import torch

from .errors import CycleDiffError
from .latent import Latent

_SAME = ("timesteps", "residual", "sampler", "eta", "steps", "strength", "num_train_timesteps",
         "schedule_fingerprint", "variance_type")


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation of each sample's vector (dim 0 is the batch); linear where a and b are
    (anti-)parallel or zero. Exactly ``a`` at w = 0 and ``b`` at w = 1."""
    if w == 0:
        return a.clone()
    if w == 1:
        return b.clone()
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-300)
    theta = torch.arccos(cos.clamp(-1, 1))
    sin = torch.sin(theta)
    plain = sin.abs() < 1e-6
    safe = torch.where(plain, torch.ones_like(sin), sin)
    ca = torch.where(plain, torch.full_like(sin, 1 - w), torch.sin((1 - w) * theta) / safe)
    cb = torch.where(plain, torch.full_like(sin, w), torch.sin(w * theta) / safe)
    out = ca[:, None] * fa + cb[:, None] * fb
    return out.reshape(a.shape).to(a.dtype)


def interpolate(z_a: Latent, z_b: Latent, w: float) -> Latent:
    """The latent a fraction ``w`` of the way from ``z_a`` to ``z_b`` (same grid, sampler and shapes).

    Each step's Gaussian draw ε_k is interpolated spherically; ``x_start`` (which holds the image itself when the
    strength is below 1) and the deterministic residual entries linearly. ``w`` = 0 gives ``z_a``'s tensors and
    1 gives ``z_b``'s exactly, with their conditions: each decodes to its own image. Between two latents of
    different conditions (a 3 and an 8), the nearer end's condition goes with the code (``z_a``'s up to w = 0.5),
    so that every point of the path decodes under a condition a model was trained on; a condition given to
    ``decode`` (``decode(z, model, class_labels=…)``) replaces it."""
    if not isinstance(z_a, Latent) or not isinstance(z_b, Latent):
        raise CycleDiffError("interpolate takes two Latent objects (Latent.load(path) reads a latent file)")
    if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w):
        raise CycleDiffError(f"the weight w must be a finite number; got {w!r}")
    differ = [f for f in _SAME if getattr(z_a, f) != getattr(z_b, f)]
    if z_a.x_start.shape != z_b.x_start.shape:
        differ.append(f"shape {tuple(z_a.x_start.shape)} vs {tuple(z_b.x_start.shape)}")
    if differ:
        raise CycleDiffError(f"the two latents are not on the same grid (they differ in {', '.join(differ)}); encode "
                             "both with the same model, steps, strength, sampler and η")
    b_start, b_eps = z_b.x_start.to(z_a.x_start), z_b.eps.to(z_a.eps)
    x_start = z_a.x_start.lerp(b_start, float(w)) if w not in (0, 1) else (z_a.x_start, b_start)[int(w)].clone()
    eps = torch.stack([
        (z_a.eps[k].lerp(b_eps[k], float(w)) if w not in (0, 1) else (z_a.eps[k], b_eps[k])[int(w)].clone())
        if residual else slerp(z_a.eps[k], b_eps[k], float(w))
        for k, residual in enumerate(z_a.residual)
    ])
    condition = z_a.condition if w <= 0.5 else z_b.condition
    return dataclasses.replace(z_a, x_start=x_start, eps=eps, condition=condition,
                               model_id=z_a.model_id if z_a.model_id == z_b.model_id else None, seeds=None)


__all__ = ["interpolate", "slerp"]

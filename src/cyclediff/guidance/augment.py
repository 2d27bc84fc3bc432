"""Differentiable augmentation for energies (colour, translation, resize, cutout), after DiffAugment
(Zhao et al. 2020), as the paper uses to keep a CLIP energy from being fooled adversarially."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DiffAugment:
    """Random, differentiable transforms of images in [−1, 1] (B, C, H, W); each image draws its own."""

    color: bool = True
    translation: float = 0.125  # fraction of the side
    resize: tuple[float, float] = (0.8, 1.2)  # zoom range (1 = none)
    cutout: float = 0.5  # side of the cut-out square, fraction of the image side (0 = none)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator).to(x.device, x.dtype)

        b, _, h, w = x.shape
        if self.color:
            x = x + (rand(b, 1, 1, 1) - 0.5)  # brightness
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (rand(b, 1, 1, 1) * 2) + mean  # saturation
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (rand(b, 1, 1, 1) + 0.5) + mean  # contrast
        if self.resize != (1.0, 1.0) or self.translation:
            lo, hi = self.resize
            scale = lo + (hi - lo) * rand(b)
            shift = (rand(b, 2) * 2 - 1) * self.translation * 2  # grid coordinates span 2
            theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
            theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
            theta[:, :, 2] = shift
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.cutout > 0:
            ch, cw = max(1, int(h * self.cutout)), max(1, int(w * self.cutout))
            top = (rand(b) * (h - ch + 1)).long().clamp(max=h - ch)
            left = (rand(b) * (w - cw + 1)).long().clamp(max=w - cw)
            rows = torch.arange(h, device=x.device)[None, :, None]
            cols = torch.arange(w, device=x.device)[None, None, :]
            inside = ((rows >= top[:, None, None]) & (rows < (top + ch)[:, None, None])
                      & (cols >= left[:, None, None]) & (cols < (left + cw)[:, None, None]))
            x = x * (~inside)[:, None].to(x.dtype)
        return x

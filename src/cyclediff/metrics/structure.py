"""PIE-Bench's structure distance (Tumanyan et al.'s DINO self-similarity, as PnPInversion's evaluation computes
it): the MSE between the cosine self-similarity matrices of the last layer's attention keys of DINO ViT-B/8 for
two images.

Followed exactly, including what the official code does unusually:

- the images go in as **0–255 float pixels**: resized so that the shorter side is 224 (the longer at most 480)
  and "ImageNet-normalised" with the 0–1 means and stds, without dividing by 255 first;
- the resize is bilinear **without antialiasing** (torchvision 0.13 of the official environment resizes tensors
  so); the keys are those of the last block (layer 11), all tokens (the class token too), heads concatenated;
- the masked variants multiply the pixels by the mask first (zeros outside), as the official code does.

DINO comes through transformers (``facebook/dino-vitb8``, a ``ViTModel``): its ``key`` projection of a layer is the
key third of the hub model's fused ``qkv``, in the same head-major layout.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_MODEL = "facebook/dino-vitb8"


def official_resize(x: torch.Tensor, size: int = 224, max_size: int = 480) -> torch.Tensor:
    """torchvision's ``Resize(size, max_size=max_size)`` on a (B, C, H, W) float tensor as version 0.13 does it
    (bilinear, no antialiasing): the shorter side to ``size``, the longer in proportion (truncated), at most
    ``max_size``."""
    h, w = x.shape[-2:]
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = size, int(size * long / short)
    if new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    out = (new_short, new_long) if h <= w else (new_long, new_short)
    return F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=False)


def official_input(pixels255: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pixels in 0–255 → DINO's input as the official transform makes it (no /255)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=pixels255.dtype, device=pixels255.device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=pixels255.dtype, device=pixels255.device)[None, :, None, None]
    return (official_resize(pixels255) - mean) / std


def projections(model: Any, layer: int) -> tuple[Any, Any, Any]:
    """The (query, key, value) projections of a ViT block (transformers 5's names; it maps the hub checkpoints'
    ``encoder.layer.N.attention.attention.key`` onto them when it loads)."""
    att = model.layers[layer].attention
    return att.q_proj, att.k_proj, att.v_proj


def key_self_similarity(model: Any, x: torch.Tensor, layer: int = 11) -> torch.Tensor:
    """(B, T, T) cosine similarities of the ``layer``-th block's keys (T tokens, heads concatenated)."""
    captured: list[torch.Tensor] = []
    key = projections(model, layer)[1]
    handle = key.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        model(pixel_values=x, interpolate_pos_encoding=True)  # the hub DINO interpolates for any size
    finally:
        handle.remove()
    keys = captured[0]  # (B, T, heads · head_dim)
    norm = keys.norm(dim=2, keepdim=True)
    return (keys @ keys.transpose(1, 2)) / torch.clamp(norm @ norm.transpose(1, 2), min=1e-8)


@torch.no_grad()
def structure_distance(model: Any, pixels_a: torch.Tensor, pixels_b: torch.Tensor) -> float:
    """The official structure distance of two (3, H, W) images given in 0–255 (float): MSE of their key
    self-similarity matrices."""
    device = next(model.parameters()).device
    a, b = (official_input(p[None].float().to(device)) for p in (pixels_a, pixels_b))
    return float(F.mse_loss(key_self_similarity(model, b), key_self_similarity(model, a)))


def load_dino(spec: str = DINO_MODEL, device: Any = "cpu") -> Any:
    """DINO ViT (a transformers ``ViTModel``) from a hub id or folder, in eval mode."""
    from transformers import ViTModel

    from ..errors import CycleDiffError

    try:
        model = ViTModel.from_pretrained(spec, add_pooling_layer=False)
    except (OSError, ValueError) as err:
        raise CycleDiffError(f"cannot load the DINO model {spec!r} for the structure distance ({err}); give a hub id "
                             "or a local folder (--dino)") from err
    return model.to(device).eval().requires_grad_(False)


__all__ = ["DINO_MODEL", "key_self_similarity", "projections", "load_dino", "official_input", "official_resize",
           "structure_distance"]

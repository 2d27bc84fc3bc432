"""Image batches as users have them (tensors in [0, 1], PIL images) ↔ the tensors the core works on."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import IncompatibleModelError


def as_image_batch(images: Any) -> torch.Tensor:
    """A (B, C, H, W) float tensor in [0, 1] from such a tensor, a PIL image, or a list of same-sized PIL images."""
    if isinstance(images, torch.Tensor):
        x = images[None] if images.ndim == 3 else images
        if x.ndim != 4:
            raise IncompatibleModelError(f"images must be (B, C, H, W) in [0, 1]; got shape {tuple(images.shape)}")
        if x.shape[0] == 0:
            raise IncompatibleModelError("images is an empty batch (0 images); pass at least one image")
        if x.is_meta:
            raise IncompatibleModelError("images is a meta tensor (a shape without data); pass real values")
        if not x.is_floating_point():
            raise IncompatibleModelError(f"image tensors must be floating in [0, 1]; got {x.dtype} (divide by 255)")
        if not torch.isfinite(x).all():
            raise IncompatibleModelError("images contain NaN or Inf values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise IncompatibleModelError(f"images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]")
        return x.clamp(0, 1)
    items = [images] if hasattr(images, "convert") else list(images)
    if not items or not all(hasattr(i, "convert") for i in items):
        raise IncompatibleModelError("images must be a (B, C, H, W) tensor in [0, 1] or a list of PIL images")
    sizes = {i.size for i in items}
    if len(sizes) != 1:
        raise IncompatibleModelError(f"PIL images in one batch must share a size; got {sorted(sizes)}")
    arrays = [np.asarray(i.convert("RGB"), dtype=np.float32) / 255.0 for i in items]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_model_space(model: Any, images01: torch.Tensor, generator: Any) -> torch.Tensor:
    """[0, 1] images → the model's sample space (VAE latents for latent diffusion, [-1, 1] pixels otherwise)."""
    x = images01 * 2 - 1
    encode_images = getattr(model, "encode_images", None)
    return encode_images(x, generator) if encode_images is not None else x


def to_images(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The model's sample space → images in [0, 1]."""
    decode_latents = getattr(model, "decode_latents", None)
    x = decode_latents(x) if decode_latents is not None else x
    return (x / 2 + 0.5).clamp(0, 1)


def read_for(model: Any, path: Any, *, size: str | None, fit: str, max_pixels: int) -> torch.Tensor:
    """An image file as ``model`` takes it: [0, 1], the model's channels; latent-diffusion models at a multiple of
    their factor, pixel models at their own size (``size``: "N" shorter side or "WxH" first)."""
    from .._io import load_image, parse_size

    if hasattr(model, "encode_images"):
        return load_image(path, channels=3, size=parse_size(size), multiple=model.image_multiple, fit=fit,
                          max_pixels=max_pixels)
    c, h, w = model.sample_shape
    return load_image(path, channels=c, size=parse_size(size) or (h, w), fit=fit, max_pixels=max_pixels)

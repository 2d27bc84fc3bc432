"""Image batches as users have them (tensors in [0, 1], PIL images) ↔ the tensors the core works on."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..encoder import check_images
from ..errors import IncompatibleModelError
from ..models.base import Model


def as_image_batch(images: Any) -> torch.Tensor:
    """A (B, C, H, W) float tensor in [0, 1] from such a tensor, a PIL image, or a list of same-sized PIL images."""
    if isinstance(images, torch.Tensor):
        x = images[None] if images.ndim == 3 else images
        check_images(x, (0.0, 1.0), name="images", fix="divide by 255")
        return x.clamp(0, 1)
    from PIL import Image

    items = [images] if isinstance(images, Image.Image) else list(images)
    if not items or not all(isinstance(i, Image.Image) for i in items):
        raise IncompatibleModelError("images must be a (B, C, H, W) tensor in [0, 1] or a list of PIL images")
    sizes = {i.size for i in items}
    if len(sizes) != 1:
        raise IncompatibleModelError(f"PIL images in one batch must share a size; got {sorted(sizes)}")
    arrays = [np.asarray(i.convert("RGB"), dtype=np.float32) / 255.0 for i in items]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_for(model: Model, path: Any, *, size: str | None, fit: str, max_pixels: int,
             channels: int | None = None) -> torch.Tensor:
    """An image file as ``model``'s codec takes it: [0, 1], its channels; at a multiple of its factor (latent
    diffusion) or at its own size (pixel models); ``size`` ("N" shorter side or "WxH") resizes first.
    ``channels`` overrides the codec's (a mask drawn on the image: one channel, the image's geometry)."""
    from .._io import load_image, parse_size

    codec = model.codec
    return load_image(path, channels=channels or codec.channels, size=parse_size(size) or codec.image_size,
                      multiple=codec.multiple, fit=fit, max_pixels=max_pixels)

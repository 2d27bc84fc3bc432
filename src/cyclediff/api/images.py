"""Image batches as users have them (tensors in [0, 1], PIL images) ↔ the tensors the core works on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..encoder import check_images
from ..errors import CycleDiffError, IncompatibleModelError
from ..models.base import Model
from ..models.video import is_video_model


def as_image_batch(images: Any, *, channels: int = 3) -> torch.Tensor:
    """A (B, C, H, W) float tensor in [0, 1] from such a tensor, a PIL image, or a list of same-sized PIL images
    (converted to ``channels``: 1 grayscale, 3 RGB)."""
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
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(i.convert(mode), dtype=np.float32).reshape(i.size[1], i.size[0], -1) / 255.0 for i in items]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_pil(images: torch.Tensor) -> list:
    """(B, C, H, W) images in [0, 1] as PIL images (8-bit; "L" for one channel, "RGB" for three)."""
    from PIL import Image

    arrays = (images.detach().float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return [Image.fromarray(a[..., 0], "L") if a.shape[-1] == 1 else Image.fromarray(a, "RGB") for a in arrays]


class PilImages:
    """``result.pil()``: the result's images as PIL images, as diffusers' pipelines return them."""

    images: torch.Tensor

    def pil(self) -> list:
        return to_pil(self.images)


def for_model(model: Model, images: Any) -> torch.Tensor:
    """``images`` as :func:`as_image_batch` reads them, with ``model``'s channels and polarity
    (:func:`match_polarity`); a tensor with other channels than the model's is one error naming the fix."""
    channels = model.codec.channels
    x = as_image_batch(images, channels=channels)
    if x.shape[1] != channels:
        fix = "x.mean(1, keepdim=True) for grayscale" if channels == 1 else "x.expand(-1, 3, -1, -1) for RGB"
        raise IncompatibleModelError(f"the model takes {channels}-channel images; got {x.shape[1]} channels "
                                     f"(use {fix}, or pass PIL images, which are converted)")
    return match_polarity(model, x)


def match_polarity(model: Model, x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] with the polarity ``model`` was trained on. A model whose codec says its training images
    were light strokes on a dark ground (``foreground="light"``: the demo digits) fed an image whose border is
    light (dark strokes on white paper) would make meaningless output: such images are inverted, with a warning
    that says so. Models that declare no polarity take images as they are."""
    foreground = getattr(model.codec, "foreground", None)
    if foreground not in ("light", "dark") or x.shape[-1] < 3 or x.shape[-2] < 3:
        return x
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
    ground = border.flatten(1).mean(1)  # per image
    wrong = ground > 0.5 if foreground == "light" else ground < 0.5
    if not bool(wrong.any()):
        return x
    import warnings

    which = ", ".join(str(i) for i in wrong.nonzero().flatten().tolist())
    ink = {"light": "light strokes on a dark ground", "dark": "dark strokes on a light ground"}[foreground]
    kind = "clip(s)" if x.ndim == 5 else "image(s)"
    warnings.warn(f"the model draws {ink}; {kind} {which} are the other way round, so they were inverted for it "
                  "(the output keeps the model's polarity)", stacklevel=2)
    return torch.where(wrong.view(-1, *[1] * (x.ndim - 1)), 1 - x, x)


def read_for(model: Model, path: Any, *, size: str | None, fit: str, max_pixels: int,
             channels: int | None = None) -> torch.Tensor:
    """An image file as ``model``'s codec takes it: [0, 1], its channels; at a multiple of its factor (latent
    diffusion) or at its own size (pixel models); ``size`` ("N" shorter side or "WxH") resizes first.
    ``channels`` overrides the codec's (a mask drawn on the image: one channel, the image's geometry)."""
    from .._images import load_image
    from ..checks import parse_size

    if channels is None and is_video_model(model):
        if Path(path).is_dir():  # a folder that is no clip (one of clips, or without frames): not "an image"
            from .._video import not_a_clip_folder

            raise CycleDiffError(not_a_clip_folder(Path(path)))
        raise IncompatibleModelError(
            f"{Path(path).name} is an image, but the model is {model.kind}, which edits clips; give a clip (.mp4, "
            ".webm, .mov, .gif or a folder of frames), or an image model")
    codec = model.codec
    x = load_image(path, channels=channels or codec.channels, size=parse_size(size) or codec.image_size,
                   multiple=codec.multiple, fit=fit, max_pixels=max_pixels)
    return x if channels is not None else match_polarity(model, x)

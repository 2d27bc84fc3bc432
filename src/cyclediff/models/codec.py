"""Codecs: images in [0, 1] ↔ a model's sample space. Pixel models use the identity (rescaled to [−1, 1]), latent
models their VAE. Every caller goes through a model's ``codec`` instead of probing what kind of model it has."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import IncompatibleModelError


@runtime_checkable
class Codec(Protocol):
    """Images ↔ model space for one model."""

    #: image sides must be multiples of this (1: any size)
    multiple: int
    #: (H, W) images must have (pixel models: their training size), or None (any multiple of ``multiple``)
    image_size: tuple[int, int] | None
    #: channels of the images (1 or 3)
    channels: int
    #: (H, W) of the images the model makes by default
    default_size: tuple[int, int]

    def encode(self, images01: torch.Tensor, generator: Any = None) -> torch.Tensor:
        """(B, C, H, W) images in [0, 1] → samples of the model (e.g. scaled VAE latents)."""

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Samples → images in [−1, 1] (not clamped), differentiably."""

    def same_space(self, other: Codec) -> bool:
        """Whether samples of this model mean the same images for ``other``'s (translation needs it)."""


class PixelCodec:
    """Pixel-space models: samples are the images themselves, in [−1, 1]."""

    multiple = 1

    def __init__(self, channels: int, image_size: tuple[int, int]) -> None:
        self.channels, self.image_size = channels, image_size

    @property
    def default_size(self) -> tuple[int, int]:
        return self.image_size

    def encode(self, images01: torch.Tensor, generator: Any = None) -> torch.Tensor:
        return images01 * 2 - 1

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def same_space(self, other: Codec) -> bool:
        return isinstance(other, PixelCodec)


class VaeCodec:
    """Latent diffusion: images ↔ scaled VAE latents through a model's ``encode_images`` / ``decode_latents``."""

    channels = 3
    image_size = None

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def multiple(self) -> int:
        return self.model.image_multiple

    @property
    def vae(self) -> Any:
        return self.model.vae

    @property
    def default_size(self) -> tuple[int, int]:
        """(H, W) of the images the model makes by default: its latent size × the VAE factor."""
        _, h, w = self.model.sample_shape
        f = self.model.vae_scale_factor
        return (h * f, w * f)

    def encode(self, images01: torch.Tensor, generator: Any = None) -> torch.Tensor:
        return self.model.encode_images(images01 * 2 - 1, generator)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.decode_latents(x)

    def same_space(self, other: Codec) -> bool:
        """The same VAE: one object, or the same config and weights."""
        if not isinstance(other, VaeCodec):
            return False
        a, b = self.vae, other.vae
        if a is b:
            return True
        return dict(a.config) == dict(b.config) and all(
            torch.equal(p, q.to(p.device, p.dtype)) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def to_model_space(model: Any, images01: torch.Tensor, generator: Any) -> torch.Tensor:
    """[0, 1] images → the model's sample space."""
    return model.codec.encode(images01, generator)


def to_images(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The model's sample space → images in [0, 1]."""
    return (model.codec.decode(x) / 2 + 0.5).clamp(0, 1)


def images_of(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Model-space samples → images in [−1, 1], differentiably (what energies see)."""
    return model.codec.decode(x).clamp(-1, 1)


def check_same_space(source: Any, target: Any) -> None:
    """Both pixel models, or latent-diffusion models with the same VAE (same config and weights)."""
    a, b = source.codec, target.codec
    if a.same_space(b):
        return
    if isinstance(a, VaeCodec) and isinstance(b, VaeCodec):
        raise IncompatibleModelError(
            "the two latent-diffusion models have different VAEs, so their latent spaces differ; "
            "translate between models that share one"
        )
    raise IncompatibleModelError(
        "source and target must both be pixel models or both latent-diffusion models sharing a VAE"
    )

"""Codecs: images in [0, 1] ↔ a model's sample space. Pixel models use the identity (rescaled to [−1, 1]), latent
models their VAE. Every caller goes through a model's ``codec`` instead of probing what kind of model it has."""

from __future__ import annotations

import hashlib
import weakref
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

    def __init__(self, channels: int, image_size: tuple[int, int], *, foreground: str | None = None) -> None:
        self.channels, self.image_size = channels, image_size
        self.foreground = foreground  # "light" / "dark": the training images' strokes against their ground

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
    """Latent diffusion: images ↔ scaled VAE latents. The codec owns the VAE and its scaling (and shift); the
    network it serves never sees it. ``downsampling``: the network's own factor on the latents (its UNet levels or
    its patch size); ``latent_size``: (h, w) of the latents the model makes by default."""

    channels = 3
    image_size = None
    execution_device: Any = None  # where the VAE runs when offloading stores it elsewhere (its hooks move it)

    def __init__(self, vae: Any, *, downsampling: int, latent_size: tuple[int, int]) -> None:
        self.vae, self.downsampling, self.latent_size = vae, downsampling, latent_size
        self._float32: Any = None

    @property
    def factor(self) -> int:
        """Pixels per latent along a side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the VAE's factor × the network's downsampling."""
        return self.factor * self.downsampling

    @property
    def default_size(self) -> tuple[int, int]:
        """(H, W) of the images the model makes by default: its latent size × the VAE factor."""
        return (self.latent_size[0] * self.factor, self.latent_size[1] * self.factor)

    def encode(self, images01: torch.Tensor, generator: Any = None) -> torch.Tensor:
        return self.encode_images(images01 * 2 - 1, generator)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_latents(x)

    def encode_images(self, images: torch.Tensor, generator: Any = None, *, sample: bool = True) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] → scaled VAE latents (B, c, H/f, W/f).

        ``sample=True`` draws from the VAE posterior with ``generator`` (one, or one per image), as diffusers'
        img2img pipelines do; ``sample=False`` takes its mean.
        """
        from .._noise import check_generators

        m = self.multiple
        if images.ndim != 4 or images.shape[1] != self.vae.config.in_channels:
            raise IncompatibleModelError(
                f"images must be (B, {self.vae.config.in_channels}, H, W); got shape {tuple(images.shape)}"
            )
        if images.shape[2] % m or images.shape[3] % m:
            raise IncompatibleModelError(
                f"image sides must be multiples of {m} for this model; got {tuple(images.shape[2:])} "
                "(resize or center-crop first; the CLI's --size does it)"
            )
        gens = check_generators(generator, images.shape[0])
        with torch.no_grad():
            vae = self.runnable_vae()
            dist = vae.encode(images.to(self.execution_device or vae.device, vae.dtype)).latent_dist
            latents = dist.sample(gens) if sample else dist.mode()
        shift = self.vae.config.get("shift_factor") or 0.0
        return ((latents - shift) * self.vae.config.scaling_factor).to(images.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents → images in [-1, 1] (not clamped), in the latents' dtype."""
        shift = self.vae.config.get("shift_factor") or 0.0
        z = latents / self.vae.config.scaling_factor + shift
        vae = self.runnable_vae()
        return vae.decode(z.to(self.execution_device or vae.device, vae.dtype)).sample.to(latents.dtype)

    def runnable_vae(self) -> Any:
        """The VAE to run: a float16 VAE whose config says ``force_upcast`` (SDXL's overflows to NaN in float16)
        runs as a float32 copy, as diffusers' SDXL pipeline does, without changing the pipeline's own VAE.
        bfloat16 has float32's range and stays."""
        if self.vae.dtype != torch.float16 or not self.vae.config.get("force_upcast", False):
            return self.vae
        if self._float32 is None:
            import copy

            from ._compat import diffusers_quiet

            with diffusers_quiet():  # its "modules to keep in float32" note: this copy is all float32
                self._float32 = copy.deepcopy(self.vae).to(torch.float32)
        return self._float32

    def same_space(self, other: Codec) -> bool:
        """The same VAE: one object, or the same latent config (:func:`latent_config`: not where it was loaded
        from) and the same weights (:func:`vae_digest`, computed once per VAE; compared value by value when the two
        are stored in different dtypes)."""
        if not isinstance(other, VaeCodec):
            return False
        a, b = self.vae, other.vae
        if a is b:
            return True
        if latent_config(a) != latent_config(b):
            return False
        if a.dtype == b.dtype:
            return vae_digest(a) == vae_digest(b)
        return all(torch.equal(p, q.to(p.device, p.dtype))
                   for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def latent_config(vae: Any) -> dict[str, Any]:
    """What of a VAE's config defines its latent space: every public key (not ``_name_or_path``,
    ``_diffusers_version``, ``_class_name``, ``_use_default_values``: where and how it was saved)."""
    return {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}


_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def vae_digest(vae: Any) -> str:
    """sha256 of a VAE's weights (their names, dtypes, shapes and values), computed once per VAE object (the
    weights are frozen once loaded)."""
    digest = _DIGESTS.get(vae)
    if digest is None:
        h = hashlib.sha256()
        with torch.no_grad():
            for name, t in vae.state_dict().items():
                t = t.detach().to("cpu").contiguous()
                h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        digest = _DIGESTS[vae] = h.hexdigest()
    return digest


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

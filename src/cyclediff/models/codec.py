"""Codecs: images in [0, 1] ↔ a model's sample space. Pixel models use the identity (rescaled to [−1, 1]), latent
models their VAE. Every caller goes through a model's ``codec`` instead of probing what kind of model it has."""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import IncompatibleModelError


@runtime_checkable
class Codec(Protocol):
    """Images ↔ model space for one model."""

    #: image sides must be multiples of this (1: any size)
    multiple: int
    #: frames per latent frame of a video codec ((B, C, F, H, W) clips); 1 for images
    temporal: int
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
    temporal = 1

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
    temporal = 1  # a video VAE's codec (models/wan.py) says its own
    execution_device: Any = None  # where the VAE runs when offloading stores it elsewhere (its hooks move it)

    def __init__(self, vae: Any, *, downsampling: int, latent_size: tuple[int, int]) -> None:
        self.vae, self.downsampling, self.latent_size = vae, downsampling, latent_size
        self._float32: Any = None

    @property
    def factor(self) -> int:
        """Pixels per latent along a side, from the VAE's config (:func:`spatial_factor`)."""
        return spatial_factor(self.vae.config)

    @property
    def image_channels(self) -> int:
        """The channels of the images the VAE takes (:func:`image_channels` of its config)."""
        return image_channels(self.vae.config)

    @property
    def normalisation(self) -> LatentAffine:
        """The VAE latents' normalisation, read from its config now (:meth:`LatentAffine.of`)."""
        return LatentAffine.of(self.vae.config)

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

        m, channels = self.multiple, self.image_channels
        if images.ndim not in (4, 5) or images.shape[1] != channels:
            raise IncompatibleModelError(
                f"images must be (B, {channels}, H, W) (or (B, {channels}, F, H, W) for a video VAE); got shape "
                f"{tuple(images.shape)}"
            )
        if images.shape[-2] % m or images.shape[-1] % m:
            raise IncompatibleModelError(
                f"image sides must be multiples of {m} for this model; got {tuple(images.shape[-2:])} "
                "(resize or center-crop first; the CLI's --size does it)"
            )
        gens = check_generators(generator, images.shape[0])
        with torch.no_grad():
            vae = self.runnable_vae()
            latents = latent_of(vae.encode(images.to(self.execution_device or vae.device, vae.dtype)), gens, sample)
        return self.normalisation.normalise(latents).to(images.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents → images in [-1, 1] (not clamped), in the latents' dtype."""
        z = self.normalisation.denormalise(latents)
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


@dataclass(frozen=True)
class LatentAffine:
    """A VAE's latent normalisation, one affine per channel: x = (z − shift) · scale, z = x / scale + shift (the
    network sees x). ``shift`` and ``scale`` are numbers (SD's ``shift_factor`` / ``scaling_factor``: the same for
    every channel, applied as Python numbers, exactly as before) or (C,) tensors (Wan's and Qwen-Image's
    ``latents_mean`` / ``latents_std``: shift = mean, scale = 1 / std), broadcast over channel axis 1 of a latent of
    any rank ((B, C, H, W), or (B, C, F, H, W) with frames)."""

    shift: float | torch.Tensor = 0.0
    scale: float | torch.Tensor = 1.0

    @classmethod
    def of(cls, config: Any) -> LatentAffine:
        """The normalisation a VAE config says: ``latents_mean`` / ``latents_std`` lists when it has them (then a
        ``scaling_factor`` other than 1 multiplies too), else its ``scaling_factor`` and ``shift_factor``."""
        factor = config.get("scaling_factor")
        factor = 1.0 if factor is None else float(factor)
        mean, std = config.get("latents_mean"), config.get("latents_std")
        if mean is not None and std is not None:
            std = torch.tensor(std, dtype=torch.float32)
            return cls(torch.tensor(mean, dtype=torch.float32), factor / std)
        return cls(float(config.get("shift_factor") or 0.0), factor)

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latents → what the network sees."""
        return (z - _per_channel(self.shift, z)) * _per_channel(self.scale, z)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """What the network sees → VAE latents (the inverse of :meth:`normalise`)."""
        return x / _per_channel(self.scale, x) + _per_channel(self.shift, x)


def _per_channel(value: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """A number as it is; a (C,) tensor shaped to broadcast over axis 1 of ``like``, in its dtype and device."""
    if not isinstance(value, torch.Tensor):
        return value
    if like.ndim < 2 or like.shape[1] != value.numel():
        raise IncompatibleModelError(f"latents must have {value.numel()} channels on axis 1 (the VAE's latents_mean "
                                     f"has {value.numel()}); got shape {tuple(like.shape)}")
    return value.to(like.device, like.dtype).reshape(1, -1, *([1] * (like.ndim - 2)))


def latent_of(encoded: Any, generator: Any = None, sample: bool = True) -> torch.Tensor:
    """The latent of a VAE's ``encode`` output: a draw from its posterior with ``generator`` (``sample=True``) or
    the posterior's mode, for a VAE with ``.latent_dist`` (AutoencoderKL, Wan's, Qwen-Image's); the latent itself
    for a deterministic one with ``.latent`` (SANA's DC-AE)."""
    dist = getattr(encoded, "latent_dist", None)
    if dist is not None:
        return dist.sample(generator) if sample else dist.mode()
    latent = getattr(encoded, "latent", None)
    if latent is None:
        raise IncompatibleModelError(f"the VAE's encode gave a {type(encoded).__name__} with neither latent_dist nor "
                                     "latent; cyclediff cannot read its latents")
    return latent


def spatial_factor(config: Any) -> int:
    """Pixels per latent along a side, from a VAE config: Wan's ``scale_factor_spatial``, DC-AE's
    ``encoder_block_out_channels`` (one halving between levels), Qwen-Image's ``temperal_downsample`` (one spatial
    halving per entry), AutoencoderKL's ``block_out_channels``."""
    if config.get("scale_factor_spatial"):
        return int(config.get("scale_factor_spatial"))
    if config.get("encoder_block_out_channels"):
        return 2 ** (len(config.get("encoder_block_out_channels")) - 1)
    if config.get("temperal_downsample") is not None and not config.get("block_out_channels"):
        return 2 ** len(config.get("temperal_downsample"))
    return 2 ** (len(config.get("block_out_channels")) - 1)


def image_channels(config: Any) -> int:
    """The image channels a VAE takes (``in_channels``; Qwen-Image's ``input_channels``; 3 when unsaid)."""
    return int(config.get("in_channels") or config.get("input_channels") or 3)


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

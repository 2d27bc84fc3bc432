"""The VAE codec beyond SD's AutoencoderKL: a per-channel latent normalisation (Wan's and Qwen-Image's
``latents_mean`` / ``latents_std``), a deterministic VAE whose encode gives ``.latent`` (SANA's DC-AE), latents with
a frame axis, and the spatial factor from each kind of config; SD's scalar scaling stays bit for bit as before."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers.configuration_utils import FrozenDict

from cyclediff import IncompatibleModelError
from cyclediff.models.codec import LatentAffine, VaeCodec, spatial_factor
from tiny_sd import photos, vae

MEAN, STD = [0.5, -1.0, 2.0, 0.25], [2.0, 0.5, 4.0, 1.5]


class StubVae(torch.nn.Module):
    """A deterministic stand-in VAE: latents are 2×2 mean-pooled pixels mixed into 4 channels (any leading axes,
    frames too); encode returns ``.latent`` (as DC-AE) or ``.latent_dist`` (as AutoencoderKL); decode records
    what it was given."""

    def __init__(self, config: dict, dist: bool = False) -> None:
        super().__init__()
        self.config = FrozenDict({"in_channels": 3, **config})
        self.mix = torch.nn.Parameter(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)))
        self.dist, self.decoded = dist, []

    @property
    def dtype(self) -> torch.dtype:
        return self.mix.dtype

    @property
    def device(self) -> torch.device:
        return self.mix.device

    def encode(self, x: torch.Tensor) -> SimpleNamespace:
        h, w = x.shape[-2:]
        pooled = x.reshape(*x.shape[:-2], h // 2, 2, w // 2, 2).mean((-3, -1))
        z = torch.einsum("oc,bc...->bo...", self.mix, pooled)
        if not self.dist:
            return SimpleNamespace(latent=z)
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: z, sample=lambda g: z + 1.0))

    def decode(self, z: torch.Tensor) -> SimpleNamespace:
        self.decoded.append(z)
        image = z[:, :3].repeat_interleave(2, -1).repeat_interleave(2, -2)
        return SimpleNamespace(sample=image)


def codec_of(stub: StubVae) -> VaeCodec:
    return VaeCodec(stub, downsampling=1, latent_size=(4, 4))


def per_channel(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, 4) + (1,) * (z.ndim - 2)
    return torch.tensor(MEAN).reshape(shape), torch.tensor(STD).reshape(shape)


def test_a_per_channel_mean_and_std_normalise_each_channel_and_decode_inverts_it():
    stub = StubVae({"latents_mean": MEAN, "latents_std": STD, "block_out_channels": [8, 16]})
    codec, images = codec_of(stub), photos(2, size=8) * 2 - 1
    x = codec.encode_images(images, sample=False)
    z = stub.encode(images).latent
    mean, std = per_channel(z)
    assert torch.allclose(x, (z - mean) / std, atol=1e-6)
    assert not torch.allclose(x[:, 0], (z[:, 0] - MEAN[1]) / STD[1])  # really per channel
    codec.decode_latents(x)
    assert torch.allclose(stub.decoded[-1], z, atol=1e-6)


def test_a_vae_whose_encode_gives_latent_works_and_one_with_latent_dist_samples_with_the_generator():
    images = photos(1, size=8) * 2 - 1
    plain = StubVae({"scaling_factor": 0.5, "encoder_block_out_channels": [8, 16]})
    assert torch.equal(codec_of(plain).encode_images(images), plain.encode(images).latent * 0.5)
    assert codec_of(plain).factor == 2
    drawn = StubVae({"scaling_factor": 0.5, "block_out_channels": [8, 16]}, dist=True)
    z = drawn.encode(images).latent_dist.mode()
    assert torch.equal(codec_of(drawn).encode_images(images, sample=False), z * 0.5)
    assert torch.equal(codec_of(drawn).encode_images(images, torch.Generator()), (z + 1) * 0.5)


def test_a_latent_with_a_frame_axis_round_trips():
    stub = StubVae({"latents_mean": MEAN, "latents_std": STD, "scale_factor_spatial": 2})
    codec = codec_of(stub)
    video = torch.rand(2, 3, 5, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (B, C, F, H, W)
    x = codec.encode_images(video)
    z = stub.encode(video).latent
    assert x.shape == (2, 4, 5, 4, 4)
    mean, std = per_channel(z)
    assert torch.allclose(x, (z - mean) / std, atol=1e-6)
    codec.decode_latents(x)
    assert torch.allclose(stub.decoded[-1], z, atol=1e-6)
    with pytest.raises(IncompatibleModelError, match="latents must have 4 channels on axis 1"):
        codec.decode_latents(x[:, :3])


def test_the_spatial_factor_comes_from_each_kind_of_config():
    assert spatial_factor({"block_out_channels": [128, 256, 512, 512]}) == 8  # AutoencoderKL
    assert spatial_factor({"encoder_block_out_channels": [128, 256, 512, 512, 1024, 1024]}) == 32  # DC-AE
    assert spatial_factor({"scale_factor_spatial": 16, "temperal_downsample": [False, True, True]}) == 16  # Wan
    assert spatial_factor({"temperal_downsample": [False, True, True]}) == 8  # Qwen-Image


def test_sd_scalar_scaling_and_shift_are_bit_for_bit_the_former_formula():
    model = vae(seed=2)
    model.register_to_config(scaling_factor=1.5305, shift_factor=0.0609)
    codec, images = VaeCodec(model, downsampling=1, latent_size=(8, 8)), photos(2) * 2 - 1
    with torch.no_grad():
        z = model.encode(images).latent_dist.mode()
    x = codec.encode_images(images, sample=False)
    assert torch.equal(x, (z - 0.0609) * 1.5305)
    assert torch.equal(LatentAffine.of(model.config).denormalise(x), x / 1.5305 + 0.0609)

"""Encode an image into the stochastic latent space, decode it back exactly, then decode it under other models.

Runs offline in seconds: the UNets are tiny and random (any diffusers UNet2DModel works the same way; load a real
one with PixelDenoiser.from_pretrained("google/ddpm-cat-256")).

    .venv/bin/python examples/quickstart.py [OUT_DIR]
"""

import sys
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DModel

from cyclediff import Latent, decode, encode
from cyclediff.models import PixelDenoiser


def tiny_unet(seed: int) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, num_class_embeds=10)


out = Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart-out")
config = DDIMScheduler(set_alpha_to_one=False, steps_offset=1).config
den = PixelDenoiser(tiny_unet(0), config)

# Two 32×32 test images in [-1, 1]: a colour gradient and a checkerboard.
u = torch.linspace(-1, 1, 32)
gradient = torch.stack([u[None, :].expand(32, 32), u[:, None].expand(32, 32), -u[None, :].expand(32, 32)])
checker = ((torch.arange(32)[:, None] // 8 + torch.arange(32)[None, :] // 8) % 2 * 2 - 1.0).expand(3, 32, 32)
x0 = torch.stack([gradient, checker])

gens = [torch.Generator().manual_seed(s) for s in (0, 1)]  # one generator per image: batch-invariant
z = encode(x0, den, steps=50, strength=0.8, eta=0.1, generator=gens, class_labels=[3, 3])
print(f"latent: x_start {tuple(z.x_start.shape)} + {len(z.timesteps)} draws, t = {z.timesteps[0]}..{z.timesteps[-1]}")

path = z.save(out / "images.latent.safetensors")
z = Latent.load(path)
x = decode(z, den)  # same model and class: the input comes back
print(f"reconstruction error (same model, same class): {(x - x0).abs().max().item():.2e}")

other_class = decode(z, den, class_labels=[7, 7])
other_model = decode(z, PixelDenoiser(tiny_unet(1), config))
print(f"change under another class label:             {(other_class - x0).abs().mean().item():.3f} (mean |Δ|)")
print(f"change under another model, same grid:         {(other_model - x0).abs().mean().item():.3f} (mean |Δ|)")
print(f"wrote {path}")

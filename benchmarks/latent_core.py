"""Latent-space core: reconstruction error of decode(encode(x0)), and decode speed beside diffusers' pipelines.

    .venv/bin/python benchmarks/latent_core.py            # CPU, about two minutes
    .venv/bin/python benchmarks/latent_core.py --device cuda --size 64

Part 1 prints, per scheduler config, sampler and prediction type, the largest |decode(encode(x0)) − x0| over a
batch of random images in float32 and float64 (random UNet weights: the worst case, as ε is then far from the
model's mean). Part 2 times sampling from the prior with our decoder against diffusers' DDIMPipeline /
DDPMPipeline on the same UNet, seed and steps, and checks the images agree.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.utils import logging as diffusers_logging

from cyclediff import decode, encode, sample_latent
from cyclediff.models import PixelDenoiser

diffusers_logging.set_verbosity_error()

CONFIGS = {
    "ddim, final ᾱ=1": DDIMScheduler().config,
    "ddim, SD-style (final ᾱ=ᾱ_0, offset 1)": DDIMScheduler(set_alpha_to_one=False, steps_offset=1).config,
    "ddim, final ᾱ=ᾱ_0, offset 0": DDIMScheduler(set_alpha_to_one=False).config,
    "ddpm, fixed-small": DDPMScheduler().config,
    "ddpm, fixed-large": DDPMScheduler(variance_type="fixed_large").config,
    "ddpm, learned-range": DDPMScheduler(variance_type="learned_range").config,
}


def make_unet(size: int, channels: int, out_channels: int, dtype: torch.dtype, device: str) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=out_channels, layers_per_block=1,
        block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
    ).to(device, dtype).eval()


def reconstruction(args) -> list[dict]:
    rows = []
    for name, config in CONFIGS.items():
        learned = config.get("variance_type") == "learned_range"
        samplers = ["ddpm"] if learned else ["ddim", "ddpm"]
        for sampler in samplers:
            for prediction_type in ("epsilon", "v_prediction", "sample"):
                row = {"config": name, "sampler": sampler, "prediction_type": prediction_type}
                for dtype in (torch.float32, torch.float64):
                    unet = make_unet(args.size, 3, 6 if learned else 3, dtype, args.device)
                    den = PixelDenoiser(unet, {**config, "prediction_type": prediction_type})
                    g = torch.Generator().manual_seed(0)
                    x0 = (torch.rand(args.batch, 3, args.size, args.size, generator=g, dtype=dtype) * 2 - 1)
                    x0 = x0.to(args.device)
                    z = encode(x0, den, steps=args.steps, strength=args.strength, eta=args.eta, sampler=sampler,
                               generator=[torch.Generator().manual_seed(i) for i in range(args.batch)])
                    err = (decode(z, den) - x0).abs().max().item()
                    row[str(dtype).removeprefix("torch.")] = err
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, out


def runners(sampler: str, scheduler, pipe_cls, dtype: torch.dtype, args):
    """(diffusers' pipeline, our decoder of a prior latent) sampling the same seeds, as callables."""
    unet = make_unet(args.size, 3, 3, dtype, args.device)
    pipe = pipe_cls(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    den = PixelDenoiser(unet, scheduler.config)
    kw = {"eta": args.eta} if sampler == "ddim" else {}

    def reference():
        return pipe(batch_size=args.batch, generator=torch.Generator().manual_seed(0),
                    num_inference_steps=args.steps, output_type="np", **kw).images

    def ours():
        with torch.no_grad():
            z = sample_latent(den, args.batch, steps=args.steps, eta=args.eta, sampler=sampler, dtype=dtype,
                              generator=torch.Generator().manual_seed(0), device=args.device)
            return (decode(z, den) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    return reference, ours


def speed(args) -> list[dict]:
    """Time both in float32; check they agree in float64 (diffusers keeps ᾱ in float32, and a random UNet
    amplifies that rounding over many near-deterministic steps, so float32 images can drift apart)."""
    rows = []
    for sampler, scheduler, pipe_cls in (
        ("ddim", DDIMScheduler(set_alpha_to_one=False, steps_offset=1), DDIMPipeline),
        ("ddpm", DDPMScheduler(steps_offset=1), DDPMPipeline),
    ):
        reference, ours = runners(sampler, scheduler, pipe_cls, torch.float64, args)
        diff = float(abs(reference() - ours()).max())
        reference, ours = runners(sampler, scheduler, pipe_cls, torch.float32, args)
        t_ref, _ = timed(reference, args.repeats)
        t_ours, _ = timed(ours, args.repeats)
        row = {"sampler": sampler, "steps": args.steps, "batch": args.batch, "size": args.size,
               "device": args.device, "diffusers_s": round(t_ref, 4), "cyclediff_s": round(t_ours, 4),
               "ratio": round(t_ours / t_ref, 3), "max_image_diff_float64": diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = reconstruction(args)
    print("\n| config | sampler | prediction | max error float32 | max error float64 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['sampler']} | {r['prediction_type']} | {r['float32']:.1e} | {r['float64']:.1e} |")
    rows = speed(args)
    print("\n| sampler | diffusers pipeline (s) | cyclediff decode (s) | ratio | max image difference (float64) |")
    print("|---|---|---|---|---|")
    for r in rows:
        diff = r["max_image_diff_float64"]
        print(f"| {r['sampler']} | {r['diffusers_s']} | {r['cyclediff_s']} | {r['ratio']} | {diff:.1e} |")


if __name__ == "__main__":
    main()

"""Translation speed with a guided-diffusion-style pixel model: cyclediff's translate (eager and compiled) against
diffusers' DDPMPipeline sampling on the same UNet, one GPU, one process.

    PYTHONPATH=src:tests python benchmarks/translate_gpu.py --preset adm256        # a GPU, about 5 minutes
    PYTHONPATH=src:tests python benchmarks/translate_gpu.py --preset tiny --device cpu --steps 20   # smoke test

The model: the AFHQ models' architecture (guided-diffusion flags: 256², 128 channels, 1 residual block per level,
attention at 16² with 64 channels per head, up/down-sampling residual blocks, scale-shift norm, learned σ),
random weights, converted by ``cyclediff.models.guided_diffusion`` exactly as a real checkpoint would be. The
paper's setting: DDIM η 0.1 on 1000 steps at strength 0.85 (850 run) and 100 refinement steps, source and target
two such models. Phases (JSON lines):

- ``reference``: ``DDPMPipeline`` (its learned-range ancestral sampler), 950 steps (what the translation runs:
  850 + 100), batch 1;
- ``translate``: cyclediff's translate, eager, then compiled (``optimize(compile=True)``): seconds per image at
  batch 1 and --batch; ``compile_s`` is the first compiled call.
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from gpu_edit import Bench, sync, timed

from cyclediff import CycleDiffusion, translate
from cyclediff.models import PixelDenoiser
from cyclediff.models.guided_diffusion import read_flags, scheduler_config, unet_config

PRESETS = {
    "adm256": {"image_size": 256, "num_channels": 128, "num_res_blocks": 1, "attention_resolutions": "16",
               "num_head_channels": 64, "resblock_updown": True, "use_scale_shift_norm": True, "learn_sigma": True},
    "tiny": {"image_size": 32, "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,2,2",
             "attention_resolutions": "16", "num_head_channels": 16, "resblock_updown": True,
             "use_scale_shift_norm": True, "learn_sigma": True},
}


def random_model(flags: dict, seed: int, device: str, dtype: torch.dtype):
    """A model of the converter's own UNet config with random weights (the cost does not depend on them)."""
    torch.manual_seed(seed)
    config, _ = unet_config(flags)
    unet = UNet2DModel(**config).to(device, dtype)
    return PixelDenoiser(unet, scheduler_config(flags))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="adm256")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--strength", type=float, default=0.85)
    parser.add_argument("--refine", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--log", default=None)
    parser.add_argument("--deadline", type=float, default=None)
    args = parser.parse_args()
    bench, device, dtype = Bench(args), args.device, getattr(torch, args.dtype)
    flags = read_flags(PRESETS[args.preset])
    source, target = random_model(flags, 0, device, dtype), random_model(flags, 1, device, dtype)
    run = int(args.steps * args.strength) + args.refine
    bench.emit("setup", preset=args.preset, device=torch.cuda.get_device_name() if device.startswith("cuda")
               else device, dtype=args.dtype, steps=args.steps, strength=args.strength, refine=args.refine,
               unet_parameters=sum(p.numel() for p in target.unet.parameters()))
    size = flags["image_size"]

    pipe = DDPMPipeline(unet=target.unet, scheduler=DDPMScheduler.from_config(scheduler_config(flags)))
    pipe.set_progress_bar_config(disable=True)

    def reference():
        pipe(batch_size=1, num_inference_steps=run, generator=torch.Generator().manual_seed(0))

    reference()
    ref_s, _ = timed(reference, device, 2)
    bench.emit("reference", what=f"DDPMPipeline, {run} steps, batch 1", seconds=round(ref_s, 3))
    images = torch.rand(args.batch, 3, size, size, device=device)

    def ours(batch: int):
        translate(images[:batch], source, target, steps=args.steps, strength=args.strength, refine_steps=args.refine,
                  generator=[torch.Generator().manual_seed(i) for i in range(batch)], method=CycleDiffusion(eta=0.1))

    for compiled in (False, True):
        if compiled:
            start = time.perf_counter()
            for model in (source, target):
                model.optimize(compile=True)
            ours(1)
            sync(device)
            compile_s = time.perf_counter() - start
        else:
            ours(1)
            compile_s = None
        for batch in (1, args.batch):
            if not bench.time_left(60):
                continue
            if batch > 1:
                ours(batch)  # warm-up (a compiled model compiles each new batch size once)
            seconds, _ = timed(lambda b=batch: ours(b), device, 2)
            bench.emit("translate", compiled=compiled, batch=batch, seconds=round(seconds, 3),
                       per_image=round(seconds / batch, 3), vs_reference=round(seconds / batch / ref_s, 3),
                       compile_s=None if compile_s is None else round(compile_s, 1))


if __name__ == "__main__":
    main()

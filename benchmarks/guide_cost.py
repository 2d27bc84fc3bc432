"""Cost of one Langevin step of guide() against the number of sampler steps, with and without checkpointing.

    .venv/bin/python benchmarks/guide_cost.py            # CPU, about 3 minutes

Each configuration runs in a fresh process (peak memory is a per-process high-water mark): a random pixel
UNet (32/64 channels, 32×32 RGB, batch 4), a brightness energy, 2 timed Langevin steps after one warm-up.
Reports seconds per Langevin step, the peak resident memory the chain added above the process's state before
it (MB), and the bytes autograd saved for the backward pass in one step. Prints JSON lines and a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace


def child(steps: int, checkpoint: bool, repeats: int) -> dict:
    import torch
    from diffusers import DDIMScheduler, UNet2DModel

    from cyclediff import decode, guide, sample_latent
    from cyclediff.models import PixelDenoiser

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    den = PixelDenoiser(unet, DDIMScheduler(clip_sample=False).config)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]

    def energy(x):
        return -x.mean(dim=(1, 2, 3))

    z = sample_latent(den, 4, steps=steps, eta=1.0, generator=gens)
    with torch.no_grad():
        decode(z, den)  # warm-up, allocator settled
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    guide(den, energy, weight=100.0, langevin_steps=1, steps=steps, batch_size=4, generator=gens, latent=z,
          checkpoint=checkpoint)
    start = time.perf_counter()
    guide(den, energy, weight=100.0, langevin_steps=repeats, steps=steps, batch_size=4, generator=gens, latent=z,
          checkpoint=checkpoint)
    seconds = (time.perf_counter() - start) / (repeats + 1)  # repeats steps + the final energy evaluation
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    eps = z.eps.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = energy(decode(replace(z, eps=eps), den, checkpoint=checkpoint)).sum()
    loss.backward()
    del loss, eps
    return {"sampler_steps": steps, "checkpoint": checkpoint, "seconds_per_langevin_step": round(seconds, 3),
            "peak_added_mb": round((peak - before) / 1024, 1), "autograd_saved_mb": round(saved[0] / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("STEPS", "CHECKPOINT"))
    parser.add_argument("--steps", default="5,10,20")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1] == "1", args.repeats)))
        return
    rows = []
    for steps in map(int, args.steps.split(",")):
        for checkpoint in (False, True):
            out = subprocess.run([sys.executable, __file__, "--child", str(steps), str(int(checkpoint)),
                                  "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| sampler steps | checkpointing | s / Langevin step | peak memory added (MB) | autograd saved (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler_steps']} | {'on' if r['checkpoint'] else 'off'} | {r['seconds_per_langevin_step']} | "
              f"{r['peak_added_mb']} | {r['autograd_saved_mb']} |")


if __name__ == "__main__":
    main()

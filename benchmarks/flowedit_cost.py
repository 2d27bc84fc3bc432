"""The cost of a FlowEdit edit against a CycleDiffusion edit (and an edit-friendly one) at equal steps, in one run.

    PYTHONPATH=src:tests .venv/bin/python benchmarks/flowedit_cost.py              # CPU, about 2 minutes
    PYTHONPATH=src:tests .venv/bin/python benchmarks/flowedit_cost.py --device cuda --preset sd3-medium

The model: an SD3-shaped pipeline with random weights (flow_gpu.py's builder; the cost does not depend on the
values), by default ``cpu-sd3`` — a 4-block MMDiT of width 128 on 32×32×4 latents, so that the transformer
dominates as it does on real models. Every method edits the same images with the same prompts, steps and
strength (20 steps at 0.8: 16 run; FlowEdit's n_max = 16, n_avg = 1) and the same guidance (classifier-free 3.5
on both rows, as FlowEdit's own SD3 defaults guide its source), so each step is one batched transformer call of
four rows per image for all three. Repeats are interleaved; the median is reported, with the ratio to
CycleDiffusion. The counts of transformer rows per edit are printed beside the times (what the ratio should be).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from flow_gpu import PRESETS, build

from cyclediff import edit, options_of

PRESETS = {**PRESETS, "cpu-sd3": {"kind": "sd3", "size": 64, "transformer": dict(
    sample_size=32, patch_size=2, in_channels=4, out_channels=4, num_layers=4, attention_head_dim=32,
    num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=128, pooled_projection_dim=64,
    pos_embed_max_size=32), "vae_channels": (8, 16), "latent_channels": 4}}
METHODS = ("cyclediffusion", "edit-friendly", "flowedit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="cpu-sd3")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    model = build(preset, args.device, torch.float32, Path(tempfile.mkdtemp()))
    images = torch.rand(args.batch, 3, preset["size"], preset["size"], device=args.device)
    rows = [0]

    def count(module, args, kwargs, output) -> None:
        rows[0] += len(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

    model.transformer.register_forward_hook(count, with_kwargs=True)

    def run(method: str) -> None:
        edit(model, images, source_prompt="a photo of a cat", prompt="a photo of a dog", steps=args.steps,
             strength=args.strength, guidance_scale=3.5, source_guidance_scale=3.5,
             generator=[torch.Generator().manual_seed(i) for i in range(args.batch)],
             method=options_of(method, eta=0.1))

    counts = {}
    for method in METHODS:  # warm-up, and the rows each edit evaluates
        rows[0] = 0
        run(method)
        counts[method] = rows[0] / args.batch
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(method)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[method].append(time.perf_counter() - start)
    base = statistics.median(times["cyclediffusion"])
    print("| method | seconds per edit of a batch of", args.batch, "(median) | vs cyclediffusion | transformer rows "
          "per image |")
    print("|---|---|---|---|")
    for method in METHODS:
        median = statistics.median(times[method])
        record = {"method": method, "preset": args.preset, "device": args.device, "steps": args.steps,
                  "strength": args.strength, "batch": args.batch, "median_s": round(median, 4),
                  "min_s": round(min(times[method]), 4), "vs_cyclediffusion": round(median / base, 3),
                  "rows_per_image": counts[method]}
        print(json.dumps(record))
        print(f"| {method} | {median:.3f} | {median / base:.2f}× | {counts[method]:g} |")


if __name__ == "__main__":
    main()

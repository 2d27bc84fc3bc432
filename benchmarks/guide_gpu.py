"""Guidance speed: seconds per Langevin step of guide() against the hardware floor, on one GPU, in one process.

    PYTHONPATH=src:tests python benchmarks/guide_gpu.py --preset sd15                 # a GPU, about 8 minutes
    PYTHONPATH=src:tests python benchmarks/guide_gpu.py --preset tiny --device cpu --steps 4 --langevin 2   # smoke

The issue's setting: an SD-1.5-sized pipeline with random weights (the cost does not depend on the values), 512²
(64² latents), float16 weights, unconditional (empty prompt, guidance 1: one UNet row per sample), a tiny energy
(mean brightness) so that the UNet dominates. Phases, each one JSON line (also appended to --log):

- ``guide``: guide() at sampler steps K ∈ --steps, checkpointing on / off, batch ∈ --batch: seconds per Langevin
  step (the median of --langevin timed steps after one warm-up step) and peak GPU memory;
- ``floor``: what a Langevin step cannot go below with this UNet, eager, back to back at the same batch:
  checkpointed K × (forward + forward and backward), plain K × (forward and backward), each plus the VAE decode
  and its backward. ``ratio_to_floor`` = guide / floor (targets: ≤ 1.3 checkpointed, ≤ 1.15 plain);
- ``compiled``: guide() after ``model.optimize(compile=True, grad=True)`` (the UNet compiled for the backward too):
  seconds per step and the accuracy of the same chain in float32 eager vs the fast path (energies along the
  chain, final images);
- ``clip``: the CLIP energy with DiffAugment at the paper's L = 8 copies on random ViT-B/32 and ViT-L/14 configs:
  seconds for energy + backward on the decoded batch, and its share of a Langevin step at the first K.

The last line is a summary. ``--deadline`` (seconds) skips phases that would start after it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from gpu_edit import Bench, sd15, sync, timed, tiny

from cyclediff import guide, sample_latent
from cyclediff.models import StableDiffusion


def brightness(images: torch.Tensor) -> torch.Tensor:
    return images.float().mean(dim=(1, 2, 3))


def peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def seconds_per_step(sd: StableDiffusion, steps: int, batch: int, checkpoint: bool, device: str, repeats: int,
                     seed: int = 0) -> float:
    """Median seconds of one Langevin step (gradient through the K-step decoder and the VAE, plus the update)."""
    gens = [torch.Generator().manual_seed(seed + i) for i in range(batch)]
    z = sample_latent(sd, batch, steps=steps, eta=1.0, generator=gens, prompt="")
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(n, images, energies):
        sync(device)
        now = time.perf_counter()
        if n >= 2:  # step 0 is the first energy; step 1 includes the warm-up update
            times.append(now - last[0])
        last[0] = now

    guide(sd, brightness, weight=1.0, langevin_steps=repeats + 1, latent=z, generator=gens, checkpoint=checkpoint,
          callback=tick)
    return statistics.median(times)


def floor_seconds(sd: StableDiffusion, steps: int, batch: int, device: str, repeats: int) -> dict:
    """The eager UNet's forward (no gradients) and forward + backward at the batch, each timed back to back, and
    the VAE decode + backward. Checkpointed floor: K × (forward + forward and backward) + VAE (the first forward
    keeps no activations, the backward recomputes them); plain floor: K × (forward and backward) + VAE."""
    c, h, w = sd.sample_shape
    x = torch.randn(batch, c, h, w, device=device, requires_grad=True)
    cond = sd.prepare_condition(batch, prompt="", guidance_scale=1.0)

    def forward():
        with torch.no_grad():
            sd(x, 500, cond)

    def forward_backward():
        sd(x, 500, cond).float().sum().backward()

    def vae():
        sd.codec.decode_latents(x).float().sum().backward()

    forward(), forward_backward(), vae()  # warm-up
    fwd, _ = timed(forward, device, repeats)
    fwd_bwd, _ = timed(forward_backward, device, repeats)
    dec, _ = timed(vae, device, repeats)
    return {"unet_fwd_s": round(fwd, 5), "unet_fwd_bwd_s": round(fwd_bwd, 5), "vae_fwd_bwd_s": round(dec, 5),
            "floor_checkpointed_s": round(steps * (fwd + fwd_bwd) + dec, 4),
            "floor_plain_s": round(steps * fwd_bwd + dec, 4)}


def chain_energies(sd: StableDiffusion, steps: int, langevin: int) -> tuple[torch.Tensor, torch.Tensor]:
    gens = [torch.Generator().manual_seed(7)]
    result = guide(sd, brightness, weight=1.0, langevin_steps=langevin, steps=steps, generator=gens, condition="")
    return result.energies[:, 0].double().cpu(), result.images.double().cpu()


def clip_phase(bench: Bench, sd: StableDiffusion, device: str, dtype: torch.dtype, step_s: float,
               batch: int) -> None:
    from transformers import CLIPConfig, CLIPModel

    from cyclediff.guidance import ClipEnergy
    from tiny_sd import tokenizer

    configs = {"ViT-B/32": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=32),
               "ViT-L/14": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=14)}
    tok = tokenizer(Path(tempfile.mkdtemp()) / "tok", max_length=77)
    for name, vision in configs.items():
        if not bench.time_left(60):
            return
        config = CLIPConfig(text_config=dict(vocab_size=len(tok), hidden_size=512, num_hidden_layers=12,
                                             num_attention_heads=8, intermediate_size=2048,
                                             max_position_embeddings=77, bos_token_id=len(tok) - 2,
                                             eos_token_id=len(tok) - 1, pad_token_id=len(tok) - 1),
                            vision_config=dict(**vision, intermediate_size=4 * vision["hidden_size"], image_size=224),
                            projection_dim=768 if name == "ViT-L/14" else 512)
        model = CLIPModel(config).to(device, dtype)
        energy = ClipEnergy("a photo", (model, tok), augment_copies=8)
        images = torch.rand(batch, 3, 512, 512, device=device, requires_grad=True)

        def round_trip(energy=energy, images=images):
            energy(images * 2 - 1).sum().backward()

        round_trip()
        seconds, _ = timed(round_trip, device, 3)
        bench.emit("clip", model=name, copies=8, batch=batch, seconds=round(seconds, 4),
                   share_of_step=round(seconds / (step_s + seconds), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["sd15", "tiny"], default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--steps", default="10,50", help="sampler steps K of G(z)")
    parser.add_argument("--batch", default="1,4")
    parser.add_argument("--langevin", type=int, default=3, help="timed Langevin steps per configuration")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--log", default=None)
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument("--no-clip", action="store_true")
    args = parser.parse_args()
    bench, device, dtype = Bench(args), args.device, getattr(torch, args.dtype)
    build = sd15 if args.preset == "sd15" else tiny
    sd = StableDiffusion.from_pipe(build(device, dtype))
    steps_list, batches = [int(k) for k in args.steps.split(",")], [int(b) for b in args.batch.split(",")]
    bench.emit("setup", preset=args.preset, device=torch.cuda.get_device_name() if device.startswith("cuda")
               else device, dtype=args.dtype, torch=torch.__version__, steps=steps_list, batch=batches)
    best: dict = {}
    for k in steps_list:
        floor = floor_seconds(sd, k, 1, device, max(3, args.langevin))
        bench.emit("floor", steps=k, batch=1, **floor)
        for checkpoint in (True, False):
            for batch in batches if checkpoint else [1]:
                if not bench.time_left(30):
                    continue
                reset_peak(device)
                s = seconds_per_step(sd, k, batch, checkpoint, device, args.langevin)
                key = "floor_checkpointed_s" if checkpoint else "floor_plain_s"
                ratio = round(s / floor[key], 3) if batch == 1 else None
                bench.emit("guide", steps=k, batch=batch, checkpoint=checkpoint, seconds=round(s, 4),
                           per_sample=round(s / batch, 4), peak_gib=peak_gib(device), ratio_to_floor=ratio)
                best[(k, checkpoint, batch)] = s
    if bench.time_left(120):
        k = steps_list[0]
        eager_energies, eager_images = chain_energies(replace_dtype(sd, torch.float32), k, args.langevin)
        sd.optimize(compile=True, backend=args.backend, grad=True)
        start = time.perf_counter()
        s = seconds_per_step(sd, k, 1, True, device, args.langevin)
        fast_energies, fast_images = chain_energies(sd, k, args.langevin)
        bench.emit("compiled", steps=k, batch=1, checkpoint=True, seconds=round(s, 4),
                   eager_seconds=round(best.get((k, True, 1), float("nan")), 4),
                   first_call_s=round(time.perf_counter() - start, 1),
                   energy_max_abs_diff=float((fast_energies - eager_energies).abs().max()),
                   image_max_abs_diff=float((fast_images - eager_images).abs().max()))
    if not args.no_clip and bench.time_left(120):
        clip_phase(bench, sd, device, dtype, best.get((steps_list[0], True, 1), 1.0), 1)
    bench.emit("summary", **{f"K{k}_{'ckpt' if c else 'plain'}_b{b}_s": round(v, 4) for (k, c, b), v in best.items()})


def replace_dtype(sd: StableDiffusion, dtype: torch.dtype) -> StableDiffusion:
    """A float32 copy of the pipeline (the accuracy reference), sharing nothing with ``sd``."""
    import copy

    pipe = copy.deepcopy(sd.pipe).to(dtype=dtype)
    return StableDiffusion.from_pipe(pipe)


if __name__ == "__main__":
    main()

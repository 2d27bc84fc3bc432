"""SD3 / FLUX editing speed at full size: seconds per edit and images/s with cyclediff's edit against the
transformer floor (the same transformer calls alone), random weights, one GPU, one process.

    PYTHONPATH=src:tests python benchmarks/flow_gpu.py --preset sd3-medium --log benchmarks/results/flow_gpu.jsonl
    PYTHONPATH=src:tests python benchmarks/flow_gpu.py --preset flux-dev --log benchmarks/results/flow_gpu.jsonl
    PYTHONPATH=src:tests python benchmarks/flow_gpu.py --preset qwen-image,flux2-dev,chroma,z-image \
        --log benchmarks/results/flow_gpu.jsonl
    PYTHONPATH=src:tests python benchmarks/flow_gpu.py --preset tiny-sd3 --device cpu --dtype float32   # smoke
    OMP_NUM_THREADS=1 PYTHONPATH=src:tests python benchmarks/flow_gpu.py --device cpu --dtype float32 --clock process \
        --preset small-qwen-image,small-flux2-dev,small-chroma,small-z-image --no-compile --batches 1 --repeats 1

The transformer and the VAE have the published architectures (SD3-medium: 24 MMDiT blocks of width 1536, 16
latent channels; FLUX.1-dev: 19 double + 38 single blocks of width 3072, 2×2-packed latents, embedded guidance);
the text encoders are one-layer stand-ins of the right widths (prompt encoding happens once per edit and is not
what is measured). The edit: 1024², 28 steps at strength 0.8 (22 run), η 0.1; SD3 with target CFG 4 and source
scale 1 (three rows per image and step), FLUX with embedded guidance (two rows).

The 2026 families (benchmarks/flow_families.py holds their configs and sources): Qwen-Image (20B MMDiT, true CFG
4 / source 1: three rows), FLUX.2 [dev] (32B, embedded guidance 4: two rows), Chroma (8.9B, CFG 4 / source 1:
three rows), Z-Image (6B single-stream, CFG 5 / source 1: three rows), with text encoders cut to the layers the
pipelines read, at their published widths; ``small-*``: the test suite's tiny pipelines of each family with a
three-block, width-256 transformer of the family's layout on 256 image tokens, for the CPU ratio edit / floor. The
rows are counted by ``cyclediff.methods.evaluations``. Phases (JSON lines):

- ``floor``: seconds for the edit's transformer calls alone (the rows ``evaluations`` counts, as many calls as the
  grid has steps, same shapes and dtype; compiled when the edit is), the least any implementation can take (the
  edit also encodes the prompts and runs the VAE both ways);
- ``edit``: cyclediff's ``edit``, eager, then compiled (``optimize(compile=True)``), at batch 1 and the largest
  batch of --batches that fits, with ``vs_floor`` (target ≤ 1.15).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from flow_families import KINDS
from flow_families import adapter as family_adapter
from flow_families import pipeline as family_pipeline
from gpu_edit import Bench, sync

from cyclediff import CycleDiffusion, edit
from cyclediff.methods import evaluations
from cyclediff.models import Flux, StableDiffusion3

# guidance per kind: the edit's scales, and whether a guided branch takes an unconditional row (False: embedded)
GUIDANCE = {"sd3": ({"guidance_scale": 4.0, "source_guidance_scale": 1.0}, True),
            "flux": ({"guidance_scale": 3.5}, False),
            "qwenimage": ({"guidance_scale": 4.0, "source_guidance_scale": 1.0}, True),  # true CFG
            "flux2": ({"guidance_scale": 4.0}, False),  # [dev]: embedded
            "chroma": ({"guidance_scale": 4.0, "source_guidance_scale": 1.0}, True),
            "z-image": ({"guidance_scale": 5.0, "source_guidance_scale": 1.0}, True)}  # w = the pipeline's g + 1

PRESETS = {
    "sd3-medium": {"kind": "sd3", "size": 1024, "transformer": dict(
        sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
        num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
        pos_embed_max_size=192), "vae_channels": (128, 256, 512, 512), "latent_channels": 16},
    "flux-dev": {"kind": "flux", "size": 1024, "transformer": dict(
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56)), "vae_channels": (128, 256, 512, 512), "latent_channels": 16},
    "tiny-sd3": {"kind": "sd3", "size": 32, "transformer": dict(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=16, pooled_projection_dim=64,
        pos_embed_max_size=32), "vae_channels": (8, 16), "latent_channels": 4},
    "tiny-flux": {"kind": "flux", "size": 32, "transformer": dict(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6)), "vae_channels": (8, 16), "latent_channels": 4},
    # the 2026 families at their published sizes (benchmarks/flow_families.py), and small versions for a CPU
    **{name: {"kind": kind, "size": 1024, "family_size": "stand-in"} for name, kind in (
        ("qwen-image", "qwenimage"), ("flux2-dev", "flux2"), ("chroma", "chroma"), ("z-image", "z-image"))},
    # 256 image tokens each (the tiny VAEs: Qwen-Image's 4×, the others' 2×; 2×2 patches)
    **{name: {"kind": kind, "size": size, "family_size": "small"} for name, kind, size in (
        ("small-qwen-image", "qwenimage", 128), ("small-flux2-dev", "flux2", 64), ("small-chroma", "chroma", 64),
        ("small-z-image", "z-image", 64))},
}


def build(preset: dict, device: str, dtype: torch.dtype, tmp) -> object:
    """The pipeline of the preset with random weights, wrapped by its cyclediff adapter."""
    if preset["kind"] in KINDS:
        torch.manual_seed(0)
        pipe = family_pipeline(preset["kind"], tmp, preset["family_size"]).to(device, dtype)
        if preset["family_size"] == "stand-in":
            pipe.default_sample_size = preset["size"] // pipe.vae_scale_factor
        return family_adapter(preset["kind"], pipe, preset["family_size"])
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from tiny_sd import t5_tokenizer, text_config, tokenizer

    torch.manual_seed(0)
    width = preset["transformer"]["joint_attention_dim"]
    n = len(preset["vae_channels"])
    vae = AutoencoderKL(latent_channels=preset["latent_channels"], block_out_channels=preset["vae_channels"],
                        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                        layers_per_block=1 if n == 2 else 2, norm_num_groups=4 if n == 2 else 32)
    tok = tokenizer(tmp / "tok")  # 16 tokens: the stand-in CLIPs have 16 positions
    t5_tok = t5_tokenizer(tmp / "t5", max_length=256)
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=width, d_kv=64, d_ff=256, num_layers=1,
                                 num_heads=width // 64, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    if preset["kind"] == "sd3":
        vae.register_to_config(scaling_factor=1.5305, shift_factor=0.0609)
        pooled = preset["transformer"]["pooled_projection_dim"]
        clip_l = CLIPTextModelWithProjection(text_config(len(tok), hidden=pooled // 2, projection=pooled // 2))
        clip_g = CLIPTextModelWithProjection(text_config(len(tok), hidden=pooled // 2, projection=pooled // 2))
        pipe = StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(**preset["transformer"]), vae=vae,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), text_encoder=clip_l, tokenizer=tok,
            text_encoder_2=clip_g, tokenizer_2=tok, text_encoder_3=t5, tokenizer_3=t5_tok)
        model = StableDiffusion3(pipe.to(device, dtype))
    else:
        vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)
        clip = CLIPTextModel(text_config(len(tok), hidden=preset["transformer"]["pooled_projection_dim"]))
        pipe = FluxPipeline(
            transformer=FluxTransformer2DModel(**preset["transformer"]), vae=vae, text_encoder=clip, tokenizer=tok,
            text_encoder_2=t5, tokenizer_2=t5_tok, scheduler=FlowMatchEulerDiscreteScheduler(
                shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                max_image_seq_len=4096))
        pipe.default_sample_size = preset["size"] // pipe.vae_scale_factor
        model = Flux(pipe.to(device, dtype), max_sequence_length=256)
    return model


def rows_per_step(preset: dict, grid) -> int:
    """Network rows per image and step the edit needs: ``cyclediff.methods.evaluations`` over the steps run."""
    scales, unconditional_rows = GUIDANCE[preset["kind"]]
    total = evaluations(CycleDiffusion(eta=0.1), grid, source_guidance=unconditional_rows
                        and scales.get("source_guidance_scale", 1.0) != 1,
                        target_guidance=unconditional_rows and scales["guidance_scale"] != 1)
    return total // len(grid.run)


def interleaved(fns: list, device: str, repeats: int, clock: str) -> list[float]:
    """Median seconds of each of ``fns`` over ``repeats`` rounds, called in turn (edit, floor, edit, floor, …) so a
    change of load between them falls on both. ``clock``: "wall" (``perf_counter``), or "process" (this process's
    CPU seconds: on a CPU shared with other work, run on one thread, what the neighbours take is not counted)."""
    now = time.perf_counter if clock == "wall" else time.process_time
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            sync(device)
            start = now()
            fn()
            sync(device)
            spent.append(now() - start)
    return [statistics.median(t) for t in times]


def bench_preset(bench: Bench, args: argparse.Namespace, name: str) -> None:
    """One preset: setup, then edit and floor at each batch (eager, then compiled unless --no-compile)."""
    import tempfile
    from pathlib import Path

    device, dtype, preset = args.device, getattr(torch, args.dtype), PRESETS[name]
    model = build(preset, device, dtype, Path(tempfile.mkdtemp()))
    size, scales = preset["size"], GUIDANCE[preset["kind"]][0]
    shape = (model.sample_shape[0], size // model.codec.factor, size // model.codec.factor)
    grid = model.schedule_for(shape).plan(args.steps, args.strength)
    rows = rows_per_step(preset, grid)
    bench.emit("setup", preset=name, device=torch.cuda.get_device_name() if device.startswith("cuda") else device,
               dtype=args.dtype, steps=args.steps, strength=args.strength, steps_run=len(grid.run),
               rows_per_image_step=rows, sample_shape=list(shape),
               transformer_parameters=sum(p.numel() for p in model.transformer.parameters()))
    images = torch.rand(max(int(b) for b in args.batches.split(",")), 3, size, size, device=device)

    def ours(batch: int) -> None:
        edit(model, images[:batch], source_prompt="a photo of a cat", prompt="a photo of a dog", steps=args.steps,
             strength=args.strength, generator=[torch.Generator().manual_seed(i) for i in range(batch)], **scales,
             method=CycleDiffusion(eta=0.1))

    inputs: dict[int, tuple] = {}  # the floor's rows and their condition, made once: the network alone is timed

    @torch.no_grad()
    def floor(batch: int) -> None:
        if batch not in inputs:
            inputs[batch] = (torch.randn(batch * rows, *shape, device=device),
                             model.prepare_condition(batch * rows, prompt="a photo of a dog"))
        x, cond = inputs[batch]
        for t in grid.run:
            model.predict_batch([(x, cond)], t)

    for compiled in (False, True) if not args.no_compile else (False,):
        if compiled:
            start = time.perf_counter()
            model.optimize(compile=True)
            ours(1)
            sync(device)
            bench.emit("compile", preset=name, seconds=round(time.perf_counter() - start, 1))
        for batch in [int(b) for b in args.batches.split(",")]:
            if not bench.time_left(120):
                break
            try:
                ours(batch)  # warm-ups (a compiled model compiles each new batch size once)
                floor(batch)
                seconds, floor_s = interleaved([lambda b=batch: ours(b), lambda b=batch: floor(b)], device,
                                               args.repeats, args.clock)
            except torch.OutOfMemoryError:
                bench.emit("edit", preset=name, compiled=compiled, batch=batch, out_of_memory=True)
                torch.cuda.empty_cache()
                break
            bench.emit("edit", preset=name, compiled=compiled, batch=batch, seconds=round(seconds, 3),
                       images_per_s=round(batch / seconds, 3), floor_s=round(floor_s, 3),
                       vs_floor=round(seconds / floor_s, 3), clock=args.clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sd3-medium", help=f"comma-separated, run in order: {', '.join(PRESETS)}")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each (the median is reported)")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="process: CPU seconds of this process (a shared CPU, OMP_NUM_THREADS=1)")
    parser.add_argument("--log", default=None)
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    names = args.preset.split(",")
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if args.clock == "process" and args.device != "cpu":
        parser.error("--clock process measures CPU seconds: use it with --device cpu")
    bench = Bench(args)
    for name in names:
        try:
            bench_preset(bench, args, name)
        except Exception as err:  # noqa: BLE001 - one preset that cannot run is a line; the others still run
            bench.emit("error", preset=name, error=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")


if __name__ == "__main__":
    main()

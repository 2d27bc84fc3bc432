"""SD3 / FLUX editing speed at full size: seconds per edit and images/s with cyclediff's edit against the
transformer floor (the same transformer calls alone), random weights, one GPU, one process.

    PYTHONPATH=src:tests python benchmarks/flow_gpu.py --preset sd3-medium --log benchmarks/results/flow_gpu.jsonl
    PYTHONPATH=src:tests python benchmarks/flow_gpu.py --preset flux-dev --log benchmarks/results/flow_gpu.jsonl
    PYTHONPATH=src:tests python benchmarks/flow_gpu.py --preset tiny-sd3 --device cpu --dtype float32   # smoke

The transformer and the VAE have the published architectures (SD3-medium: 24 MMDiT blocks of width 1536, 16
latent channels; FLUX.1-dev: 19 double + 38 single blocks of width 3072, 2×2-packed latents, embedded guidance);
the text encoders are one-layer stand-ins of the right widths (prompt encoding happens once per edit and is not
what is measured). The edit: 1024², 28 steps at strength 0.8 (22 run), η 0.1; SD3 with target CFG 4 and source
scale 1 (three rows per image and step), FLUX with embedded guidance (two rows). Phases (JSON lines):

- ``floor``: seconds for the edit's transformer calls alone (same rows, shapes and dtype; compiled when the edit
  is), the least any implementation can take (the edit also encodes the prompts and runs the VAE both ways);
- ``edit``: cyclediff's ``edit``, eager, then compiled (``optimize(compile=True)``), at batch 1 and the largest
  batch of --batches that fits, with ``vs_floor`` (target ≤ 1.15).
"""

from __future__ import annotations

import argparse
import time

import torch
from gpu_edit import Bench, sync, timed

from cyclediff import CycleDiffusion, edit
from cyclediff.models import Flux, StableDiffusion3

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
}


def build(preset: dict, device: str, dtype: torch.dtype, tmp) -> object:
    """The pipeline of the preset with random weights, wrapped by its cyclediff adapter."""
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


def main() -> None:
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="sd3-medium")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--log", default=None)
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    bench, device, dtype = Bench(args), args.device, getattr(torch, args.dtype)
    preset = PRESETS[args.preset]
    model = build(preset, device, dtype, Path(tempfile.mkdtemp()))
    size = preset["size"]
    flux = preset["kind"] == "flux"
    scales = {"guidance_scale": 3.5} if flux else {"guidance_scale": 4.0, "source_guidance_scale": 1.0}
    rows_per_image = 2 if flux else 3
    run = len(model.schedule.timesteps(args.steps, args.strength))
    bench.emit("setup", preset=args.preset, device=torch.cuda.get_device_name() if device.startswith("cuda")
               else device, dtype=args.dtype, steps=args.steps, strength=args.strength, steps_run=run,
               transformer_parameters=sum(p.numel() for p in model.transformer.parameters()))
    images = torch.rand(max(int(b) for b in args.batches.split(",")), 3, size, size, device=device)

    def ours(batch: int) -> None:
        edit(model, images[:batch], source_prompt="a photo of a cat", prompt="a photo of a dog", steps=args.steps,
             strength=args.strength, generator=[torch.Generator().manual_seed(i) for i in range(batch)], **scales,
             method=CycleDiffusion(eta=0.1))

    @torch.no_grad()
    def floor(batch: int) -> None:
        c, h, w = model.sample_shape[0], size // model.codec.factor, size // model.codec.factor
        x = torch.randn(batch * rows_per_image, c, h, w, device=device)
        cond = model.prepare_condition(batch * rows_per_image, prompt="a photo of a dog")
        for t in model.schedule.timesteps(args.steps, args.strength):
            model.predict_batch([(x, cond)], t)

    for compiled in (False, True) if not args.no_compile else (False,):
        if compiled:
            start = time.perf_counter()
            model.optimize(compile=True)
            ours(1)
            sync(device)
            bench.emit("compile", seconds=round(time.perf_counter() - start, 1))
        for batch in [int(b) for b in args.batches.split(",")]:
            if not bench.time_left(120):
                break
            try:
                ours(batch)  # warm-up (a compiled model compiles each new batch size once)
                seconds, _ = timed(lambda b=batch: ours(b), device, 2)
                floor(batch)
                floor_s, _ = timed(lambda b=batch: floor(b), device, 2)
            except torch.OutOfMemoryError:
                bench.emit("edit", compiled=compiled, batch=batch, out_of_memory=True)
                torch.cuda.empty_cache()
                break
            bench.emit("edit", compiled=compiled, batch=batch, seconds=round(seconds, 3),
                       images_per_s=round(batch / seconds, 3), floor_s=round(floor_s, 3),
                       vs_floor=round(seconds / floor_s, 3))


if __name__ == "__main__":
    main()

"""Peak device memory and seconds per edit of today's model sizes under each quantization and offloading, through
the loading path users take (``cyclediff.models.load`` of a saved pipeline with ``quantize=`` / ``offload=``).

    PYTHONPATH=src:tests .venv/bin/python benchmarks/memory.py                     # CPU smoke: tiny presets
    PYTHONPATH=src:tests .venv/bin/python benchmarks/memory.py --device cuda --presets flux-dev \\
        --quantize none,torchao-fp8,int8,nf4 --offload none,model,group --sizes 1024 --out results/memory.jsonl

The models have random weights and the published architectures (UNet / MMDiT configs, CLIP-L, CLIP-G and T5-XXL
text encoders, the 4- or 16-channel VAE; the tokenizers are small stand-ins, which changes nothing but the
vocabulary's embedding rows beyond their ids): memory and time do not depend on the values. Each preset is saved
once to a temporary folder and loaded for every configuration, so every row is one fresh load. Memory on a GPU is
``torch.cuda.max_memory_allocated`` over one edit (the weights the device holds plus the activations); on the CPU,
where nothing is offloaded, the column is the bytes of weights held (offloading configurations are skipped there).
One warm-up edit of two steps precedes each timed one.

Video presets (Wan2.1 1.3B / 14B, LTX-Video, HunyuanVideo: benchmarks/video_families.py) build as the others do;
``video_edit_memory`` estimates a Wan clip edit's memory from a meta build, without running it (docs/guide.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from flow_families import KINDS, T5_XXL
from flow_families import pipeline as flow_pipeline
from video_families import VIDEO_KINDS
from video_families import pipeline as video_pipeline

CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12)
CLIP_G = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32)
SD_VAE = dict(latent_channels=4, block_out_channels=(128, 256, 512, 512))
SD3_VAE = dict(latent_channels=16, block_out_channels=(128, 256, 512, 512), use_quant_conv=False,
               use_post_quant_conv=False)
PRESETS = {
    "sd15": {"kind": "sd", "vae": SD_VAE, "text": [CLIP_L], "network": dict(
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
        attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)},
    "sdxl": {"kind": "sdxl", "vae": SD_VAE, "text": [CLIP_L, CLIP_G], "network": dict(
        block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))},
    "sd35-medium": {"kind": "sd3", "vae": SD3_VAE, "text": [CLIP_L, CLIP_G, T5_XXL], "network": dict(
        patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64, num_attention_heads=24,
        joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384,
        dual_attention_layers=tuple(range(13)), qk_norm="rms_norm")},
    "sd35-large": {"kind": "sd3", "vae": SD3_VAE, "text": [CLIP_L, CLIP_G, T5_XXL], "network": dict(
        patch_size=2, in_channels=16, out_channels=16, num_layers=38, attention_head_dim=64, num_attention_heads=38,
        joint_attention_dim=4096, caption_projection_dim=2432, pooled_projection_dim=2048, pos_embed_max_size=192,
        qk_norm="rms_norm")},
    "flux-dev": {"kind": "flux", "vae": SD3_VAE, "text": [CLIP_L, T5_XXL], "network": dict(
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56))},
    # the 2026 flow families (benchmarks/flow_families.py: configs and their sources)
    "qwen-image": {"kind": "qwenimage"}, "flux2-dev": {"kind": "flux2"}, "chroma": {"kind": "chroma"},
    "z-image": {"kind": "z-image"},
    # the video families (benchmarks/video_families.py: configs and their sources); see video_edit_memory
    "wan-1.3b": {"kind": "wan-1.3b"}, "wan-14b": {"kind": "wan-14b"}, "ltx-video": {"kind": "ltx-video"},
    "hunyuan-video": {"kind": "hunyuan-video"},
    "cpu-sd": {"kind": "tiny-sd"},  # the test suite's tiny pipelines: a smoke run of every column on a CPU
    "cpu-flux": {"kind": "tiny-flux"},
}


def build(preset: dict, tmp: Path) -> object:
    """The preset's pipeline with random weights (built in the default dtype, on the default device)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from tiny_sd import SD_SCHEDULER, flux_pipeline, sd_pipeline, t5_tokenizer, tokenizer

    if preset["kind"] in KINDS:
        return flow_pipeline(preset["kind"], tmp)
    if preset["kind"] in VIDEO_KINDS:
        return video_pipeline(preset["kind"], tmp)
    if preset["kind"] == "tiny-sd":
        return sd_pipeline(tmp / "parts")
    if preset["kind"] == "tiny-flux":
        return flux_pipeline(tmp / "parts")
    tok = tokenizer(tmp / "tok", max_length=77)

    def clip(config: dict, projection: bool) -> object:
        cls = CLIPTextModelWithProjection if projection else CLIPTextModel
        return cls(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, projection_dim=config["hidden_size"],
                                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.eos_token_id, **config))

    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, **preset["vae"])
    kind, text = preset["kind"], preset["text"]
    if kind in ("sd", "sdxl"):
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **preset["network"])
        parts = dict(vae=vae, unet=unet, tokenizer=tok, scheduler=DDIMScheduler(**SD_SCHEDULER))
        if kind == "sd":
            return StableDiffusionPipeline(text_encoder=clip(text[0], False), safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False, **parts)
        return StableDiffusionXLPipeline(text_encoder=clip(text[0], False), text_encoder_2=clip(text[1], True),
                                         tokenizer_2=tok, **parts)
    t5_tok = t5_tokenizer(tmp / "t5", max_length=512)
    t5 = T5EncoderModel(T5Config(vocab_size=32128, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                                 **text[-1]))
    if kind == "sd3":
        return StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(**preset["network"]), vae=vae, text_encoder=clip(text[0], True),
            text_encoder_2=clip(text[1], True), text_encoder_3=t5, tokenizer=tok, tokenizer_2=tok,
            tokenizer_3=t5_tok, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    return FluxPipeline(
        transformer=FluxTransformer2DModel(**preset["network"]), vae=vae, text_encoder=clip(text[0], False),
        tokenizer=tok, text_encoder_2=t5, tokenizer_2=t5_tok, scheduler=FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
            max_image_seq_len=4096))


def video_edit_memory(pipe, frames: int = 81, height: int = 480, width: int = 832, rows: int = 2,
                      text_on_cpu: bool = False, vae_tiling: bool = False) -> dict:
    """Estimated GPU bytes of one Wan edit of a clip, from a (meta) build of the pipeline: bf16 weights held, plus
    the larger of the transformer's and the VAE's activations (they do not run at once).

    Transformer: ``rows`` sequences per call (2: the classifier-free pair; FlowEdit's source and target pairs: 4)
    of (f, h/2, w/2) latent tokens, each block holding 6 widths (residual, norm, q, k, v, attention out) and twice the
    feed-forward width (the projection and its GELU); attention through SDPA keeps no token × token matrix. VAE: Wan's
    decodes a latent frame (4 frames) at a time, 4 live tensors of the full-resolution stage's width (base × 2)
    × H × W; tiling cuts H × W to its 256² tiles; slicing splits a batch of clips, nothing for one clip. The clip
    in and out (bf16) is added. ``text_on_cpu``: the text encoder's weights stay on the host."""
    bf16 = 2
    net, vae = pipe.transformer.config, pipe.vae.config
    weights = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) * bf16
               for name in ("transformer", "text_encoder", "vae")}
    if text_on_cpu:
        weights["text_encoder"] = 0
    latent_frames = (frames - 1) // 4 + 1
    tokens = latent_frames * (height // 16) * (width // 16)
    dim = net.num_attention_heads * net.attention_head_dim
    transformer = rows * tokens * (6 * dim + 2 * net.ffn_dim) * bf16
    area = min(height, 256) * min(width, 256) if vae_tiling else height * width
    decode = 4 * 4 * vae.base_dim * 2 * area * bf16
    clip = 2 * frames * 3 * height * width * bf16
    total = sum(weights.values()) + max(transformer, decode) + clip
    return {"weights_gib": {k: v / 2**30 for k, v in weights.items()}, "transformer_activations_gib":
            transformer / 2**30, "vae_activations_gib": decode / 2**30, "clip_gib": clip / 2**30,
            "total_gib": total / 2**30, "fits_24gb": total < 23 * 2**30}  # a 24 GB card less ~1 GiB of context


def measure(folder: Path, device: str, dtype: torch.dtype, quantize: str | None, offload: str | None, size: int,
            steps: int) -> dict:
    """One fresh load of the saved pipeline and one timed edit at ``size``²; peak memory and seconds."""
    from cyclediff import edit
    from cyclediff.models import load
    from cyclediff.models.offload import device_bytes

    cuda = device.startswith("cuda")
    model = load(folder, dtype=dtype, device=device, quantize=quantize, offload=offload)
    images = torch.rand(1, 3, size, size)
    kw = dict(source_prompt="a photo of a cat", prompt="a photo of a dog", strength=0.8)
    edit(model, images, steps=2, generator=torch.Generator().manual_seed(0), **kw)  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    edit(model, images, steps=steps, generator=torch.Generator().manual_seed(0), **kw)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if cuda else device_bytes(model, "cpu")
    del model
    if cuda:
        torch.cuda.empty_cache()
    return {"peak_mib": peak / 2**20, "seconds_per_edit": seconds}


def run(presets: list[str], device: str, dtype: torch.dtype, quantize: list[str | None], offload: list[str | None],
        sizes: list[int], steps: int) -> list[dict]:
    rows = []
    for name in presets:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / name
            default = torch.get_default_dtype()
            torch.set_default_dtype(dtype)  # built in the weights' dtype: a float32 FLUX would not fit the host
            try:
                with torch.device(device):
                    pipe = build(PRESETS[name], Path(tmp))
            finally:
                torch.set_default_dtype(default)
            pipe.save_pretrained(folder)
            del pipe
            for q in quantize:
                for o in offload:
                    if o is not None and not device.startswith("cuda"):
                        continue  # offloading moves weights to a GPU: nothing to measure on a CPU
                    for size in sizes:
                        row = {"preset": name, "quantize": q or "none", "offload": o or "none", "size": size,
                               "device": device, "dtype": str(dtype).removeprefix("torch.")}
                        try:
                            row.update(measure(folder, device, dtype, q, o, size, steps))
                        except Exception as err:  # noqa: BLE001 - a configuration that cannot run is a row too
                            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| preset | size | quantize | offload | peak memory (GiB) | s / edit |", "|---|---|---|---|---|---|"]
    for r in rows:
        memory = f"{r['peak_mib'] / 1024:.3g}" if "peak_mib" in r else r.get("error", "")
        speed = f"{r['seconds_per_edit']:.2f}" if "seconds_per_edit" in r else ""
        lines.append(f"| {r['preset']} | {r['size']}² | {r['quantize']} | {r['offload']} | {memory} | {speed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="cpu-sd,cpu-flux", help=f"comma-separated: {', '.join(PRESETS)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="weights dtype (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--quantize", default="none,int8,torchao-int8", help="none or --quantize choices")
    parser.add_argument("--offload", default="none,model,group", help="none, model, sequential, group")
    parser.add_argument("--sizes", default=None, help="image sides (default: 16 for the cpu presets, else 1024)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="append the rows here as JSON lines")
    args = parser.parse_args(argv)
    presets = args.presets.split(",")
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    sizes = [int(s) for s in (args.sizes or ("16" if all(p.startswith("cpu") for p in presets) else "1024"))
             .split(",")]

    def options(text: str) -> list[str | None]:
        return [None if v == "none" else v for v in text.split(",")]

    rows = run(presets, args.device, dtype, options(args.quantize), options(args.offload), sizes, args.steps)
    print(table(rows))
    if args.out is not None:
        with args.out.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


if __name__ == "__main__":
    main()

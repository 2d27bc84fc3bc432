"""A tiny LTX-Video pipeline with random weights, built offline (T5 and its tokenizer as tests/tiny_sd.py builds
them): LTX's video VAE at its real compression (4×4 pixel patches and three halvings: 32× in space, 8× in time),
with random per-channel latents mean / std, a one-layer transformer over 1×1×1 patches, LTX-Video's
dynamic-shift scheduler (μ from the latent frames × cells, ``shift_terminal``); clips of 9 frames of 32×32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_sd import t5_tokenizer

FRAMES, SIZE = 9, 32  # 8k + 1 frames; sides multiples of 32
# LTX-Video's own scheduler config (Lightricks/LTX-Video, scheduler/scheduler_config.json)
SCHEDULER = dict(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096, max_shift=2.05, shift=1.0,
                 shift_terminal=0.1, use_dynamic_shifting=True)


def ltx_vae(seed: int = 0, *, timestep_conditioning: bool = False) -> Any:
    """LTX's VAE, 8 channels wide: 32× in space (4×4 patches, three halvings), 8× in time; per-channel mean /
    std buffers drawn at random so the normalisation matters; ``timestep_conditioning``: 0.9.1's decoder, which
    takes the decode timestep."""
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(latent_channels=8, block_out_channels=(8, 8, 8, 8),
                                decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
                                decoder_layers_per_block=(1, 1, 1, 1, 1),
                                spatio_temporal_scaling=(True, True, True, False),
                                decoder_spatio_temporal_scaling=(True, True, True, False),
                                decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4,
                                upsample_factor=(1,) * 4, timestep_conditioning=timestep_conditioning,
                                patch_size=4, patch_size_t=1).eval()
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(8) * 0.3)
        vae.latents_std.copy_(torch.rand(8) + 0.5)
    return vae


def ltx_transformer(seed: int = 0) -> Any:
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(seed)
    return LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                      num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                      num_layers=1, caption_channels=32).eval()


def ltx_pipeline(tmp: Path, seed: int = 0, *, timestep_conditioning: bool = False) -> Any:
    """LTXPipeline-shaped, T5 of width 32 (16 tokens)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline
    from transformers import T5Config, T5EncoderModel

    tok = t5_tokenizer(tmp / "t5")
    torch.manual_seed(seed)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).eval()
    return LTXPipeline(vae=ltx_vae(seed, timestep_conditioning=timestep_conditioning), text_encoder=t5,
                       tokenizer=tok, transformer=ltx_transformer(seed),
                       scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER))

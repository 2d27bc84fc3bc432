"""A tiny Wan pipeline with random weights, built offline (T5 and its tokenizer as tests/tiny_sd.py builds them):
Wan's causal video VAE (4× in time, 8× in space), a 3-D transformer over 1×2×2 patches; clips of 9 frames of 16×16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_sd import t5_tokenizer

FRAMES, SIZE = 9, 16  # 4k + 1 frames; sides multiples of 16


def wan_vae(seed: int = 0) -> Any:
    """Wan's VAE at its smallest (base width 3, 16 latent channels, time halved twice: 9 frames → 3)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True]).eval()
    return vae


def ti2v_vae(seed: int = 0) -> Any:
    """Wan 2.2 TI2V's VAE shape: 2×2 pixel patches folded into channels before it (16× in space), 48 channels."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                            latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            scale_factor_spatial=16, scale_factor_temporal=4,
                            temperal_downsample=[False, True, True]).eval()


def wan_transformer(seed: int = 0, channels: int = 16) -> Any:
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                 in_channels=channels, out_channels=channels, text_dim=32, freq_dim=256, ffn_dim=32,
                                 num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                 rope_max_seq_len=32).eval()


def wan_pipeline(tmp: Path, seed: int = 0, *, two_stage: bool = False, video2video: bool = False,
                 ti2v: bool = False) -> Any:
    """Wan-shaped (2.1; ``two_stage``: 2.2 A14B's second, low-noise transformer with a boundary ratio; ``ti2v``:
    2.2 TI2V's VAE with its timestep per patch), a shifted flow-matching scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanVideoToVideoPipeline
    from transformers import T5Config, T5EncoderModel

    tok = t5_tokenizer(tmp / "t5")
    torch.manual_seed(seed)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).eval()
    parts: dict[str, Any] = dict(vae=wan_vae(seed), text_encoder=t5, tokenizer=tok, transformer=wan_transformer(seed),
                                 scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    if video2video:
        return WanVideoToVideoPipeline(**parts)
    if ti2v:
        return WanPipeline(**{**parts, "vae": ti2v_vae(seed), "transformer": wan_transformer(seed, 48)},
                           expand_timesteps=True)
    if two_stage:
        return WanPipeline(**parts, transformer_2=wan_transformer(seed + 1), boundary_ratio=0.875)
    return WanPipeline(**parts)

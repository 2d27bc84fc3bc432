"""A tiny Chroma pipeline with random weights, built offline (T5 and its tokenizer as tests/tiny_sd.py builds them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_sd import t5_tokenizer, vae


def chroma_pipeline(tmp: Path, seed: int = 0, img2img: bool = False) -> Any:
    """Chroma-shaped: T5 alone (width 32, 16 tokens), a transformer over 2×2-packed 4-channel latents (one double
    and one single block, a one-layer modulation approximator), FLUX's VAE normalisation and dynamic-shift
    scheduler; 16×16 images. The VAE decoder's output is 10× the shared builder's (images within about
    (0.15, 0.8)), so that guidance moves them by far more than the parity tolerance."""
    from diffusers import (
        ChromaImg2ImgPipeline,
        ChromaPipeline,
        ChromaTransformer2DModel,
        FlowMatchEulerDiscreteScheduler,
    )
    from transformers import T5Config, T5EncoderModel

    t5_tok = t5_tokenizer(tmp / "t5")
    torch.manual_seed(seed)
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).eval()
    transformer = ChromaTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, axes_dims_rope=(4, 6, 6), approximator_num_channels=16, approximator_hidden_dim=32,
        approximator_layers=1,
    ).eval()
    autoencoder = vae(seed)
    autoencoder.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)  # FLUX's VAE latent normalisation
    with torch.no_grad():
        autoencoder.decoder.conv_out.weight.mul_(10)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    cls = ChromaImg2ImgPipeline if img2img else ChromaPipeline
    pipe = cls(scheduler=scheduler, vae=autoencoder, text_encoder=t5, tokenizer=t5_tok, transformer=transformer)
    pipe.default_sample_size = 8  # 16×16 images by default (the real models: 128 → 1024²)
    return pipe

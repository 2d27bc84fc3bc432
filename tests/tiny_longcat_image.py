"""A tiny LongCat-Image pipeline with random weights, built offline: the tiny Qwen-Image tests' Qwen2 tokenizer and
Qwen2.5-VL text encoder, a 16-channel AutoencoderKL (the pipeline draws 16 latent channels) and a small transformer.
No text processor: it serves only the pipeline's prompt rewriting, which the tests turn off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_qwenimage import qwen_tokenizer, text_encoder


def longcat_image_pipeline(tmp: Path, seed: int = 0) -> Any:
    """One double and one single block (width 16, two heads of 8), FLUX's shifted grid, 16×16 images. The VAE
    decoder's output is halved (images within about (0.25, 0.9))."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        LongCatImagePipeline,
        LongCatImageTransformer2DModel,
    )

    tok = qwen_tokenizer(tmp / "qwen")
    text = text_encoder(len(tok), seed)
    torch.manual_seed(seed)
    transformer = LongCatImageTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, pooled_projection_dim=16, axes_dims_rope=[2, 2, 4]).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, scaling_factor=0.3611, shift_factor=0.1159).eval()
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(0.5)
    return LongCatImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), vae=vae,
                                text_encoder=text, tokenizer=tok, text_processor=None, transformer=transformer)

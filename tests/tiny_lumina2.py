"""A tiny Lumina 2 pipeline with random weights, built offline: a word-level Gemma-style tokenizer made with the
tokenizers library, a small Gemma2, an 8× VAE (the pipeline takes its VAE's factor to be 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_sd import WORDS, word_tokenizer

# the words of the pipeline's system prompt and its "<Prompt Start>" marker, so that they are tokens of their own
SYSTEM_WORDS = ("You are an assistant designed to generate superior images with degree image - text alignment based "
                "on textual prompts or user . < Prompt Start >").split()


def gemma_tokenizer(folder: Path) -> Any:
    """Whole words (the shared test words and the system prompt's), unknown for the rest; <pad> pads."""
    return word_tokenizer(folder, ["<pad>", "<eos>", "<bos>", "<unk>"], [*WORDS, *SYSTEM_WORDS], pad_token="<pad>",
                          bos_token="<bos>", eos_token="<eos>", model_max_length=512)


def vae8(seed: int = 0) -> Any:
    """A four-level AutoencoderKL (8× down), FLUX's latent normalisation; its decoder's output scaled so that the
    random images lie well inside (0, 1) and guidance moves them by far more than the parity tolerance."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    model = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                          down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                          norm_num_groups=4, layers_per_block=1, sample_size=32, shift_factor=0.1159,
                          scaling_factor=0.3611)
    with torch.no_grad():
        model.decoder.conv_out.weight.mul_(0.5)
        model.decoder.conv_out.bias.zero_()
    return model.eval()


def lumina2_pipeline(tmp: Path, seed: int = 0) -> Any:
    """Lumina-2-shaped: Gemma2 (width 16, two layers), a transformer over 4-channel latents in 2×2 patches (two
    layers, one refiner layer each for noise and text), a shifted flow-matching scheduler; 32×32 images."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tok = gemma_tokenizer(tmp / "gemma")
    torch.manual_seed(seed)
    text = Gemma2Model(Gemma2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    num_key_value_heads=2, head_dim=8, vocab_size=len(tok), sliding_window=4,
                                    max_position_embeddings=512, pad_token_id=0)).eval()
    transformer = Lumina2Transformer2DModel(
        sample_size=4, patch_size=2, in_channels=4, hidden_size=32, num_layers=2, num_refiner_layers=1,
        num_attention_heads=2, num_kv_heads=2, multiple_of=16, norm_eps=1e-5, scaling_factor=1.0,
        axes_dim_rope=[8, 4, 4], axes_lens=[300, 32, 32], cap_feat_dim=16,
    ).eval()
    return Lumina2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=6.0), vae=vae8(seed), text_encoder=text,
                           tokenizer=tok, transformer=transformer)

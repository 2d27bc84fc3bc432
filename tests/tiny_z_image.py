"""A tiny Z-Image pipeline with random weights, built offline: a word-level tokenizer made with the tokenizers
library (with a Qwen-style chat template) and a small Qwen3 text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_sd import vae, word_tokenizer

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")


def qwen_tokenizer(folder: Path) -> Any:
    """Whole words (the shared test words and the chat template's), unknown for the rest, end-of-text as padding."""
    return word_tokenizer(folder, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>", "user", "assistant"],
                          pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"],
                          chat_template=CHAT, model_max_length=512)


def z_image_pipeline(tmp: Path, seed: int = 0, img2img: bool = False) -> Any:
    """Z-Image-shaped: Qwen3 (width 16, two layers), a single-stream transformer over 4-channel latents in 2×2
    patches (two layers, one refiner layer each for noise and text), FLUX's VAE normalisation, a shifted
    flow-matching scheduler; 16×16 images. The VAE decoder's output is 10× the shared builder's (images within
    about (0.15, 0.8)), so that guidance moves them by far more than the parity tolerance."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        ZImageImg2ImgPipeline,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3Model

    tok = qwen_tokenizer(tmp / "qwen")
    torch.manual_seed(seed)
    text = Qwen3Model(Qwen3Config(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=2, head_dim=8, vocab_size=len(tok),
                                  max_position_embeddings=512)).eval()
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2,
        n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[8, 4, 4], axes_lens=[256, 32, 32],
    ).eval()
    autoencoder = vae(seed)
    autoencoder.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)
    with torch.no_grad():
        autoencoder.decoder.conv_out.weight.mul_(10)
    cls = ZImageImg2ImgPipeline if img2img else ZImagePipeline
    return cls(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=autoencoder, text_encoder=text,
               tokenizer=tok, transformer=transformer)

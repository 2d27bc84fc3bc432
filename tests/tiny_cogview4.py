"""A tiny CogView4 pipeline with random weights, built offline: a word-level tokenizer made with the tokenizers
library (GLM's pad token, left padding) and a small GLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_sd import vae, word_tokenizer


def glm_tokenizer(folder: Path) -> Any:
    """Whole words (the shared test words), unknown for the rest, GLM's "[gMASK] <sop>" before every text (so the
    empty prompt has tokens too), <|endoftext|> as padding on the left."""
    return word_tokenizer(folder, ["<|endoftext|>", "<unk>", "[gMASK]", "<sop>"], before="[gMASK] <sop>",
                          pad_token="<|endoftext|>", padding_side="left", model_max_length=1024)


def cogview4_pipeline(tmp: Path, seed: int = 0) -> Any:
    """CogView4-shaped: GLM (width 32, two layers), a transformer over 4-channel latents in 2×2 patches (two
    layers), CogView4's scheduler (dynamic linear shift, base 0.25, max 0.75); 16×16 images by default. The VAE
    decoder's output is 10× the shared builder's and the text projection 30× its random init, so that guidance
    moves the images by far more than the parity tolerance."""
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import GlmConfig, GlmModel

    tok = glm_tokenizer(tmp / "glm")
    torch.manual_seed(seed)
    text = GlmModel(GlmConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=8, vocab_size=len(tok), pad_token_id=0)).eval()
    transformer = CogView4Transformer2DModel(
        patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2, out_channels=4,
        text_embed_dim=32, time_embed_dim=16, condition_dim=4, sample_size=8, rope_axes_dim=(4, 4),
    ).eval()
    autoencoder = vae(seed)
    with torch.no_grad():
        autoencoder.decoder.conv_out.weight.mul_(10)
        transformer.patch_embed.text_proj.weight.mul_(30)  # the random GLM's states are small: make text matter
    scheduler = FlowMatchEulerDiscreteScheduler(base_shift=0.25, max_shift=0.75, base_image_seq_len=256,
                                                use_dynamic_shifting=True, time_shift_type="linear")
    return CogView4Pipeline(tokenizer=tok, text_encoder=text, vae=autoencoder, transformer=transformer,
                            scheduler=scheduler)

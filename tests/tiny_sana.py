"""A tiny SANA pipeline with random weights, built offline: a word-level tokenizer made with the tokenizers library
(a beginning-of-text token first, as Gemma's), a small Gemma2 text encoder, a small DC-AE and a SANA transformer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_sd import word_tokenizer


def gemma_tokenizer(folder: Path) -> Any:
    """Whole words (the shared test words), unknown for the rest (the complex human instruction's words too),
    ``<bos>`` before every text and ``<pad>`` as padding."""
    return word_tokenizer(folder, ["<pad>", "<eos>", "<bos>", "<unk>"], before="<bos>", pad_token="<pad>",
                          bos_token="<bos>", eos_token="<eos>", model_max_length=1024)


def sana_pipeline(tmp: Path, seed: int = 0, scheduler: str = "dpm", flow_shift: float = 3.0) -> Any:
    """SANA-shaped: Gemma2 (width 8, one layer), a one-layer SANA transformer over 4-channel latents (patch 1),
    a DC-AE with one halving (32×32 images ↔ 16×16 latents) and its scaling factor, and SANA's scheduler: the flow
    DPM-solver (``scheduler="dpm"``, SANA's config: flow sigmas shifted by ``flow_shift``, second order, a final σ
    of 0) or a shifted flow-matching Euler one (``"euler"``, as diffusers' own SANA tests build it). The DC-AE
    decoder's output is scaled so that guidance moves the images by far more than the parity tolerance."""
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    tok = gemma_tokenizer(tmp / "gemma")
    torch.manual_seed(seed)
    text = Gemma2Model(Gemma2Config(head_dim=16, hidden_size=8, intermediate_size=16, num_attention_heads=2,
                                    num_hidden_layers=1, num_key_value_heads=2, vocab_size=len(tok),
                                    max_position_embeddings=1024, attn_implementation="eager",
                                    pad_token_id=0, bos_token_id=2, eos_token_id=1)).eval()
    transformer = SanaTransformer2DModel(
        patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_attention_heads=2, attention_head_dim=4,
        num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
        sample_size=32).eval()
    vae = AutoencoderDC(
        in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"), encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8), encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1), decoder_layers_per_block=[1, 1], downsample_block_type="conv",
        upsample_block_type="interpolate", decoder_norm_types="rms_norm", decoder_act_fns="silu",
        scaling_factor=0.41407).eval()
    if scheduler == "dpm":
        sched = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                            flow_shift=flow_shift, final_sigmas_type="zero", solver_order=2,
                                            algorithm_type="dpmsolver++", solver_type="midpoint")
    else:
        sched = FlowMatchEulerDiscreteScheduler(shift=flow_shift)
    return SanaPipeline(tokenizer=tok, text_encoder=text, vae=vae, transformer=transformer, scheduler=sched)

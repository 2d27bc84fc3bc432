"""A tiny HiDream-I1 pipeline with random weights, built offline: two CLIPs with projections (the shared byte-level
tokenizer), a small T5 (the shared Unigram tokenizer), a small Llama-3.1-style ``LlamaForCausalLM`` built from a
config with a word-level tokenizer made with the tokenizers library, a mixture-of-experts transformer over 2×2
patches and a 2× VAE with FLUX's latent normalisation; 16×16 images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_lumina2 import gemma_tokenizer
from tiny_sd import t5_tokenizer, tokenizer, vae

SIZE = 16  # the pipeline renders every image at its default area: default_sample_size is set to give 16×16


def clip(vocab_size: int, seed: int) -> Any:
    """A CLIP text encoder with a projection (its pooled projection is what HiDream reads), 128 positions: the
    pipeline pads every CLIP prompt to 128 tokens."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                            num_hidden_layers=2, max_position_embeddings=128, projection_dim=16,
                            bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    return CLIPTextModelWithProjection(config).eval()


def hidream_pipeline(tmp: Path, seed: int = 0, scheduler: Any = None) -> Any:
    """HiDream-I1-shaped: CLIP-L / CLIP-G stand-ins (pooled 16 + 16), T5 (width 32, 16 tokens), Llama (width 16,
    two layers, 128 tokens), a transformer with one double- and one single-stream block (4 experts, 2 active)
    reading Llama layers (0, 1); the Dev / Fast flow-matching Euler scheduler (shift 3) unless ``scheduler``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5EncoderModel

    tok, tok2, t5_tok = tokenizer(tmp / "tok"), tokenizer(tmp / "tok2"), t5_tokenizer(tmp / "t5")
    llama_tok = gemma_tokenizer(tmp / "llama")
    text, text2 = clip(len(tok), seed), clip(len(tok2), seed + 1)
    torch.manual_seed(seed)
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).eval()
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(llama_tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=256, pad_token_id=0,
                                         attn_implementation="eager")).eval()  # the pipeline asks for attentions
    transformer = HiDreamImageTransformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_channels=[32, 16], text_emb_dim=32, num_routed_experts=4,
        num_activated_experts=2, axes_dims_rope=(4, 2, 2), max_resolution=(16, 16), llama_layers=(0, 1),
    ).eval()
    autoencoder = vae(seed)
    autoencoder.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)  # FLUX's VAE, as HiDream's
    with torch.no_grad():  # images spread over (0, 1): a prompt or guidance change moves them well past 1e-4
        autoencoder.decoder.conv_out.weight.mul_(8)
    pipe = HiDreamImagePipeline(
        scheduler=scheduler or FlowMatchEulerDiscreteScheduler(shift=3.0), vae=autoencoder, text_encoder=text,
        tokenizer=tok, text_encoder_2=text2, tokenizer_2=tok2, text_encoder_3=t5, tokenizer_3=t5_tok,
        text_encoder_4=llama, tokenizer_4=llama_tok, transformer=transformer)
    pipe.default_sample_size = SIZE // pipe.vae_scale_factor  # the real models: 128 → 1024²
    return pipe


def unipc(shift: float = 3.0) -> Any:
    """HiDream-I1-Full's scheduler: UniPC with flow sigmas (second order, its corrector on)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                   final_sigmas_type="zero", solver_order=2, predict_x0=True)

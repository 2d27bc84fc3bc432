"""A tiny HunyuanVideo 1.5 pipeline with random weights, built offline: the byte-level BPE Qwen2 tokenizer of
tests/tiny_qwenimage.py given a ChatML chat template (the pipeline calls ``apply_chat_template``), a three-layer
Qwen2.5-VL language model (the pipeline reads its third-from-last states), a one-layer ByT5 encoder with its own
byte tokenizer (no vocabulary file), HunyuanVideo 1.5's VAE at its real compression (4× in time, 16× in space:
five levels of width 8) and a one-block transformer over 1×1×1 patches; clips of 5 frames of 32×32.

The pipeline keeps its text lengths in instance attributes, not in its config: the builder shortens them (the
Qwen prompt to ``TOKENS`` tokens, the glyph text to ``GLYPH_TOKENS``, the image tokens to ``VISION_TOKENS``) and sets
``prompt_template_encode_start_idx`` to the tiny tokenizer's system prefix, as 108 is under Qwen's own tokenizer,
so that what the transformer reads is the prompt's tokens. A pipeline saved and loaded again has the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_qwenimage import qwen_tokenizer

FRAMES, SIZE = 5, 32  # 4k + 1 frames; sides multiples of 16
TOKENS, GLYPH_TOKENS, VISION_TOKENS = 16, 8, 4
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chat_tokenizer(folder: Path) -> Any:
    tok = qwen_tokenizer(folder)
    tok.chat_template = CHATML
    return tok


def system_prefix(pipe: Any) -> int:
    """The tokens of the chat template before the prompt (the system turn, the user turn's header): where the
    tokens of two prompts start to differ."""
    def ids(prompt: str) -> list[int]:
        chat = [{"role": "system", "content": pipe.system_message}, {"role": "user", "content": prompt}]
        return pipe.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True).input_ids

    return next(i for i, (a, b) in enumerate(zip(ids("red"), ids("dog"))) if a != b)


def hunyuan15_vae(seed: int = 0) -> Any:
    """The VAE at its checkpoints' compression, smallest widths; the decoder's output scaled up so that a prompt or
    guidance change moves the frames well past 1e-4."""
    from diffusers import AutoencoderKLHunyuanVideo15

    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo15(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,) * 5,
                                      layers_per_block=1, spatial_compression_ratio=16,
                                      temporal_compression_ratio=4).eval()
    with torch.no_grad():
        vae.decoder.conv_out.conv.weight.mul_(1.5)
    return vae


def hunyuan15_transformer(seed: int = 0, patch_size_t: int = 1) -> Any:
    from diffusers import HunyuanVideo15Transformer3DModel

    torch.manual_seed(seed)
    return HunyuanVideo15Transformer3DModel(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1, num_refiner_layers=1,
        mlp_ratio=2.0, patch_size=1, patch_size_t=patch_size_t, text_embed_dim=16, text_embed_2_dim=8,
        image_embed_dim=12, rope_axes_dim=(2, 2, 4), target_size=32, task_type="t2v").eval()


def hunyuan15_pipeline(tmp: Path, seed: int = 0, *, guidance_scale: float = 6.0) -> Any:
    """HunyuanVideo 1.5-shaped: Qwen2.5-VL's language model (width 16), ByT5 (width 8), the VAE and transformer
    above, the flow-matching scheduler with shift 7, classifier-free guidance at ``guidance_scale``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideo15Pipeline
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, T5Config, T5EncoderModel

    tok = chat_tokenizer(tmp / "qwen")
    torch.manual_seed(seed)
    qwen = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=16, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=2, rope_theta=1000000.0, max_position_embeddings=2048, bos_token_id=None, eos_token_id=0,
        rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"})).eval()
    byt5_tok = ByT5Tokenizer()
    byt5 = T5EncoderModel(T5Config(vocab_size=len(byt5_tok), d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
                                   is_encoder_decoder=False)).eval()
    pipe = HunyuanVideo15Pipeline(
        text_encoder=qwen, tokenizer=tok, transformer=hunyuan15_transformer(seed), vae=hunyuan15_vae(seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=byt5, tokenizer_2=byt5_tok,
        guider=ClassifierFreeGuidance(guidance_scale=guidance_scale))
    pipe.prompt_template_encode_start_idx = system_prefix(pipe)
    pipe.tokenizer_max_length, pipe.tokenizer_2_max_length, pipe.vision_num_semantic_tokens = (
        TOKENS, GLYPH_TOKENS, VISION_TOKENS)
    pipe.set_progress_bar_config(disable=True)
    return pipe

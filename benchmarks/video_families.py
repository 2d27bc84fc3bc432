"""Wan 2.1 (T2V 1.3B and 14B), LTX-Video (2B) and HunyuanVideo (13B) pipelines built from configs (random weights,
no download), for ``benchmarks/memory.py`` (its video presets and its estimate of a 480p Wan edit's memory).

Sources of the configs. Transformers: the ``transformer/config.json`` of the diffusers-format repositories
(Wan-AI/Wan2.1-T2V-1.3B-Diffusers: 12 heads of 128, ``ffn_dim`` 8960, 30 layers; Wan-AI/Wan2.1-T2V-14B-Diffusers:
40 heads, 13824, 40 layers, which are the defaults of diffusers 0.42.1's ``WanTransformer3DModel``;
Lightricks/LTX-Video 0.9.0 and hunyuanvideo-community/HunyuanVideo: the defaults of ``LTXVideoTransformer3DModel``
and ``HunyuanVideoTransformer3DModel``). Text encoders: the ``text_encoder/config.json`` of the same repositories —
UMT5-XXL's encoder (Wan: vocabulary 256384, 24 layers of width 4096), T5-XXL's encoder (LTX-Video), the text part
of llava-llama-3-8b (HunyuanVideo's ``LlamaModel``: Llama-3-8B's layout, vocabulary 128320) with CLIP-L beside it.
VAEs: the defaults of ``AutoencoderKLWan`` (Wan 2.1's VAE, shared by 1.3B and 14B), ``AutoencoderKLLTXVideo``
(0.9.0's) and ``AutoencoderKLHunyuanVideo``. Tokenizers are the test suite's small stand-ins (tests/tiny_*.py),
which changes nothing but the rows of the vocabulary's embedding beyond their ids.

Card sizes the meta builds are held to (tests/benchmarks/test_memory.py): Wan2.1 1.3B / 14B, UMT5-XXL's encoder
5.68 B (the 11.4 GB bf16 ``models_t5_umt5-xxl-enc-bf16.pth``), Wan-VAE 127 M (the Wan report); LTX-Video 2B (builds
1.92 B) with T5-XXL's encoder 4.76 B; HunyuanVideo 13B with Llama-3-8B's 8.03 B less its 0.53 B output head
(the pipeline holds the ``LlamaModel``): 7.50 B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VIDEO_KINDS = ("wan-1.3b", "wan-14b", "ltx-video", "hunyuan-video")

TRANSFORMERS: dict[str, tuple[str, dict]] = {
    "wan-1.3b": ("WanTransformer3DModel", dict(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
    "wan-14b": ("WanTransformer3DModel", dict(
        patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
    "ltx-video": ("LTXVideoTransformer3DModel", dict(
        in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
        attention_head_dim=64, cross_attention_dim=2048, num_layers=28, caption_channels=4096)),
    "hunyuan-video": ("HunyuanVideoTransformer3DModel", dict(
        in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128, num_layers=20,
        num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
        guidance_embeds=True, text_embed_dim=4096, pooled_projection_dim=768, rope_axes_dim=(16, 56, 56))),
}
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_ff=10240, d_kv=64, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu")
LLAVA_LLAMA3_8B = dict(vocab_size=128320, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0, rms_norm_eps=1e-5,
                       max_position_embeddings=8192)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
              num_hidden_layers=12, max_position_embeddings=77, projection_dim=768)


def transformer(kind: str) -> Any:
    """The family's transformer at its published size, random weights (on the default device: meta in tests)."""
    import diffusers

    name, config = TRANSFORMERS[kind]
    return getattr(diffusers, name)(**config).eval()


def pipeline(kind: str, tmp: Path) -> Any:
    """The family's diffusers pipeline at its published size, in the default dtype and device."""
    return {"wan-1.3b": _wan, "wan-14b": _wan, "ltx-video": _ltx, "hunyuan-video": _hunyuan}[kind](kind, tmp)


def _wan(kind: str, tmp: Path) -> Any:
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    from tiny_sd import t5_tokenizer

    umt5 = UMT5EncoderModel(UMT5Config(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **UMT5_XXL))
    return WanPipeline(tokenizer=t5_tokenizer(tmp / "t5", max_length=512), text_encoder=umt5.eval(),
                       transformer=transformer(kind), vae=AutoencoderKLWan().eval(),
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0 if kind == "wan-1.3b" else 5.0))


def _ltx(kind: str, tmp: Path) -> Any:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline
    from transformers import T5Config, T5EncoderModel

    from tiny_sd import t5_tokenizer

    t5 = T5EncoderModel(T5Config(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **T5_XXL))
    return LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True),
                       vae=AutoencoderKLLTXVideo().eval(), text_encoder=t5.eval(),
                       tokenizer=t5_tokenizer(tmp / "t5", max_length=128), transformer=transformer(kind))


def _hunyuan(kind: str, tmp: Path) -> Any:
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    from tiny_hunyuan_video import llama_tokenizer
    from tiny_sd import tokenizer

    llama_tok, clip_tok = llama_tokenizer(tmp / "llama"), tokenizer(tmp / "clip", max_length=77)
    llama = LlamaModel(LlamaConfig(pad_token_id=llama_tok.pad_token_id, **LLAVA_LLAMA3_8B)).eval()
    clip = CLIPTextModel(CLIPTextConfig(bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
                                        pad_token_id=clip_tok.eos_token_id, **CLIP_L)).eval()
    return HunyuanVideoPipeline(text_encoder=llama, tokenizer=llama_tok, transformer=transformer(kind),
                                vae=AutoencoderKLHunyuanVideo().eval(),
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=clip,
                                tokenizer_2=clip_tok)


__all__ = ["TRANSFORMERS", "VIDEO_KINDS", "pipeline", "transformer"]

"""Qwen-Image, FLUX.2 [dev], Chroma and Z-Image pipelines built from configs (random weights, no download), for
``benchmarks/flow_gpu.py`` and ``benchmarks/memory.py``.

Sources of the configs. Transformers: the ``transformer/config.json`` each model ships (Qwen/Qwen-Image,
black-forest-labs/FLUX.2-dev, lodestones/Chroma1-HD, Tongyi-MAI/Z-Image), which are the defaults of the diffusers
0.42.1 classes (``QwenImageTransformer2DModel`` …) except Z-Image's ``axes_lens`` (1536 text positions; RoPE only,
no parameters); keys the 0.42.1 classes no longer take (``pooled_projection_dim``) are left out. Text encoders:
the ``text_encoder/config.json`` of the same repositories — Qwen2.5-VL-7B-Instruct (Qwen-Image),
Mistral-Small-3.1-24B (FLUX.2 [dev]), T5-XXL's encoder (Chroma), Qwen3-4B (Z-Image). VAEs: Qwen-Image's own
(``AutoencoderKLQwenImage``'s defaults), FLUX.2's (``AutoencoderKLFlux2``'s defaults), FLUX.1's for Chroma and
Z-Image. Tokenizers are the test suite's small stand-ins (tests/tiny_*.py), which changes nothing but the rows of
the vocabulary's embedding beyond their ids.

Three sizes: ``"full"`` (every part published-size: memory), ``"stand-in"`` (the published transformer and VAE,
text encoders cut to the layers the pipeline reads at their published width: speed, where prompt encoding is not
what is measured) and ``"small"`` (the suite's tiny pipeline with a few-layer, small-width transformer of the
family's own layout: CPU ratios of edit time to the transformer floor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

KINDS = ("qwenimage", "flux2", "chroma", "z-image")

TRANSFORMERS: dict[str, tuple[str, dict]] = {
    "qwenimage": ("QwenImageTransformer2DModel", dict(  # 20B MMDiT
        patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128, num_attention_heads=24,
        joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56))),
    "flux2": ("Flux2Transformer2DModel", dict(  # FLUX.2 [dev], 32B
        patch_size=1, in_channels=128, num_layers=8, num_single_layers=48, attention_head_dim=128,
        num_attention_heads=48, joint_attention_dim=15360, timestep_guidance_channels=256, mlp_ratio=3.0,
        axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, guidance_embeds=True)),
    "chroma": ("ChromaTransformer2DModel", dict(  # 8.9B
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, axes_dims_rope=(16, 56, 56), approximator_num_channels=64,
        approximator_hidden_dim=5120, approximator_layers=5)),
    "z-image": ("ZImageTransformer2DModel", dict(  # 6B single-stream
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=3840, n_layers=30, n_refiner_layers=2,
        n_heads=30, n_kv_heads=30, norm_eps=1e-5, qk_norm=True, cap_feat_dim=2560, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512])),
}
# the same layouts, three blocks of width 256 (head dim 64), reading the tiny pipelines' text widths
SMALL: dict[str, dict] = {
    "qwenimage": dict(patch_size=2, in_channels=16, out_channels=4, num_layers=3, attention_head_dim=64,
                      num_attention_heads=4, joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 28, 28)),
    "flux2": dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=64,
                  num_attention_heads=4, joint_attention_dim=48, timestep_guidance_channels=64,
                  axes_dims_rope=(16, 16, 16, 16), guidance_embeds=True),
    "chroma": dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=64,
                   num_attention_heads=4, joint_attention_dim=32, axes_dims_rope=(8, 28, 28),
                   approximator_num_channels=16, approximator_hidden_dim=256, approximator_layers=2),
    "z-image": dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=256, n_layers=3,
                    n_refiner_layers=1, n_heads=4, n_kv_heads=4, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16,
                    rope_theta=256.0, t_scale=1000.0, axes_dims=[16, 24, 24], axes_lens=[256, 64, 64]),
}
QWEN25_VL_7B = dict(  # the text model and the vision tower (the pipeline holds both; only text is called)
    text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
              num_key_value_heads=4, vocab_size=152064, rope_theta=1000000.0, rms_norm_eps=1e-6,
              rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"}),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2))
MISTRAL_SMALL_31 = dict(
    text=dict(model_type="mistral", hidden_size=5120, intermediate_size=32768, num_hidden_layers=40,
              num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=131072, rope_theta=1e9,
              rms_norm_eps=1e-5, max_position_embeddings=131072, sliding_window=None),
    vision=dict(model_type="pixtral", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                num_attention_heads=16, head_dim=64, image_size=1540, patch_size=14, num_channels=3))
QWEN3_4B = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                rope_theta=1000000.0, tie_word_embeddings=True)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu")
FLUX_VAE = dict(latent_channels=16, block_out_channels=(128, 256, 512, 512), use_quant_conv=False,
                use_post_quant_conv=False, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, scaling_factor=0.3611,
                shift_factor=0.1159)
FLUX_SHIFT = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                  max_image_seq_len=4096)


def transformer(kind: str, small: bool = False) -> Any:
    """The family's transformer at its published size (``small``: the reduced layout), random weights."""
    import diffusers

    name, config = TRANSFORMERS[kind]
    return getattr(diffusers, name)(**(SMALL[kind] if small else config)).eval()


def pipeline(kind: str, tmp: Path, size: str = "full") -> Any:
    """The family's diffusers pipeline (see the module's text for ``size``), in the default dtype and device."""
    if size == "small":
        return _small(kind, tmp)
    stand_in = size == "stand-in"
    return {"qwenimage": _qwenimage, "flux2": _flux2, "chroma": _chroma, "z-image": _z_image}[kind](tmp, stand_in)


def adapter(kind: str, pipe: Any, size: str = "full") -> Any:
    """cyclediff's adapter of a pipeline :func:`pipeline` built (FLUX.2's one-layer stand-in encoder is read
    three times, as the real one is read at layers 10, 20 and 30)."""
    from cyclediff.models.families import family

    cls = family(kind).adapter_class()
    if kind == "flux2" and size == "stand-in":
        return cls(pipe, text_encoder_out_layers=(1, 1, 1))
    return cls(pipe)


def _small(kind: str, tmp: Path) -> Any:
    """The test suite's tiny pipeline of the family, its transformer replaced by :data:`SMALL`'s."""
    if kind == "qwenimage":
        from tiny_qwenimage import qwenimage_pipeline as build
    elif kind == "flux2":
        from tiny_flux2 import dev_pipeline as build
    elif kind == "chroma":
        from tiny_chroma import chroma_pipeline as build
    else:
        from tiny_z_image import z_image_pipeline as build
    pipe = build(tmp / kind)
    torch.manual_seed(0)
    pipe.register_modules(transformer=transformer(kind, small=True))
    return pipe


def _qwenimage(tmp: Path, stand_in: bool) -> Any:
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from tiny_qwenimage import SCHEDULER, qwen_tokenizer

    tok = qwen_tokenizer(tmp / "qwen")
    text, vision = dict(QWEN25_VL_7B["text"]), dict(QWEN25_VL_7B["vision"])
    if stand_in:  # the pipeline reads the last hidden state: one layer, no vision tower to speak of
        text.update(num_hidden_layers=1, vocab_size=len(tok), bos_token_id=None, eos_token_id=0)
        vision.update(depth=1)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, vocab_size=text["vocab_size"],
                              hidden_size=text["hidden_size"], bos_token_id=None, eos_token_id=0,
                              image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                              vision_end_token_id=151653)
    return QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=AutoencoderKLQwenImage(),
                             text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(), tokenizer=tok,
                             transformer=transformer("qwenimage"))


def _flux2(tmp: Path, stand_in: bool) -> Any:
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Pipeline
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    from tiny_flux2 import mistral_tokenizer

    tok = mistral_tokenizer(tmp / "mistral")
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    text, vision = dict(MISTRAL_SMALL_31["text"], **ids), dict(MISTRAL_SMALL_31["vision"])
    if stand_in:  # one layer, read three times (adapter's text_encoder_out_layers): the transformer's 15360 wide
        text.update(num_hidden_layers=1, vocab_size=len(tok))
        vision.update(num_hidden_layers=1)
    config = Mistral3Config(text_config=text, vision_config=vision,
                            image_token_index=tok.convert_tokens_to_ids("[IMG]"), multimodal_projector_bias=False,
                            projector_hidden_act="gelu", spatial_merge_size=2, vision_feature_layer=-1, **ids)
    return Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, shift=3.0),
                         vae=AutoencoderKLFlux2(), text_encoder=Mistral3ForConditionalGeneration(config).eval(),
                         tokenizer=tok, transformer=transformer("flux2"))


def _flux_vae() -> Any:
    from diffusers import AutoencoderKL

    config = dict(FLUX_VAE)
    scaling, shift = config.pop("scaling_factor"), config.pop("shift_factor")
    vae = AutoencoderKL(**config)
    vae.register_to_config(scaling_factor=scaling, shift_factor=shift)
    return vae.eval()


def _chroma(tmp: Path, stand_in: bool) -> Any:
    from diffusers import ChromaPipeline, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    from tiny_sd import t5_tokenizer

    tok = t5_tokenizer(tmp / "t5", max_length=512)
    config = dict(T5_XXL, num_layers=1, vocab_size=len(tok)) if stand_in else dict(T5_XXL, vocab_size=32128)
    t5 = T5EncoderModel(T5Config(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **config)).eval()
    return ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SHIFT), vae=_flux_vae(), text_encoder=t5,
                          tokenizer=tok, transformer=transformer("chroma"))


def _z_image(tmp: Path, stand_in: bool) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline
    from transformers import Qwen3Config, Qwen3Model

    from tiny_z_image import qwen_tokenizer

    tok = qwen_tokenizer(tmp / "qwen3")
    config = dict(QWEN3_4B)
    if stand_in:  # the pipeline reads the second-to-last hidden state: two layers
        config.update(num_hidden_layers=2, vocab_size=len(tok))
    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_flux_vae(),
                          text_encoder=Qwen3Model(Qwen3Config(**config)).eval(), tokenizer=tok,
                          transformer=transformer("z-image"))


__all__ = ["KINDS", "SMALL", "TRANSFORMERS", "adapter", "pipeline", "transformer"]

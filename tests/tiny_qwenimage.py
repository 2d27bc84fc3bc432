"""A tiny Qwen-Image pipeline built offline: a byte-level BPE Qwen2 tokenizer trained with the tokenizers library
(the prompt template's words are single tokens, so the template's system prefix is the 34 tokens the pipeline
drops, as with the real tokenizer), a two-layer Qwen2.5-VL text encoder, a Wan-style causal VAE (frame axis of 1,
per-channel latents_mean / latents_std), a two-block transformer over 2×2-packed latents, and Qwen-Image's own
scheduler config (dynamic exponential shift, shift_terminal 0.02)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

PROMPTS = ("a red cat", "a blue dog", "a car", "a red car", "a horse", "a photo of a dog in the snow", "bad quality")
# the scheduler config Qwen/Qwen-Image ships
SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 8192, "max_shift": 0.9,
             "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": 0.02, "time_shift_type": "exponential",
             "use_dynamic_shifting": True}
LATENTS_MEAN = [0.1, -0.2, 0.3, 0.0]
LATENTS_STD = [0.5, 1.5, 0.8, 1.2]


def qwen_tokenizer(folder: Path) -> Any:
    """A Qwen2 tokenizer (its split pattern and byte-level BPE) with a vocabulary of ~350 tokens trained on the
    prompt template and a few prompt words; <|im_start|>, <|im_end|> and <|endoftext|> (the pad) are special."""
    import json

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    from diffusers import QwenImagePipeline

    template = QwenImagePipeline.__init__.__code__.co_consts  # the template is a constant of the pipeline's init
    template = next(c for c in template if isinstance(c, str) and c.startswith("<|im_start|>system"))
    bpe.train_from_iterator([template.format(p) for p in PROMPTS] * 4, trainer)
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    tok = Qwen2Tokenizer(vocab=spec["vocab"], merges=merges, model_max_length=1024,
                         additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.save_pretrained(folder)
    return Qwen2Tokenizer.from_pretrained(folder)


def text_encoder(vocab_size: int, seed: int = 0) -> Any:
    """A two-layer Qwen2.5-VL (width 16; its vision tower is never called for text)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "rope_theta": 1000000.0, "vocab_size": vocab_size,
                     "bos_token_id": None, "eos_token_id": 0,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=vocab_size, bos_token_id=None, eos_token_id=0, vision_start_token_id=vocab_size,
        vision_end_token_id=vocab_size + 1, vision_token_id=vocab_size + 2)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def qwenimage_pipeline(tmp: Path, seed: int = 0, *, img2img: bool = False) -> Any:
    """A Qwen-Image pipeline (``QwenImageImg2ImgPipeline`` with ``img2img``) of random weights: 16×16 images by
    default (4×4 latents of 4 channels, 2×2 tokens), the VAE's output made bright enough to show guidance."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageImg2ImgPipeline,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )

    tok = qwen_tokenizer(tmp / "tok")
    text = text_encoder(len(tok), seed)
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=3,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4)).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=LATENTS_MEAN,
                                 latents_std=LATENTS_STD).eval()
    cls = QwenImageImg2ImgPipeline if img2img else QwenImagePipeline
    pipe = cls(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=vae, text_encoder=text, tokenizer=tok,
               transformer=transformer)
    pipe.default_sample_size = 4  # 16×16 images by default (the real models: 128 → 1024²)
    return pipe

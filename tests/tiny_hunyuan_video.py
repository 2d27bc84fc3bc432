"""A tiny HunyuanVideo pipeline with random weights, built offline: a three-layer ``LlamaModel`` (the LLaVA text
model's stand-in) with a word-piece tokenizer made with the tokenizers library, under which the pipeline's default
prompt template is exactly its ``crop_start`` (95) tokens, as under Llama 3's; a CLIP text model (pooled, 77
positions: the pipeline pads CLIP prompts to 77) with the shared byte-level tokenizer; HunyuanVideo's causal VAE
(4× in time, 8× in space) and a guidance-distilled transformer over 1×2×2 patches; clips of 9 frames of 16×16."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from tiny_sd import WORDS, tokenizer

FRAMES, SIZE = 9, 16  # 4k + 1 frames; sides multiples of 16
SPECIAL = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<pad>", "[UNK]"]


def template_words() -> list[str]:
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    text = re.sub(r"<\|[a-z_]+\|>|\{\}", " ", DEFAULT_PROMPT_TEMPLATE["template"])
    return re.findall(r"\w+|[^\w\s]+", text)


def llama_tokenizer(folder: Path) -> Any:
    """Word pieces: the test words and the template's words (``behaviors`` as ``behavior`` + ``##s``: one word in
    two pieces, which makes the template's prefix 95 tokens with the beginning-of-text token and the two "\\n\\n"),
    Llama 3's header tokens; <pad> pads on the right."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = [w for w in dict.fromkeys(WORDS + template_words()) if w != "behaviors"] + ["behavior", "##s"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(SPECIAL + words))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken("\n\n", normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="[UNK]",
                                   bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", model_max_length=512)
    fast.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def hunyuan_vae(seed: int = 0) -> Any:
    """HunyuanVideo's VAE at its smallest (four levels of width 8, 4 latent channels), its scaling factor; the
    decoder's output scaled up so that a prompt or guidance change moves the frames well past 1e-4."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8, temporal_compression_ratio=4,
        mid_block_add_attention=True).eval()
    with torch.no_grad():
        vae.decoder.conv_out.conv.weight.mul_(1.5)
    return vae


def hunyuan_transformer(seed: int = 0, guidance_embeds: bool = True, patch_size_t: int = 1) -> Any:
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(seed)
    return HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1, num_single_layers=1,
        num_refiner_layers=1, patch_size=2, patch_size_t=patch_size_t, guidance_embeds=guidance_embeds,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4)).eval()


def hunyuan_pipeline(tmp: Path, seed: int = 0, *, guidance_embeds: bool = True) -> Any:
    """HunyuanVideo-shaped: the Llama (width 16, three layers: the pipeline reads the third from last state), CLIP
    (width 8, pooled), the VAE and the transformer above, the flow-matching scheduler with HunyuanVideo's shift 7."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    llama_tok, clip_tok = llama_tokenizer(tmp / "llama"), tokenizer(tmp / "clip", max_length=77)
    torch.manual_seed(seed)
    llama = LlamaModel(LlamaConfig(vocab_size=len(llama_tok), hidden_size=16, intermediate_size=32,
                                   num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
                                   max_position_embeddings=256, pad_token_id=llama_tok.pad_token_id)).eval()
    n = len(clip_tok)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=n, hidden_size=8, intermediate_size=16, num_attention_heads=2,
                                        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=n - 2,
                                        eos_token_id=n - 1, pad_token_id=n - 1)).eval()
    return HunyuanVideoPipeline(text_encoder=llama, tokenizer=llama_tok, transformer=hunyuan_transformer(
        seed, guidance_embeds), vae=hunyuan_vae(seed), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=clip, tokenizer_2=clip_tok)

"""Tiny FLUX.2 pipelines with random weights, built offline: [klein] (Qwen3 + a byte-level BPE tokenizer with a
chat template) and [dev] (Mistral-3 + its tokenizer), FLUX.2's VAE with batch-norm statistics of its
patchified latents, a small Flux2 transformer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tiny_sd import WORDS

# the chat layouts the real tokenizers' templates produce, written small: each message as a turn, then the
# assistant's turn opened (Qwen3 without thinking: an empty think block)
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}{% for part in m['content'] %}{% if part['type'] == 'text' %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{{ part['text'] }}[/SYSTEM_PROMPT]"
    "{% else %}[INST]{{ part['text'] }}[/INST]{% endif %}{% endif %}{% endfor %}{% endfor %}"
)


def _bpe(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary (every byte, a few whole words with their leading space) and its merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    merges: list[tuple[str, str]] = []
    for word in WORDS + ["Ġ" + w for w in WORDS]:
        pieces = list(word)
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocab.setdefault(pieces[0], len(vocab))
    for token in specials:
        vocab[token] = len(vocab)
    return vocab, list(dict.fromkeys(merges))


def qwen_tokenizer(folder: Path) -> Any:
    """A Qwen2TokenizerFast with Qwen's special tokens and a chat template, saved and loaded back."""
    from transformers import Qwen2TokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    vocab, merges = _bpe(specials)
    tok = Qwen2TokenizerFast(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                             pad_token="<|endoftext|>", additional_special_tokens=specials[1:])
    tok.chat_template = QWEN_TEMPLATE
    tok.save_pretrained(folder)
    return Qwen2TokenizerFast.from_pretrained(folder)


def mistral_tokenizer(folder: Path) -> Any:
    """Mistral-3's tokenizer: a byte-level BPE with Mistral's control tokens and a chat template, saved and loaded
    back. The real pipeline holds a PixtralProcessor, which needs torchvision; for text-only prompts the pipeline
    only calls its ``apply_chat_template``, which the tokenizer has with the same arguments and result."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "[IMG]", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]
    vocab, merges = _bpe(specials)
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", chat_template=MISTRAL_TEMPLATE)
    tok.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def flux2_vae(seed: int = 0) -> Any:
    """FLUX.2's VAE, tiny: 4 latent channels at half the image size (16 after 2×2 patchifying), random batch-norm
    statistics (so the latent normalisation matters), a decoder scaled so it does not saturate."""
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                             latent_channels=4, norm_num_groups=4, sample_size=16)
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.randn(16) * 0.3)
        vae.bn.running_var.copy_(torch.rand(16) + 0.5)
        vae.decoder.conv_out.weight.mul_(0.5)
        vae.decoder.conv_out.bias.zero_()
    return vae.eval()


def flux2_transformer(joint_attention_dim: int, guidance_embeds: bool, seed: int = 0) -> Any:
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(seed)
    model = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                   attention_head_dim=16, num_attention_heads=2,
                                   joint_attention_dim=joint_attention_dim, timestep_guidance_channels=32,
                                   axes_dims_rope=(4, 4, 4, 4), guidance_embeds=guidance_embeds).eval()
    with torch.no_grad():  # a random network barely reads the text (or the guidance): make it, so guidance shows
        model.transformer_blocks[0].attn.add_v_proj.weight.mul_(10)
        if guidance_embeds:
            model.time_guidance_embed.guidance_embedder.linear_2.weight.mul_(10)
    return model


def klein_pipeline(tmp: Path, seed: int = 0, distilled: bool = False) -> Any:
    """FLUX.2 [klein]-shaped: Qwen3 with 27 layers (the pipeline reads hidden states 9, 18, 27; width 16, so the
    transformer's text width is 48), no guidance embedding; "Base" (classifier-free guidance) unless
    ``distilled``; 16×16 images by default."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = qwen_tokenizer(tmp / "qwen")
    torch.manual_seed(seed)
    text = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok), hidden_size=16, intermediate_size=16,
                                        num_hidden_layers=27, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                        max_position_embeddings=512, pad_token_id=tok.pad_token_id)).eval()
    pipe = Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, shift=3.0),
                              vae=flux2_vae(seed), text_encoder=text, tokenizer=tok,
                              transformer=flux2_transformer(48, False, seed), is_distilled=distilled)
    pipe.default_sample_size = 8  # 16×16 images by default (the real models: 128 → 1024²)
    return pipe


def dev_pipeline(tmp: Path, seed: int = 0) -> Any:
    """FLUX.2 [dev]-shaped: Mistral-3 (text width 16, 30 layers: the pipeline reads hidden states 10, 20, 30),
    the embedded guidance scale; 16×16 images by default."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    tok = mistral_tokenizer(tmp / "mistral")
    config = Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(tok), "hidden_size": 16, "intermediate_size": 16,
                     "max_position_embeddings": 512, "num_attention_heads": 2, "num_hidden_layers": 30,
                     "num_key_value_heads": 1, "head_dim": 8, "rms_norm_eps": 1e-5, "sliding_window": None,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 16, "image_size": 30, "patch_size": 6, "num_channels": 3},
        image_token_index=tok.convert_tokens_to_ids("[IMG]"), vision_feature_layer=-1,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    text = Mistral3ForConditionalGeneration(config).eval()
    pipe = Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, shift=3.0),
                         vae=flux2_vae(seed), text_encoder=text, tokenizer=tok,
                         transformer=flux2_transformer(48, True, seed))
    pipe.default_sample_size = 8
    return pipe

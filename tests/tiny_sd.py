"""Tiny Stable Diffusion 1.x / XL pipelines with random weights, built offline (the tokenizer vocabulary too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

SD_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, set_alpha_to_one=False,
                    steps_offset=1, clip_sample=False)
WORDS = ["a", "cat", "dog", "photo", "of", "the", "red", "blue", "car", "horse"]


def write_tokenizer_files(folder: Path) -> Path:
    """A byte-level BPE vocabulary (all bytes, plus a few whole words) and its merges, as CLIP's files."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = []
    for word in WORDS:  # merge each word left to right into one end-of-word token
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocab.setdefault(pieces[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return folder


def tokenizer(folder: Path, max_length: int = 16) -> CLIPTokenizer:
    write_tokenizer_files(folder)
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def text_config(vocab_size: int, hidden: int = 16, projection: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                          num_attention_heads=2, num_hidden_layers=2, max_position_embeddings=16,
                          projection_dim=projection or hidden, bos_token_id=vocab_size - 2,
                          eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)


def vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    model = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                          down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                          norm_num_groups=4, layers_per_block=1, sample_size=16)
    with torch.no_grad():  # random decoders saturate at 0 and 1, which hides differences: scale the output down
        model.decoder.conv_out.weight.mul_(0.05)
        model.decoder.conv_out.bias.zero_()
    return model.eval()


def sd_pipeline(
    tmp: Path, seed: int = 0, prediction_type: str = "epsilon", channels=(16, 32)
) -> StableDiffusionPipeline:
    """SD-1.x-shaped: 16×16 images, 8×8×4 latents, text width 16."""
    tok = tokenizer(tmp / "tok")
    torch.manual_seed(seed)
    text = CLIPTextModel(text_config(len(tok))).eval()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
    ).eval()
    return StableDiffusionPipeline(
        vae=vae(seed), text_encoder=text, tokenizer=tok, unet=unet,
        scheduler=DDIMScheduler(prediction_type=prediction_type, **SD_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def sdxl_pipeline(tmp: Path, seed: int = 0) -> StableDiffusionXLPipeline:
    """SDXL-shaped: two text encoders (widths 16 and 24, pooled projection 12), size/crop conditioning."""
    tok = tokenizer(tmp / "tok")
    tok2 = tokenizer(tmp / "tok2")
    torch.manual_seed(seed)
    text1 = CLIPTextModel(text_config(len(tok), hidden=16)).eval()
    text2 = CLIPTextModelWithProjection(text_config(len(tok2), hidden=24, projection=12)).eval()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=40, attention_head_dim=4, norm_num_groups=8, addition_embed_type="text_time",
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=12 + 6 * 4, transformer_layers_per_block=1,
    ).eval()
    return StableDiffusionXLPipeline(
        vae=vae(seed), text_encoder=text1, text_encoder_2=text2, tokenizer=tok, tokenizer_2=tok2, unet=unet,
        scheduler=DDIMScheduler(**SD_SCHEDULER),
    )


def photos(batch: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (B, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def sd3_pipeline(tmp: Path, seed: int = 0, shift: float = 3.0) -> Any:
    """SD3-shaped: two CLIP encoders with projections (widths 16 and 24, pooled 12 + 12), no T5 (diffusers allows
    it: zeros in its place), an MMDiT over 8×8×4 latents (patch 2), a flow-matching scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tok, tok2 = tokenizer(tmp / "tok"), tokenizer(tmp / "tok2")
    torch.manual_seed(seed)
    text1 = CLIPTextModelWithProjection(text_config(len(tok), hidden=16, projection=12)).eval()
    text2 = CLIPTextModelWithProjection(text_config(len(tok2), hidden=24, projection=12)).eval()
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=48, caption_projection_dim=16, pooled_projection_dim=24,
        pos_embed_max_size=16,
    ).eval()
    autoencoder = vae(seed)
    autoencoder.register_to_config(scaling_factor=1.5305, shift_factor=0.0609)  # SD3's VAE latent normalisation
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=shift), vae=autoencoder,
        text_encoder=text1, tokenizer=tok, text_encoder_2=text2, tokenizer_2=tok2, text_encoder_3=None,
        tokenizer_3=None,
    )


def t5_tokenizer(folder: Path, max_length: int = 16) -> Any:
    """A small SentencePiece-style (Unigram) T5 tokenizer built with the tokenizers library: a few whole words,
    the letters, and T5's special tokens (pad 0, end 1, unknown 2)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -1.0) for w in WORDS]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz▁"]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    fast = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0,
                           model_max_length=max_length)
    fast.save_pretrained(folder)
    return T5TokenizerFast.from_pretrained(folder)


def word_tokenizer(folder: Path, special: list[str], words=WORDS, *, before: str = "", **options) -> Any:
    """A word-level fast tokenizer made with the tokenizers library, as the tiny text encoders' builders need it:
    ``special`` then ``words`` (the shared test words unless given), each a token of its own, ``<unk>`` for the
    rest, split at whitespace; the special tokens in ``before`` put before every text; ``options`` go to
    PreTrainedTokenizerFast (its pad token, model_max_length, ...). Saved to folder and read back from it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys([*special, *words]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if before:
        tok.post_processor = processors.TemplateProcessing(single=f"{before} $A",
                                                           special_tokens=[(t, vocab[t]) for t in before.split()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **options)
    fast.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def flux_pipeline(tmp: Path, seed: int = 0, guidance_embeds: bool = True) -> Any:
    """FLUX-shaped: CLIP (pooled, width 16) + T5 (width 32, 16 tokens), a transformer over 2×2-packed 4-channel
    latents (one double and one single block), FLUX's dynamic-shift scheduler; 16×16 images."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    tok, t5_tok = tokenizer(tmp / "tok"), t5_tokenizer(tmp / "t5")
    torch.manual_seed(seed)
    text = CLIPTextModel(text_config(len(tok), hidden=16)).eval()
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).eval()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6),
    ).eval()
    autoencoder = vae(seed)
    autoencoder.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)  # FLUX's VAE latent normalisation
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=autoencoder, text_encoder=text, tokenizer=tok, text_encoder_2=t5,
                        tokenizer_2=t5_tok, transformer=transformer)
    pipe.default_sample_size = 8  # 16×16 images by default (the real models: 128 → 1024²)
    return pipe


def tiny_clip(tmp_path, seed: int = 0):
    """A tiny random CLIP (and its tokenizer) for scores and energies."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    tok = tokenizer(tmp_path / "clip-tok")
    text = CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_attention_heads=2,
                          num_hidden_layers=1, max_position_embeddings=16, bos_token_id=len(tok) - 2,
                          eos_token_id=len(tok) - 1, pad_token_id=len(tok) - 1)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                              image_size=32, patch_size=8)
    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=8)), tok


def make_lora(pipe, folder, seed: int, text: bool = False, gain: float = 1.0):
    """A random rank-4 LoRA on the pipeline's network attention (and its first text encoder), its up-projections
    times ``gain``, saved as diffusers saves one; returns the file."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    config = dict(r=4, lora_alpha=4, init_lora_weights=False)
    net_name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    net = getattr(pipe, net_name)
    net.add_adapter(LoraConfig(target_modules=["to_q", "to_k", "to_v"], **config))
    state = get_peft_model_state_dict(net)
    layers = {f"{net_name}_lora_layers": convert_state_dict_to_diffusers(
        {k: v * gain if "lora_B" in k else v for k, v in state.items()})}
    if text:
        inject_adapter_in_model(LoraConfig(target_modules=["q_proj", "v_proj"], **config), pipe.text_encoder)
        layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(pipe.text_encoder))
    type(pipe).save_lora_weights(folder, **layers)
    return folder / "pytorch_lora_weights.safetensors"

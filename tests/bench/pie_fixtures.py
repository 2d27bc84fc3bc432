"""Tiny scoring models (random weights, saved as their libraries save them) and a tiny PIE-Bench-format folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tiny_sd import tiny_clip


def tiny_dino(tmp: Path) -> Path:
    """A 12-layer ViT of width 16, patch 8 (the official metric reads layer 11), saved as a folder."""
    from transformers import ViTConfig, ViTModel

    folder = tmp / "dino"
    if not folder.is_dir():
        torch.manual_seed(0)
        config = ViTConfig(hidden_size=16, num_hidden_layers=12, num_attention_heads=2, intermediate_size=32,
                           image_size=224, patch_size=8, qkv_bias=True)
        ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def tiny_clip_folder(tmp: Path) -> Path:
    """tiny_sd's tiny random CLIP with its processor (tokenizer + 32-pixel image processor), saved as a folder."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    folder = tmp / "clip"
    if folder.is_dir():
        return folder
    model, tok = tiny_clip(tmp, seed=2)  # a draw whose image and text features agree (CLIPScore floors at 0)
    model.save_pretrained(folder)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tok)
    processor.save_pretrained(folder)
    return folder


def tiny_squeezenet_weights(tmp: Path) -> Path:
    """Random squeezenet1_1 features weights under torchvision's names (``features.N…``), as a .pth state dict."""
    from cyclediff.metrics.lpips import squeezenet1_1_features

    path = tmp / "squeezenet1_1.pth"
    if not path.is_file():
        torch.manual_seed(1)
        state = {f"features.{k}": v for k, v in squeezenet1_1_features().state_dict().items()}
        torch.save(state, path)
    return path


def pie_sd(tmp: Path) -> Path:
    """tiny_sd's Stable Diffusion with a VAE that downsamples 8× (as SD's does), saved as a folder: PIE-Bench's
    512 × 512 images become 64 × 64 latents, so the UNet's full-resolution attention stays small."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from tiny_sd import sd_pipeline

    folder = tmp / "pie-sd"
    if folder.is_dir():
        return folder
    base = sd_pipeline(tmp / "pie-sd-parts")
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=4, layers_per_block=1, sample_size=512)
    StableDiffusionPipeline(vae=vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
                            scheduler=base.scheduler, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)
    return folder


def rle(mask: np.ndarray) -> list[int]:
    """PIE-Bench's run-length code of a binary (H, W) mask: (start, length) pairs over the flattened image."""
    flat = mask.flatten().astype(int)
    runs, i = [], 0
    while i < len(flat):
        if flat[i]:
            j = i
            while j < len(flat) and flat[j]:
                j += 1
            runs += [i, j - i]
            i = j
        else:
            i += 1
    return runs


def pie_folder(tmp: Path, *, count: int = 3, missing: bool = False) -> Path:
    """A PIE-Bench-format folder: ``count`` 512×512 images (smooth noise) in two category folders, each with
    bracketed prompts and a hand-made mask; the last of type 9 (style); ``missing``: one more item without its
    image."""
    root = tmp / "PIE-Bench"
    rng = np.random.default_rng(0)
    table = {}
    for i in range(count):
        type_id = "9" if i == count - 1 else str(i % 3)
        rel = f"{type_id}_category/{i:03d}.jpg"
        low = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((512, 512), Image.Resampling.BICUBIC)
        (root / "annotation_images" / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / "annotation_images" / rel, quality=95)
        mask = np.zeros((512, 512))
        mask[128:384, 100 + 20 * i:400] = 1
        table[f"{i:012d}"] = {"image_path": rel, "original_prompt": "a [cat] sitting on a mat",
                              "editing_prompt": "a [dog] sitting on a mat", "editing_instruction": "make it a dog",
                              "editing_type_id": type_id, "blended_word": "cat dog", "mask": rle(mask)}
    if missing:
        table["999999999999"] = {**table[f"{0:012d}"], "image_path": "0_category/gone.jpg"}
    (root / "mapping_file.json").write_text(json.dumps(table))
    return root

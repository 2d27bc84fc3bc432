"""LoRA files: what family a file is for (from its keys), read without running anything, and the ``PATH[:scale]``
form the command line takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CycleDiffError

# key fragments that only one family's adapters carry (diffusers' and kohya's names)
FAMILY_KEYS = (("FLUX", ("single_transformer_blocks", "double_blocks", "single_blocks")),
               ("SD3", ("context_embedder", "joint_blocks", "transformer.transformer_blocks")),
               ("SDXL", ("text_encoder_2", "lora_te2", "add_embedding")),
               ("Stable Diffusion", ("unet.", "lora_unet_", "text_encoder.", "lora_te_")))
ADAPTER_FAMILY = {"a Stable Diffusion UNet": ("Stable Diffusion", "SDXL"), "SD3's joint attention (MMDiT)": ("SD3",),
                  "FLUX's joint attention (MMDiT)": ("FLUX",)}


def parse_lora(spec: str) -> tuple[str, float]:
    """``PATH[:scale]`` → (path, scale); the scale defaults to 1."""
    path, sep, tail = str(spec).rpartition(":")
    if sep:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return str(spec), 1.0


def lora_family(keys: list[str]) -> str | None:
    """The model family a LoRA's keys are for, or None when they say nothing clear."""
    for family, fragments in FAMILY_KEYS:
        if any(f in k for k in keys for f in fragments):
            return family
    return None


def lora_file(path: Path) -> Path:
    """The file of a LoRA (itself, or a folder's first .safetensors)."""
    if not path.exists():
        raise CycleDiffError(f"no such LoRA: {path}")
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise CycleDiffError(f"{path} holds no .safetensors LoRA file")
    return files[0]


def check_lora_family(path: Path, keys: list[str], model: Any) -> None:
    """Refuse a LoRA made for another family than ``model``'s, naming the family it seems to be for."""
    family = lora_family(keys)
    fits = ADAPTER_FAMILY.get(model.kind, ())
    if family is not None and fits and family not in fits:
        raise CycleDiffError(f"{path.name} looks like a LoRA for {family}; this model is {model.kind} "
                             f"({' / '.join(fits)}): give a LoRA of its family")


__all__ = ["check_lora_family", "lora_family", "lora_file", "parse_lora"]

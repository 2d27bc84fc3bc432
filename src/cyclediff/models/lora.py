"""LoRA files: what family a file is for (from its keys), read without running anything, and the ``PATH[:scale]``
form the command line takes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import CycleDiffError

#: the largest |scale| a LoRA is applied at (1 is the adapter as trained; far beyond 100 every output saturates)
MAX_SCALE = 100.0
# the text width a cross-attention LoRA reads -> the Stable Diffusion it was made for
TEXT_WIDTHS = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
#: a LoRA for a model's second network, written ``STAGE=PATH[:scale]``: Wan 2.2 A14B's low-noise transformer (its
#: LoRAs come in high-noise / low-noise pairs; a plain ``PATH`` goes to the first, high-noise one)
STAGES = {"low-noise": "transformer_2"}


def check_scale(scale: Any, spec: Any) -> float:
    """The scale of the LoRA ``spec`` as a float: a finite number from -MAX_SCALE to MAX_SCALE, else one line (a
    NaN or infinite scale made every output black). Every front end's LoRA goes through here."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise CycleDiffError(f"the scale {scale!r} of the LoRA {spec} is not a number; write PATH:SCALE, e.g. "
                             "style.safetensors:0.8") from None
    if not math.isfinite(value) or abs(value) > MAX_SCALE:
        raise CycleDiffError(f"the scale of the LoRA {spec} is {scale}; give a finite number from -{MAX_SCALE:g} to "
                             f"{MAX_SCALE:g} (1 is the adapter as trained)")
    return value


def check_path(path: Any) -> str:
    """A LoRA path that is not empty (``Path('')`` would be the current folder)."""
    if not str(path).strip():
        raise CycleDiffError("the LoRA path is empty; give PATH[:SCALE] with a .safetensors LoRA file or its folder")
    return str(path)


def lora_stage(spec: Any) -> tuple[str | None, str]:
    """(``"low-noise"``, ``PATH[:scale]``) for ``low-noise=PATH[:scale]`` (:data:`STAGES`), (None, ``spec``)
    otherwise; a path that exists is taken whole (an ``=`` may be part of a file name)."""
    text = str(spec)
    head, sep, rest = text.partition("=")
    if sep and head in STAGES and not Path(text).expanduser().exists():
        return head, rest
    return None, text


def parse_lora(spec: str) -> tuple[str, float]:
    """``[STAGE=]PATH[:scale]`` → (``[STAGE=]PATH``, scale), both checked (:func:`check_path`,
    :func:`check_scale`); the scale defaults to 1. A path that exists is taken whole (a colon may be part of a file
    name); the stage (:func:`lora_stage`) stays on the path, for the model's ``load_lora``."""
    stage, spec = lora_stage(check_path(spec))
    prefix = f"{stage}=" if stage else ""
    path, sep, tail = check_path(spec).rpartition(":")
    if not sep or "/" in tail or "\\" in tail or Path(spec).expanduser().exists():  # no scale (or a drive's colon)
        return prefix + spec, 1.0
    return prefix + check_path(path), check_scale(tail.strip(), spec)


def lora_family(keys: list[str]) -> str | None:
    """What model a LoRA's keys are for (e.g. "SDXL", :func:`~cyclediff.models.families.lora_match`), or None when
    they say nothing clear."""
    from .families import lora_match

    found = lora_match(keys)
    return found[1] if found is not None else None


def lora_file(source: str | Path) -> Path:
    """The file of a LoRA (itself, or a folder's first .safetensors), which must look like a tensor file."""
    path = Path(check_path(source)).expanduser()
    if not path.exists():
        raise CycleDiffError(f"no such LoRA: {path}")
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise CycleDiffError(f"{path} holds no .safetensors LoRA file")
    _check_tensor_file(files[0])
    return files[0]


def _check_tensor_file(file: Path) -> None:
    """A safetensors file, or PyTorch's zip format (read with ``weights_only``); a pickle is refused as one, and
    anything else (an image given by mistake) is named for what it looks like."""
    import zipfile

    from ..latent import looks_like
    from .checkpoints import check_not_legacy_pickle

    with open(file, "rb") as f:
        head = f.read(9)
    size = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    if (0 < size <= file.stat().st_size - 8 and head[8:9] == b"{") or zipfile.is_zipfile(file):
        return
    looks = looks_like(file)
    if looks == "a Python pickle":
        check_not_legacy_pickle(file)
    seen = f" (it looks like {looks})" if looks else ""
    raise CycleDiffError(f"{file.name} is not a LoRA file{seen}; give a .safetensors file of LoRA weights (or "
                         "its folder)")


def lora_target(file: Path) -> str | None:
    """What a Stable Diffusion LoRA appears to be made for, from the text width its cross-attention reads
    (e.g. "SD 1.x (text width 768)"), or None when it does not say."""
    if file.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        for key in f.keys():
            if "attn2" in key and any(k in key for k in ("to_k.lora_A", "to_k.lora.down", "to_k.lora_down",
                                                          "to_k_lora.down")):
                width = f.get_slice(key).get_shape()[-1]
                return f"{TEXT_WIDTHS[width]} (text width {width})" if width in TEXT_WIDTHS else None
    return None


def check_lora_family(path: Path, keys: list[str], model: Any) -> None:
    """Refuse a LoRA made for another family than ``model``'s (its adapter class's ``family``), naming the family
    it seems to be for; a LoRA whose names also fit the model's family, or a family whose layout it shares
    (``lora_like``), is taken."""
    from .families import family, lora_matches

    found = lora_matches(keys)
    name = getattr(model, "family", None)
    if not found or name is None or any(f.name in (name, *family(name).lora_like) for f, _ in found):
        return
    found = found[0]
    fits = family(name).lora_labels
    also = f" ({' / '.join(fits)})" if fits else ""
    raise CycleDiffError(f"{path.name} looks like a LoRA for {found[1]}; this model is {model.kind}{also}: give a "
                         "LoRA of its family")


def size_mismatch(source: Any, file: Path, err: Exception, model: Any) -> CycleDiffError | None:
    """One line for a LoRA of the model's family whose layers have other sizes (made for another size or variant
    of it), naming one layer and what the LoRA appears to target; None for other errors."""
    import re

    found = re.search(r"size mismatch for ([\w.]+): copying a param with shape torch.Size\((\[[\d, ]*\])\) from "
                      r"checkpoint, the shape in current model is torch.Size\((\[[\d, ]*\])\)", str(err))
    if found is None:
        return None
    layer = re.sub(r"\.[^.]+\.weight$", "", found.group(1))  # without the adapter's name
    target = lora_target(file)
    aim = f"; it appears to target {target}" if target else ""
    return CycleDiffError(f"the LoRA {source} was made for another size or variant of {model.kind} (e.g. {layer}: "
                          f"shape {found.group(2)} in the LoRA, {found.group(3)} in this model){aim}: give a LoRA "
                          "made for this model")


__all__ = ["MAX_SCALE", "check_lora_family", "check_path", "check_scale", "lora_family", "lora_file",
           "lora_stage", "lora_target", "parse_lora", "size_mismatch"]

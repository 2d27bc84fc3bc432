"""GGUF files (llama.cpp's format, the community's Q8_0 / Q5 / Q4 FLUX and SD3.5 files): one quantized denoising
network, loaded with diffusers' ``from_single_file`` and its GGUF quantizer (weights stay quantized, dequantised
layer by layer in torch at each call, in ``dtype``). The rest of the pipeline (text encoders, VAE, scheduler) comes
from ``base``: a hub id or a local diffusers folder of the same architecture, by default the official one.

The architecture is read from the file before anything loads: its tensor names (diffusers' or the original
layout, both of which diffusers converts) and its ``general.architecture`` field; a GGUF of something else (a
language model, another image architecture) is one line naming what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError
from .quantize import NETWORK

# kind -> the diffusers class of its network (the pipeline folder it lives in: quantize.NETWORK)
NETWORKS = {"flux": "FluxTransformer2DModel", "sd3": "SD3Transformer2DModel",
            "latent-diffusion": "UNet2DConditionModel"}
NAMES = {"flux": "FLUX.1", "sd3": "SD3 / SD3.5", "latent-diffusion": "Stable Diffusion (UNet)"}


def read_gguf(path: Path) -> tuple[str | None, list[str]]:
    """(``general.architecture`` or None, tensor names) of a GGUF file, without reading its tensors' data."""
    try:
        from gguf import GGUFReader
    except ImportError as err:
        raise CycleDiffError("GGUF files need the gguf package: pip install 'cyclediff[gguf]'") from err
    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # noqa: BLE001 - numpy / struct errors of a damaged or foreign file
        raise CycleDiffError(f"{path.name} is not a readable GGUF file: {err}") from err
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode(errors="replace") if field is not None else None
    return arch, [t.name for t in reader.tensors]


def gguf_kind(path: Path, arch: str | None, keys: list[str]) -> str:
    """The model family of the GGUF file ``path``'s network, from its tensor names (:func:`read_gguf`); anything
    else is refused in one line."""

    def has(*fragments: str) -> bool:
        return any(f in k for k in keys for f in fragments)

    if has("double_blocks.", "single_transformer_blocks.", "single_blocks."):
        return "flux"
    if has("joint_blocks.") or (has("transformer_blocks.") and has("context_embedder.")):
        return "sd3"
    if has("input_blocks.", "down_blocks.") and has("time_embed", "time_embedding"):
        return "latent-diffusion"
    what = f"a {arch} model" if arch else "no network cyclediff knows"
    raise CycleDiffError(f"{path.name} holds {what}, not a diffusion network cyclediff loads from GGUF (FLUX.1, "
                         "SD3 / SD3.5, a Stable Diffusion UNet)")


def default_base(kind: str, keys: list[str]) -> str:
    """The official pipeline of a GGUF network's architecture (its text encoders, VAE and scheduler)."""
    if kind == "flux":
        guided = any("guidance_in" in k or "guidance_embedder" in k for k in keys)
        return "black-forest-labs/FLUX.1-dev" if guided else "black-forest-labs/FLUX.1-schnell"
    if kind == "sd3":
        blocks = {k.split(".")[1] for k in keys if k.startswith(("joint_blocks.", "transformer_blocks."))}
        return "stabilityai/stable-diffusion-3.5-large" if len(blocks) > 30 else \
            "stabilityai/stable-diffusion-3.5-medium"
    raise CycleDiffError("a GGUF Stable Diffusion UNet needs the pipeline it belongs to: pass --base (a hub id or "
                         "a local diffusers folder of that model)")


def load_gguf(path: Path, base: str | None, dtype: torch.dtype | None, device: Any, family: Any,
              base_kind: Any) -> Any:
    """The adapter (``family(kind)``) of the pipeline ``base`` with its network from the GGUF file ``path``;
    ``base_kind(spec)`` is the family of ``base``, which must be the file's."""
    import diffusers

    arch, keys = read_gguf(path)
    kind = gguf_kind(path, arch, keys)
    given = base
    base = base or default_base(kind, keys)
    try:
        found = base_kind(base)
    except CycleDiffError as err:
        if given is not None:
            raise
        raise CycleDiffError(f"{path.name} holds only the {NAMES[kind]} network; its pipeline (text encoders, VAE, "
                             f"scheduler) defaults to {base}, which is not reachable here: pass --base a local "
                             "diffusers folder of that model") from err
    if found != kind:
        raise CycleDiffError(f"{path.name} is a {NAMES[kind]} network but the base {base} is a "
                             f"{NAMES.get(found, found)} pipeline: pass --base of the file's architecture")
    name, folder = NETWORKS[kind], NETWORK[kind]
    from ._compat import diffusers_quiet, dtype_kwargs

    compute = dtype or torch.float32
    try:
        with diffusers_quiet():
            network = getattr(diffusers, name).from_single_file(
                str(path), config=str(base), subfolder=folder, **dtype_kwargs(compute),
                quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=compute))
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise CycleDiffError(f"{path.name} does not fit the {folder} of {base}: {str(err).splitlines()[0]} "
                             "(pass --base of the model the file was made from)") from err
    model = family(kind).from_pretrained(base, dtype=compute, device=device, **{folder: network})
    model.model_id = str(path)
    return model


__all__ = ["default_base", "gguf_kind", "load_gguf", "read_gguf"]

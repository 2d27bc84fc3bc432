"""One entry point for every model spec: hub id, local diffusers folder, single checkpoint file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .._io import json_object
from ..errors import CycleDiffError


def load(spec: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> Any:
    """The denoiser for ``spec``.

    - a ``.safetensors`` / ``.ckpt`` file: a Stable Diffusion checkpoint (SD 1.x / 2.x / XL);
    - a folder or hub id whose ``model_index.json`` names a text-to-image pipeline: :class:`StableDiffusion`;
    - a folder or hub id holding a ``UNet2DModel`` (pipeline layout or a flat UNet folder): :class:`PixelDenoiser`;
    - ``demo:digits``, ``demo:digit-3``, ``demo:digit-8``: the digits models shipped with the package.
    """
    from .pixel import PixelDenoiser
    from .stable_diffusion import SINGLE_FILE_SUFFIXES, StableDiffusion

    source = str(spec)
    if source.startswith("demo:"):
        from ..demo.models import load_demo

        return load_demo(source.removeprefix("demo:"), device=device)
    path = Path(source).expanduser()
    if _looks_local(source) and not path.exists():
        raise CycleDiffError(f"no such file or folder: {source}; check the path (hub ids look like org/name)")
    source = str(path) if _looks_local(source) else source
    if path.is_file() or source.endswith(SINGLE_FILE_SUFFIXES):
        return StableDiffusion.from_pretrained(source, dtype=dtype, device=device)
    kind = _kind(source, path)
    if kind == "latent-diffusion":
        return StableDiffusion.from_pretrained(source, dtype=dtype, device=device)
    return PixelDenoiser.from_pretrained(source, dtype=dtype, device=device)


def _kind(source: str, path: Path) -> str:
    """'latent-diffusion' or 'pixel', from model_index.json (or a flat UNet2DModel folder's config.json)."""
    index = _read_config(source, path, "model_index.json")
    if index is None:
        config = _read_config(source, path, "config.json")
        if config is not None and config.get("_class_name") == "UNet2DModel":
            return "pixel"
        where = "local folder" if path.exists() else "hub id (or it is unreachable offline: pass a local path)"
        raise CycleDiffError(
            f"{source!r} is not a model this tool knows: no model_index.json in that {where}. Pass a diffusers "
            "pipeline folder, a UNet2DModel folder with scheduler_config.json, or a .safetensors / .ckpt file"
        )
    if "text_encoder" in index or "vae" in index:
        return "latent-diffusion"
    return "pixel"


def _looks_local(source: str) -> bool:
    """A spec that can only be a path (a hub id is ``name`` or ``org/name``)."""
    return (source.startswith(("/", "./", "../", "~", ".\\")) or source.count("/") > 1 or "\\" in source
            or Path(source).exists())


def _read_config(source: str, path: Path, name: str) -> dict | None:
    if path.is_dir():
        file = path / name
        if not file.is_file():
            return None
        try:
            text = file.read_text()
        except UnicodeDecodeError as err:
            raise CycleDiffError(f"{file} is not valid JSON (not text); repair it or download the model again") from err
        return json_object(text, f"{file} (repair it or download the model again)")
    if path.exists():
        return None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(source, name)).read_text())
    except Exception:  # noqa: BLE001 - offline, missing repo, missing file: all mean "not found here"
        return None

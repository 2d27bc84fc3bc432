"""One entry point for every model spec: hub id, local diffusers folder, single checkpoint file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..checks import json_object
from ..errors import CycleDiffError
from .checkpoints import looks_local as _looks_local


def load(spec: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None,
         lora: Any = (), quantize: str | None = None, vae_tiling: bool = False, offload: str | None = None,
         text_encoders_on_cpu: bool = False, base: str | None = None) -> Any:
    """The denoiser for ``spec``, changed at loading as asked (text-to-image models; the maths stays the same):

    - ``lora``: LoRA adapters (``PATH[:scale]`` strings or (path, scale) pairs), stacked;
    - ``quantize``: the network's weights quantized (:data:`cyclediff.models.quantize.CHOICES`: int8, int4, fp8
      through optimum-quanto, torchao-int8 / torchao-fp8, nf4 / bnb-int8 through bitsandbytes on a CUDA GPU);
    - ``vae_tiling``: the VAE encodes and decodes large images in overlapping tiles, one image at a time
      (diffusers' tiling and slicing: less memory, seams blended);
    - ``offload``: ``model``, ``sequential`` or ``group`` offloading to the CPU (:mod:`cyclediff.models.offload`;
      on a CPU-only run a note and nothing else); ``text_encoders_on_cpu``: the text encoders stay on the CPU;
    - ``base``: where a single file's other parts come from (a GGUF network's text encoders, VAE, scheduler; a
      checkpoint's configs offline): a hub id or a diffusers folder.

    ``spec`` is one of:

    - a ``.safetensors`` / ``.ckpt`` file: a Stable Diffusion checkpoint (SD 1.x / 2.x / XL, or SD3 / SD3.5:
      :class:`~cyclediff.models.sd3.StableDiffusion3`, told by its MMDiT's ``joint_blocks``; FLUX.1 by its
      ``double_blocks``: :class:`~cyclediff.models.flux.Flux`);
    - a ``.gguf`` file: a quantized FLUX.1, SD3 / SD3.5 or SD UNet network (:mod:`cyclediff.models.gguf`);
    - a folder or hub id whose ``model_index.json`` names a text-to-image pipeline: :class:`StableDiffusion`
      (a ``StableDiffusion3Pipeline``: :class:`~cyclediff.models.sd3.StableDiffusion3`; a ``FluxPipeline``:
      :class:`~cyclediff.models.flux.Flux`);
    - a folder or hub id holding a ``UNet2DModel`` (pipeline layout or a flat UNet folder): :class:`PixelDenoiser`
      (a rectified-flow one, with a FlowMatch scheduler: :class:`~cyclediff.models.flow.FlowPixelDenoiser`);
    - ``demo:NAME``: a demo model shipped with the package (its weights are package data: :func:`demo_names`).
    """
    from .offload import check_offload, offload_or_note, text_encoders_to_cpu

    check_offload(offload)
    if offload is not None and text_encoders_on_cpu:
        raise CycleDiffError("text encoders on the CPU is for runs without --offload (offloading already takes "
                             "them off the device between uses)")
    model = _load(spec, dtype, device, quantize, base)
    for item in lora or ():
        from .lora import parse_lora

        path, scale = parse_lora(item) if isinstance(item, str) else item
        _check_lora_target(model, spec)
        model.load_lora(path, scale)
    if vae_tiling:
        from .codec import VaeCodec

        if not isinstance(model.codec, VaeCodec):
            raise CycleDiffError(f"VAE tiling is for latent models; {spec} is {model.kind} (no VAE)")
        model.codec.vae.enable_tiling()
        model.codec.vae.enable_slicing()
    if text_encoders_on_cpu:
        text_encoders_to_cpu(model)
    return offload_or_note(model, offload, device)


def load_pair(source: str, target: str, *, dtype: torch.dtype | None = None, device: Any = None,
              target_lora: Any = (), **loading: Any) -> tuple[Any, Any]:
    """The source and target models of a translation. One spec: loaded once, the target the source itself or,
    with ``target_lora``, its LoRA variant (:meth:`~cyclediff.models.pipelines.PromptModel.with_lora`: the base
    weights shared, the adapters on for the target's calls only). Two specs: two loads, the target with the
    loading's LoRAs and ``target_lora``."""
    first = load(source, dtype=dtype, device=device, **loading)
    if target != source:
        lora = [*loading.pop("lora", ()), *target_lora]
        return first, load(target, dtype=dtype, device=device, lora=lora, **loading)
    if not target_lora:
        return first, first
    _check_lora_target(first, source)
    return first, first.with_lora(list(target_lora))


def _check_lora_target(model: Any, spec: Any) -> None:
    """Only text-to-image pipelines carry adapters."""
    from .pipelines import PromptModel

    if not isinstance(model, PromptModel):
        raise CycleDiffError(f"a LoRA needs a text-to-image model (Stable Diffusion, SD3, FLUX); {spec} is "
                             f"{model.kind}")


def _load(spec: str | Path, dtype: torch.dtype | None, device: str | torch.device | None,
          quantize: str | None = None, base: str | None = None) -> Any:
    from .checkpoints import check_not_legacy_pickle, checkpoint_keys
    from .families import family_of_keys
    from .pipelines import SINGLE_FILE_SUFFIXES
    from .quantize import quantization_kwargs

    source = str(spec)
    if quantize is not None:
        dtype = dtype or torch.float32  # torchao would otherwise pick bfloat16 for the whole network
    if source.startswith("demo:"):
        quantization_kwargs(quantize, "pixel")  # refused: a demo model is a pixel model
        return _demo(source.removeprefix("demo:"), device)
    path = Path(source).expanduser()
    if _looks_local(source) and not path.exists():
        raise CycleDiffError(f"no such file or folder: {source}; check the path (hub ids look like org/name)")
    source = str(path) if _looks_local(source) else source
    if source.lower().endswith(".gguf"):
        if quantize is not None:
            raise CycleDiffError(f"{path.name} is quantized already (GGUF); drop --quantize")
        from .gguf import load_gguf

        return load_gguf(path, base, dtype, device, lambda b: _kind(b, Path(b)))
    if path.is_file() or source.endswith(SINGLE_FILE_SUFFIXES):
        if path.is_file() and not source.lower().endswith(SINGLE_FILE_SUFFIXES):
            raise CycleDiffError(f"{source} is not a model checkpoint; pass a .safetensors / .ckpt / .gguf file, a "
                                 "diffusers folder or a hub id")
        if path.is_file():
            check_not_legacy_pickle(path)  # refused before anything reads it
        found = family_of_keys(checkpoint_keys(path) if path.is_file() else [])
        kind = found.name if found is not None and found.network else "latent-diffusion"  # SD: the default
        extra = {"config": base} if base is not None else {}
        return _adapter(kind).from_pretrained(source, dtype=dtype, device=device, **extra,
                                              **quantization_kwargs(quantize, kind, device, dtype))
    if base is not None:
        raise CycleDiffError(f"--base is for single files (.gguf, .safetensors); {source} is a whole pipeline")
    if source in demo_names():
        raise CycleDiffError(f"{source!r} is not a hub id or a folder; the demo model is demo:{source}")
    kind = _kind(source, path)
    return _adapter(kind).from_pretrained(source, dtype=dtype, device=device,
                                          **quantization_kwargs(quantize, kind, device, dtype))


def _adapter(kind: str) -> Any:
    """The adapter class of the family ``kind`` (:mod:`cyclediff.models.families`)."""
    from .families import family

    return family(kind).adapter_class()


def demo_names() -> list[str]:
    """The demo models shipped as package data (``cyclediff/demo/weights/<name>/``)."""
    from importlib.resources import files

    root = files("cyclediff") / "demo" / "weights"
    return sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "config.json").is_file())


def _demo(name: str, device: Any) -> Any:
    """The demo model ``name`` in float32 (its weights are stored in float16 to keep the package small)."""
    from importlib.resources import as_file, files

    from .pixel import PixelDenoiser

    if name not in demo_names():
        raise CycleDiffError(f"unknown demo model {name!r}; the demo models are "
                             f"{', '.join('demo:' + m for m in demo_names())}")
    with as_file(files("cyclediff") / "demo" / "weights" / name) as folder:
        model = PixelDenoiser.from_pretrained(folder, dtype=torch.float32, device=device)
    model.model_id = f"demo:{name}"
    return model


def from_pipe(pipe: Any, *, model_id: str | None = None) -> Any:
    """The adapter for an already-built diffusers pipeline: SD 1.x / 2.x / XL, SD3 / SD3.5, FLUX.1, or a pixel
    (DDPM / DDIM) pipeline with a UNet2DModel."""
    from diffusers import DiffusionPipeline

    if not isinstance(pipe, DiffusionPipeline):
        raise CycleDiffError(f"from_pipe takes a diffusers pipeline; got {type(pipe).__name__}")
    from .families import family_of_pipeline

    name = type(pipe).__name__
    parts = {k: type(v).__name__ for k, v in pipe.components.items() if v is not None}
    found = family_of_pipeline(name, parts)
    if found is None:
        raise CycleDiffError(f"{name} is not a pipeline cyclediff supports yet (SD 1.x / 2.x / XL, SD3, FLUX, pixel "
                             "DDPM / DDIM pipelines)")
    return found.adapter_class().from_pipe(pipe, model_id=model_id)


def _kind(source: str, path: Path) -> str:
    """The family (:mod:`cyclediff.models.families`) of a folder or hub id, from its model_index.json (or a flat
    UNet2DModel folder's config.json and scheduler_config.json)."""
    from .families import family_of_pipeline

    index = _read_config(source, path, "model_index.json")
    if index is None:
        config = _read_config(source, path, "config.json")
        if config is not None and config.get("_class_name") == "UNet2DModel":
            scheduler = _read_config(source, path, "scheduler_config.json") or {}
            index = {"unet": ["diffusers", "UNet2DModel"], "scheduler": [None, scheduler.get("_class_name")]}
        else:
            where = "local folder" if path.exists() else "hub id (or it is unreachable offline: pass a local path)"
            raise CycleDiffError(
                f"{source!r} is not a model this tool knows: no model_index.json in that {where}. Pass a diffusers "
                "pipeline folder, a UNet2DModel folder with scheduler_config.json, or a .safetensors / .ckpt file"
            )
    parts = {k: v[-1] for k, v in index.items() if isinstance(v, list) and v and v[-1]}
    found = family_of_pipeline(str(index.get("_class_name", "")), parts)
    if found is None:
        raise CycleDiffError(f"{source} holds a {index.get('_class_name', 'pipeline')}, not a pipeline cyclediff "
                             "supports yet (SD 1.x / 2.x / XL, SD3, FLUX, pixel DDPM / DDIM pipelines)")
    return found.name


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
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(source, name, local_files_only=True)).read_text())
    except Exception:  # noqa: BLE001 - not in the cache (or not this file): ask the hub, if it can be reached
        pass
    reason = _offline_reason()
    if not hub_reachable():
        raise CycleDiffError(f"the model hub is unreachable ({reason}) and {source} is not in the local "
                             "cache; pass a local folder or file (or connect and try again)")
    try:
        return json.loads(Path(hf_hub_download(source, name)).read_text())
    except Exception:  # noqa: BLE001 - missing repo, missing file: both mean "not found here"
        return None


_REACHABLE: dict[str, bool] = {}  # the hub's host -> whether the one probe reached it


def _offline_reason() -> str:
    """Why the hub is not asked: no connection (the probe failed; it then sets HF_HUB_OFFLINE itself), or the
    user's HF_HUB_OFFLINE."""
    import os

    if False in _REACHABLE.values():
        return "no connection"
    return "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") \
        else "no connection"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub can be reached: once per process, one connection attempt (not the hub client's
    retries with back-off, which take most of a minute to say the same on a machine without network)."""
    import os
    import socket
    from urllib.parse import urlparse

    if _offline_reason() != "no connection":
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    if url.hostname not in _REACHABLE:
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                     timeout=timeout).close()
            _REACHABLE[url.hostname] = True
        except OSError:
            _REACHABLE[url.hostname] = False
    if not _REACHABLE[url.hostname]:
        os.environ["HF_HUB_OFFLINE"] = "1"  # what is cached loads without the client's retries
        constants.HF_HUB_OFFLINE = True
    return _REACHABLE[url.hostname]

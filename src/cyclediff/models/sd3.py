"""Stable Diffusion 3 / 3.5 (rectified flow, MMDiT) as a model of the core, like :class:`StableDiffusion`.

The pipeline's three text encoders give the prompt embeddings and pooled projections (T5 is optional, as diffusers
allows: zeros in its place); the transformer predicts the velocity on x_σ = (1 − σ)·x0 + σ·ε, read through
:class:`~cyclediff.models.flow.FlowCoordinates`, so encode / decode / edit / translate / masks run unchanged.
Source and target keep separate classifier-free guidance scales, batched into one transformer call per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ..flow import FlowSchedule
from ._accel import UNetRunner
from ._compat import dtype_kwargs
from .flow import FlowCoordinates
from .stable_diffusion import SINGLE_FILE_SUFFIXES, StableDiffusion, _check_not_legacy_pickle, _diffusers_quiet


class _Transformer(torch.nn.Module):
    """The MMDiT called the way the runner calls a UNet: (x, timesteps, return_dict=False, **conditioning)."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        return self.transformer(hidden_states=x, timestep=timesteps, return_dict=False, **kwargs)


class TransformerParts:
    """Device and dtype of an adapter whose network is ``self.transformer`` (SD3, FLUX)."""

    transformer: torch.nn.Module

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype


class StableDiffusion3(FlowCoordinates, TransformerParts, StableDiffusion):
    """A ``StableDiffusion3Pipeline`` over its (16-channel) VAE latents. Conditions as for Stable Diffusion:
    ``prompt``, ``negative_prompt``, ``guidance_scale``."""

    def __init__(self, pipe: Any, *, model_id: str | None = None) -> None:  # noqa: D107 - see the class
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "scheduler"),
                    "StableDiffusion3 needs an SD3 pipeline", model_id)
        self.transformer = pipe.transformer
        self.runner = UNetRunner(_Transformer(self.transformer))
        self.schedule = FlowSchedule.from_flow_config(pipe.scheduler.config)
        self.is_xl = False

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> StableDiffusion3:
        """A hub id, a local diffusers folder or a single checkpoint file of SD3 / SD3.5 (extra keyword arguments
        go to diffusers, e.g. ``text_encoder_3=None`` to leave T5 out)."""
        from diffusers import StableDiffusion3Pipeline

        source, path = str(source), Path(str(source))
        try:
            if path.is_file() or source.endswith(SINGLE_FILE_SUFFIXES):
                _check_not_legacy_pickle(path)
                pipe = StableDiffusion3Pipeline.from_single_file(source, **dtype_kwargs(dtype), **kwargs)
            else:
                for name in _absent_components(path):  # T5 left out when saved (a null entry in model_index.json)
                    kwargs.setdefault(name, None)
                pipe = StableDiffusion3Pipeline.from_pretrained(source, **dtype_kwargs(dtype), **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise CycleDiffError(f"could not load a Stable Diffusion 3 model from {source!r}: {err}. Pass a hub id, "
                                 "a local diffusers folder or a checkpoint; offline, use a local path") from err
        return cls(pipe.to(device) if device is not None else pipe, model_id=source)

    # ------------------------------------------------------------------ shapes
    @property
    def image_multiple(self) -> int:
        """Image sides must be multiples of this (VAE downsampling × the transformer's patch size)."""
        return self.vae_scale_factor * int(self.transformer.config.patch_size)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = int(self.transformer.config.sample_size)
        return (int(self.transformer.config.in_channels), size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        channels, patch = int(self.transformer.config.in_channels), int(self.transformer.config.patch_size)
        if x.ndim != 4 or x.shape[1] != channels:
            raise IncompatibleModelError(f"this model works on {channels}-channel VAE latents (B, {channels}, h, w); "
                                         f"got shape {tuple(x.shape)}. Encode images with model.encode_images first")
        if x.shape[2] % patch or x.shape[3] % patch:
            raise IncompatibleModelError(f"latent sides must be multiples of {patch}; got {tuple(x.shape[2:])}")

    # ------------------------------------------------------------------ conditioning
    def _encode_prompts(self, prompts: list[str], negatives: list[str] | None, guided: bool) -> tuple[Any, ...]:
        with torch.no_grad(), _diffusers_quiet():
            return tuple(self.pipe.encode_prompt(prompts, None, None, device=self.device, num_images_per_prompt=1,
                                                 do_classifier_free_guidance=guided, negative_prompt=negatives))

    def _pooled_inputs(self, x_all: torch.Tensor, pooled: list[Any]) -> dict[str, Any]:
        return {"pooled_projections": torch.cat(pooled).to(self.device, self.dtype)}

    def attention_edit(self, *args: Any, **kwargs: Any) -> Any:
        raise CycleDiffError("attention control works on UNet models (Stable Diffusion 1.x / 2.x / XL); SD3's joint "
                             "attention is not supported")


def _absent_components(folder: Path) -> list[str]:
    """Components a local pipeline folder records as null (saved without them)."""
    from .._io import json_object

    index = folder / "model_index.json"
    if not index.is_file():
        return []
    spec = json_object(index.read_text(), str(index))
    return [k for k, v in spec.items() if not k.startswith("_") and isinstance(v, list) and v[0] is None]


__all__ = ["StableDiffusion3", "TransformerParts"]

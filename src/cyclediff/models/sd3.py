"""Stable Diffusion 3 / 3.5 (rectified flow, MMDiT) as a model of the core, a sibling of :class:`StableDiffusion`.

The pipeline's three text encoders give the prompt embeddings and pooled projections (T5 is optional, as diffusers
allows: zeros in its place); the transformer predicts the velocity on x_σ = (1 − σ)·x0 + σ·ε, read through
:class:`~cyclediff.models.steps.FlowCoordinates`, so encode / decode / edit / translate / masks run unchanged.
Source and target keep separate classifier-free guidance scales, batched into one transformer call per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec
from .pipelines import (
    PromptModel,
    as_list,
    check_latents,
    diffusers_quiet,
    guided_rows,
    is_single_file,
    load_pipeline,
)
from .steps import FlowCoordinates


class _Transformer(torch.nn.Module):
    """The MMDiT called the way the runner calls a UNet: (x, timesteps, return_dict=False, **conditioning)."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        return self.transformer(hidden_states=x, timestep=timesteps, return_dict=False, **kwargs)


class StableDiffusion3(FlowCoordinates, PromptModel):
    """A ``StableDiffusion3Pipeline`` over its (16-channel) VAE latents. Conditions as for Stable Diffusion:
    ``prompt``, ``negative_prompt``, ``guidance_scale``."""

    kind = "SD3's joint attention (MMDiT)"
    family = "sd3"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None) -> None:  # noqa: D107 - see the class
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "scheduler"),
                    "StableDiffusion3 needs an SD3 pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        self.runner = UNetRunner(_Transformer(self.transformer))
        self.schedule = FlowSchedule.from_flow_config(pipe.scheduler.config)
        self.codec = VaeCodec(pipe.vae, downsampling=int(self.transformer.config.patch_size),
                              latent_size=self.sample_shape[1:])

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> StableDiffusion3:
        """A hub id, a local diffusers folder or a single checkpoint file of SD3 / SD3.5 (extra keyword arguments
        go to diffusers, e.g. ``text_encoder_3=None`` to leave T5 out)."""
        from diffusers import StableDiffusion3Pipeline

        source = str(source)
        if not is_single_file(source):
            for name in _absent_components(Path(source)):  # T5 left out when saved (null in model_index.json)
                kwargs.setdefault(name, None)
        pipe = load_pipeline(StableDiffusion3Pipeline, source, dtype, device, "Stable Diffusion 3", **kwargs)
        return cls(pipe, model_id=source)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = int(self.transformer.config.sample_size)
        return (int(self.transformer.config.in_channels), size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.transformer.config.in_channels), int(self.transformer.config.patch_size))

    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a Stable Diffusion 3 model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        self._warn_if_truncated(prompts + (negatives or []), [self.pipe.tokenizer])
        self.use_adapters()  # a LoRA variant's text encoders carry its adapters
        with torch.no_grad(), diffusers_quiet():
            cond, uncond, pooled, uncond_pooled = self.pipe.encode_prompt(
                prompts, None, None, device=self.text_device, num_images_per_prompt=1,
                do_classifier_free_guidance=w != 1, negative_prompt=negatives)
        inputs = {"cond": cond, "uncond": uncond if w != 1 else None, "scale": w, "pooled": pooled,
                  "uncond_pooled": uncond_pooled if w != 1 else None}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs=inputs, record=record)

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """Guided x̂0 for several (x_t, condition) branches with one transformer call."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond", "pooled"))
        self.use_adapters()
        return guided_call(self, x_all, t, plan,
                           encoder_hidden_states=torch.cat(inputs["cond"]).to(self.device, self.dtype),
                           pooled_projections=torch.cat(inputs["pooled"]).to(self.device, self.dtype))


def _absent_components(folder: Path) -> list[str]:
    """Components a local pipeline folder records as null (saved without them)."""
    from ..checks import json_object

    index = folder / "model_index.json"
    if not index.is_file():
        return []
    spec = json_object(index.read_text(), str(index))
    return [k for k, v in spec.items() if not k.startswith("_") and isinstance(v, list) and v[0] is None]


__all__ = ["StableDiffusion3"]

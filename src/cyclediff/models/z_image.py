"""Z-Image (Z-Image, Z-Image-Turbo): a single-stream rectified-flow DiT with a Qwen3 text encoder.

What its pipeline does that others do not, followed here: the prompt goes through the tokenizer's chat template and
Qwen3's second-to-last hidden states, with the padding dropped (one variable-length embedding per prompt, which the
transformer takes as a list: branches of any lengths stack into one call); the transformer sees each latent as a
one-frame (C, 1, h, w) item of a list and the time as 1 − σ, and its output is the *negative* velocity. The grid
is FLUX's (levels linspace(1, 1/N, N), shifted by the scheduler's shift or the image-size μ).

Guidance: the pipeline's ``guidance_scale`` g computes pos + g·(pos − neg) (g = 0: none, Z-Image-Turbo's). This
adapter keeps cyclediff's scale w of every family, uncond + w·(cond − uncond), so w = g + 1 (w = 1: none) and the
source and target scales mean what they mean for the other families. ``cfg_normalization`` and
``cfg_truncation`` are the pipeline's defaults (off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec
from .packed import image_size_grid
from .pipelines import PromptModel, check_latents, diffusers_quiet, guided_rows, load_pipeline
from .steps import FlowCoordinates


class _ListTransformer(torch.nn.Module):
    """The Z-Image transformer called as the runner calls a UNet: (B, C, h, w) latents and timesteps σ·1000 in,
    the velocity (B, C, h, w) out (the network's output negated); ``cap_feats`` one embedding per row."""

    def __init__(self, transformer: torch.nn.Module, num_train_timesteps: int) -> None:
        super().__init__()
        self.transformer, self.num_train_timesteps = transformer, num_train_timesteps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, *,
                cap_feats: list[torch.Tensor]) -> Any:
        t = (self.num_train_timesteps - timesteps) / self.num_train_timesteps
        out = self.transformer(list(x.unsqueeze(2).unbind(0)), t, cap_feats, return_dict=False)[0]
        return (-torch.stack([o.float() for o in out]).squeeze(2).to(x.dtype),)


class ZImage(FlowCoordinates, PromptModel):
    """A ``ZImagePipeline`` over its VAE latents. Conditions: ``prompt``, ``negative_prompt`` (the empty prompt
    when none is given), ``guidance_scale`` (cyclediff's w: the pipeline's guidance_scale + 1; 1: none)."""

    kind = "Z-Image's single-stream transformer"
    family = "z-image"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 512) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "ZImage needs a Z-Image pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        config = dict(pipe.scheduler.config)
        self.runner = UNetRunner(_ListTransformer(self.transformer, int(config.get("num_train_timesteps", 1000))))
        self.max_sequence_length = max_sequence_length
        self.schedule = image_size_grid(FlowSchedule.from_flow_config(config, flux_sigmas=True), self.sample_shape[1:])
        self.codec = VaeCodec(pipe.vae, downsampling=2, latent_size=self.sample_shape[1:])  # 2×2 patches

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> ZImage:
        """A hub id, a local diffusers folder, or a single transformer checkpoint file (diffusers fetches the rest
        of the pipeline, or takes it from ``config=`` a local folder)."""
        from diffusers import ZImagePipeline

        return cls(load_pipeline(ZImagePipeline, str(source), dtype, device, "Z-Image", **kwargs), model_id=str(source))

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = 2 * (1024 // (int(self.pipe.vae_scale_factor) * 2))  # the pipeline's default 1024² images
        return (int(self.transformer.in_channels), size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.transformer.in_channels), 2)

    def schedule_for(self, shape: tuple[int, ...]) -> FlowSchedule:
        """The grid for latents of ``shape`` (…, h, w): with the image-size μ when the scheduler shifts by it."""
        return image_size_grid(self.schedule, tuple(shape[-2:]))

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a Z-Image model")
        return self.cfg_condition(batch_size, prompt, negative_prompt, guidance_scale)

    def _encode(self, prompts: list[str]) -> list[torch.Tensor]:
        """One (tokens, width) embedding per prompt, its padding dropped, as the pipeline encodes it."""
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        with torch.no_grad(), diffusers_quiet():  # a copy: the pipeline writes the chat-templated texts into it
            embeds, _ = self.pipe.encode_prompt(list(prompts), device=self.text_device,
                                                do_classifier_free_guidance=False,
                                                max_sequence_length=self.max_sequence_length)
        return list(embeds)

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches (and their unconditional rows) in one transformer call, each row with its own text length;
        x̂0 per branch."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond"))
        text = [e.to(self.device, self.dtype) for group in inputs["cond"] for e in group]
        self.use_adapters()
        return guided_call(self, x_all, t, plan, cap_feats=text)


__all__ = ["ZImage"]

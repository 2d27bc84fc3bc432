"""FLUX.1 (dev / schnell): rectified flow, a transformer over packed 2×2 latent patches, CLIP pooled + T5 text.

FLUX-dev's guidance is an embedding input, not classifier-free guidance: ``guidance_scale`` is fed to the
transformer and each branch (source, target) costs one row; ``true_cfg_scale`` > 1 with a ``negative_prompt`` adds
real classifier-free guidance (an unconditional row per image), as diffusers' pipeline allows. The grid is the
pipeline's: levels linspace(1, 1/N, N) shifted by the image-size μ (:meth:`Flux.schedule_for` a sample shape).
Latents stay (B, C, h, w) for the core; packing and position ids live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleModelError
from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec
from .packed import PackedLatents
from .pipelines import PromptModel, as_list, diffusers_quiet, guided_rows, load_pipeline


class _PackedTransformer(torch.nn.Module):
    """The FLUX transformer called as the runner calls a UNet: (B, C, h, w) latents in, velocity (B, C, h, w)
    out; 2×2 patches packed into tokens with their (0, row, column) ids; timesteps σ·1000 → σ."""

    def __init__(self, transformer: torch.nn.Module, num_train_timesteps: int) -> None:
        super().__init__()
        self.transformer, self.num_train_timesteps = transformer, num_train_timesteps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        b, c, h, w = x.shape
        packed = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)
        ids = torch.zeros(h // 2, w // 2, 3, device=x.device, dtype=x.dtype)
        ids[..., 1] += torch.arange(h // 2, device=x.device, dtype=x.dtype)[:, None]
        ids[..., 2] += torch.arange(w // 2, device=x.device, dtype=x.dtype)[None, :]
        out = self.transformer(hidden_states=packed, timestep=timesteps / self.num_train_timesteps,
                               img_ids=ids.reshape(-1, 3), return_dict=False, **kwargs)[0]
        return (out.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w),)


class Flux(PackedLatents, PromptModel):
    """A ``FluxPipeline`` over its VAE latents. Conditions: ``prompt``, ``guidance_scale`` (the embedded guidance
    of FLUX-dev; ignored by schnell), ``negative_prompt`` with ``true_cfg_scale`` (real CFG)."""

    condition_keys = ("prompt", "negative_prompt", "guidance_scale", "true_cfg_scale")
    kind = "FLUX's joint attention (MMDiT)"
    family = "flux"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 512) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                           "scheduler"), "Flux needs a FLUX pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        config = dict(pipe.scheduler.config)
        self.runner = UNetRunner(_PackedTransformer(self.transformer, int(config.get("num_train_timesteps", 1000))))
        self.max_sequence_length = min(max_sequence_length, pipe.tokenizer_2.model_max_length)
        self.schedule = self._grid(FlowSchedule.from_flow_config(config, flux_sigmas=True), self.sample_shape[1:])
        self.codec = VaeCodec(pipe.vae, downsampling=2, latent_size=self.sample_shape[1:])  # 2×2 patches

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> Flux:
        """A hub id, a local diffusers folder, or a single checkpoint file (BFL's layout: diffusers fetches the
        rest of the pipeline, or takes it from ``config=`` a local folder) of FLUX.1 dev / schnell."""
        from diffusers import FluxPipeline

        return cls(load_pipeline(FluxPipeline, str(source), dtype, device, "FLUX", **kwargs), model_id=str(source))


    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 3.5,
                          true_cfg_scale: float = 1.0, **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a FLUX model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(true_cfg_scale)
        if w != 1 and negatives is None:
            raise IncompatibleModelError("true_cfg_scale needs a negative_prompt (FLUX's guidance is guidance_scale)")
        cond, pooled = self._encode(prompts)
        uncond, uncond_pooled = self._encode(negatives) if w != 1 else (None, None)
        g = torch.full((batch_size,), float(guidance_scale), device=self.device, dtype=torch.float32)
        inputs = {"cond": cond, "uncond": uncond, "scale": w, "pooled": pooled, "uncond_pooled": uncond_pooled,
                  "guidance": g}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": float(guidance_scale)}
        if negatives is not None:
            record.update(negative_prompt=negatives, true_cfg_scale=w)
        return Condition(inputs=inputs, record=record)

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self.use_adapters()  # a LoRA variant's text encoders carry its adapters
        with torch.no_grad(), diffusers_quiet():
            embeds, pooled, _ = self.pipe.encode_prompt(prompts, None, device=self.text_device, num_images_per_prompt=1,
                                                        max_sequence_length=self.max_sequence_length)
        return embeds, pooled

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches (and true-CFG rows) in one transformer call; x̂0 per branch."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond", "pooled", "guidance"))
        text = torch.cat(inputs["cond"]).to(self.device, self.dtype)
        kwargs: dict[str, Any] = {"encoder_hidden_states": text, "pooled_projections": torch.cat(inputs["pooled"]).to(
            self.device, self.dtype), "txt_ids": torch.zeros(text.shape[1], 3, device=self.device, dtype=self.dtype)}
        if self.transformer.config.guidance_embeds:
            kwargs["guidance"] = torch.cat(inputs["guidance"]).to(self.device)
        self.use_adapters()
        return guided_call(self, x_all, t, plan, **kwargs)


__all__ = ["Flux"]

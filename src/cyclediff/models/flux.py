"""FLUX.1 (dev / schnell): rectified flow, a transformer over packed 2×2 latent patches, CLIP pooled + T5 text.

FLUX-dev's guidance is an embedding input, not classifier-free guidance: ``guidance_scale`` is fed to the
transformer and each branch (source, target) costs one row; ``true_cfg_scale`` > 1 with a ``negative_prompt`` adds
real classifier-free guidance (an unconditional row per image), as diffusers' pipeline allows. The grid is the
pipeline's: levels linspace(1, 1/N, N) shifted by the image-size μ (set from each sample's size in
:meth:`Flux.check_sample`). Latents stay (B, C, h, w) for the core; packing and position ids live here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ..flow import FlowSchedule, image_shift
from ._accel import UNetRunner
from ._compat import dtype_kwargs
from .base import Condition, condition_scale, refuse_unknown, split_guided
from .flow import FlowCoordinates
from .sd3 import TransformerParts
from .stable_diffusion import StableDiffusion, _as_list, _diffusers_quiet


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


class Flux(FlowCoordinates, TransformerParts, StableDiffusion):
    """A ``FluxPipeline`` over its VAE latents. Conditions: ``prompt``, ``guidance_scale`` (the embedded guidance
    of FLUX-dev; ignored by schnell), ``negative_prompt`` with ``true_cfg_scale`` (real CFG)."""

    condition_keys = ("prompt", "negative_prompt", "guidance_scale", "true_cfg_scale")

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 512) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                           "scheduler"), "Flux needs a FLUX pipeline", model_id)
        self.transformer = pipe.transformer
        config = dict(pipe.scheduler.config)
        self.runner = UNetRunner(_PackedTransformer(self.transformer, int(config.get("num_train_timesteps", 1000))))
        self.is_xl = False
        self.max_sequence_length = min(max_sequence_length, pipe.tokenizer_2.model_max_length)
        self.schedule = FlowSchedule.from_flow_config(config, flux_sigmas=True)
        self._shift_for(self.sample_shape[1:])

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> Flux:
        """A hub id, a local diffusers folder, or a single checkpoint file (BFL's layout: diffusers fetches the
        rest of the pipeline, or takes it from ``config=`` a local folder) of FLUX.1 dev / schnell."""
        from diffusers import FluxPipeline

        from .stable_diffusion import SINGLE_FILE_SUFFIXES, _check_not_legacy_pickle

        try:
            if Path(str(source)).is_file() or str(source).endswith(SINGLE_FILE_SUFFIXES):
                _check_not_legacy_pickle(Path(str(source)))
                pipe = FluxPipeline.from_single_file(str(source), **dtype_kwargs(dtype), **kwargs)
            else:
                pipe = FluxPipeline.from_pretrained(str(source), **dtype_kwargs(dtype), **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise CycleDiffError(f"could not load a FLUX model from {str(source)!r}: {err}. Pass a hub id or a local "
                                 "diffusers folder; offline, use a local path") from err
        return cls(pipe.to(device) if device is not None else pipe, model_id=str(source))

    # ------------------------------------------------------------------ shapes
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_multiple(self) -> int:
        return self.vae_scale_factor * 2  # 2×2 latent patches

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = int(self.pipe.default_sample_size)
        return (int(self.transformer.config.in_channels) // 4, size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        channels = int(self.transformer.config.in_channels) // 4
        if x.ndim != 4 or x.shape[1] != channels:
            raise IncompatibleModelError(f"this model works on {channels}-channel VAE latents (B, {channels}, h, w); "
                                         f"got shape {tuple(x.shape)}. Encode images with model.encode_images first")
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise IncompatibleModelError(f"latent sides must be even (2×2 patches); got {tuple(x.shape[2:])}")
        self._shift_for(tuple(x.shape[2:]))

    def _shift_for(self, size: tuple[int, ...]) -> None:
        """The grid's image-size shift μ for latents of ``size`` (h, w), as the pipeline computes it."""
        mu = image_shift(self.schedule.config, (size[0] // 2) * (size[1] // 2))
        if self.schedule.mu != mu:
            self.schedule = dataclasses.replace(self.schedule, mu=mu)

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 3.5,
                          true_cfg_scale: float = 1.0, **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a FLUX model")
        prompts = _as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = _as_list(negative_prompt, batch_size, "negative_prompt")
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
        with torch.no_grad(), _diffusers_quiet():
            embeds, pooled, _ = self.pipe.encode_prompt(prompts, None, device=self.device, num_images_per_prompt=1,
                                                        max_sequence_length=self.max_sequence_length)
        return embeds, pooled

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches (and true-CFG rows) in one transformer call; x̂0 per branch."""
        xs, embeds, pooled, guidance, plan = [], [], [], [], []
        for x, c in branches:
            w = c.inputs["scale"]
            parts = ["cond"] if w == 1 else ["uncond", "cond"]
            for part in parts:
                xs.append(x)
                embeds.append(c.inputs[part])
                pooled.append(c.inputs["pooled" if part == "cond" else "uncond_pooled"])
                guidance.append(c.inputs["guidance"])
            plan.append((len(parts), w, x.shape[0]))
        x_all = torch.cat(xs)
        text = torch.cat(embeds).to(self.device, self.dtype)
        kwargs: dict[str, Any] = {"encoder_hidden_states": text, "pooled_projections": torch.cat(pooled).to(
            self.device, self.dtype), "txt_ids": torch.zeros(text.shape[1], 3, device=self.device, dtype=self.dtype)}
        if self.transformer.config.guidance_embeds:
            kwargs["guidance"] = torch.cat(guidance).to(self.device)
        out = self.runner(self.model_input(x_all, t).to(self.dtype), self.model_timesteps(t, x_all), x_all.dtype,
                          **kwargs)
        return split_guided(self.model_output(out, x_all, t), plan)

    def attention_edit(self, *args: Any, **kwargs: Any) -> Any:
        raise CycleDiffError("attention control works on UNet models (Stable Diffusion 1.x / 2.x / XL); FLUX's "
                             "joint attention is not supported")


__all__ = ["Flux"]

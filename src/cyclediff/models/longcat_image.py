"""LongCat-Image: rectified flow, a FLUX-shaped MMDiT over 2×2-packed latents, Qwen2.5-VL for text.

Followed from diffusers' ``LongCatImagePipeline``:

- **Prompts** go through the pipeline's own ``encode_prompt``: each prompt's tokens (quoted spans tokenised piece by
  piece) padded to the pipeline's 512, inside its chat template, Qwen2.5-VL's last hidden states of those 512
  positions; every row has 512 tokens, so branches always stack into one call. The text's position ids are the
  pipeline's (modality 0, positions 0…511), the image's (modality 1, rows and columns from 512). The pipeline's
  prompt rewriting (``enable_prompt_rewrite``: the text encoder *generates* a new prompt) is not done: an edit's
  prompts are taken as written.
- **Guidance** is classifier-free against ``negative_prompt`` ("" when none), with the pipeline's default
  renormalisation (``enable_cfg_renorm``): each token's guided velocity scaled down to at most the conditional
  velocity's norm (:func:`renormed`).
- **The grid** is FLUX's: levels linspace(1, 1/N, N) shifted by the image-size μ; the transformer sees σ.
- **The VAE** is an AutoencoderKL with FLUX's scaling and shift; the packing lives in the network wrapper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, refuse_unknown, stack_branches
from .codec import VaeCodec
from .packed import PackedLatents
from .pipelines import (
    PromptModel,
    diffusers_quiet,
    guided_rows,
    is_single_file,
    load_pipeline,
)
from .qwenimage import pack, unpack


def renormed(uncond: torch.Tensor, cond: torch.Tensor, w: float, floor: float = 0.0) -> torch.Tensor:
    """LongCat-Image's guidance on (B, C, h, w) velocities: v_n + w (v_c − v_n), each token (a 2×2 patch over every
    channel) scaled by ‖v_c‖ / (‖v‖ + 1e-8) clamped to [floor, 1]."""
    h, w_ = cond.shape[-2:]
    guided = pack(uncond + w * (cond - uncond))
    scale = (torch.linalg.vector_norm(pack(cond), dim=-1, keepdim=True)
             / (torch.linalg.vector_norm(guided, dim=-1, keepdim=True) + 1e-8)).clamp(min=floor, max=1.0)
    return unpack(guided * scale, h, w_)


class _PackedTransformer(torch.nn.Module):
    """The LongCat-Image transformer called as the runner calls a UNet: (B, C, h, w) latents and timesteps σ·T in,
    the velocity (B, C, h, w) out; the pipeline's position ids for the text and the image."""

    def __init__(self, transformer: torch.nn.Module, num_train_timesteps: int) -> None:
        super().__init__()
        self.transformer, self.num_train_timesteps = transformer, num_train_timesteps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, *,
                encoder_hidden_states: torch.Tensor) -> Any:
        from diffusers.pipelines.longcat_image.pipeline_longcat_image import prepare_pos_ids

        _, _, h, w = x.shape
        n = encoder_hidden_states.shape[1]
        txt_ids = prepare_pos_ids(modality_id=0, type="text", start=(0, 0), num_token=n).to(x.device)
        img_ids = prepare_pos_ids(modality_id=1, type="image", start=(n, n), height=h // 2, width=w // 2).to(x.device)
        out = self.transformer(hidden_states=pack(x), timestep=timesteps / self.num_train_timesteps,
                               encoder_hidden_states=encoder_hidden_states, txt_ids=txt_ids, img_ids=img_ids,
                               return_dict=False)[0]
        return (unpack(out, h, w),)


class LongCatImage(PackedLatents, PromptModel):
    """A ``LongCatImagePipeline`` over its VAE latents. Conditions: ``prompt``, ``negative_prompt`` (the
    pipeline's "" when none is given), ``guidance_scale`` (classifier-free with its renormalisation; 1: none)."""

    kind = "LongCat-Image's joint attention (MMDiT)"
    family = "longcat-image"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "LongCatImage needs a LongCat-Image pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        config = dict(pipe.scheduler.config)
        self.runner = UNetRunner(_PackedTransformer(self.transformer, int(config.get("num_train_timesteps", 1000))))
        self.schedule = self._grid(FlowSchedule.from_flow_config(config, flux_sigmas=True), self.sample_shape[1:])
        self.codec = VaeCodec(pipe.vae, downsampling=2, latent_size=self.sample_shape[1:])  # 2×2 patches

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> LongCatImage:
        """A hub id, a local diffusers folder, or a single checkpoint file (the pipeline's ``from_single_file``)."""
        from diffusers import LongCatImagePipeline

        from .sd3 import _absent_components

        if not is_single_file(str(source)):
            for name in _absent_components(Path(source)):  # a folder saved without its (rewriting-only) processor
                kwargs.setdefault(name, None)
        return cls(load_pipeline(LongCatImagePipeline, str(source), dtype, device, "LongCat-Image", **kwargs),
                   model_id=str(source))


    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a LongCat-Image model")
        return self.cfg_condition(batch_size, prompt, negative_prompt, guidance_scale)

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        with torch.no_grad(), diffusers_quiet():
            embeds, _ = self.pipe.encode_prompt(prompt=list(prompts))
        return embeds.to(self.text_device)

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their unconditional rows in one transformer call; x̂0 per branch, from the
        renormalised guided velocity."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond"))
        text = torch.cat(inputs["cond"]).to(self.device, self.dtype)
        self.use_adapters()
        out = self.runner(self.model_input(x_all, t).to(self.dtype), self.model_timesteps(t, x_all), x_all.dtype,
                          encoder_hidden_states=text)
        results, row = [], 0
        for parts, w, batch in plan:
            chunks = out[row: row + parts * batch].split(batch)
            x = x_all[row: row + batch]
            row += parts * batch
            v = chunks[0] if parts == 1 else renormed(chunks[0], chunks[1], w)
            results.append(self.model_output(v, x, t))
        return results


__all__ = ["LongCatImage", "renormed"]

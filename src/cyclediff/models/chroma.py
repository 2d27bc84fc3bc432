"""Chroma (Chroma1-HD, -Base, -Flash): a FLUX.1-shaped rectified-flow transformer with T5 alone for text.

What differs from FLUX (:mod:`cyclediff.models.flux`, whose packing, grid and timestep scaling it shares): no CLIP
and no pooled projection; no embedded guidance but real classifier-free guidance, an unconditional row per image
with a ``negative_prompt`` (the empty prompt when none is given), as ``ChromaPipeline`` does for a
``guidance_scale`` ≠ 1; and an attention mask over the T5 tokens (the prompt's tokens and one padding token), with
ones for the image tokens, built as the pipeline builds it. Every prompt is padded to ``max_sequence_length``, so
source and target branches always stack into one call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec
from .flux import _PackedTransformer
from .packed import PackedLatents
from .pipelines import PromptModel, as_list, diffusers_quiet, guided_rows, load_pipeline


class Chroma(PackedLatents, PromptModel):
    """A ``ChromaPipeline`` over its VAE latents. Conditions: ``prompt``, ``negative_prompt``,
    ``guidance_scale`` (classifier-free; 1: none)."""

    kind = "Chroma's joint attention (MMDiT)"
    family = "chroma"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 512) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "Chroma needs a Chroma pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        config = dict(pipe.scheduler.config)
        self.runner = UNetRunner(_PackedTransformer(self.transformer, int(config.get("num_train_timesteps", 1000))))
        self.max_sequence_length = min(max_sequence_length, pipe.tokenizer.model_max_length)
        self.schedule = self._grid(FlowSchedule.from_flow_config(config, flux_sigmas=True), self.sample_shape[1:])
        self.codec = VaeCodec(pipe.vae, downsampling=2, latent_size=self.sample_shape[1:])  # 2×2 patches

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> Chroma:
        """A hub id, a local diffusers folder, or a single transformer checkpoint file (diffusers fetches the rest
        of the pipeline, or takes it from ``config=`` a local folder)."""
        from diffusers import ChromaPipeline

        return cls(load_pipeline(ChromaPipeline, str(source), dtype, device, "Chroma", **kwargs), model_id=str(source))


    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a Chroma model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        self._warn_if_truncated(prompts + (negatives or []), [self.pipe.tokenizer])
        cond, mask = self._encode(prompts)
        uncond, uncond_mask = self._encode(negatives or [""] * batch_size) if w != 1 else (None, None)
        inputs = {"cond": cond, "uncond": uncond, "scale": w, "pooled": mask, "uncond_pooled": uncond_mask}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs=inputs, record=record)

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 embeddings (padded to ``max_sequence_length``) and the pipeline's mask over them."""
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        with torch.no_grad(), diffusers_quiet():
            embeds, _, mask, *_ = self.pipe.encode_prompt(prompts, None, device=self.text_device,
                                                           do_classifier_free_guidance=False,
                                                           max_sequence_length=self.max_sequence_length)
        return embeds, mask

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches (and their unconditional rows) in one transformer call; x̂0 per branch. The text masks
        travel as the ``pooled`` twins of :func:`guided_rows` (Chroma has no pooled projection)."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond", "pooled"))
        text = torch.cat(inputs["cond"]).to(self.device, self.dtype)
        text_mask = torch.cat(inputs["pooled"]).to(self.device, self.dtype)
        image_tokens = (x_all.shape[-2] // 2) * (x_all.shape[-1] // 2)
        mask = torch.cat([text_mask, text_mask.new_ones(text_mask.shape[0], image_tokens)], dim=1)
        kwargs = {"encoder_hidden_states": text, "attention_mask": mask,
                  "txt_ids": torch.zeros(text.shape[1], 3, device=self.device, dtype=self.dtype)}
        self.use_adapters()
        return guided_call(self, x_all, t, plan, **kwargs)


__all__ = ["Chroma"]

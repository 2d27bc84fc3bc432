"""Lumina 2 (Lumina-Image-2.0): a single-stream rectified-flow DiT over 2×2 patches with Gemma2 for text.

Followed from diffusers' ``Lumina2Pipeline`` (which has no img2img sibling):

- **Prompts** are prefixed with the pipeline's system prompt (``system_prompt + " <Prompt Start> " + prompt``;
  negative prompts are not, as the pipeline encodes them) and go through Gemma2's second-to-last hidden states,
  padded to ``max_sequence_length`` (256) with their attention mask: every prompt has the same length, so source,
  target and guidance rows stack into one call.
- **The transformer** takes the unpacked (B, C, h, w) latents and the time 1 − σ; its output is the *negative*
  velocity.
- **Guidance** is classifier-free with a ``negative_prompt`` (the empty prompt when none is given); with
  ``cfg_normalization`` (the pipeline's default, on) the guided output is rescaled to the conditional output's norm
  along the latents' last (width) axis, as the pipeline computes it. ``cfg_trunc_ratio`` (guidance on the first
  steps only) needs the step's index, which a model call is not given: refused (the pipeline's default 1.0 is
  what runs).
- **The grid** is FLUX's levels linspace(1, 1/N, N) shifted by the scheduler's shift (Lumina 2's: 6); the μ the
  pipeline computes (from the latents' *channel* count, its ``latents.shape[1]``) only matters for a scheduler that
  shifts dynamically, and is computed the same way here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleModelError
from ..flow import FlowSchedule, image_shift
from ._accel import UNetRunner
from .base import Condition, condition_scale, refuse_unknown, stack_branches
from .codec import VaeCodec
from .pipelines import PromptModel, as_list, check_latents, diffusers_quiet, is_single_file, load_pipeline
from .steps import FlowCoordinates

BASE = "Alpha-VLLM/Lumina-Image-2.0"  # where a single transformer file's other parts come from unless config= says
MAX_SEQUENCE_LENGTH = 512  # the pipeline's limit


class _NegatedTransformer(torch.nn.Module):
    """The Lumina 2 transformer called as the runner calls a UNet: (B, C, h, w) latents and timesteps σ·T in, the
    velocity (the network's output negated) out."""

    def __init__(self, transformer: torch.nn.Module, num_train_timesteps: int) -> None:
        super().__init__()
        self.transformer, self.num_train_timesteps = transformer, num_train_timesteps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        t = 1 - timesteps / self.num_train_timesteps
        return (-self.transformer(hidden_states=x, timestep=t, return_dict=False, **kwargs)[0],)


def renormalised_cfg(uncond: torch.Tensor, cond: torch.Tensor, w: float, normalise: bool) -> torch.Tensor:
    """uncond + w (cond − uncond), rescaled (``normalise``) to the conditional output's norm along the last axis, as
    ``Lumina2Pipeline`` does with ``cfg_normalization`` (the norm ignores the output's sign)."""
    guided = uncond + w * (cond - uncond)
    if not normalise:
        return guided
    return guided * (torch.norm(cond, dim=-1, keepdim=True) / torch.norm(guided, dim=-1, keepdim=True))


class Lumina2(FlowCoordinates, PromptModel):
    """A ``Lumina2Pipeline`` over its VAE latents. Conditions: ``prompt``, ``negative_prompt`` (the empty prompt
    when none is given), ``guidance_scale`` (classifier-free; 1: none), ``cfg_normalization`` (on by default, as the
    pipeline's), ``system_prompt`` (the pipeline's by default)."""

    kind = "Lumina 2's single-stream transformer"
    family = "lumina2"  # its record in models/families.py
    condition_keys = ("prompt", "negative_prompt", "guidance_scale", "cfg_normalization", "system_prompt")

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 256) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "Lumina2 needs a Lumina 2 pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        if not 1 <= max_sequence_length <= MAX_SEQUENCE_LENGTH:
            raise IncompatibleModelError(f"max_sequence_length must lie in [1, {MAX_SEQUENCE_LENGTH}] (the pipeline's "
                                         f"limit); got {max_sequence_length}")
        self.max_sequence_length = max_sequence_length
        config = dict(pipe.scheduler.config)
        self.runner = UNetRunner(_NegatedTransformer(self.transformer, int(config.get("num_train_timesteps", 1000))))
        channels = int(self.transformer.config.in_channels)
        mu = image_shift(config, channels) if config.get("use_dynamic_shifting") else None  # the pipeline's μ
        self.schedule = FlowSchedule.from_flow_config(config, mu=mu, flux_sigmas=True)
        self.codec = VaeCodec(pipe.vae, downsampling=2, latent_size=self.sample_shape[1:])  # 2×2 patches

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> Lumina2:
        """A hub id or a local diffusers folder of Lumina 2, or a single transformer file (diffusers'
        ``from_single_file`` of the transformer, original or diffusers names; the rest of the pipeline from
        ``config=`` a local folder or hub id, by default ``Alpha-VLLM/Lumina-Image-2.0``)."""
        from diffusers import Lumina2Pipeline, Lumina2Transformer2DModel

        source = str(source)
        base = source
        if is_single_file(source):
            base = str(kwargs.pop("config", None) or BASE)
            kwargs["transformer"] = load_pipeline(Lumina2Transformer2DModel, source, dtype, None,
                                                  "Lumina 2 transformer", config=base, subfolder="transformer")
        return cls(load_pipeline(Lumina2Pipeline, base, dtype, device, "Lumina 2", **kwargs), model_id=source)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = 2 * (int(self.pipe.default_image_size) // (int(self.pipe.vae_scale_factor) * 2))
        return (int(self.transformer.config.in_channels), size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.transformer.config.in_channels), int(self.transformer.config.patch_size))

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          cfg_normalization: bool = True, system_prompt: str | None = None,
                          **unknown: Any) -> Condition:
        if "cfg_trunc_ratio" in unknown:
            raise IncompatibleModelError("Lumina 2's cfg_trunc_ratio (guidance on the first steps only) is not "
                                         "supported: guidance runs on every step, the pipeline's default 1.0")
        refuse_unknown(unknown, self.condition_keys, "a Lumina 2 model")
        if not isinstance(cfg_normalization, bool):
            raise IncompatibleModelError(f"cfg_normalization must be true or false; got {cfg_normalization!r}")
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise IncompatibleModelError(f"system_prompt must be a string; got {system_prompt!r}")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        cond, mask = self._encode(prompts, system_prompt)
        uncond, uncond_mask = (None, None) if w == 1 else self._encode(negatives or [""] * batch_size, None, False)
        inputs = {"cond": cond, "mask": mask, "uncond": uncond, "uncond_mask": uncond_mask, "scale": w,
                  "normalise": cfg_normalization}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if negatives is not None:
            record["negative_prompt"] = negatives
        if not cfg_normalization:
            record["cfg_normalization"] = False
        if system_prompt is not None:
            record["system_prompt"] = system_prompt
        return Condition(inputs=inputs, record=record)

    def _encode(self, prompts: list[str], system_prompt: str | None,
                prefixed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The pipeline's Gemma2 embeddings (B, max_sequence_length, D) and their (B, max_sequence_length) attention
        mask: of the system-prompted prompts (``prefixed``), or of the texts as they are (the pipeline encodes its
        negative prompts without the system prompt)."""
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        with torch.no_grad(), diffusers_quiet():
            if not prefixed:
                return self.pipe._get_gemma_prompt_embeds(list(prompts), device=self.text_device,
                                                          max_sequence_length=self.max_sequence_length)
            embeds, mask, _, _ = self.pipe.encode_prompt(list(prompts), do_classifier_free_guidance=False,
                                                         device=self.text_device, system_prompt=system_prompt,
                                                         max_sequence_length=self.max_sequence_length)
        return embeds, mask

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their guidance rows in one transformer call; x̂0 per branch, from the (renormalised)
        classifier-free velocity."""
        x_all, inputs, plan = stack_branches(branches, _rows)
        self.use_adapters()
        out = self.runner(self.model_input(x_all, t).to(self.dtype), self.model_timesteps(t, x_all), x_all.dtype,
                          encoder_hidden_states=torch.cat(inputs["text"]).to(self.device, self.dtype),
                          encoder_attention_mask=torch.cat(inputs["mask"]).to(self.device))
        results, row = [], 0
        for (parts, w, batch), (_, c) in zip(plan, branches):
            chunks = out[row: row + parts * batch].split(batch)
            x = x_all[row: row + batch]
            row += parts * batch
            v = chunks[0] if parts == 1 else renormalised_cfg(chunks[0], chunks[1], w, c.inputs["normalise"])
            results.append(self.model_output(v, x, t))
        return results


def _rows(c: Condition) -> tuple[float, list[dict[str, Any]]]:
    """A branch's row groups: the prompt's alone at scale 1, else (negative, prompt)."""
    w, i = c.inputs["scale"], c.inputs
    cond = {"text": i["cond"], "mask": i["mask"]}
    return (w, [cond]) if w == 1 else (w, [{"text": i["uncond"], "mask": i["uncond_mask"]}, cond])


__all__ = ["Lumina2", "renormalised_cfg"]

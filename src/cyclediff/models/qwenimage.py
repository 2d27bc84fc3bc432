"""Qwen-Image: rectified flow, an MMDiT over 2×2-packed latents of a Wan-style causal VAE, Qwen2.5-VL text.

Followed from diffusers' ``QwenImagePipeline`` / ``QwenImageImg2ImgPipeline``:

- **Prompts** go through the pipeline's own ``encode_prompt``: the chat template around the prompt, the template's
  system prefix dropped (``prompt_template_encode_start_idx`` tokens), the last hidden states of the prompt's own
  tokens: a variable length per prompt. Each prompt is encoded alone (its embedding does not depend on the other
  prompts of a batch); prompts of one network call (a batch, source and target branches, true-CFG rows) are padded
  to the longest with a mask, which is left out when nothing is padded, as the pipeline leaves it out.
- **Guidance** is the pipeline's true CFG: ``guidance_scale`` (diffusers' ``true_cfg_scale``) w ≠ 1 adds a row of
  the ``negative_prompt`` (" " when none is given, as Qwen-Image's model card calls it: the pipeline runs no
  guidance at all without one), v = v_n + w (v_c − v_n), rescaled per token to the conditional velocity's norm
  (:func:`true_cfg`). The transformer's ``guidance`` input (``guidance_embeds``) is unused by every Qwen-Image
  checkpoint and refused.
- **The grid** is the pipeline's: levels linspace(1, 1/N, N) shifted by the image-size μ of its scheduler config
  (Qwen-Image's: exponential time shift, shift_terminal), the timestep the transformer sees is σ·T / 1000.
- **The VAE** (``AutoencoderKLQwenImage``) takes and gives a frame axis of 1 (:class:`FrameCodec`); its latents are
  normalised per channel by ``latents_mean`` / ``latents_std`` (the codec's :class:`LatentAffine`).
- **Packing**: the core sees (B, C, h, w); the transformer sees 2×2 patches as tokens with ``img_shapes``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleModelError
from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, refuse_unknown, stack_branches
from .codec import VaeCodec
from .packed import PackedLatents, image_size_grid
from .pipelines import PromptModel, as_list, diffusers_quiet, is_single_file, load_pipeline

DEFAULT_NEGATIVE = " "  # Qwen-Image's model card: "even an empty negative prompt like ' '" turns true CFG on
BASE = "Qwen/Qwen-Image"  # where a single transformer file's other parts come from unless config= says
MAX_SEQUENCE_LENGTH = 1024  # the pipeline's limit on the prompt's tokens (after the template's dropped prefix)


def pack(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents → (B, h/2 · w/2, 4C) tokens of 2×2 patches, as the pipeline's ``_pack_latents``."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`pack` for (h, w) latents."""
    b, _, d = tokens.shape
    return tokens.reshape(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def true_cfg(uncond: torch.Tensor, cond: torch.Tensor, w: float) -> torch.Tensor:
    """Qwen-Image's true CFG on (B, C, h, w) velocities: v_n + w (v_c − v_n), rescaled so that each token (a 2×2
    patch over every channel: the pipeline's last axis after packing) keeps the conditional velocity's norm."""
    combined = uncond + w * (cond - uncond)
    b, c, h, w_ = cond.shape

    def norm(v: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(v.reshape(b, c, h // 2, 2, w_ // 2, 2), dim=(1, 3, 5), keepdim=True)

    scale = norm(cond) / norm(combined)
    return (combined.reshape(b, c, h // 2, 2, w_ // 2, 2) * scale).reshape(b, c, h, w_)


class _PackedTransformer(torch.nn.Module):
    """The Qwen-Image transformer called as the runner calls a UNet: (B, C, h, w) latents and timesteps σ·T in,
    the velocity (B, C, h, w) out."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        b, _, h, w = x.shape
        out = self.transformer(hidden_states=pack(x), timestep=timesteps / 1000, img_shapes=[[(1, h // 2, w // 2)]] * b,
                               return_dict=False, **kwargs)[0]
        return (unpack(out, h, w),)


class FrameCodec(VaeCodec):
    """A video VAE's codec for images: (B, 3, H, W) images go in with a frame axis of 1, their (B, C, h, w) latents
    come out without it (and back), as Qwen-Image's pipelines call ``AutoencoderKLQwenImage``."""

    def encode_images(self, images: torch.Tensor, generator: Any = None, *, sample: bool = True) -> torch.Tensor:
        if images.ndim != 4:
            return super().encode_images(images, generator, sample=sample)
        return super().encode_images(images.unsqueeze(2), generator, sample=sample).squeeze(2)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 4:
            return super().decode_latents(latents)
        return super().decode_latents(latents.unsqueeze(2)).squeeze(2)


class QwenImage(PackedLatents, PromptModel):
    """A ``QwenImagePipeline`` (or its img2img / inpaint siblings) over its VAE latents. Conditions: ``prompt``,
    ``negative_prompt``, ``guidance_scale`` (the pipeline's true CFG scale; 1: none)."""

    kind = "Qwen-Image's joint attention (MMDiT)"
    family = "qwenimage"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 512) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "QwenImage needs a Qwen-Image pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        if self.transformer.config.get("guidance_embeds"):
            raise IncompatibleModelError("this Qwen-Image transformer embeds a guidance scale (guidance_embeds), "
                                         "which diffusers' Qwen-Image pipelines cannot run either; use a Qwen-Image "
                                         "checkpoint without it")
        if not 1 <= max_sequence_length <= MAX_SEQUENCE_LENGTH:
            raise IncompatibleModelError(f"max_sequence_length must lie in [1, {MAX_SEQUENCE_LENGTH}] (the pipeline's "
                                         f"limit); got {max_sequence_length}")
        self.max_sequence_length = max_sequence_length
        self.runner = UNetRunner(_PackedTransformer(self.transformer))
        self.schedule = self._grid(FlowSchedule.from_flow_config(pipe.scheduler.config, flux_sigmas=True),
                                   self.sample_shape[1:])
        self.codec = FrameCodec(pipe.vae, downsampling=2, latent_size=self.sample_shape[1:])  # 2×2 patches

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> QwenImage:
        """A hub id or a local diffusers folder of Qwen-Image (e.g. ``Qwen/Qwen-Image``), or a single transformer
        file in diffusers' names (diffusers' ``from_single_file`` of the transformer; the rest of the pipeline from
        ``config=`` a local folder or hub id, by default ``Qwen/Qwen-Image``)."""
        from diffusers import QwenImagePipeline, QwenImageTransformer2DModel

        source = str(source)
        base = source
        if is_single_file(source):
            base = str(kwargs.pop("config", None) or BASE)
            kwargs["transformer"] = load_pipeline(QwenImageTransformer2DModel, source, dtype, None,
                                                  "Qwen-Image transformer", config=base, subfolder="transformer")
        return cls(load_pipeline(QwenImagePipeline, base, dtype, device, "Qwen-Image", **kwargs), model_id=source)


    @staticmethod
    def _grid(schedule: FlowSchedule, size: tuple[int, ...]) -> FlowSchedule:
        if not schedule.config.get("use_dynamic_shifting"):
            return schedule
        return image_size_grid(schedule, size)

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        if "true_cfg_scale" in unknown:
            raise IncompatibleModelError("Qwen-Image's true CFG scale is guidance_scale here (diffusers' "
                                         "true_cfg_scale); pass guidance_scale=")
        refuse_unknown(unknown, self.condition_keys, "a Qwen-Image model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        cond, mask = self._encode(prompts)
        uncond, uncond_mask = (None, None) if w == 1 else self._encode(negatives or [DEFAULT_NEGATIVE] * batch_size)
        inputs = {"cond": cond, "mask": mask, "uncond": uncond, "uncond_mask": uncond_mask, "scale": w}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs=inputs, record=record)

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The pipeline's embeddings of each prompt (encoded alone), padded to the longest: (B, L, D) and the
        (B, L) mask of each prompt's own tokens."""
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        own: dict[str, torch.Tensor] = {}
        with torch.no_grad(), diffusers_quiet():
            for p in dict.fromkeys(prompts):
                embeds, _ = self.pipe.encode_prompt([p], device=self.text_device,
                                                    max_sequence_length=MAX_SEQUENCE_LENGTH)
                if embeds.shape[1] > self.max_sequence_length and p not in self._warned_prompts:
                    self._warned_prompts.add(p)
                    warnings.warn(f"prompt {p[:40]!r} has {embeds.shape[1]} tokens; Qwen-Image reads the first "
                                  f"{self.max_sequence_length} (max_sequence_length), the rest is ignored",
                                  stacklevel=3)
                own[p] = embeds[0, : self.max_sequence_length]
        return pad_text([own[p] for p in prompts])

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their true-CFG rows in one transformer call (text padded to the longest, with its
        mask); x̂0 per branch, from the true-CFG velocity."""
        x_all, inputs, plan = stack_branches(branches, _rows)
        text, mask = pad_text([e for group in inputs["text"] for e in group],
                              [m for group in inputs["mask"] for m in group])
        kwargs: dict[str, Any] = {"encoder_hidden_states": text.to(self.device, self.dtype)}
        if not bool(mask.all()):  # the pipeline passes no mask when nothing is padded
            kwargs["encoder_hidden_states_mask"] = mask.to(self.device)
        self.use_adapters()
        out = self.runner(self.model_input(x_all, t).to(self.dtype), self.model_timesteps(t, x_all), x_all.dtype,
                          **kwargs)
        results, row = [], 0
        for parts, w, batch in plan:
            chunks = out[row: row + parts * batch].split(batch)
            x = x_all[row: row + batch]
            row += parts * batch
            v = chunks[0] if parts == 1 else true_cfg(chunks[0], chunks[1], w)
            results.append(self.model_output(v, x, t))
        return results


def _rows(c: Condition) -> tuple[float, list[dict[str, Any]]]:
    """A branch's row groups: the prompt's alone at scale 1, else (negative, prompt): true CFG needs both."""
    w, i = c.inputs["scale"], c.inputs
    cond = {"text": list(i["cond"]), "mask": list(i["mask"])}
    return (w, [cond]) if w == 1 else (w, [{"text": list(i["uncond"]), "mask": list(i["uncond_mask"])}, cond])


def pad_text(embeds: list[torch.Tensor], masks: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_i, D) embeddings (with their (L_i,) masks; all ones when not given) → (B, L, D) zero-padded to the
    longest, and the (B, L) mask of the tokens that are not padding."""
    masks = masks if masks is not None else [torch.ones(e.shape[0], dtype=torch.long, device=e.device) for e in embeds]
    longest = max(e.shape[0] for e in embeds)
    text = torch.stack([torch.cat([e, e.new_zeros(longest - e.shape[0], e.shape[1])]) for e in embeds])
    mask = torch.stack([torch.cat([m, m.new_zeros(longest - m.shape[0])]) for m in masks])
    return text, mask


__all__ = ["FrameCodec", "QwenImage", "pack", "pad_text", "true_cfg", "unpack"]

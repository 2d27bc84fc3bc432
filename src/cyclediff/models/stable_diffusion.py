"""Latent diffusion (Stable Diffusion 1.x / 2.x / XL): a UNet on VAE latents, conditioned on CLIP text.

The adapter wraps a diffusers pipeline and uses its components and prompt encoding; the sampling maths is the
same code as for pixel models, run on the scaled VAE latents. Classifier-free guidance is part of the model
call (ε̂ = ε_u + w (ε_c − ε_u)); a scale of 1 needs no unconditional evaluation, a scale of 0 no conditional one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..schedule import Schedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec
from .pipelines import (
    PromptModel,
    as_list,
    check_latents,
    checkpoint_keys,
    diffusers_quiet,
    guided_rows,
    is_single_file,
    load_pipeline,
)
from .steps import DiscreteSteps


class StableDiffusion(DiscreteSteps, PromptModel):
    """A Stable Diffusion pipeline as a :class:`~cyclediff.models.Denoiser` over its VAE latents.

    >>> sd = StableDiffusion.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", dtype=torch.float16)
    >>> sd = StableDiffusion.from_pretrained("model.safetensors")   # a single checkpoint file
    >>> sd = StableDiffusion.from_pipe(pipe)                       # an already-built diffusers pipeline

    Conditions: ``prompt`` (str or one per image), ``negative_prompt``, ``guidance_scale`` (1: no guidance).
    Attention control (Prompt-to-Prompt): :meth:`attention_edit`.
    """

    kind = "a Stable Diffusion UNet"
    family = "latent-diffusion"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None) -> None:
        self._adopt(pipe, ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "StableDiffusion needs a Stable Diffusion pipeline", model_id)
        self.unet = self.network = pipe.unet
        self.runner = UNetRunner(self.unet)
        self.schedule = Schedule.from_config(pipe.scheduler.config)
        self.is_xl = getattr(pipe, "text_encoder_2", None) is not None
        self.attention_control: Any = None  # an AttentionControl while attention_edit(...) is active
        self._time_ids_cache: dict[tuple, torch.Tensor] = {}
        self.codec = VaeCodec(pipe.vae, downsampling=2 ** (len(self.unet.config.down_block_types) - 1),
                              latent_size=self.sample_shape[1:])

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> StableDiffusion:
        """Load a hub id, a local diffusers folder, or a single checkpoint file (.safetensors / .ckpt).

        SD 1.x / 2.x / XL are told apart from the folder's ``model_index.json`` or the checkpoint's keys. Extra
        keyword arguments go to diffusers' ``from_pretrained`` / ``from_single_file`` (e.g. ``config=`` a local
        folder with the model's configs, for a single file offline; ``variant="fp16"``).
        """
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        source = str(source)
        if is_single_file(source):
            xl = Path(source).is_file() and _is_xl_checkpoint(Path(source))
        else:
            xl = _is_xl_folder(source)
            if not xl:
                kwargs.setdefault("safety_checker", None)
        pipe_cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
        return cls(load_pipeline(pipe_cls, source, dtype, device, "Stable Diffusion", **kwargs), model_id=source)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(self.unet.config.in_channels), int(h), int(w))

    # ------------------------------------------------------------------ Denoiser
    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.unet.config.in_channels), self.codec.downsampling)

    def prepare_condition(
        self,
        batch_size: int,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        guidance_scale: float = 1.0,
        **unknown: Any,
    ) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a Stable Diffusion model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        self._warn_if_truncated(prompts + (negatives or []), self._tokenizers())
        cond, uncond, pooled, uncond_pooled = self._encode_prompts(prompts, negatives, w != 1)
        inputs = {"cond": cond, "uncond": uncond if w != 1 else None, "scale": w,
                  "pooled": pooled, "uncond_pooled": uncond_pooled if w != 1 else None}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs=inputs, record=record)

    def _encode_prompts(self, prompts: list[str], negatives: list[str] | None, guided: bool) -> tuple[Any, ...]:
        """(prompt embeddings, negative ones or None, pooled, negative pooled) through the pipeline's encoder."""
        self.use_adapters()  # a LoRA variant's text encoders carry its adapters
        with torch.no_grad(), diffusers_quiet():  # its own truncation log repeats the whole cut text
            if self.is_xl:
                return tuple(self.pipe.encode_prompt(prompts, device=self.text_device, num_images_per_prompt=1,
                                                     do_classifier_free_guidance=guided, negative_prompt=negatives))
            cond, uncond = self.pipe.encode_prompt(prompts, self.text_device, 1, guided, negative_prompt=negatives)
        return cond, uncond, None, None

    def _tokenizers(self) -> list[Any]:
        return [self.pipe.tokenizer] + ([self.pipe.tokenizer_2] if self.is_xl else [])

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: int) -> list[torch.Tensor]:
        """Guided ε̂ (or v / x0) for several (x_t, condition) branches with one UNet call.

        A branch at guidance scale 1 adds B rows (conditional only), at 0 B rows (unconditional only), otherwise
        2·B rows.
        """
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond", "pooled"))
        kwargs: dict[str, Any] = {"encoder_hidden_states": torch.cat(inputs["cond"]).to(self.device, self.dtype),
                                  **self._pooled_inputs(x_all, inputs["pooled"])}
        if self.attention_control is not None:
            self.attention_control.route(plan, t)
        self.use_adapters()
        return guided_call(self, x_all, t, plan, eager=self.attention_control is not None, **kwargs)

    def _pooled_inputs(self, x_all: torch.Tensor, pooled: list[Any]) -> dict[str, Any]:
        """SDXL's added conditioning (pooled text and size ids); nothing for SD 1.x / 2.x."""
        if not self.is_xl:
            return {}
        return {"added_cond_kwargs": {"text_embeds": torch.cat(pooled).to(self.device, self.dtype),
                                      "time_ids": self._time_ids(x_all)}}

    @contextlib.contextmanager
    def attention_edit(self, edit: Any, sources: list[str], targets: list[str], timesteps: list[int], *,
                       trace: bool = False) -> Iterator[Any]:
        """While the block runs, batched source / target calls edit the target's attention maps
        (:mod:`cyclediff.models.attention`); yields the control (its ``trace`` when asked for)."""
        from .attention import AttentionEdit, build_control, controlled

        control = build_control(self.pipe.tokenizer, AttentionEdit.of(edit), sources, targets, timesteps, trace=trace)
        with controlled(self.unet, control, compiled=self.runner.compiled is not None):
            self.attention_control = control
            try:
                yield control
            finally:
                self.attention_control = None

    def _time_ids(self, x: torch.Tensor) -> torch.Tensor:
        """SDXL's size conditioning: original size, crop (0, 0), target size, all the image's own size.
        Built once per shape: a fresh host tensor at every step would be a host→device copy that waits."""
        h, w = x.shape[2] * self.codec.factor, x.shape[3] * self.codec.factor
        key = (h, w, x.shape[0], self.dtype, self.device)
        if key not in self._time_ids_cache:
            ids = torch.tensor([h, w, 0, 0, h, w], dtype=self.dtype).to(self.device)
            self._time_ids_cache[key] = ids.expand(x.shape[0], 6).contiguous()
        return self._time_ids_cache[key]


def _is_xl_folder(source: str) -> bool:
    """Whether a diffusers folder or hub repo holds an SDXL pipeline (model_index.json's class name)."""
    from diffusers import DiffusionPipeline

    try:
        config = DiffusionPipeline.load_config(source)
    except (OSError, ValueError):
        return False  # not there: loading it says so, in one line
    return "XL" in str(config.get("_class_name", "")) or "text_encoder_2" in config


def _is_xl_checkpoint(path: Path) -> bool:
    """Whether a single checkpoint file is SDXL: it has a second (OpenCLIP) text encoder under
    ``conditioner.embedders.1``."""
    return any(k.startswith("conditioner.embedders.1.") for k in checkpoint_keys(path))

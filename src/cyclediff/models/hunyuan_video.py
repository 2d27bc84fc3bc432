"""HunyuanVideo: rectified flow, a dual- then single-stream transformer over 1×2×2 patches of a causal video VAE's
latents (3-D rope inside the transformer), a LLaVA Llama's states and CLIP's pooled text. The core sees 5-D samples
(B, C, f, h, w) as they are: the transformer patches them itself.

Followed from diffusers' ``HunyuanVideoPipeline``:

- **Clips** are (B, 3, F, H, W) in [0, 1] with F = 4k + 1 frames and sides multiples of 16
  (:meth:`HunyuanVideo.fit_clip`); the VAE (``AutoencoderKLHunyuanVideo``) makes (B, 16, (F − 1)/4 + 1, H/8, W/8)
  latents, scaled by its ``scaling_factor``; clips are encoded as the posterior's mode (as Wan's codec).
- **Prompts** go through the pipeline's ``encode_prompt``: each prompt put into the pipeline's prompt template, the
  Llama's third-from-last states of ``crop_start`` + ``max_sequence_length`` (256) tokens, the template's
  ``crop_start`` tokens dropped, with their attention mask; CLIP's pooled output of the prompt (77 tokens). Every
  prompt is padded to the same length, so branches stack into one call.
- **Guidance**: ``guidance_scale`` is the guidance-distilled transformer's embedded guidance (an input, fed as
  1000·g; one row per branch; ignored by a transformer without ``guidance_embeds``); ``true_cfg_scale`` > 1 with a
  ``negative_prompt`` adds classifier-free guidance (an unconditional row), as the pipeline allows.
- **The grid**: the levels linspace(1, 0, N + 1)[:−1] the pipeline passes to its flow-matching Euler scheduler,
  shifted by its ``shift`` (7 in HunyuanVideo's checkpoints); the transformer sees σ·T.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleModelError
from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .pipelines import PromptModel, as_list, diffusers_quiet, guided_rows, is_single_file, load_pipeline
from .steps import FlowCoordinates
from .video import check_video_latents, fit_clip_to
from .wan import VideoCodec

BASE = "hunyuanvideo-community/HunyuanVideo"  # where a single transformer file's other parts come from by default


class _VideoTransformer(torch.nn.Module):
    """HunyuanVideo's transformer called as the runner calls a UNet: (B, C, f, h, w) latents and timesteps σ·T in,
    the velocity out."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        return self.transformer(hidden_states=x, timestep=timesteps, return_dict=False, **kwargs)


class HunyuanVideoCodec(VideoCodec):
    """HunyuanVideo's causal VAE: its time and space compression read from its own config."""

    def __init__(self, vae: Any, *, downsampling: int, latent_size: tuple[int, int], frames: int) -> None:
        super().__init__(vae, downsampling=downsampling, latent_size=latent_size, frames=frames)
        self.temporal = int(vae.config.get("temporal_compression_ratio") or 4)

    @property
    def factor(self) -> int:
        return int(self.vae.config.get("spatial_compression_ratio") or 8)

    def encode_images(self, images: torch.Tensor, generator: Any = None, *, sample: bool = True) -> torch.Tensor:
        """One clip at a time, as :meth:`decode_latents`."""
        if not isinstance(images, torch.Tensor) or images.ndim != 5 or images.shape[0] == 1:
            return super().encode_images(images, generator, sample=sample)
        from .._noise import check_generators

        gens = check_generators(generator, images.shape[0])  # one generator draws clip after clip, as for a batch
        each = gens if isinstance(gens, list) else [gens] * images.shape[0]
        return torch.cat([super(HunyuanVideoCodec, self).encode_images(clip, g, sample=sample)
                          for clip, g in zip(images.split(1), each)])

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """One clip at a time (as the VAE's own slicing does): its 3-D convolutions give a clip of a batch other
        values than the clip alone (their CPU kernels chosen by batch size; 3e-7 on the latents, 4e-5 on [0, 1]
        pixels of the tiny VAE), so a clip's edit would depend on what it is batched with."""
        return torch.cat([super(HunyuanVideoCodec, self).decode_latents(z) for z in latents.split(1)])


class HunyuanVideo(FlowCoordinates, PromptModel):
    """A ``HunyuanVideoPipeline`` over its VAE latents. Conditions: ``prompt``, ``guidance_scale`` (embedded),
    ``negative_prompt`` with ``true_cfg_scale`` (classifier-free). ``frames`` and ``size`` (H, W): the clips it
    makes by default (the pipeline's 129 at 720×1280); ``prompt_template``: the pipeline's by default."""

    condition_keys = ("prompt", "negative_prompt", "guidance_scale", "true_cfg_scale")
    kind = "HunyuanVideo's video transformer"
    family = "hunyuan-video"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 256, frames: int = 129,
                 size: tuple[int, int] = (720, 1280), prompt_template: dict[str, Any] | None = None) -> None:
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

        self._adopt(pipe, ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                           "scheduler"), "HunyuanVideo needs a HunyuanVideo text-to-video pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        config = dict(pipe.scheduler.config)
        if "shift" not in config or config.get("use_dynamic_shifting"):
            raise IncompatibleModelError("HunyuanVideo needs its flow-matching Euler scheduler without dynamic "
                                         "shifting (FlowMatchEulerDiscreteScheduler); this pipeline's is not")
        self.runner = UNetRunner(_VideoTransformer(self.transformer))
        self.max_sequence_length = max_sequence_length
        self.prompt_template = dict(prompt_template or DEFAULT_PROMPT_TEMPLATE)
        self.schedule = FlowSchedule.from_flow_config(config, flux_sigmas=True)  # linspace(1, 0, N + 1)[:-1]
        factor = int(pipe.vae.config.get("spatial_compression_ratio") or 8)
        self.codec = HunyuanVideoCodec(pipe.vae, downsampling=self._patch, latent_size=(1, 1), frames=1)
        f, h, w, _ = self.fit_clip(frames, *size)
        self.frames, self.size = f, (h, w)
        self.codec.latent_size, self.codec.frames = (h // factor, w // factor), f

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> HunyuanVideo:
        """A hub id or a local diffusers folder of HunyuanVideo (e.g. ``hunyuanvideo-community/HunyuanVideo``), or
        a single transformer file (diffusers' ``from_single_file`` of the transformer; the rest of the pipeline from
        ``config=`` a local folder or hub id, by default ``hunyuanvideo-community/HunyuanVideo``)."""
        from diffusers import HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

        source = str(source)
        base = source
        if is_single_file(source):
            base = str(kwargs.pop("config", None) or BASE)
            kwargs["transformer"] = load_pipeline(HunyuanVideoTransformer3DModel, source, dtype, None,
                                                  "HunyuanVideo transformer", config=base, subfolder="transformer")
        return cls(load_pipeline(HunyuanVideoPipeline, base, dtype, device, "HunyuanVideo", **kwargs),
                   model_id=source)

    @property
    def _patch(self) -> int:
        return int(self.transformer.config.patch_size)

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        factor = self.codec.factor
        f = (self.frames - 1) // self.codec.temporal + 1
        return (int(self.transformer.config.in_channels), f, self.size[0] // factor, self.size[1] // factor)

    def fit_clip(self, frames: int, height: int, width: int) -> tuple[int, int, int, str]:
        """(F', H', W', note): the first 1 + 4k frames (the pipeline makes 4·((F − 1) // 4) + 1 of F), the sides
        cut down to multiples of 16 (the pipeline refuses others); with a temporal patch (``patch_size_t``) the
        latent frames a multiple of it: :func:`~cyclediff.models.video.fit_clip_to`."""
        return fit_clip_to("HunyuanVideo", frames, height, width, temporal=self.codec.temporal,
                           multiple=self.codec.multiple, patch_t=int(self.transformer.config.patch_size_t))

    def check_sample(self, x: torch.Tensor) -> None:
        check_video_latents(x, int(self.transformer.config.in_channels), (self._patch, self._patch),
                            int(self.transformer.config.patch_size_t))

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 6.0,
                          true_cfg_scale: float = 1.0, **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a HunyuanVideo model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(true_cfg_scale)
        if w != 1 and negatives is None:
            raise IncompatibleModelError("true_cfg_scale needs a negative_prompt (HunyuanVideo's embedded guidance is "
                                         "guidance_scale)")
        g = condition_scale(guidance_scale)
        cond, pooled = self._encode(prompts)
        uncond, uncond_pooled = self._encode(negatives) if w != 1 else (None, None)
        guidance = torch.full((batch_size,), g, dtype=torch.float32) * 1000.0
        inputs = {"cond": cond, "uncond": uncond, "scale": w, "pooled": pooled, "uncond_pooled": uncond_pooled,
                  "guidance": guidance}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": g}
        if negatives is not None:
            record.update(negative_prompt=negatives, true_cfg_scale=w)
        return Condition(inputs=inputs, record=record)

    def _encode(self, prompts: list[str]) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """((Llama states, their mask), CLIP pooled) as the pipeline's ``encode_prompt`` makes them."""
        self.use_adapters()  # a LoRA variant's text encoders carry its adapters
        with torch.no_grad(), diffusers_quiet():
            embeds, pooled, mask = self.pipe.encode_prompt(
                prompts, prompt_template=self.prompt_template, device=self.text_device,
                max_sequence_length=self.max_sequence_length)
        return (embeds, mask), pooled

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches (and true-CFG rows) in one transformer call; x̂0 per branch."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond", "pooled", "guidance"))
        device, dtype = self.device, self.dtype
        self.use_adapters()
        return guided_call(
            self, x_all, t, plan, encoder_hidden_states=torch.cat([e for e, _ in inputs["cond"]]).to(device, dtype),
            encoder_attention_mask=torch.cat([m for _, m in inputs["cond"]]).to(device, dtype),
            pooled_projections=torch.cat(inputs["pooled"]).to(device, dtype),
            guidance=torch.cat(inputs["guidance"]).to(device, dtype))


__all__ = ["HunyuanVideo", "HunyuanVideoCodec"]

"""HunyuanVideo 1.5: rectified flow, a dual-stream transformer over 1×1×1 patches of a causal video VAE's latents
(4× in time, 16× in space), Qwen2.5-VL's language model and a ByT5 glyph encoder for text. The core sees 5-D
samples (B, C, f, h, w) as they are: the transformer patches them itself.

Followed from diffusers' ``HunyuanVideo15Pipeline`` (text-to-video):

- **Clips** are (B, 3, F, H, W) in [0, 1] with F = 4k + 1 frames and sides multiples of 16
  (:meth:`HunyuanVideo15.fit_clip`; the pipeline makes (H // 16)·16 of H); the VAE (``AutoencoderKLHunyuanVideo15``)
  makes (B, 32, (F − 1)/4 + 1, H/16, W/16) latents scaled by its ``scaling_factor``, clips encoded as the
  posterior's mode and decoded clip by clip (the codec of :mod:`~cyclediff.models.hunyuan_video`).
- **The transformer's input** is the pipeline's for text-to-video: the latents, then zeros for the image condition's
  latents and its mask (2C + 1 channels), zero image embeddings (``vision_num_semantic_tokens`` of them, which the
  transformer masks out).
- **Prompts** go through the pipeline's ``encode_prompt``: Qwen's third-from-last states of the prompt in the
  pipeline's chat template, its system prefix (``prompt_template_encode_start_idx`` tokens) dropped, padded to
  ``tokenizer_max_length``, with their mask; ByT5's states of the prompt's quoted texts (zeros and an empty mask
  when it quotes none), padded to ``tokenizer_2_max_length``. Every prompt has the same lengths, so branches stack.
- **Guidance** is the pipeline's guider, ``ClassifierFreeGuidance``: uncond + g (cond − uncond) on the velocity
  against ``negative_prompt`` ("" when none), with its ``guidance_rescale``; both default to the guider's (its scale
  when it is enabled, else 1). Two of that guider's settings are not matched and refused in one line: ``start`` /
  ``stop`` switch guidance on and off by the index of a step in the pipeline's loop, which an edit's steps (begun
  mid-grid at strength < 1, or several grids in one call) do not carry; and ``use_original_formulation``. Other
  guiders (adaptive projected, perturbed attention, …) are refused too.
- **The grid**: the levels linspace(1, 0, N + 1)[:−1] the pipeline passes to its flow-matching Euler scheduler,
  shifted by its ``shift``; the transformer sees σ·T.

Not taken: ``HunyuanVideo15ImageToVideoPipeline`` (its first frame and SigLIP embeddings are a condition cyclediff's
edits do not give). diffusers has no LoRA loader for these pipelines (``with_lora`` is refused in one line) and no
single-file loader for this transformer, and no video-to-video pipeline to check SDEdit against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, refuse_unknown, split_guided, stack_branches
from .hunyuan_video import HunyuanVideoCodec
from .pipelines import PromptModel, diffusers_quiet, guided_rows, is_single_file, load_pipeline
from .steps import FlowCoordinates
from .video import check_video_latents, fit_clip_to

TEXT = ("encoder_hidden_states", "encoder_attention_mask", "encoder_hidden_states_2", "encoder_attention_mask_2")


class _VideoTransformer(torch.nn.Module):
    """HunyuanVideo 1.5's transformer called as the runner calls a UNet: (B, C, f, h, w) latents and timesteps σ·T
    in, the velocity out; the text-to-video condition (zero image latents, mask and image embeddings) added here."""

    def __init__(self, transformer: torch.nn.Module, vision_tokens: int) -> None:
        super().__init__()
        self.transformer, self.vision_tokens = transformer, vision_tokens

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **text: Any) -> Any:
        b, c, f, h, w = x.shape
        hidden = torch.cat([x, x.new_zeros(b, c + 1, f, h, w)], dim=1)  # latents, image latents, image mask
        image = x.new_zeros(b, self.vision_tokens, int(self.transformer.config.image_embed_dim))
        return self.transformer(hidden_states=hidden, timestep=timesteps.to(x.dtype), image_embeds=image,
                                return_dict=False, **text)


class HunyuanVideo15(FlowCoordinates, PromptModel):
    """A ``HunyuanVideo15Pipeline`` over its VAE latents. Conditions: ``prompt``, ``negative_prompt``,
    ``guidance_scale`` (classifier-free; 1: none; the guider's by default), ``guidance_rescale``. ``frames`` and
    ``size`` (H, W): the clips it makes by default (the pipeline's 121 frames at its default size for its
    transformer's ``target_size``)."""

    condition_keys = ("prompt", "negative_prompt", "guidance_scale", "guidance_rescale")
    kind = "HunyuanVideo 1.5's video transformer"
    family = "hunyuan-video-1.5"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, frames: int = 121,
                 size: tuple[int, int] | None = None) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                           "scheduler", "guider"), "HunyuanVideo 1.5 needs a HunyuanVideo15Pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        config = dict(pipe.scheduler.config)
        if "shift" not in config or config.get("use_dynamic_shifting"):
            raise IncompatibleModelError("HunyuanVideo 1.5 needs its flow-matching Euler scheduler without dynamic "
                                         "shifting (FlowMatchEulerDiscreteScheduler); this pipeline's is not")
        check_guider(pipe.guider)
        self.runner = UNetRunner(_VideoTransformer(self.transformer, int(pipe.vision_num_semantic_tokens)))
        self.schedule = FlowSchedule.from_flow_config(config, flux_sigmas=True)  # linspace(1, 0, N + 1)[:-1]
        self.codec = HunyuanVideoCodec(pipe.vae, downsampling=self._patch, latent_size=(1, 1), frames=1)
        if size is None:  # the pipeline's own when it is given no height and width
            aspect = pipe.default_aspect_ratio
            size = pipe.video_processor.calculate_default_height_width(aspect[1], aspect[0], pipe.target_size)
        f, h, w, _ = self.fit_clip(frames, *size)
        self.frames, self.size = f, (h, w)
        factor = self.codec.factor
        self.codec.latent_size, self.codec.frames = (h // factor, w // factor), f

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> HunyuanVideo15:
        """A hub id or a local diffusers folder of HunyuanVideo 1.5 (e.g.
        ``hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v``)."""
        from diffusers import HunyuanVideo15Pipeline

        source = str(source)
        if is_single_file(source):
            raise CycleDiffError(f"{Path(source).name} is a single HunyuanVideo 1.5 file: diffusers cannot load this "
                                 "transformer from one file; pass a diffusers folder or hub id")
        return cls(load_pipeline(HunyuanVideo15Pipeline, source, dtype, device, "HunyuanVideo 1.5", **kwargs),
                   model_id=source)

    @property
    def _patch(self) -> int:
        return int(self.transformer.config.patch_size)

    @property
    def _channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        factor = self.codec.factor
        f = (self.frames - 1) // self.codec.temporal + 1
        return (self._channels, f, self.size[0] // factor, self.size[1] // factor)

    def fit_clip(self, frames: int, height: int, width: int) -> tuple[int, int, int, str]:
        """(F', H', W', note): the first 1 + 4k frames (the pipeline makes 4·((F − 1) // 4) + 1 of F), the sides
        cut down to multiples of 16 (the pipeline makes (H // 16)·16 of H):
        with a temporal patch (``patch_size_t``) the latent frames a multiple of it:
        :func:`~cyclediff.models.video.fit_clip_to`."""
        return fit_clip_to("HunyuanVideo 1.5", frames, height, width, temporal=self.codec.temporal,
                           multiple=self.codec.multiple, patch_t=int(self.transformer.config.patch_size_t))

    def check_sample(self, x: torch.Tensor) -> None:
        check_video_latents(x, self._channels, (self._patch, self._patch), int(self.transformer.config.patch_size_t))

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float | None = None,
                          guidance_rescale: float | None = None, **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a HunyuanVideo 1.5 model")
        guider = self.pipe.guider
        if guidance_scale is None:
            guidance_scale = guider.guidance_scale if getattr(guider, "_enabled", True) else 1.0
        phi = float(guider.guidance_rescale if guidance_rescale is None else guidance_rescale)
        if not 0 <= phi <= 1:
            raise IncompatibleModelError(f"guidance_rescale must lie in [0, 1]; got {guidance_rescale}")
        condition = self.cfg_condition(batch_size, prompt, negative_prompt, guidance_scale)
        condition.record["guidance_rescale"] = phi
        condition.inputs["rescale"] = phi
        return condition

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, ...]:
        """(Qwen states, their mask, ByT5 states, their mask) as the pipeline's ``encode_prompt`` makes them."""
        self.use_adapters()
        with torch.no_grad(), diffusers_quiet():
            return tuple(self.pipe.encode_prompt(prompts, device=self.text_device, dtype=self.dtype,
                                                 batch_size=len(prompts)))

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their unconditional rows in one transformer call; guidance (and its rescale) on the
        velocities, as the guider; x̂0 per branch."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond"))
        text = {name: torch.cat([row[i] for row in inputs["cond"]]).to(self.device, self.dtype)
                for i, name in enumerate(TEXT)}
        self.use_adapters()
        out = self.runner(self.model_input(x_all, t).to(self.dtype), self.model_timesteps(t, x_all), x_all.dtype,
                          **text)
        guided = split_guided(out, plan, [c.inputs["rescale"] for _, c in branches])
        return [self.model_output(v, x, t) for v, (x, _) in zip(guided, branches)]


def check_guider(guider: Any) -> None:
    """The pipeline's guider must be the plain classifier-free one this adapter follows; else one line naming it."""
    name = type(guider).__name__
    if name != "ClassifierFreeGuidance":
        raise IncompatibleModelError(f"HunyuanVideo 1.5 is followed with its ClassifierFreeGuidance guider; this "
                                     f"pipeline's is {name}: set pipe.guider = "
                                     "ClassifierFreeGuidance(guidance_scale=…)")
    config = guider.config
    odd = [f"{k}={config.get(k)}" for k, plain in (("start", 0.0), ("stop", 1.0), ("use_original_formulation", False))
           if config.get(k, plain) != plain]
    if odd:
        raise IncompatibleModelError(f"this pipeline's guider has {', '.join(odd)}, which cyclediff does not follow "
                                     "(guidance on every step, uncond + g·(cond − uncond)); set pipe.guider = "
                                     "ClassifierFreeGuidance(guidance_scale=…)")


__all__ = ["HunyuanVideo15", "check_guider"]

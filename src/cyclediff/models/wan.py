"""Wan 2.1 / 2.2 text-to-video: rectified flow, a 3-D transformer over 1×2×2 patches of a causal video VAE's
latents, T5 (umT5) text. The core sees 5-D samples (B, C, f, h, w) as they are: nothing is packed here.

Followed from diffusers' ``WanPipeline`` / ``WanVideoToVideoPipeline``:

- **Clips** are (B, 3, F, H, W) in [0, 1] with F = 4k + 1 frames and sides multiples of 16 (:meth:`Wan.fit_clip`);
  the VAE makes (B, 16, (F − 1)/4 + 1, H/8, W/8) latents, normalised per channel by ``latents_mean`` /
  ``latents_std`` (the codec's :class:`~cyclediff.models.codec.LatentAffine`).
- **Prompts** go through the pipeline's ``encode_prompt``: T5's states of the prompt's own tokens, zero-padded to
  ``max_sequence_length`` (512), so every branch stacks into one call.
- **Guidance**: classifier-free with a ``negative_prompt`` (the empty prompt when none is given), as the pipeline's
  ``guidance_scale``. Wan 2.2 (A14B) has a second, low-noise transformer: steps at timesteps below
  ``boundary_ratio`` · T run it, with ``guidance_scale_2`` (the first scale when not given), as the pipeline does.
  Wan 2.2 TI2V (``expand_timesteps``) gets the timestep per patch, as its pipeline gives it.
- **The grid** is the pipeline's scheduler's: a flow-matching Euler scheduler's ``set_timesteps(N)`` (its shift),
  the transformer seeing σ·T; or, as Wan's checkpoints ship, UniPC with flow sigmas (HiDream-I1-Full's grid:
  :class:`~cyclediff.flow.UniPCFlowSchedule`), the transformer seeing the integer part of σ·T as
  UniPC gives it. UniPC is a multistep solver: the core's first-order step is its step at 1 and 2 steps only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleModelError
from ..flow import FlowSchedule, UniPCFlowSchedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec
from .pipelines import PromptModel, as_list, diffusers_quiet, guided_rows, is_single_file, load_pipeline
from .steps import FlowCoordinates
from .video import check_video_latents, fit_clip_to

BASE = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"  # where a single transformer file's other parts come from by default


class _VideoTransformer(torch.nn.Module):
    """Wan's transformer(s) called as the runner calls a UNet: (B, C, f, h, w) latents and timesteps σ·T in, the
    velocity out; ``low_noise`` picks Wan 2.2's second transformer."""

    def __init__(self, transformer: torch.nn.Module, transformer_2: torch.nn.Module | None,
                 expand_timesteps: bool) -> None:
        super().__init__()
        self.transformer, self.transformer_2, self.expand_timesteps = transformer, transformer_2, expand_timesteps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, *,
                encoder_hidden_states: torch.Tensor, low_noise: bool = False) -> Any:
        net = self.transformer_2 if low_noise else self.transformer
        if self.expand_timesteps:  # one timestep per patch (Wan 2.2 TI2V)
            pt, ph, pw = net.config.patch_size
            tokens = (x.shape[2] // pt) * (x.shape[3] // ph) * (x.shape[4] // pw)
            timesteps = timesteps[:, None].expand(-1, tokens)
        return net(hidden_states=x, timestep=timesteps, encoder_hidden_states=encoder_hidden_states,
                   return_dict=False)


class VideoCodec(VaeCodec):
    """A causal video VAE's codec: (B, 3, F, H, W) clips with F = 1 + ``temporal``·k frames ↔ 5-D latents."""

    def __init__(self, vae: Any, *, downsampling: int, latent_size: tuple[int, int], frames: int) -> None:
        super().__init__(vae, downsampling=downsampling, latent_size=latent_size)
        self.temporal = int(vae.config.get("scale_factor_temporal") or 4)
        self.frames = frames  # of the clips the model makes by default

    @property
    def image_channels(self) -> int:
        """RGB: Wan 2.2 TI2V's VAE folds 2×2 pixels into its 12 input channels itself (``patch_size``)."""
        patch = int(self.vae.config.get("patch_size") or 1)
        return super().image_channels // (patch * patch)

    def encode(self, images01: torch.Tensor, generator: Any = None) -> torch.Tensor:
        """Clips in [0, 1] → the VAE posterior's mode, normalised, as Wan's video-to-video pipeline encodes them
        (no draw: ``generator`` is not used)."""
        return self.encode_images(images01 * 2 - 1, generator, sample=False)

    def encode_images(self, images: torch.Tensor, generator: Any = None, *, sample: bool = True) -> torch.Tensor:
        if isinstance(images, torch.Tensor) and images.ndim != 5:
            raise IncompatibleModelError(f"a video model encodes clips (B, 3, F, H, W) in [0, 1]; got shape "
                                         f"{tuple(images.shape)} (one image is x[:, :, None], a clip of one frame)")
        if (images.shape[2] - 1) % self.temporal:
            raise IncompatibleModelError(f"clips must have 1 + {self.temporal}·k frames for this model; got "
                                         f"{images.shape[2]} (model.fit_clip(F, H, W) gives the frames to keep)")
        z = super().encode_images(images, generator, sample=sample)
        if z.shape[2] != (images.shape[2] - 1) // self.temporal + 1:  # diffusers' Wan VAE groups frames by 4
            raise IncompatibleModelError(f"this VAE encoded {images.shape[2]} frames into {z.shape[2]} latent frames, "
                                         f"not the 1 + (F − 1)/{self.temporal} its config says: its time "
                                         "compression is not what its encoder does; use the family's own VAE")
        return z


class Wan(FlowCoordinates, PromptModel):
    """A ``WanPipeline`` (or ``WanVideoToVideoPipeline``) over its VAE latents. Conditions: ``prompt``,
    ``negative_prompt``, ``guidance_scale`` (classifier-free; 1: none), ``guidance_scale_2`` (Wan 2.2's low-noise
    stage). ``frames`` and ``size`` (H, W): the clips it makes by default (the pipeline's 81 at 480×832)."""

    kind = "Wan's video transformer"
    family = "wan"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 512, frames: int = 81,
                 size: tuple[int, int] = (480, 832)) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "Wan needs a Wan text-to-video pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        self.transformer_2 = getattr(pipe, "transformer_2", None)
        if self.transformer_2 is not None:
            self.transformer_2.eval().requires_grad_(False)
        config = dict(pipe.config)
        ratio = config.get("boundary_ratio")
        if ratio is not None and self.transformer_2 is None:
            raise IncompatibleModelError("this Wan pipeline has a boundary_ratio but no transformer_2; load the whole "
                                         "Wan 2.2 pipeline")
        scheduler = dict(pipe.scheduler.config)
        self.boundary = None if ratio is None else float(ratio) * int(scheduler.get("num_train_timesteps", 1000))
        self.runner = UNetRunner(_VideoTransformer(self.transformer, self.transformer_2,
                                                   bool(config.get("expand_timesteps"))))
        self.max_sequence_length = max_sequence_length
        self.schedule = wan_schedule(scheduler)
        f, h, w, _ = self.fit_clip(frames, *size)
        self.frames, self.size = f, (h, w)
        factor = int(pipe.vae.config.get("scale_factor_spatial") or 8)
        self.codec = VideoCodec(pipe.vae, downsampling=math.lcm(*self._patch[1:]),
                                latent_size=(h // factor, w // factor), frames=f)

    @property
    def condition_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        """``guidance_scale_2`` only where there is a second, low-noise stage (Wan 2.2 A14B)."""
        keys = ("prompt", "negative_prompt", "guidance_scale")
        return keys if self.boundary is None else (*keys, "guidance_scale_2")

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> Wan:
        """A hub id or a local diffusers folder of Wan (e.g. ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``), or a single
        transformer file (diffusers' ``from_single_file`` of the transformer; the rest of the pipeline from
        ``config=`` a local folder or hub id, by default ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``)."""
        from diffusers import WanPipeline, WanTransformer3DModel

        source = str(source)
        base = source
        if is_single_file(source):
            base = str(kwargs.pop("config", None) or BASE)
            kwargs["transformer"] = load_pipeline(WanTransformer3DModel, source, dtype, None, "Wan transformer",
                                                  config=base, subfolder="transformer")
        return cls(load_pipeline(WanPipeline, base, dtype, device, "Wan", **kwargs), model_id=source)

    @property
    def _patch(self) -> tuple[int, int, int]:
        return tuple(int(p) for p in self.transformer.config.patch_size)  # type: ignore[return-value]

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        factor = self.codec.factor
        f = (self.frames - 1) // self.codec.temporal + 1
        return (int(self.transformer.config.in_channels), f, self.size[0] // factor, self.size[1] // factor)

    def fit_clip(self, frames: int, height: int, width: int) -> tuple[int, int, int, str]:
        """(F', H', W', note): the first 1 + 4k frames (latent frames a multiple of the transformer's temporal
        patch), the sides cut down to multiples of 16 (the pipeline's rounding; the VAE's factor × both sides of
        the transformer's patches): :func:`~cyclediff.models.video.fit_clip_to`."""
        temporal = int(self.pipe.vae.config.get("scale_factor_temporal") or 4)
        multiple = int(self.pipe.vae.config.get("scale_factor_spatial") or 8) * math.lcm(*self._patch[1:])
        return fit_clip_to("Wan", frames, height, width, temporal=temporal, multiple=multiple,
                           patch_t=self._patch[0])

    def check_sample(self, x: torch.Tensor) -> None:
        check_video_latents(x, int(self.transformer.config.in_channels), self._patch[1:], self._patch[0])

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          guidance_scale_2: float | None = None, **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a Wan model")
        if guidance_scale_2 is not None and self.boundary is None:
            raise IncompatibleModelError("guidance_scale_2 is for Wan 2.2's two-stage pipelines (a boundary_ratio); "
                                         "this one has one transformer: drop it")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        w2 = w if guidance_scale_2 is None else condition_scale(guidance_scale_2)
        cond = self._encode(prompts)
        uncond = self._encode(negatives or [""] * batch_size) if (w, w2) != (1, 1) else None
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if guidance_scale_2 is not None:
            record["guidance_scale_2"] = w2
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs={"cond": cond, "uncond": uncond, "scale": w, "scale_2": w2}, record=record)

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        """T5 states of each prompt's tokens, zero-padded to ``max_sequence_length``, as the pipeline makes them."""
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        with torch.no_grad(), diffusers_quiet():
            embeds, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.text_device,
                                                max_sequence_length=self.max_sequence_length)
        return embeds

    def network_time(self, t: float) -> float:
        """The timestep the transformer sees at grid timestep ``t``: t (flow-matching Euler), or its integer part
        (UniPC's integer timesteps)."""
        return float(math.floor(t)) if isinstance(self.schedule, UniPCFlowSchedule) else t

    def model_timesteps(self, t: float, x: torch.Tensor) -> torch.Tensor:
        return super().model_timesteps(self.network_time(t), x)

    def low_noise(self, t: float) -> bool:
        """Whether the step at grid timestep ``t`` is Wan 2.2's low-noise stage (its timestep below the boundary,
        compared in float32 as the pipeline compares them)."""
        return self.boundary is not None and not bool(
            torch.tensor(self.network_time(t), dtype=torch.float32) >= self.boundary)

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their unconditional rows in one transformer call (the stage's transformer and scale);
        x̂0 per branch."""
        low = self.low_noise(t)

        def rows(c: Condition) -> Any:
            staged = Condition(inputs={**c.inputs, "scale": c.inputs["scale_2"]}, record=c.record) if low else c
            return guided_rows(staged, "cond")

        x_all, inputs, plan = stack_branches(branches, rows)
        text = torch.cat(inputs["cond"]).to(self.device, self.dtype)
        self.use_adapters()
        return guided_call(self, x_all, t, plan, encoder_hidden_states=text, low_noise=low)


def wan_schedule(config: dict[str, Any]) -> FlowSchedule:
    """The grid of a Wan pipeline's scheduler: UniPC with flow sigmas (:class:`UniPCFlowSchedule`), or a
    flow-matching Euler scheduler's own; any other is refused in one line."""
    if config.get("use_flow_sigmas"):
        odd = [k for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_dynamic_shifting",
                           "shift_terminal") if config.get(k)]
        if odd or config.get("final_sigmas_type", "zero") != "zero":
            raise IncompatibleModelError(f"this UniPC scheduler ({', '.join(odd) or 'final σ above 0'}) is not Wan's; "
                                         "cyclediff takes its flow sigmas ending at σ = 0")
        base = FlowSchedule.from_flow_config(config)
        return UniPCFlowSchedule(alpha_bar=base.alpha_bar, final_alpha_bar=1.0, prediction_type="sample",
                                 timestep_spacing="linspace", config=base.config)
    if "shift" in config and not config.get("use_dynamic_shifting"):  # FlowMatchEulerDiscreteScheduler
        return FlowSchedule.from_flow_config(config)
    raise IncompatibleModelError("Wan needs a rectified-flow scheduler (UniPCMultistepScheduler with use_flow_sigmas, "
                                 "or FlowMatchEulerDiscreteScheduler without dynamic shifting); this pipeline's is "
                                 "neither")


__all__ = ["VideoCodec", "Wan", "wan_schedule"]

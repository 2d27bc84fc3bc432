"""LTX-Video text-to-video: rectified flow, a 3-D transformer over the tokens of a 32× / 8× video VAE's latents
(one token per latent frame and cell), T5 text with its attention mask. The core sees 5-D samples (B, C, f, h, w);
the packing into tokens lives here.

Followed from diffusers' ``LTXPipeline`` (and ``LTXConditionPipeline``, whose grid and positions differ: below):

- **Clips** are (B, 3, F, H, W) in [0, 1] with F = 8k + 1 frames and sides multiples of 32 (:meth:`LTXVideo.fit_clip`);
  the VAE makes (B, 128, (F − 1)/8 + 1, H/32, W/32) latents, normalised per channel by its ``latents_mean`` /
  ``latents_std`` buffers and ``scaling_factor`` (:class:`LTXCodec`). A VAE with ``timestep_conditioning`` (0.9.1
  on) decodes at ``decode_timestep`` (the pipeline's default 0); the noise the pipeline can mix in before decoding
  (``decode_noise_scale`` > 0) is not added: decoding here is deterministic.
- **Tokens**: the latents packed as ``LTXPipeline._pack_latents`` packs them, the rotary positions scaled by
  (8 / ``frame_rate``, 32, 32) as the pipeline's ``rope_interpolation_scale``; the timestep σ·1000.
- **Prompts** through the pipeline's ``encode_prompt``: T5 states padded to ``max_sequence_length`` (128) with the
  tokens' attention mask, which the transformer's cross-attention takes.
- **Guidance**: classifier-free with a ``negative_prompt`` (the empty prompt when none is given), and the
  pipeline's ``guidance_rescale`` (the guided velocity's std rescaled towards the conditional one's).
- **The grid**: linspace(1, 1/N, N) through the scheduler with the μ of the latent frames × cells (LTX's
  ``base_shift`` / ``max_shift`` and ``shift_terminal``), as the pipeline passes them.
- **LTXConditionPipeline** (a pipeline of that class, or a folder whose model_index.json names it): its
  linear-quadratic grid given to the scheduler as timesteps, cut by ``denoise_strength`` as int(N × strength)
  steps (:class:`LinearQuadraticSchedule`; SDEdit from a clip's latents is its ``latents=`` with
  ``denoise_strength``), and its positions: the latent cells' coordinates scaled by the VAE's ratios, frames
  shifted back causally and divided by ``frame_rate``. Its steps go from each timestep to the scheduler's next
  lower level, which is the grid's next timestep only for an unshifted scheduler: another is refused in one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, IncompatibleModelError
from ..flow import FlowSchedule, image_shift
from ._accel import UNetRunner
from .base import Condition, condition_scale, refuse_unknown, split_guided, stack_branches
from .codec import LatentAffine, VaeCodec
from .pipelines import PromptModel, as_list, diffusers_quiet, guided_rows, is_single_file, load_pipeline
from .steps import FlowCoordinates
from .video import check_video_latents, fit_clip_to
from .wan import VideoCodec

BASE = "Lightricks/LTX-Video"  # where a single transformer file's other parts come from by default


class _TokenTransformer(torch.nn.Module):
    """LTX's transformer called as the runner calls a UNet: (B, C, f, h, w) latents and timesteps σ·T in, the
    velocity (B, C, f, h, w) out; the latents packed into tokens and unpacked as the pipeline does, their positions
    as ``LTXPipeline`` gives them (the rope interpolation scale) or, for ``conditioned`` (``LTXConditionPipeline``),
    as that pipeline's scaled video coordinates."""

    def __init__(self, transformer: torch.nn.Module, vae: Any, conditioned: bool) -> None:
        super().__init__()
        self.transformer, self.conditioned = transformer, conditioned
        self.spatial, self.temporal = int(vae.spatial_compression_ratio), int(vae.temporal_compression_ratio)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, *,
                encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor, frame_rate: float) -> Any:
        from diffusers import LTXConditionPipeline, LTXPipeline

        p, pt = int(self.transformer.config.patch_size), int(self.transformer.config.patch_size_t)
        b, _, f, h, w = x.shape
        text = {"encoder_hidden_states": encoder_hidden_states, "encoder_attention_mask": encoder_attention_mask}
        if self.conditioned:
            ids = LTXConditionPipeline._prepare_video_ids(b, f, h, w, patch_size=p, patch_size_t=pt, device=x.device)
            coords = LTXConditionPipeline._scale_video_ids(ids, scale_factor=self.spatial,
                                                           scale_factor_t=self.temporal, frame_index=0).float()
            coords[:, 0] = coords[:, 0] * (1.0 / frame_rate)
            out = self.transformer(hidden_states=LTXPipeline._pack_latents(x, p, pt), timestep=timesteps[:, None],
                                   video_coords=coords, return_dict=False, **text)[0]
        else:
            out = self.transformer(hidden_states=LTXPipeline._pack_latents(x, p, pt), timestep=timesteps,
                                   num_frames=f, height=h, width=w, return_dict=False, **text,
                                   rope_interpolation_scale=(self.temporal / frame_rate, self.spatial, self.spatial))[0]
        return (LTXPipeline._unpack_latents(out, f, h, w, p, pt),)


@dataclass(frozen=True, eq=False)
class LinearQuadraticSchedule(FlowSchedule):
    """``LTXConditionPipeline``'s grid: LTX's linear-quadratic levels (``linear_quadratic_schedule``) given to the
    scheduler as timesteps σ·1000, cut by ``denoise_strength`` as int(N × strength) steps."""

    cut = "floor"

    def grid(self, steps: int) -> list[float]:  # type: ignore[override]
        from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule

        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"steps must be a positive integer; got {steps!r}")
        return [float(t) for t in (linear_quadratic_schedule(steps) * 1000).float()]

    def cut_rule(self, steps: int, strength: float) -> str:
        return f"int({steps} × {strength})"

    def fingerprint(self) -> str:
        text = json.dumps(["ltx-linear-quadratic", self.config], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class LTXCodec(VideoCodec):
    """LTX's video VAE: its compression ratios (32× in space, 8× in time), its latents' per-channel mean / std
    buffers, and the decode timestep of a timestep-conditioned decoder."""

    def __init__(self, vae: Any, *, latent_size: tuple[int, int], frames: int, decode_timestep: float = 0.0) -> None:
        super().__init__(vae, downsampling=1, latent_size=latent_size, frames=frames)
        self.temporal = int(vae.temporal_compression_ratio)
        self.decode_timestep = float(decode_timestep)

    @property
    def factor(self) -> int:
        return int(self.vae.spatial_compression_ratio)

    @property
    def image_channels(self) -> int:
        """RGB: the VAE folds its pixel patches into channels itself."""
        return VaeCodec.image_channels.fget(self)  # type: ignore[attr-defined]

    @property
    def normalisation(self) -> LatentAffine:
        """(z − mean) · scaling_factor / std per channel, as ``LTXPipeline._normalize_latents``."""
        factor = float(self.vae.config.get("scaling_factor") or 1.0)
        mean, std = self.vae.latents_mean.detach().float().cpu(), self.vae.latents_std.detach().float().cpu()
        return LatentAffine(mean, factor / std)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents → clips in [-1, 1]; a timestep-conditioned decoder gets ``decode_timestep``, one
        clip at a time when the VAE slices (its sliced decode drops the timestep's batch)."""
        z = self.normalisation.denormalise(latents)
        vae = self.runnable_vae()
        z = z.to(self.execution_device or vae.device, vae.dtype)
        if not vae.config.get("timestep_conditioning"):
            return vae.decode(z).sample.to(latents.dtype)
        temb = torch.full((z.shape[0],), self.decode_timestep, device=z.device, dtype=z.dtype)
        if vae.use_slicing and z.shape[0] > 1:
            return torch.cat([vae.decode(zi, ti).sample for zi, ti in zip(z.split(1), temb.split(1))]).to(
                latents.dtype)
        return vae.decode(z, temb).sample.to(latents.dtype)


class LTXVideo(FlowCoordinates, PromptModel):
    """An ``LTXPipeline`` (or ``LTXConditionPipeline``: ``conditioned``) over its VAE latents. Conditions:
    ``prompt``, ``negative_prompt``, ``guidance_scale`` (classifier-free; 1: none), ``guidance_rescale``.
    ``frames`` and ``size`` (H, W): the clips it makes by default (the pipeline's 161 at 512×704); ``frame_rate``:
    the rate its positions assume (the pipeline's 25); ``decode_timestep``: a timestep-conditioned decoder's."""

    condition_keys = ("prompt", "negative_prompt", "guidance_scale", "guidance_rescale")
    kind = "LTX-Video's video transformer"
    family = "ltx"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 128,
                 frames: int = 161, size: tuple[int, int] = (512, 704), frame_rate: float = 25,
                 decode_timestep: float = 0.0) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "LTX-Video needs an LTX-Video pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        self.conditioned = type(pipe).__name__.startswith("LTXConditionPipeline")
        self.runner = UNetRunner(_TokenTransformer(self.transformer, pipe.vae, self.conditioned))
        self.max_sequence_length = max_sequence_length
        self.frame_rate = frame_rate
        self.schedule = ltx_schedule(dict(pipe.scheduler.config), self.conditioned)
        f, h, w, _ = self.fit_clip(frames, *size)
        self.frames, self.size = f, (h, w)
        factor = int(pipe.vae.spatial_compression_ratio)
        self.codec = LTXCodec(pipe.vae, latent_size=(h // factor, w // factor), frames=f,
                              decode_timestep=decode_timestep)
        self.schedule = self.schedule_for(self.sample_shape)

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> LTXVideo:
        """A hub id or a local diffusers folder of LTX-Video (e.g. ``Lightricks/LTX-Video``), or a single
        transformer file (diffusers' ``from_single_file`` of the transformer; the rest of the pipeline from
        ``config=`` a local folder or hub id, by default ``Lightricks/LTX-Video``)."""
        from diffusers import LTXVideoTransformer3DModel

        source = str(source)
        base = source
        if is_single_file(source):
            base = str(kwargs.pop("config", None) or BASE)
            kwargs["transformer"] = load_pipeline(LTXVideoTransformer3DModel, source, dtype, None,
                                                  "LTX-Video transformer", config=base, subfolder="transformer")
        return cls(load_pipeline(_pipeline_class(base), base, dtype, device, "LTX-Video", **kwargs), model_id=source)

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        factor, temporal = int(self.pipe.vae.spatial_compression_ratio), int(self.pipe.vae.temporal_compression_ratio)
        return (int(self.transformer.config.in_channels), (self.frames - 1) // temporal + 1,
                self.size[0] // factor, self.size[1] // factor)

    def fit_clip(self, frames: int, height: int, width: int) -> tuple[int, int, int, str]:
        """(F', H', W', note): the first 1 + 8k frames, the sides cut down to multiples of 32 (the pipeline's
        check): :func:`~cyclediff.models.video.fit_clip_to`."""
        vae = self.pipe.vae
        multiple = math.lcm(32, int(vae.spatial_compression_ratio) * int(self.transformer.config.patch_size))
        return fit_clip_to("LTX-Video", frames, height, width, temporal=int(vae.temporal_compression_ratio),
                           multiple=multiple)

    def check_sample(self, x: torch.Tensor) -> None:
        check_video_latents(x, int(self.transformer.config.in_channels))

    def schedule_for(self, shape: tuple[int, ...]) -> FlowSchedule:
        """The grid for latents of ``shape`` (…, f, h, w): shifted by the μ of f·h·w tokens, as ``LTXPipeline``
        (``LTXConditionPipeline``'s is one grid for every shape)."""
        if self.conditioned:
            return self.schedule
        f, h, w = shape[-3:]
        mu = image_shift(self.schedule.config, f * h * w)
        return self.schedule if self.schedule.mu == mu else dataclasses.replace(self.schedule, mu=mu)

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          guidance_rescale: float = 0.0, **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "an LTX-Video model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        phi = float(guidance_rescale)
        if not 0 <= phi <= 1:
            raise IncompatibleModelError(f"guidance_rescale must lie in [0, 1]; got {guidance_rescale}")
        cond, mask = self._encode(prompts)
        uncond, uncond_mask = self._encode(negatives or [""] * batch_size) if w != 1 else (None, None)
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if phi:
            record["guidance_rescale"] = phi
        if negatives is not None:
            record["negative_prompt"] = negatives
        inputs = {"cond": cond, "uncond": uncond, "mask": mask, "uncond_mask": uncond_mask, "scale": w,
                  "rescale": phi}
        return Condition(inputs=inputs, record=record)

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 states of each prompt padded to ``max_sequence_length``, and its tokens' mask, as the pipeline."""
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        with torch.no_grad(), diffusers_quiet():
            embeds, mask, _, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False,
                                                         device=self.text_device,
                                                         max_sequence_length=self.max_sequence_length)
        return embeds, mask

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their unconditional rows in one transformer call; guidance (and its rescale) on the
        velocities, as the pipeline; x̂0 per branch."""

        def rows(c: Condition) -> Any:
            w, groups = guided_rows(c, "cond")
            masks = guided_rows(Condition(inputs={**c.inputs, "cond": c.inputs["mask"],
                                                  "uncond": c.inputs["uncond_mask"]}), "cond")[1]
            return w, [{"cond": g["cond"], "mask": m["cond"]} for g, m in zip(groups, masks)]

        x_all, inputs, plan = stack_branches(branches, rows)
        self.use_adapters()
        out = self.runner(self.model_input(x_all, t).to(self.dtype), self.model_timesteps(t, x_all), x_all.dtype,
                          encoder_hidden_states=torch.cat(inputs["cond"]).to(self.device, self.dtype),
                          encoder_attention_mask=torch.cat(inputs["mask"]).to(self.device),
                          frame_rate=self.frame_rate)
        guided = split_guided(out, plan, [c.inputs["rescale"] for _, c in branches])
        return [self.model_output(v, x, t) for v, (x, _) in zip(guided, branches)]


def _pipeline_class(source: str) -> Any:
    """``LTXConditionPipeline`` for a local folder whose model_index.json names it, else ``LTXPipeline``."""
    from diffusers import LTXConditionPipeline, LTXPipeline

    index = Path(source) / "model_index.json"
    named = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    return LTXConditionPipeline if named == "LTXConditionPipeline" else LTXPipeline


def ltx_schedule(config: dict[str, Any], conditioned: bool) -> FlowSchedule:
    """The grid of an LTX pipeline's flow-matching Euler scheduler: ``LTXPipeline``'s linspace(1, 1/N, N) levels
    (shifted by μ per clip size), or ``LTXConditionPipeline``'s linear-quadratic timesteps, whose steps are this
    grid's only when the scheduler leaves its levels unshifted; any other is refused in one line."""
    if "shift" not in config or any(config.get(k) for k in ("use_karras_sigmas", "use_exponential_sigmas",
                                                             "use_beta_sigmas", "invert_sigmas")):
        raise IncompatibleModelError("LTX-Video needs its flow-matching Euler scheduler "
                                     "(FlowMatchEulerDiscreteScheduler, no Karras / exponential / beta sigmas)")
    if not conditioned:
        return FlowSchedule.from_flow_config(config, flux_sigmas=True)
    if config.get("use_dynamic_shifting") or config.get("shift_terminal") or float(config["shift"]) != 1:
        raise IncompatibleModelError("LTXConditionPipeline steps from its timesteps to its scheduler's shifted "
                                     "levels; cyclediff takes it with an unshifted scheduler (shift 1, no dynamic "
                                     "shifting or shift_terminal), or load the folder as an LTXPipeline")
    base = FlowSchedule.from_flow_config(config)
    return LinearQuadraticSchedule(alpha_bar=base.alpha_bar, final_alpha_bar=1.0, prediction_type="sample",
                                   timestep_spacing="linspace", config=base.config)


__all__ = ["LTXCodec", "LTXVideo", "LinearQuadraticSchedule", "ltx_schedule"]

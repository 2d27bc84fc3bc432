"""FLUX.2 ([dev] and [klein], with klein's undistilled "Base" checkpoints): rectified flow, a transformer over the
VAE's 2×2-patchified latents, a language model's hidden states as the text (Mistral-3 for dev, Qwen3 for klein).

The sample space the core sees is the pipelines' own: the VAE latents patchified to (B, 4·C, h/2, w/2) and
normalised by the VAE's batch-norm statistics (:class:`Flux2Codec`), so the first noise is drawn in the shape and
order of the pipelines' ``prepare_latents``; packing into tokens and the position ids live in the network wrapper.
Guidance, as each pipeline has it: dev embeds ``guidance_scale`` in the transformer (one row per branch); klein Base
runs classifier-free guidance against ``negative_prompt`` (the pipeline's "") when ``guidance_scale`` > 1; a
step-wise distilled klein takes none, and a guidance scale > 1 is refused. The grid: linspace(1, 1/N, N) shifted by
the pipelines' empirical μ, which depends on the image's tokens *and* the number of steps (:class:`Flux2Schedule`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ..flow import FlowSchedule, flow_grid
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec, spatial_factor
from .pipelines import PromptModel, as_list, check_latents, diffusers_quiet, guided_rows, is_single_file, load_pipeline
from .steps import FlowCoordinates


# ---------------------------------------------------------------------------------------------------- the grid
@dataclasses.dataclass(frozen=True, eq=False)
class Flux2Schedule(FlowSchedule):
    """FLUX.2's grid: the pipelines' levels linspace(1, 1/N, N), shifted by ``compute_empirical_mu(image_seq_len,
    N)`` — μ depends on the number of steps, so it is computed per grid, not once per image size."""

    image_seq_len: int = 0

    def mu_for(self, steps: int) -> float:
        from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

        return compute_empirical_mu(image_seq_len=self.image_seq_len, num_steps=steps)

    def grid(self, steps: int) -> list[float]:  # type: ignore[override]
        mu = self.mu_for(steps) if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None
        return list(flow_grid(self.config, steps, 1.0, mu=mu, flux_sigmas=self.flux_sigmas).timesteps)

    def fingerprint(self) -> str:
        import hashlib

        text = json.dumps(["flux2", self.config, self.image_seq_len, self.flux_sigmas], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------- the codec
class _BatchNormLatents:
    """FLUX.2's latent normalisation: the VAE's latents patchified 2×2 (as the pipelines' ``_patchify_latents``),
    then (x − running_mean) / √(running_var + eps) of the VAE's batch norm, per patchified channel."""

    def __init__(self, vae: Any) -> None:
        self.vae = vae

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(like.device, like.dtype)
        return mean, std

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        from diffusers import Flux2Pipeline

        x = Flux2Pipeline._patchify_latents(z)
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        from diffusers import Flux2Pipeline

        if x.ndim != 4 or x.shape[1] != self.vae.bn.num_features:
            raise IncompatibleModelError(f"FLUX.2 samples are (B, {self.vae.bn.num_features}, h, w) patchified "
                                         f"latents; got shape {tuple(x.shape)}")
        mean, std = self._stats(x)
        return Flux2Pipeline._unpatchify_latents(x * std + mean)


class Flux2Codec(VaeCodec):
    """Images ↔ FLUX.2's normalised, patchified latents: one sample cell is 2×2 VAE latents, so a cell covers
    2 × the VAE's factor pixels along a side."""

    @property
    def factor(self) -> int:
        return 2 * spatial_factor(self.vae.config)

    @property
    def normalisation(self) -> Any:  # type: ignore[override]
        return _BatchNormLatents(self.vae)


# ---------------------------------------------------------------------------------------------------- the network
class _PackedTransformer(torch.nn.Module):
    """The FLUX.2 transformer called as the runner calls a UNet: (B, 4·C, h, w) samples packed into h·w tokens
    (``_pack_latents``) with the pipelines' position ids (T, H, W, L) = (0, row, column, 0), the text's
    (0, 0, 0, position); timesteps σ·1000 → σ; the velocity unpacked to (B, 4·C, h, w)."""

    def __init__(self, transformer: torch.nn.Module, num_train_timesteps: int) -> None:
        super().__init__()
        self.transformer, self.num_train_timesteps = transformer, num_train_timesteps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, *,
                encoder_hidden_states: torch.Tensor, **kwargs: Any) -> Any:
        from diffusers import Flux2Pipeline

        b, c, h, w = x.shape
        img_ids = Flux2Pipeline._prepare_latent_ids(x[:1]).to(x.device)
        txt_ids = Flux2Pipeline._prepare_text_ids(encoder_hidden_states[:1]).to(x.device)
        out = self.transformer(hidden_states=Flux2Pipeline._pack_latents(x),
                               timestep=timesteps / self.num_train_timesteps,
                               encoder_hidden_states=encoder_hidden_states, img_ids=img_ids, txt_ids=txt_ids,
                               return_dict=False, **kwargs)[0]
        return (out[:, : h * w].permute(0, 2, 1).reshape(b, c, h, w),)


# ---------------------------------------------------------------------------------------------------- the adapter
class Flux2(FlowCoordinates, PromptModel):
    """A ``Flux2Pipeline`` ([dev]) or ``Flux2KleinPipeline`` ([klein], Base or distilled) over its normalised,
    patchified latents. Conditions: ``prompt``, ``guidance_scale`` (dev: embedded; klein Base: classifier-free
    against ``negative_prompt``, "" unless given; distilled klein: none), ``negative_prompt`` (klein Base only)."""

    kind = "FLUX.2's joint attention (MMDiT)"
    family = "flux2"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 512,
                 text_encoder_out_layers: tuple[int, ...] | None = None) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "Flux2 needs a FLUX.2 pipeline (Flux2Pipeline or Flux2KleinPipeline)", model_id)
        self.transformer = self.network = pipe.transformer
        config = dict(pipe.scheduler.config)
        self.runner = UNetRunner(_PackedTransformer(self.transformer, int(config.get("num_train_timesteps", 1000))))
        self.max_sequence_length = int(max_sequence_length)
        default_layers = inspect.signature(pipe.encode_prompt).parameters["text_encoder_out_layers"].default
        self.text_encoder_out_layers = tuple(text_encoder_out_layers or default_layers)
        self.embedded = bool(self.transformer.config.guidance_embeds)  # dev: the guidance scale is an input
        self.distilled = bool(getattr(pipe.config, "is_distilled", False))  # klein's step-wise distilled ones
        # the pipelines pass their own levels unless the scheduler says use_flow_sigmas
        schedule = FlowSchedule.from_flow_config(config, flux_sigmas=not config.get("use_flow_sigmas", False))
        self.schedule = Flux2Schedule(**{f.name: getattr(schedule, f.name) for f in dataclasses.fields(schedule)})
        self.schedule = self.schedule_for(self.sample_shape)
        self.codec = Flux2Codec(pipe.vae, downsampling=1, latent_size=self.sample_shape[1:])
        # distilled klein: four steps (its card), no guidance; the others: the family's record
        self.defaults = {"steps": 4, "guidance_scale": 1.0} if self.distilled else {}

    @property
    def condition_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        if self.embedded or self.distilled:
            return ("prompt", "guidance_scale")
        return ("prompt", "negative_prompt", "guidance_scale")

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> Flux2:
        """A hub id or local diffusers folder of FLUX.2 [dev] or [klein] (the pipeline its model_index.json
        names), or a single transformer file (diffusers fetches the rest: dev's pipeline for a file with a guidance
        embedding, klein's otherwise, or takes it from ``config=`` a local folder)."""
        import diffusers

        source = str(source)
        if is_single_file(source):
            from .checkpoints import checkpoint_keys

            keys = checkpoint_keys(Path(source)) if Path(source).is_file() else []
            guided = any("guidance_in" in k or "guidance_embedder" in k for k in keys)
            pipe_cls = diffusers.Flux2Pipeline if guided else diffusers.Flux2KleinPipeline
        else:
            pipe_cls = diffusers.DiffusionPipeline
        pipe = load_pipeline(pipe_cls, source, dtype, device, "FLUX.2", **kwargs)
        if not type(pipe).__name__.startswith("Flux2"):
            raise CycleDiffError(f"{source} holds a {type(pipe).__name__}, not a FLUX.2 pipeline")
        return cls(pipe, model_id=source)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        side = int(self.pipe.default_sample_size) // 2  # the pipelines' default image, in patchified cells
        return (int(self.transformer.config.in_channels), side, side)

    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.transformer.config.in_channels), 1)

    def schedule_for(self, shape: tuple[int, ...]) -> Flux2Schedule:
        """The grid for samples of ``shape`` (…, h, w): h·w image tokens (the steps' share of μ comes per grid)."""
        tokens = int(shape[-2]) * int(shape[-1])
        schedule = self.schedule
        return schedule if schedule.image_seq_len == tokens else dataclasses.replace(schedule, image_seq_len=tokens)

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 4.0,
                          **unknown: Any) -> Condition:
        if negative_prompt is not None and "negative_prompt" not in self.condition_keys:
            unknown["negative_prompt"] = negative_prompt
        refuse_unknown(unknown, self.condition_keys, "a FLUX.2 [dev] model" if self.embedded else "this FLUX.2 model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        g = condition_scale(guidance_scale)
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": g}
        cond = self._encode(prompts)
        if self.embedded:
            guidance = torch.full((batch_size,), g, device=self.device, dtype=torch.float32)
            return Condition(inputs={"cond": cond, "uncond": None, "scale": 1.0, "guidance": guidance}, record=record)
        if self.distilled and g > 1:
            raise IncompatibleModelError(f"this FLUX.2 [klein] checkpoint is step-wise distilled and takes no guidance "
                                         f"(guidance_scale {g:g}); use guidance_scale 1, or a klein Base checkpoint")
        w = g if g > 1 else 1.0  # the pipeline guides only above 1
        negatives = as_list("" if negative_prompt is None else negative_prompt, batch_size, "negative_prompt")
        if negative_prompt is not None:
            record["negative_prompt"] = negatives
        uncond = self._encode(negatives) if w != 1 else None
        return Condition(inputs={"cond": cond, "uncond": uncond, "scale": w}, record=record)

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        with torch.no_grad(), diffusers_quiet():
            embeds, _ = self.pipe.encode_prompt(prompts, device=self.text_device, num_images_per_prompt=1,
                                                max_sequence_length=self.max_sequence_length,
                                                text_encoder_out_layers=self.text_encoder_out_layers)
        return embeds

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches (and klein Base's unconditional rows) in one transformer call; x̂0 per branch."""
        names = ("cond", "guidance") if self.embedded else ("cond",)
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, *names))
        kwargs: dict[str, Any] = {"encoder_hidden_states": torch.cat(inputs["cond"]).to(self.device, self.dtype)}
        if self.embedded:
            kwargs["guidance"] = torch.cat(inputs["guidance"]).to(self.device)
        self.use_adapters()
        return guided_call(self, x_all, t, plan, **kwargs)


__all__ = ["Flux2", "Flux2Codec", "Flux2Schedule"]

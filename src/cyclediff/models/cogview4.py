"""CogView4 (CogView4-6B): a rectified-flow DiT over 2×2 patches of unpacked latents, with GLM for text.

Followed from diffusers' ``CogView4Pipeline`` (which has no img2img sibling):

- **Prompts** go through GLM's second-to-last hidden states, each prompt's tokens left-padded with the pad token
  to a multiple of 16 and no attention mask: the padding is part of the text the networks read. Each prompt is
  encoded alone (as the pipeline encodes one prompt); rows of one step whose texts have the same length share one
  transformer call, rows of other lengths get calls of their own, since padding them further would change the
  image (the transformer's mask adds 0 / 1 to the attention scores rather than masking).
- **The transformer** sees the latents, the text, the image's size in pixels as ``original_size`` and
  ``target_size`` and crop (0, 0), and the *unshifted* timestep: the pipeline's grid is the integer timesteps
  linspace(T, 1, N) with σ = t / T shifted by CogView4's own image-size μ, √(tokens / base) · max_shift +
  base_shift (:class:`CogView4Schedule`), and the network is given t, not σ·T.
- **Guidance** is classifier-free with a ``negative_prompt`` (the empty prompt when none is given).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import IncompatibleModelError
from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, refuse_unknown, split_guided, stack_branches
from .codec import VaeCodec
from .pipelines import PromptModel, check_latents, diffusers_quiet, guided_rows, load_pipeline
from .steps import FlowCoordinates


@functools.lru_cache(maxsize=64)
def _cogview_grid(config: str, steps: int, mu: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(σ·T of each step, the timestep the network is given) as ``CogView4Pipeline`` sets its scheduler."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(json.loads(config))
    n = scheduler.config.num_train_timesteps
    timesteps = np.linspace(n, 1.0, steps).astype(np.int64).astype(np.float32)
    scheduler.set_timesteps(timesteps=timesteps, sigmas=timesteps / n, mu=mu)
    return tuple(float(s) * n for s in scheduler.sigmas[:-1]), tuple(float(t) for t in scheduler.timesteps)


@dataclasses.dataclass(frozen=True, eq=False)
class CogView4Schedule(FlowSchedule):
    """CogView4's grid for images of ``image_seq_len`` tokens: the core's timesteps are σ·T of the shifted levels
    (what :meth:`sigma_at` reads); the network's own (unshifted) timestep of each is kept in ``network_times``
    (one table per model, shared by its grids), filled when a grid is made."""

    image_seq_len: int = 0
    network_times: dict = dataclasses.field(default_factory=dict, repr=False)

    def mu_for(self) -> float:
        from diffusers.pipelines.cogview4.pipeline_cogview4 import calculate_shift

        c = self.config
        return calculate_shift(self.image_seq_len, c.get("base_image_seq_len", 256), c.get("base_shift", 0.25),
                               c.get("max_shift", 0.75))

    def grid(self, steps: int) -> list[float]:  # type: ignore[override]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise IncompatibleModelError(f"steps must be a positive integer; got {steps!r}")
        levels, times = _cogview_grid(json.dumps(self.config, sort_keys=True, default=str), steps, self.mu_for())
        self.network_times.update({(self.image_seq_len, t): m for t, m in zip(levels, times)})
        return list(levels)

    def network_time(self, t: float) -> float:
        try:
            return self.network_times[(self.image_seq_len, float(t))]
        except KeyError:
            raise IncompatibleModelError(f"timestep {t} is not on CogView4's grid for {self.image_seq_len} tokens; "
                                         "CogView4 runs on its own grid only (steps, strength)") from None

    def fingerprint(self) -> str:
        import hashlib

        text = json.dumps(["cogview4", self.config, self.image_seq_len], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class _SizedTransformer(torch.nn.Module):
    """The CogView4 transformer called as the runner calls a UNet: (B, C, h, w) latents and the network's timesteps
    in, the velocity out; the image's size in pixels as its original and target size, crop (0, 0)."""

    def __init__(self, transformer: torch.nn.Module, factor: int) -> None:
        super().__init__()
        self.transformer, self.factor = transformer, factor

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, *,
                encoder_hidden_states: torch.Tensor) -> Any:
        b, _, h, w = x.shape
        size = torch.tensor([[h * self.factor, w * self.factor]], dtype=encoder_hidden_states.dtype,
                            device=x.device).repeat(b, 1)
        return (self.transformer(hidden_states=x, encoder_hidden_states=encoder_hidden_states, timestep=timesteps,
                                 original_size=size, target_size=size, crop_coords=torch.zeros_like(size),
                                 return_dict=False)[0],)


class CogView4(FlowCoordinates, PromptModel):
    """A ``CogView4Pipeline`` over its VAE latents. Conditions: ``prompt``, ``negative_prompt`` (the empty prompt
    when none is given), ``guidance_scale`` (classifier-free; 1: none)."""

    kind = "CogView4's joint attention transformer"
    family = "cogview4"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 1024) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "CogView4 needs a CogView4 pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        self.max_sequence_length = max_sequence_length
        self.patch = int(self.transformer.config.patch_size)
        self.runner = UNetRunner(_SizedTransformer(self.transformer, int(pipe.vae_scale_factor)))
        base = FlowSchedule.from_flow_config(pipe.scheduler.config)
        self.schedule = CogView4Schedule(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
        self.schedule = self.schedule_for(self.sample_shape)
        self.codec = VaeCodec(pipe.vae, downsampling=self.patch, latent_size=self.sample_shape[1:])

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> CogView4:
        """A hub id (e.g. ``THUDM/CogView4-6B``) or a local diffusers folder."""
        from diffusers import CogView4Pipeline

        return cls(load_pipeline(CogView4Pipeline, str(source), dtype, device, "CogView4", **kwargs),
                   model_id=str(source))

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = int(self.transformer.config.sample_size)
        return (int(self.transformer.config.in_channels), size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.transformer.config.in_channels), self.patch)

    def schedule_for(self, shape: tuple[int, ...]) -> CogView4Schedule:
        """The grid for latents of ``shape`` (…, h, w): shifted by the μ of its tokens (2×2 patches)."""
        tokens = (shape[-2] * shape[-1]) // self.patch**2
        schedule = self.schedule
        return schedule if schedule.image_seq_len == tokens else dataclasses.replace(schedule, image_seq_len=tokens)

    def model_timesteps(self, t: float, x: torch.Tensor) -> torch.Tensor:
        """The network's own (unshifted) timestep of the grid's σ·T."""
        return torch.full((x.shape[0],), self.schedule_for(tuple(x.shape)).network_time(t), device=x.device,
                          dtype=torch.float32)

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a CogView4 model")
        return self.cfg_condition(batch_size, prompt, negative_prompt, guidance_scale)

    def _encode(self, prompts: list[str]) -> list[torch.Tensor]:
        """One (tokens, width) embedding per prompt, encoded alone as the pipeline encodes one prompt (its tokens
        left-padded to a multiple of 16)."""
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        own: dict[str, torch.Tensor] = {}
        with torch.no_grad(), diffusers_quiet():
            for p in dict.fromkeys(prompts):
                embeds, _ = self.pipe.encode_prompt([p], do_classifier_free_guidance=False, device=self.text_device,
                                                    max_sequence_length=self.max_sequence_length)
                own[p] = embeds[0]
        return [own[p] for p in prompts]

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their guidance rows, one transformer call per text length (most calls: one); x̂0 per
        branch."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond"))
        texts = [e for group in inputs["cond"] for e in group]
        x_in = self.model_input(x_all, t).to(self.dtype)
        times = self.model_timesteps(t, x_all)
        self.use_adapters()
        out: torch.Tensor | None = None
        for length in dict.fromkeys(e.shape[0] for e in texts):
            rows = [i for i, e in enumerate(texts) if e.shape[0] == length]
            text = torch.stack([texts[i] for i in rows]).to(self.device, self.dtype)
            part = self.runner(x_in[rows], times[rows], x_all.dtype, encoder_hidden_states=text)
            out = part.new_empty((x_all.shape[0], *part.shape[1:])) if out is None else out
            out[rows] = part
        assert out is not None
        return split_guided(self.model_output(out, x_all, t), plan)


__all__ = ["CogView4", "CogView4Schedule"]

"""SANA (SANA 1.0 / 1.5): rectified flow, a linear-attention DiT over a DC-AE's deep latents, Gemma2 for text.

Followed from diffusers' ``SanaPipeline``:

- **Prompts** go through the pipeline's own ``encode_prompt``: lower-cased, the pipeline's *complex human
  instruction* (its default, read from the pipeline's signature, or the adapter's ``complex_human_instruction``)
  put before each prompt, Gemma2's last hidden states over the first token and the last ``max_sequence_length``
  − 1 of the padded text, with the tokenizer's mask; the negative prompt ("" when none is given) without the
  instruction, padded to ``max_sequence_length``. Every row has ``max_sequence_length`` tokens, so source, target
  and negative rows always stack into one call.
- **Guidance** is classifier-free: uncond + w·(cond − uncond), as the pipeline runs it for ``guidance_scale`` > 1.
- **The grid** is the pipeline's scheduler's. SANA ships ``DPMSolverMultistepScheduler`` with flow sigmas: levels
  1 − linspace(1, 1/T, N + 1) shifted by ``flow_shift``, the last (0) dropped, a final σ of 0; the transformer sees
  the integer part of σ·T (the scheduler's int64 timesteps) times ``timestep_scale`` (:class:`SanaSchedule`,
  :meth:`Sana.model_timesteps`). The core's step is first order: it *is* the solver's first-order step (for a flow
  model DPM-Solver++(1) is Euler's step), which the pipeline takes on the first and on the final step; its
  second-order multistep updates in between (from 3 steps on) are not reproduced. A pipeline with
  ``FlowMatchEulerDiscreteScheduler`` (diffusers' own SANA tests) gets that scheduler's grid.
- **The VAE** is a DC-AE (``AutoencoderDC``): deterministic ``.latent`` encodings, scaled by ``scaling_factor``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import IncompatibleModelError
from ..flow import FlowSchedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec
from .pipelines import PromptModel, as_list, check_latents, diffusers_quiet, guided_rows, is_single_file, load_pipeline
from .steps import FlowCoordinates

BASE = "Efficient-Large-Model/Sana_1600M_1024px_diffusers"  # a single transformer file's other parts, by default


@dataclasses.dataclass(frozen=True, eq=False)
class SanaSchedule(FlowSchedule):
    """The grid of SANA's flow DPM-solver: N levels σ_k = shift(s_k), s = reversed(1 − linspace(1, 1/T, N + 1))
    without its last (0), shift(s) = f·s / (1 + (f − 1)·s) with f = ``flow_shift``; then σ = 0. The grid's
    timesteps are σ·T as floats (the core reads σ back from them); the network sees their integer part."""

    def grid(self, steps: int) -> list[float]:  # type: ignore[override]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            from ..errors import ConfigError

            raise ConfigError(f"steps must be a positive integer; got {steps!r}")
        n, shift = self.num_train_timesteps, float(self.config.get("flow_shift", 1.0))
        levels = 1.0 - np.linspace(1, 1 / n, steps + 1)
        sigmas = np.flip(shift * levels / (1 + (shift - 1) * levels))[:-1]
        return [float(t) for t in sigmas * n]

    def fingerprint(self) -> str:
        text = json.dumps(["sana-flow-dpm", self.config], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def sana_schedule(config: Any) -> FlowSchedule:
    """The grid of a SANA pipeline's scheduler: the flow DPM-solver's (:class:`SanaSchedule`), or a flow-matching
    Euler scheduler's own; any other scheduler is refused in one line."""
    cfg = dict(config)
    if cfg.get("use_flow_sigmas"):
        if cfg.get("final_sigmas_type", "zero") != "zero" or cfg.get("use_dynamic_shifting"):
            raise IncompatibleModelError("this SANA scheduler ends above σ = 0 or shifts by the image size; cyclediff "
                                         "takes SANA's flow DPM-solver with final_sigmas_type='zero'")
        base = FlowSchedule.from_flow_config(cfg)
        return SanaSchedule(alpha_bar=base.alpha_bar, final_alpha_bar=1.0, prediction_type="sample",
                            timestep_spacing="linspace", config=base.config)
    if "shift" in cfg and not cfg.get("use_dynamic_shifting"):  # FlowMatchEulerDiscreteScheduler
        return FlowSchedule.from_flow_config(cfg)
    raise IncompatibleModelError("SANA needs a rectified-flow scheduler (its DPMSolverMultistepScheduler with "
                                 "use_flow_sigmas, or FlowMatchEulerDiscreteScheduler); this pipeline's is neither")


class _Transformer(torch.nn.Module):
    """The SANA transformer called as the runner calls a UNet: (B, C, h, w) latents in, the velocity out (the
    first half of the channels of a transformer that also predicts a variance, as the pipeline takes it)."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        out = self.transformer(x, timestep=timesteps, return_dict=False, **kwargs)[0]
        return (out[:, : x.shape[1]] if out.shape[1] == 2 * x.shape[1] else out,)


class Sana(FlowCoordinates, PromptModel):
    """A ``SanaPipeline`` over its DC-AE latents. Conditions: ``prompt``, ``negative_prompt`` (the pipeline's ""
    when none is given), ``guidance_scale`` (classifier-free; 1: none)."""

    kind = "SANA's linear-attention DiT"
    family = "sana"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 300,
                 complex_human_instruction: list[str] | None = None) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "Sana needs a SANA pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        self.runner = UNetRunner(_Transformer(self.transformer))
        self.max_sequence_length = max_sequence_length
        self.instruction = (complex_human_instruction if complex_human_instruction is not None
                            else _default_instruction(pipe))
        self.schedule = sana_schedule(pipe.scheduler.config)
        self.codec = VaeCodec(pipe.vae, downsampling=int(self.transformer.config.patch_size),
                              latent_size=self.sample_shape[1:])

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> Sana:
        """A hub id or a local diffusers folder of SANA, or a single transformer file (diffusers'
        ``from_single_file`` of the transformer; the rest of the pipeline from ``config=`` a local folder or hub id,
        by default SANA 1600M 1024px)."""
        from diffusers import SanaPipeline, SanaTransformer2DModel

        source = str(source)
        base = source
        if is_single_file(source):
            base = str(kwargs.pop("config", None) or BASE)
            kwargs["transformer"] = load_pipeline(SanaTransformer2DModel, source, dtype, None, "SANA transformer",
                                                  config=base, subfolder="transformer")
        return cls(load_pipeline(SanaPipeline, base, dtype, device, "SANA", **kwargs), model_id=source)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = int(self.transformer.config.sample_size)
        return (int(self.transformer.config.in_channels), size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.transformer.config.in_channels), int(self.transformer.config.patch_size))

    def model_timesteps(self, t: float, x: torch.Tensor) -> torch.Tensor:
        """What the pipeline hands the transformer: the scheduler's timestep (the DPM-solver's integer part of σ·T,
        the Euler scheduler's σ·T) times the transformer's ``timestep_scale``."""
        scale = self.transformer.config.get("timestep_scale", 1.0)
        if isinstance(self.schedule, SanaSchedule):
            return torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long) * scale
        return super().model_timesteps(t, x) * scale

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a SANA model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        cond, mask = self._encode(prompts, self.instruction)
        uncond, uncond_mask = self._encode(negatives or [""] * batch_size, None) if w != 1 else (None, None)
        inputs = {"cond": cond, "uncond": uncond, "scale": w, "pooled": mask, "uncond_pooled": uncond_mask}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs=inputs, record=record)

    def _encode(self, prompts: list[str], instruction: list[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gemma2's embeddings of ``prompts`` (with ``instruction`` before each) and their mask, as the pipeline
        encodes a prompt (with its instruction) and its negative prompt (without)."""
        self.use_adapters()  # a LoRA variant's text encoder carries its adapters
        with torch.no_grad(), diffusers_quiet():
            embeds, mask, _, _ = self.pipe.encode_prompt(
                prompts, do_classifier_free_guidance=False, device=self.text_device, clean_caption=False,
                max_sequence_length=self.max_sequence_length, complex_human_instruction=instruction)
        return embeds, mask

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their unconditional rows in one transformer call; x̂0 per branch. The text masks
        travel as the ``pooled`` twins of :func:`guided_rows` (SANA has no pooled projection)."""
        x_all, inputs, plan = stack_branches(branches, lambda c: guided_rows(c, "cond", "pooled"))
        kwargs = {"encoder_hidden_states": torch.cat(inputs["cond"]).to(self.device, self.dtype),
                  "encoder_attention_mask": torch.cat(inputs["pooled"]).to(self.device)}
        self.use_adapters()
        return guided_call(self, x_all, t, plan, **kwargs)


def _default_instruction(pipe: Any) -> list[str] | None:
    """The complex human instruction the pipeline's ``__call__`` puts before prompts by default."""
    default = inspect.signature(type(pipe).__call__).parameters.get("complex_human_instruction")
    value = None if default is None else default.default
    return list(value) if isinstance(value, (list, tuple)) else None


__all__ = ["Sana", "SanaSchedule", "sana_schedule"]

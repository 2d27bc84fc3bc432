"""HiDream-I1 (Full, Dev, Fast): a rectified-flow, mixture-of-experts DiT over 2×2 patches with four text encoders.

Followed from diffusers' ``HiDreamImagePipeline`` (which has no img2img sibling):

- **Prompts** go through the pipeline's own ``encode_prompt``: the pooled projections of its two CLIPs side by
  side, T5's last hidden states and *every* layer's hidden states of Llama-3.1 (stacked (layers, B, tokens, width):
  the batch is their second axis), each padded to ``max_sequence_length`` (128) with no mask reaching the
  transformer. Every prompt has the same lengths, so source, target and negative rows stack into one call. The
  negative prompt is the pipeline's "" when none is given.
- **The transformer** takes the (B, C, h, w) latents (it patchifies them itself, padding non-square ones to its
  ``max_seq`` tokens) and the scheduler's timestep σ·T as it is; its output is the *negative* velocity.
- **Guidance** is classifier-free, uncond + w·(cond − uncond), run as the pipeline runs it only for
  ``guidance_scale`` > 1: at 1 or below (Dev's and Fast's model cards say 0.0) the conditional output alone. The
  guidance-distilled Dev and Fast cannot be told from Full by their files, and the pipeline does not refuse a
  scale for them: nor does this adapter (their cards' 0.0 is no guidance here too).
- **The grid** is the scheduler's. Dev and Fast ship ``FlowMatchEulerDiscreteScheduler`` (shift 6 / 3; the
  pipeline's μ, from the transformer's ``max_seq``, only for a scheduler that shifts dynamically): the core's step
  is its step. Full ships ``UniPCMultistepScheduler`` with flow sigmas: levels linspace(1, 1/T, N + 1) without the
  last, shifted by ``flow_shift``, the first lowered by 1e-6, then σ = 0; the network sees the integer part of σ·T
  (:class:`UniPCFlowSchedule`). The core's first-order step is UniPC's first step and its final step to σ = 0
  (which reads the x̂0 of the sample before UniPC's corrector moves it): at 1 and 2 steps a seed gives the
  pipeline's image. From 3 steps on UniPC's corrector and second-order predictor are not reproduced (its grid is;
  ``FlowMatchEulerDiscreteScheduler`` swapped into the pipeline gives the core's steps exactly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ..flow import FlowSchedule, UniPCFlowSchedule
from ._accel import UNetRunner
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import VaeCodec
from .pipelines import PromptModel, as_list, check_latents, diffusers_quiet, is_single_file, load_pipeline
from .steps import FlowCoordinates

BASE = "HiDream-ai/HiDream-I1-Dev"  # a single transformer file's other parts (diffusers' own choice), by default
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"  # the Llama the HiDream-I1 repositories do not hold


def hidream_schedule(config: Any, mu: float) -> FlowSchedule:
    """The grid of a HiDream pipeline's scheduler: UniPC with flow sigmas (:class:`UniPCFlowSchedule`) or a
    flow-matching Euler scheduler's own (with the pipeline's ``mu`` when it shifts dynamically); any other is
    refused in one line."""
    cfg = dict(config)
    if cfg.get("use_flow_sigmas"):
        odd = [k for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_dynamic_shifting",
                           "shift_terminal") if cfg.get(k)]
        if odd or cfg.get("final_sigmas_type", "zero") != "zero":
            raise IncompatibleModelError(f"this UniPC scheduler ({', '.join(odd) or 'final σ above 0'}) is not "
                                         "HiDream-I1-Full's; cyclediff takes its flow sigmas ending at σ = 0")
        base = FlowSchedule.from_flow_config(cfg)
        return UniPCFlowSchedule(alpha_bar=base.alpha_bar, final_alpha_bar=1.0, prediction_type="sample",
                                 timestep_spacing="linspace", config=base.config)
    if "shift" in cfg:  # FlowMatchEulerDiscreteScheduler
        return FlowSchedule.from_flow_config(cfg, mu=mu if cfg.get("use_dynamic_shifting") else None)
    raise IncompatibleModelError("HiDream needs a rectified-flow scheduler (UniPCMultistepScheduler with "
                                 "use_flow_sigmas, or FlowMatchEulerDiscreteScheduler); this pipeline's is neither")


class _NegatedTransformer(torch.nn.Module):
    """The HiDream transformer called as the runner calls a UNet: (B, C, h, w) latents and the scheduler's
    timesteps in, the velocity (the network's output negated) out."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, return_dict: bool = False, **kwargs: Any) -> Any:
        return (-self.transformer(hidden_states=x, timesteps=timesteps, return_dict=False, **kwargs)[0],)


class HiDreamImage(FlowCoordinates, PromptModel):
    """A ``HiDreamImagePipeline`` over its VAE latents. Conditions: ``prompt``, ``negative_prompt`` (the empty
    prompt when none is given), ``guidance_scale`` (classifier-free above 1, as the pipeline; 1 or below: none)."""

    kind = "HiDream-I1's mixture-of-experts transformer"
    family = "hidream"  # its record in models/families.py

    def __init__(self, pipe: Any, *, model_id: str | None = None, max_sequence_length: int = 128) -> None:
        self._adopt(pipe, ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3", "text_encoder_4",
                           "tokenizer", "tokenizer_2", "tokenizer_3", "tokenizer_4", "scheduler"),
                    "HiDreamImage needs a HiDream-I1 pipeline", model_id)
        self.transformer = self.network = pipe.transformer
        self.runner = UNetRunner(_NegatedTransformer(self.transformer))
        self.max_sequence_length = max_sequence_length
        from diffusers.pipelines.hidream_image.pipeline_hidream_image import calculate_shift

        self.schedule = hidream_schedule(pipe.scheduler.config, calculate_shift(self.transformer.max_seq))
        self.codec = VaeCodec(pipe.vae, downsampling=2, latent_size=self.sample_shape[1:])  # 2×2 patches

    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> HiDreamImage:
        """A hub id or a local diffusers folder of HiDream-I1, or a single transformer file (the rest of the
        pipeline from ``config=`` a local folder or hub id, by default HiDream-I1-Dev as diffusers chooses). Where
        the pipeline holds no Llama (the HiDream-ai repositories do not), ``tokenizer_4`` / ``text_encoder_4`` come
        from Llama-3.1-8B-Instruct unless given."""
        from diffusers import HiDreamImagePipeline, HiDreamImageTransformer2DModel

        source = str(source)
        base = source
        if is_single_file(source):
            base = str(kwargs.pop("config", None) or BASE)
            kwargs["transformer"] = load_pipeline(HiDreamImageTransformer2DModel, source, dtype, None,
                                                  "HiDream transformer", config=base, subfolder="transformer")
        if "text_encoder_4" not in kwargs and not _holds_llama(HiDreamImagePipeline, base):
            kwargs.update(_llama(dtype))
        return cls(load_pipeline(HiDreamImagePipeline, base, dtype, device, "HiDream-I1", **kwargs), model_id=source)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = 2 * (int(self.pipe.default_sample_size) * int(self.pipe.vae_scale_factor)
                    // (int(self.pipe.vae_scale_factor) * 2))
        return (int(self.transformer.config.in_channels), size, size)

    def check_sample(self, x: torch.Tensor) -> None:
        check_latents(x, int(self.transformer.config.in_channels), 2)
        h, w = x.shape[-2:]
        if h != w and (h // 2) * (w // 2) > self.transformer.max_seq:
            raise IncompatibleModelError(
                f"HiDream's transformer takes non-square latents of at most {self.transformer.max_seq} 2×2 patches; "
                f"got {h}×{w} ({(h // 2) * (w // 2)}). Use a smaller or a square image")

    def model_timesteps(self, t: float, x: torch.Tensor) -> torch.Tensor:
        """What the pipeline hands the transformer: UniPC's integer timestep, the Euler scheduler's σ·T."""
        if isinstance(self.schedule, UniPCFlowSchedule):
            return torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        return super().model_timesteps(t, x)

    # ------------------------------------------------------------------ conditioning
    def prepare_condition(self, batch_size: int, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a HiDream-I1 model")
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        given = condition_scale(guidance_scale)
        w = given if given > 1 else 1.0  # the pipeline guides for a scale above 1 only
        inputs: dict[str, Any] = {"cond": self._encode(prompts), "scale": w}
        inputs["uncond"] = self._encode(negatives or [""] * batch_size) if w != 1 else None
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": given}
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs=inputs, record=record)

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """The pipeline's embeddings of ``prompts``: T5's (B, tokens, width), Llama's (layers, B, tokens, width) and
        the two CLIPs' pooled projections (B, width₁ + width₂)."""
        self.use_adapters()  # a LoRA variant's text encoders carry its adapters
        with torch.no_grad(), diffusers_quiet():
            t5, _, llama, _, pooled, _ = self.pipe.encode_prompt(
                list(prompts), device=self.text_device, do_classifier_free_guidance=False,
                max_sequence_length=self.max_sequence_length)
        return {"t5": t5, "llama": llama, "pooled": pooled}

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        """All branches and their negative rows in one transformer call; x̂0 per branch."""
        x_all, inputs, plan = stack_branches(branches, _rows)
        texts = inputs["text"]
        self.use_adapters()
        return guided_call(
            self, x_all, t, plan,
            encoder_hidden_states_t5=torch.cat([e["t5"] for e in texts]).to(self.device, self.dtype),
            encoder_hidden_states_llama3=torch.cat([e["llama"] for e in texts], dim=1).to(self.device, self.dtype),
            pooled_embeds=torch.cat([e["pooled"] for e in texts]).to(self.device, self.dtype))


def _rows(c: Condition) -> tuple[float, list[dict[str, Any]]]:
    """A branch's row groups: the prompt's alone without guidance, else (negative, prompt)."""
    w, i = c.inputs["scale"], c.inputs
    return (w, [{"text": i["cond"]}]) if w == 1 else (w, [{"text": i["uncond"]}, {"text": i["cond"]}])


def _holds_llama(pipe_cls: Any, source: str) -> bool:
    """Whether the pipeline at ``source`` names a Llama of its own (its model_index.json's text_encoder_4)."""
    try:
        with diffusers_quiet():
            index = pipe_cls.load_config(source)
    except (OSError, ValueError):
        return True  # let the pipeline's own loading say what is wrong
    entry = index.get("text_encoder_4")
    return isinstance(entry, (list, tuple)) and entry[0] is not None


def _llama(dtype: torch.dtype | None) -> dict[str, Any]:
    """Llama-3.1-8B-Instruct's tokenizer and model (every layer's hidden states), as the pipeline's example loads
    them; one error naming the fix when they cannot be had."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    try:
        with diffusers_quiet():
            return {"tokenizer_4": AutoTokenizer.from_pretrained(LLAMA),
                    "text_encoder_4": LlamaForCausalLM.from_pretrained(
                        LLAMA, output_hidden_states=True, output_attentions=True,
                        **({"torch_dtype": dtype} if dtype is not None else {}))}
    except (OSError, ValueError) as err:
        raise CycleDiffError(f"HiDream-I1 needs Llama-3.1-8B-Instruct ({LLAMA}, a gated hub repository: accept its "
                             "licence and log in), or a pipeline folder with tokenizer_4 / text_encoder_4; it could "
                             f"not be loaded: {str(err).splitlines()[0]}") from err


__all__ = ["HiDreamImage", "hidream_schedule"]

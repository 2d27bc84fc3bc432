"""The denoiser interface the sampler core sees; adapters in this package wrap foreign models to fit it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import IncompatibleModelError
from ..schedule import Schedule


@dataclass(frozen=True)
class Condition:
    """A prepared condition: ``inputs`` go to the model on every step, ``record`` is its JSON form.

    ``record`` holds one entry per sample where a value differs per sample, and is what a :class:`Latent` stores;
    passing ``**record`` back to ``prepare_condition`` rebuilds the same condition.
    """

    inputs: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Denoiser(Protocol):
    """A diffusion model as the sampler core sees it."""

    schedule: Schedule
    model_id: str | None
    # (low, high) of the samples the model works on, checked by encode; None for unbounded (e.g. VAE latents).
    data_range: tuple[float, float] | None

    def check_sample(self, x: torch.Tensor) -> None:
        """Raise IncompatibleModelError (naming the fix) when the model cannot take samples shaped like ``x``."""

    def schedule_for(self, shape: tuple[int, ...]) -> Schedule:
        """The schedule whose grid the model samples on for samples of ``shape`` (FLUX shifts its grid by the
        image size; most models have one grid for every shape)."""

    def prepare_condition(self, batch_size: int, **condition: Any) -> Condition:
        """Validate and prepare the condition once (labels, prompts); raise a clear error for bad input."""

    def __call__(self, x_t: torch.Tensor, t: int, condition: Condition) -> torch.Tensor:
        """The raw model output at x_t and timestep t (ε, v or x0 by the schedule's prediction type)."""


@runtime_checkable
class BatchedDenoiser(Denoiser, Protocol):
    """A denoiser that evaluates several (x_t, condition) branches in one model call (editing's source and
    target branches share the UNet)."""

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: int) -> list[torch.Tensor]:
        """One output per branch, from one batched call."""


@runtime_checkable
class Model(BatchedDenoiser, Protocol):
    """What the applications (edit, translate, guide, the CLI, jobs, the web app) use of a model: a batched
    denoiser with a codec (images ↔ samples), its condition keywords, device and default sample shape."""

    codec: Any  # a models.codec.Codec
    kind: str  # what the model is, in words (for messages: "SD3's joint attention (MMDiT)")
    condition_keys: tuple[str, ...]
    device: torch.device
    sample_shape: tuple[int, int, int]


def condition_scale(guidance_scale: Any) -> float:
    """A guidance scale as a float, refused unless finite and ≥ 0."""
    from ..settings import check_setting

    return check_setting("guidance_scale", guidance_scale, required=True)


def refuse_unknown(unknown: dict[str, Any], valid: tuple[str, ...], what: str) -> None:
    """One clear error for condition keywords a model does not take (a typo, or a text condition for a class
    model), naming the ones it does."""
    if unknown:
        raise IncompatibleModelError(
            f"{what} takes no condition {', '.join(map(repr, sorted(unknown)))}; it takes {', '.join(valid)}"
        )


def split_guided(out: torch.Tensor, plan: list[tuple[int, float, int]],
                 rescale: list[float] | None = None) -> list[torch.Tensor]:
    """Undo a batched call over guidance branches: ``plan`` lists (rows per image: 1 or 2, scale w, batch) per
    branch; a two-part branch is (unconditional, conditional) and becomes ε_u + w (ε_c − ε_u). ``rescale``: per
    branch φ (0: none), the guided output's std moved towards the conditional one's by φ, as the
    ``guidance_rescale`` of LTX-Video's and HunyuanVideo 1.5's pipelines (diffusers' ``rescale_noise_cfg``)."""
    results, row = [], 0
    for i, (parts, w, batch) in enumerate(plan):
        chunks = out[row: row + parts * batch].split(batch)
        row += parts * batch
        guided = chunks[0] if parts == 1 else chunks[0] + w * (chunks[1] - chunks[0])
        phi = rescale[i] if rescale else 0.0
        if parts == 2 and phi > 0:
            from diffusers.guiders.guider_utils import rescale_noise_cfg

            guided = rescale_noise_cfg(guided, chunks[1], phi)
        results.append(guided)
    return results


@runtime_checkable
class AttentionEditable(Protocol):
    """Text-conditioned models whose target pass can reuse the source pass's attention maps (Prompt-to-Prompt)."""

    def attention_edit(self, edit: Any, sources: list[str], targets: list[str], timesteps: list[int], *,
                       trace: bool = False) -> Any:
        """A context manager: batched source / target calls inside it edit the target's attention."""


def stack_branches(branches: list[tuple[torch.Tensor, Condition]],
                   rows: Any) -> tuple[torch.Tensor, dict[str, list[Any]], list[tuple[int, float, int]]]:
    """The one branch-batching loop of every adapter: ``rows(condition)`` gives (guidance scale w, the network
    inputs of each row group: one dict for a plain branch, (unconditional, conditional) for a guided one).
    Returns (every branch's x_t stacked once per row group, each input name's values in the same order, the plan
    :func:`split_guided` undoes)."""
    xs, inputs, plan = [], {}, []
    for x, c in branches:
        w, groups = rows(c)
        for group in groups:
            xs.append(x)
            for name, value in group.items():
                inputs.setdefault(name, []).append(value)
        plan.append((len(groups), w, x.shape[0]))
    return torch.cat(xs), inputs, plan


def guided_call(model: Any, x_all: torch.Tensor, t: float, plan: list[tuple[int, float, int]], *,
                eager: bool = False, **kwargs: Any) -> list[torch.Tensor]:
    """One network call over stacked branches through the model's runner (its compiled / offload path), read as
    the schedule reads it and split back into one guided output per branch."""
    out = model.runner(model.model_input(x_all, t).to(model.dtype), model.model_timesteps(t, x_all), x_all.dtype,
                       eager=eager, **kwargs)
    return split_guided(model.model_output(out, x_all, t), plan)

"""Unpaired image-to-image translation between two diffusion models that share a latent space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .._noise import Generators, check_generators
from ..baselines import sdedit
from ..errors import IncompatibleModelError
from ..latent import Latent
from ..masks import blend, to_sample_mask
from ..models.base import Model
from ..models.codec import check_same_space, to_images, to_model_space
from ..models.conditions import as_condition
from ..options import Options, options_of
from ..settings import TRANSLATE
from .head import carry, moved_keywords, outside_kept
from .images import PilImages, for_model


@dataclass(frozen=True)
class TranslateResult(PilImages):
    """``images``: (B, C, H, W) in [0, 1]; ``latent``: the CycleDiffusion latent (None for the baselines)."""

    images: torch.Tensor
    latent: Latent | None
    mask: torch.Tensor | None = None  # the mask used, at image size


@moved_keywords
@torch.no_grad()
def translate(
    images: Any,
    source: Model,
    target: Model,
    *,
    strength: float = TRANSLATE.strength,
    steps: int = TRANSLATE.steps,
    refine_steps: int = TRANSLATE.refine_steps,
    method: str | Options = TRANSLATE.method,
    generator: Generators = None,
    source_condition: Any = None,
    target_condition: Any = None,
    progress: bool = False,
) -> TranslateResult:
    """Translate images (a (B, C, H, W) tensor in [0, 1] or PIL images) from ``source``'s domain to ``target``'s.

    ``method``: a name or a method's options (see :func:`cyclediff.edit`). CycleDiffusion encodes with the
    source and decodes the same latent with the target, one source and one target evaluation per step (a single
    batched call when both are one model); edit-friendly the same with the edit-friendly inversion's draws; FlowEdit
    between two rectified-flow models (or two conditions of one); SDEdit and DDIB are the baselines on the same
    grid. ``refine_steps`` = r > 0 re-noises the output to the r-th last step of the grid and denoises it with the
    target at η = 1 (the paper's final refinement). Conditions: a class label (or one per image), a prompt, or a
    dict of condition keywords. Models whose timestep grids or sample shapes differ are refused; different β
    schedules on the same grid are fine. A mask (``CycleDiffusion(mask=…)``: (B, 1, H, W) in [0, 1] at image size,
    or ``"auto"``): only the masked region changes; outside a binary mask the output is the input's own pixels.
    """
    options = options_of(method)
    if getattr(options, "attention", None) is not None:
        raise IncompatibleModelError("attention control works in edit (two prompts of one text model); translate "
                                     "has none")
    check_same_space(source, target)
    if not isinstance(refine_steps, int) or not 0 <= refine_steps <= steps:
        raise IncompatibleModelError(f"refine_steps must be an integer in 0..steps ({steps}); got {refine_steps!r}")
    x = for_model(source, images).to(source.device)
    gens = check_generators(generator, x.shape[0])
    x0 = to_model_space(source, x, gens)
    conditions = {"source_condition": as_condition(source_condition),
                  "target_condition": as_condition(target_condition)}
    out, latent, shown = carry(options, x0, tuple(x.shape[2:]), source, target, steps=steps, strength=strength,
                               generator=gens, progress=progress, **conditions)
    if refine_steps:
        if target.data_range is not None:
            out = out.clamp(*target.data_range)
        out = sdedit(out, target, eta=1.0, generator=gens,  # not a default: the paper's refinement is at η = 1
                     target_condition=conditions["target_condition"],
                     timesteps=target.schedule_for(tuple(out.shape)).grid(steps)[-refine_steps:], progress=progress)
        if shown is not None:  # refinement changes nothing outside the mask either
            out = blend(to_sample_mask(shown, tuple(x0.shape[2:])), out, x0)
    return TranslateResult(images=outside_kept(to_images(target, out), x, shown), latent=latent, mask=shown)

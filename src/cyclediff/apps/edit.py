"""Zero-shot text-guided editing: encode with the source prompt, decode the same latent with the target prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .._noise import Generators, check_generators
from ..defaults import EDIT
from ..latent import Latent
from ..models.base import Model
from ..models.codec import to_images, to_model_space
from .images import as_image_batch
from .methods import check_method, run_method


@dataclass(frozen=True)
class EditResult:
    """``images``: (B, 3, H, W) in [0, 1]; ``latent``: the source encoding (decode it again to edit again;
    None for the baselines)."""

    images: torch.Tensor
    latent: Latent | None


@torch.no_grad()
def edit(
    model: Model,
    images: Any,
    *,
    source_prompt: str | list[str],
    prompt: str | list[str],
    strength: float = EDIT["strength"],
    steps: int = EDIT["steps"],
    eta: float = EDIT["eta"],
    guidance_scale: float = EDIT["guidance_scale"],
    source_guidance_scale: float = EDIT["source_guidance_scale"],
    negative_prompt: str | list[str] | None = None,
    generator: Generators = None,
    method: str = EDIT["method"],
    progress: bool = False,
) -> EditResult:
    """Edit images (a (B, 3, H, W) tensor in [0, 1] or PIL images) from ``source_prompt`` to ``prompt``.

    CycleDiffusion: the images' VAE latents are encoded with the source prompt at ``source_guidance_scale``
    and decoded with the target prompt at ``guidance_scale``, step-interleaved, with one batched UNet call per
    step; a scale of 1 skips the unconditional evaluation (the paper's setting: three evaluations per step).
    Prompts are one string or one per image; ``generator`` is one torch.Generator or one per image (then each
    result depends on its own generator alone). ``method="sdedit"`` (noise, then sample with the target prompt
    and new noise) and ``"ddib"`` (DDIM-invert with the source prompt, regenerate with the target prompt) are
    the baselines, on the same grid and guidance.
    """
    check_method(method)
    x = as_image_batch(images).to(model.device)
    gens = check_generators(generator, x.shape[0])
    x0 = to_model_space(model, x, gens)
    out, latent = run_method(
        method, x0, model, model, steps=steps, strength=strength, eta=eta, generator=gens, progress=progress,
        source_condition={"prompt": source_prompt, "guidance_scale": source_guidance_scale},
        target_condition={"prompt": prompt, "negative_prompt": negative_prompt, "guidance_scale": guidance_scale},
    )
    return EditResult(images=to_images(model, out), latent=latent)

"""Zero-shot text-guided editing: encode with the source prompt, decode the same latent with the target prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .._noise import Generators, check_generators
from ..errors import CycleDiffError
from ..latent import Latent
from ..models.base import AttentionEditable, Model
from ..models.codec import to_images, to_model_space
from ..settings import EDIT, MASKED_METHODS, check_setting
from .images import PilImages, for_model
from .methods import resolve_mask, run_method


@dataclass(frozen=True)
class EditResult(PilImages):
    """``images``: (B, 3, H, W) in [0, 1] (B·k with k target prompts for one image); ``latent``: the source
    encoding (decode it again to edit again; None for the baselines); ``mask``: the mask used, (·, 1, H, W) at
    image size (None without one)."""

    images: torch.Tensor
    latent: Latent | None
    mask: torch.Tensor | None = None


@torch.no_grad()
def edit(
    model: Model,
    images: Any,
    *,
    source_prompt: str | list[str] | None = None,
    prompt: str | list[str] | None = None,
    source_class: int | list[int] | None = None,
    target_class: int | list[int] | None = None,
    strength: float = EDIT.strength,
    steps: int = EDIT.steps,
    eta: float = EDIT.eta,
    guidance_scale: float = EDIT.guidance_scale,
    source_guidance_scale: float = EDIT.source_guidance_scale,
    negative_prompt: str | list[str] | None = None,
    generator: Generators = None,
    method: str = EDIT.method,
    mask: Any = None,
    mask_threshold: float = EDIT.mask_threshold,
    attention: Any = None,
    n_avg: int = EDIT.n_avg, n_min: int = EDIT.n_min, progress: bool = False,
) -> EditResult:
    """Edit images (a (B, C, H, W) tensor in [0, 1] or PIL images) from ``source_prompt`` to ``prompt`` (a text
    model) or from ``source_class`` to ``target_class`` (a class-conditional one: its translation to itself).

    CycleDiffusion: encoded under the source condition, decoded under the target's, one batched network call per
    step. Prompts, labels, generators: one, or one per image. ``method``: "edit-friendly", "flowedit" (``n_avg``,
    ``n_min``), "sdedit", "ddib". **Many targets**: one image, k prompts: encoded once, decoded under each (result
    i equals ``edit`` with ``prompt[i]`` alone). **Masks** (the encoders' methods): (B, 1, H, W) in [0, 1] at image
    size, or ``"auto"`` (where the conditions' predictions disagree, at ``mask_threshold``). **Attention control**
    (CycleDiffusion on SD): ``attention="refine"`` / ``"replace"`` or an ``AttentionEdit`` (Prompt-to-Prompt).
    """
    check_setting("method", method, required=True)
    if source_class is not None or target_class is not None or "prompt" not in model.condition_keys:
        return _class_edit(model, images, source_prompt, prompt, source_class, target_class, attention,
                           strength=strength, steps=steps, eta=eta, guidance_scale=guidance_scale,
                           generator=generator, method=method, mask=mask, mask_threshold=mask_threshold, n_avg=n_avg,
                           n_min=n_min, progress=progress)
    _check_prompts(source_prompt, prompt)
    x = for_model(model, images).to(model.device)
    gens = check_generators(generator, x.shape[0])
    copies = len(prompt) if x.shape[0] == 1 and isinstance(prompt, (list, tuple)) and len(prompt) > 1 else 1
    if copies > 1 and method not in MASKED_METHODS:  # no shared source pass: one edit per target
        return _each_target(model, x, gens, prompt, negative_prompt, source_prompt=source_prompt, strength=strength,
                            steps=steps, eta=eta, guidance_scale=guidance_scale, n_avg=n_avg, n_min=n_min,
                            source_guidance_scale=source_guidance_scale, method=method, mask=mask, progress=progress)
    x0 = to_model_space(model, x, gens)
    source_condition = {"prompt": source_prompt, "guidance_scale": source_guidance_scale}
    if method == "flowedit" and negative_prompt is not None:  # FlowEdit's unconditional rows are the negative's
        source_condition["negative_prompt"] = negative_prompt
    target_condition = {"prompt": prompt, "negative_prompt": negative_prompt, "guidance_scale": guidance_scale}
    grid = model.schedule_for(tuple(x0.shape)).timesteps(steps, strength)  # the mask's and the attention's
    keep, shown = resolve_mask(mask, x0, tuple(x.shape[2:]), model, model, method=method, timesteps=grid,
                               generator=gens, source_condition=source_condition,
                               target_condition=target_condition, threshold=mask_threshold, copies=copies)
    with _attention(model, attention, method, source_prompt, prompt, x.shape[0] * copies, grid):
        out, latent = run_method(method, x0, model, model, steps=steps, strength=strength, eta=eta, generator=gens,
                                 progress=progress, source_condition=source_condition,
                                 target_condition=target_condition, mask=keep, copies=copies, n_avg=n_avg,
                                 n_min=n_min)
    return EditResult(images=to_images(model, out), latent=latent, mask=shown)


def _check_prompts(source_prompt: Any, prompt: Any) -> None:
    if source_prompt is None or prompt is None:
        raise CycleDiffError("edit a text-conditioned model with source_prompt= (what the images show) and prompt= "
                             "(what they should show)")


def _class_edit(model: Model, images: Any, source_prompt: Any, prompt: Any, source_class: Any, target_class: Any,
                attention: Any, **settings: Any) -> EditResult:
    """An edit between two class labels of one class-conditional model: its translation to itself."""
    from .translate import translate

    if "class_labels" not in model.condition_keys:
        raise CycleDiffError(f"class labels need a class-conditional model; this is {model.kind}: give "
                             "source_prompt= and prompt=")
    if source_prompt is not None or prompt is not None:
        raise CycleDiffError("this model is class-conditional (no text encoder): give source_class= and "
                             "target_class= instead of prompts")
    if source_class is None or target_class is None:
        raise CycleDiffError("a class edit needs both source_class= (what the images show) and target_class=")
    if attention is not None:
        raise CycleDiffError("attention control needs a text-conditioned UNet model; class edits have no prompts")
    scale = settings.pop("guidance_scale")
    out = translate(images, model, model, source_condition={"class_labels": source_class},
                    target_condition={"class_labels": target_class, "guidance_scale": scale}, **settings)
    return EditResult(images=out.images, latent=out.latent, mask=out.mask)


def _each_target(model: Model, x: torch.Tensor, gens: Any, prompts: list[str], negative: Any,
                 **settings: Any) -> EditResult:
    """A baseline's edit under each of several target prompts, each from copies of the same generators."""
    from .._noise import clone_generators

    runs = [edit(model, x, prompt=p, negative_prompt=negative[i] if isinstance(negative, list) else negative,
                 generator=clone_generators(gens), **settings) for i, p in enumerate(prompts)]
    return EditResult(images=torch.cat([r.images for r in runs]), latent=None)


def _attention(model: Model, attention: Any, method: str, sources: Any, targets: Any, rows: int,
               timesteps: list[int]) -> Any:
    """The attention control's context for ``rows`` target rows (a no-op without one)."""
    import contextlib

    if attention is None:
        return contextlib.nullcontext()
    if method != "cyclediffusion":
        raise CycleDiffError(f"attention control works with method cyclediffusion; not with {method}")
    # attention control exists only where an adapter implements it (SD 1.x / 2.x / XL)
    if not isinstance(model, AttentionEditable):
        raise CycleDiffError("attention control needs a text-conditioned UNet model (Stable Diffusion 1.x / 2.x / XL); "
                             f"this is {model.kind}")
    targets = [targets] * rows if isinstance(targets, str) else list(targets)
    sources = [sources] * rows if isinstance(sources, str) else list(sources)
    copies = rows // max(len(sources), 1)
    sources = [s for s in sources for _ in range(copies)] if len(sources) != rows else sources
    return model.attention_edit(attention, sources, targets, list(timesteps))

"""Zero-shot text-guided editing: encode with the source prompt, decode the same latent with the target prompt."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .._noise import Generators, check_generators
from ..checks import is_int
from ..errors import CycleDiffError
from ..latent import Latent
from ..models.base import AttentionEditable, Model
from ..models.codec import to_images, to_model_space
from ..models.conditions import family_condition
from ..options import Options, options_of
from ..settings import EDIT
from .head import carry, moved_keywords, outside_kept
from .images import PilImages, for_model


@dataclass(frozen=True)
class EditResult(PilImages):
    """``images``: (B, 3, H, W) in [0, 1] (B·k with k target prompts for one image); ``latent``: the source
    encoding (decode it again to edit again; None for the baselines); ``mask``: the mask used, (·, 1, H, W) at
    image size (None without one)."""

    images: torch.Tensor
    latent: Latent | None
    mask: torch.Tensor | None = None


@moved_keywords
@torch.no_grad()
def edit(
    model: Model,
    images: Any,
    *,
    source_prompt: str | list[str] | int | list[int] | Mapping[str, Any] | None = None,
    prompt: str | list[str] | int | list[int] | Mapping[str, Any] | None = None,
    negative_prompt: str | list[str] | None = None,
    strength: float = EDIT.strength,
    steps: int = EDIT.steps,
    guidance_scale: float = EDIT.guidance_scale,
    source_guidance_scale: float = EDIT.source_guidance_scale,
    method: str | Options = EDIT.method,
    generator: Generators = None,
    progress: bool = False,
) -> EditResult:
    """Edit images (a (B, C, H, W) tensor in [0, 1] or PIL images) from ``source_prompt`` to ``prompt`` — texts
    for a text model; class labels for a class-conditional one (its translation to itself).

    CycleDiffusion: encoded under the source condition, decoded under the target's, one batched network call per
    step. Prompts, labels, generators: one, or one per image. ``method``: a name ("cyclediffusion",
    "edit-friendly", "flowedit", "sdedit", "ddib") or a method's options, each with its own knobs:
    ``CycleDiffusion(eta=, mask=, mask_threshold=, attention=)``, ``EditFriendly(eta=, mask=, mask_threshold=)``,
    ``FlowEdit(n_avg=, n_min=)``, ``SDEdit(eta=)``, ``DDIB()``. **Many targets**: one image, k prompts: encoded
    once, decoded under each (result i equals ``edit`` with ``prompt[i]`` alone). **Masks** (the methods that keep
    the source trajectory): (B, 1, H, W) in [0, 1] at image size, or ``"auto"`` (where the conditions'
    predictions disagree, at ``mask_threshold``). **Attention control** (CycleDiffusion on SD):
    ``CycleDiffusion(attention="refine")`` / ``"replace"`` or an ``AttentionEdit`` (Prompt-to-Prompt). **A
    family's own condition keywords**: a prompt may be a dict of them with its text under ``"prompt"``, e.g.
    ``prompt={"prompt": "a fox running", "guidance_scale_2": 3}`` for Wan 2.2's low-noise stage (each side only
    gets what it is given: a source keeps its family's defaults).
    """
    source_prompt, source_own = _own_keys(model, source_prompt, "source")
    prompt, target_own = _own_keys(model, prompt, "target")
    options = options_of(method)
    if _is_label(source_prompt) or _is_label(prompt) or "prompt" not in model.condition_keys:
        return _class_edit(model, images, source_prompt, prompt, options, strength=strength, steps=steps,
                           guidance_scale=guidance_scale, generator=generator, progress=progress)
    _check_prompts(source_prompt, prompt)
    x = for_model(model, images).to(model.device)
    gens = check_generators(generator, x.shape[0])
    copies = len(prompt) if x.shape[0] == 1 and isinstance(prompt, (list, tuple)) and len(prompt) > 1 else 1
    if copies > 1 and not options.keeps_source():  # no shared source pass: one edit per target
        return _one_per_target(lambda i, g: edit(
            model, x, source_prompt={"prompt": source_prompt, **source_own}, prompt={"prompt": prompt[i], **target_own},
            negative_prompt=negative_prompt[i] if isinstance(negative_prompt, list) else negative_prompt,
            strength=strength, steps=steps, guidance_scale=guidance_scale, source_guidance_scale=source_guidance_scale,
            method=options, generator=g, progress=progress), range(copies), gens)
    source_condition = {"prompt": source_prompt, "guidance_scale": source_guidance_scale, **source_own}
    if options.negative_on_source and negative_prompt is not None:  # FlowEdit's unconditional rows
        source_condition["negative_prompt"] = negative_prompt
    target_condition = {"prompt": prompt, "negative_prompt": negative_prompt, "guidance_scale": guidance_scale,
                        **target_own}
    attention = getattr(options, "attention", None)
    around = None if attention is None else functools.partial(
        _attention, model, attention, source_prompt, prompt, x.shape[0] * copies)
    return _carried(model, x, gens, options, source_condition, target_condition, copies=copies, steps=steps,
                    strength=strength, progress=progress, around=around)


def _carried(model: Model, x: torch.Tensor, gens: Any, options: Options, source_condition: dict[str, Any],
             target_condition: dict[str, Any], *, copies: int, **head: Any) -> EditResult:
    """``x`` encoded once under the source condition and decoded under the target's (``copies`` targets per input,
    input-major), the input's own pixels outside the mask."""
    x0 = to_model_space(model, x, gens)
    out, latent, shown = carry(options, x0, tuple(x.shape[2:]), model, model, generator=gens,
                               source_condition=source_condition, target_condition=target_condition, copies=copies,
                               **head)
    images = outside_kept(to_images(model, out), x.repeat_interleave(copies, dim=0), shown)
    return EditResult(images=images, latent=latent, mask=shown)


def _one_per_target(edit_one: Callable[[Any, Any], EditResult], targets: Iterable[Any], gens: Any) -> EditResult:
    """Many targets for a method that keeps no source pass: ``edit_one(target, generators)`` for each, each from
    copies of the same generators (result i equals the edit to target i alone)."""
    from .._noise import clone_generators

    return EditResult(images=torch.cat([edit_one(t, clone_generators(gens)).images for t in targets]), latent=None)


def _own_keys(model: Model, value: Any, side: str) -> tuple[Any, dict[str, Any]]:
    """A prompt given as a dict of condition keywords: its text (``"prompt"``) and the family's own keywords,
    checked against the model; anything else is the prompt itself, with none."""
    if not isinstance(value, Mapping):
        return value, {}
    own = {k: v for k, v in value.items() if k != "prompt"}
    if value.get("prompt") is None:
        raise CycleDiffError(f"a {side} prompt given as a dict of condition keywords needs its text under 'prompt'; "
                             f"got the keys {sorted(value)}")
    return value["prompt"], family_condition(model, own, side=side)


def _is_label(value: Any) -> bool:
    return is_int(value) or (isinstance(value, (list, tuple)) and bool(value) and all(is_int(v) for v in value))


def _check_prompts(source_prompt: Any, prompt: Any) -> None:
    if source_prompt is None or prompt is None:
        raise CycleDiffError("edit a text-conditioned model with source_prompt= (what the images show) and prompt= "
                             "(what they should show)")


def _class_edit(model: Model, images: Any, source: Any, target: Any, options: Options, *, guidance_scale: float,
                **head: Any) -> EditResult:
    """An edit between two class labels of one class-conditional model: its translation to itself."""
    from .translate import translate

    if "class_labels" not in model.condition_keys:
        raise CycleDiffError(f"class labels need a class-conditional model; this is {model.kind}: give "
                             "source_prompt= and prompt= as texts")
    if not _is_label(source) or not _is_label(target):
        raise CycleDiffError("this model is class-conditional (no text encoder): give class labels as the "
                             "conditions, source_prompt=3 (what the images show) and prompt=8")
    if getattr(options, "attention", None) is not None:
        raise CycleDiffError("attention control needs a text-conditioned UNet model; class edits have no prompts")
    x = for_model(model, images).to(model.device)
    one_source = source[0] if isinstance(source, (list, tuple)) and len(source) == 1 else source
    if x.shape[0] == 1 and isinstance(target, (list, tuple)) and len(target) > 1 and is_int(one_source):
        return _class_targets(model, x, source, list(target), options, guidance_scale=guidance_scale, **head)
    out = translate(x, model, model, source_condition={"class_labels": source},
                    target_condition={"class_labels": target, "guidance_scale": guidance_scale}, method=options,
                    **head)
    return EditResult(images=out.images, latent=out.latent, mask=out.mask)


def _class_targets(model: Model, x: torch.Tensor, source: Any, targets: list[int], options: Options, *,
                   guidance_scale: float, generator: Generators, **head: Any) -> EditResult:
    """Many target labels for one image: encoded once and decoded under each (one batched pass, the methods that
    keep their source trajectory), or one edit per label (the others); result i equals the edit to ``targets[i]``
    alone."""
    gens = check_generators(generator, 1)
    if not options.keeps_source():
        return _one_per_target(lambda t, g: _class_edit(model, x, source, t, options, guidance_scale=guidance_scale,
                                                        generator=g, **head), targets, gens)
    return _carried(model, x, gens, options, {"class_labels": source},
                    {"class_labels": targets, "guidance_scale": guidance_scale}, copies=len(targets), **head)


def _attention(model: Model, attention: Any, sources: Any, targets: Any, rows: int, timesteps: list) -> Any:
    """The attention control's context for ``rows`` target rows, on the grid's ``timesteps``."""
    # attention control exists only where an adapter implements it (SD 1.x / 2.x / XL)
    if not isinstance(model, AttentionEditable):
        raise CycleDiffError("attention control needs a text-conditioned UNet model (Stable Diffusion 1.x / 2.x / XL); "
                             f"this is {model.kind}")
    targets = [targets] * rows if isinstance(targets, str) else list(targets)
    sources = [sources] * rows if isinstance(sources, str) else list(sources)
    copies = rows // max(len(sources), 1)
    sources = [s for s in sources for _ in range(copies)] if len(sources) != rows else sources
    return model.attention_edit(attention, sources, targets, list(timesteps))

"""The common head of edit and translate: the grid computed once, the mask resolved on it, the method run on it,
and the keywords that moved into a method's options refused in one line naming the new spelling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ..errors import CycleDiffError
from ..latent import Latent
from ..methods import run_method
from ..options import KEEPS_SOURCE, Options, knob_default, owners

MASK_THRESHOLD = knob_default("mask_threshold")  # the masked methods' own default (options.py)


def carry(options: Options, x0: torch.Tensor, image_size: tuple[int, int], source: Any, target: Any, *,
          steps: int, strength: float, generator: Any, source_condition: dict[str, Any],
          target_condition: dict[str, Any], copies: int = 1, progress: bool = False,
          around: Callable[[list], Any] | None = None) -> tuple[torch.Tensor, Latent | None, torch.Tensor | None]:
    """(output in the model's sample space, latent or None, the mask used at image size or None): x0 carried from
    the source (model, condition) to the target's by ``options``' method. The grid is computed here once and
    handed to the mask, to ``around`` (a context taking the timesteps run: attention control) and to the method."""
    import contextlib

    grid = source.schedule_for(tuple(x0.shape)).plan(steps, strength)
    keep, shown = resolve_mask(getattr(options, "mask", None), x0, image_size, source, target, options=options,
                               timesteps=list(grid.run), generator=generator, source_condition=source_condition,
                               target_condition=target_condition,
                               threshold=getattr(options, "mask_threshold", MASK_THRESHOLD), copies=copies)
    with around(list(grid.run)) if around else contextlib.nullcontext():
        out, latent = run_method(options, x0, source, target, grid, generator=generator,
                                 source_condition=source_condition, target_condition=target_condition, mask=keep,
                                 copies=copies, progress=progress)
    return out, latent, shown


def outside_kept(images: torch.Tensor, inputs: torch.Tensor, shown: torch.Tensor | None) -> torch.Tensor:
    """The decoded output inside the mask used (at image size) and the input's own pixels outside it: a latent
    model's VAE decoder sees every latent, so its pixels outside the mask would move by its reconstruction error
    and its receptive field (pixel models: already the input there)."""
    if shown is None:
        return images
    shown = shown.to(images)
    return shown * images + (1 - shown) * inputs.to(images).expand_as(images)


def moved_keywords(fn: Callable) -> Callable:
    """Refuse, in one line naming the new spelling, the keywords that became a method's options (η, masks,
    attention, FlowEdit's knobs) or conditions (class labels)."""
    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for name in kwargs:
            if name in ("source_class", "target_class"):
                raise CycleDiffError(f"{name}= is gone: a class edit takes the labels as its conditions, "
                                     "source_prompt=3, prompt=8 (or translate with source_condition= / "
                                     "target_condition=)")
            classes = owners(name)
            if classes:
                spelled = " or ".join(f"{c.__name__}({name}=…)" for c in classes)
                raise CycleDiffError(f"{name}= is a method's option: pass method={spelled} (from cyclediff)")
        return fn(*args, **kwargs)
    return checked


def resolve_mask(mask: Any, x0: torch.Tensor, image_size: tuple[int, int], source: Any, target: Any, *,
                 options: Options, timesteps: list[float], generator: Any, source_condition: dict[str, Any],
                 target_condition: dict[str, Any], threshold: float = MASK_THRESHOLD,
                 copies: int = 1) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(the mask at the sample size for :func:`run_method`, the mask at image size as used) from a user's mask:
    None, a (B, 1, H, W) tensor at image size, or "auto" (from the two conditions' disagreement, each target's
    own with many targets; drawn from copies of the generators, so the edit's own draws are unchanged)."""
    from .._noise import clone_generators
    from ..masks import auto_mask, check_mask, to_image_mask, to_sample_mask

    if mask is None:
        return None, None
    if not options.keeps_source():
        raise CycleDiffError(f"masks work with methods {' and '.join(KEEPS_SOURCE)}; not with {options.name}")
    size = tuple(x0.shape[2:])
    if isinstance(mask, str):
        if mask != "auto":
            raise CycleDiffError(f"mask must be a tensor, a mask image or 'auto'; got {mask!r}")
        n = x0.shape[0] * copies
        keep = auto_mask(x0, source, target, timesteps,
                         source_condition=source.prepare_condition(n, **_repeat(source_condition, copies)),
                         target_condition=target.prepare_condition(n, **target_condition), threshold=threshold,
                         generator=clone_generators(generator), copies=copies)
        return keep, to_image_mask(keep, image_size)
    if not isinstance(mask, torch.Tensor):
        raise CycleDiffError(f"mask must be a (B, 1, H, W) tensor, a mask image or 'auto'; got {type(mask).__name__}")
    given = check_mask(mask.to(x0.device), mask.shape[0] if mask.shape[0] > 1 else x0.shape[0], image_size)
    keep = to_sample_mask(given, size)
    return keep, to_image_mask(keep, image_size) if size != image_size else given


def _repeat(condition: dict[str, Any], copies: int) -> dict[str, Any]:
    """A condition of B inputs for B·copies rows (lists repeated element-wise; scalars stay)."""
    if copies == 1:
        return condition
    return {k: [v for v in val for _ in range(copies)] if isinstance(val, list) else val
            for k, val in condition.items()}

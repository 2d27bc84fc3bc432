"""One switch over the three ways of carrying an image from a source to a target (model, condition)."""

from __future__ import annotations

from typing import Any

import torch

from ..baselines import ddib, sdedit
from ..cycle import cycle
from ..defaults import METHODS
from ..errors import CycleDiffError
from ..latent import Latent


def check_method(method: str) -> str:
    if method not in METHODS:
        raise CycleDiffError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return method


def run_method(
    method: str, x0: torch.Tensor, source: Any, target: Any, *, steps: int, strength: float, eta: float,
    generator: Any, source_condition: dict[str, Any], target_condition: dict[str, Any], progress: bool,
) -> tuple[torch.Tensor, Latent | None]:
    """(output in the model's sample space, the CycleDiffusion latent or None for the baselines)."""
    check_method(method)
    if method == "cyclediffusion":
        return cycle(x0, source, target, steps=steps, strength=strength, eta=eta, generator=generator,
                     source_condition=source_condition, target_condition=target_condition, progress=progress)
    if method == "sdedit":
        return sdedit(x0, target, steps=steps, strength=strength, eta=eta, generator=generator,
                      target_condition=target_condition, progress=progress), None
    return ddib(x0, source, target, steps=steps, strength=strength, source_condition=source_condition,
                target_condition=target_condition, progress=progress), None

"""Injected randomness: one torch.Generator for the batch, or one per sample (batch-invariant)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

from .errors import CycleDiffError

Generators = torch.Generator | Sequence[torch.Generator] | None


def check_generators(generator: Generators, batch_size: int) -> torch.Generator | list[torch.Generator] | None:
    """Validate ``generator``: None, one generator, or a list with exactly one per sample."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    gens = list(generator)
    if len(gens) != batch_size or not all(isinstance(g, torch.Generator) for g in gens):
        raise CycleDiffError(
            f"generator must be one torch.Generator or a list of {batch_size} (one per sample); "
            f"got {len(gens)} items"
        )
    return gens


def seeds_of(generator: torch.Generator | list[torch.Generator] | None, batch_size: int) -> tuple[int, ...] | None:
    """The seeds to record: each generator's initial seed (one generator shared by the batch repeats it)."""
    if generator is None:
        return None
    if isinstance(generator, torch.Generator):
        return (generator.initial_seed(),) * batch_size
    return tuple(g.initial_seed() for g in generator)


def gaussian_like(x: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None) -> torch.Tensor:
    """N(0, I) shaped like x; with a list of generators, sample i comes from generator i alone."""
    return randn_tensor(tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype)

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


def batch_size_of(generator: Generators, batch_size: int | None) -> int:
    """How many samples are wanted: ``batch_size``, or the length of a list of generators (one per sample)."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise CycleDiffError(f"batch_size must be a positive integer; got {batch_size!r}")
    if generator is None or isinstance(generator, torch.Generator):
        return 1 if batch_size is None else batch_size
    n = len(list(generator))
    if batch_size is not None and batch_size != n:
        raise CycleDiffError(f"batch_size={batch_size} but {n} generators were given (one per sample); "
                             "drop batch_size or give one generator per sample")
    return n


def seeds_of(generator: torch.Generator | list[torch.Generator] | None, batch_size: int) -> tuple[int, ...] | None:
    """The seeds to record: each generator's initial seed (one generator shared by the batch repeats it)."""
    if generator is None:
        return None
    if isinstance(generator, torch.Generator):
        return (generator.initial_seed(),) * batch_size
    return tuple(g.initial_seed() for g in generator)


def clone_generators(generator: Generators) -> Generators:
    """Independent copies in the same state: draws from them leave the originals where they were."""

    def one(g: torch.Generator) -> torch.Generator:
        copy = torch.Generator(device=g.device)
        copy.set_state(g.get_state())
        return copy

    if generator is None:
        return None
    return one(generator) if isinstance(generator, torch.Generator) else [one(g) for g in generator]


def gaussian_like(x: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None) -> torch.Tensor:
    """N(0, I) shaped like x; with a list of generators, sample i comes from generator i alone."""
    return randn_tensor(tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype)


# Host memory the draws of one prefetch may take (pinned, copied to the device in one asynchronous transfer).
_PREFETCH_BYTES = 256 * 2**20


class NoiseStream:
    """``count`` successive N(0, I) draws shaped like ``like``, the same values as ``count`` calls of
    :func:`gaussian_like` (and the generators end in the same state).

    On an accelerator with CPU generators, each :func:`gaussian_like` would draw on the CPU and make a pageable
    host→device copy, which waits for the device: a host synchronisation per step. The stream instead draws
    several steps ahead into pinned memory and copies them asynchronously, so a step loop never waits.
    """

    def __init__(self, like: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None,
                 count: int, *, prefetch: bool | None = None) -> None:
        self.like, self.gens, self.left = like, generator, count
        first = generator[0] if isinstance(generator, list) else generator
        on_host = first is not None and first.device.type == "cpu"
        self.prefetch = (like.device.type != "cpu" and on_host) if prefetch is None else prefetch
        per_draw = max(1, like.numel() * like.element_size())
        self.chunk = max(1, min(count, _PREFETCH_BYTES // per_draw))
        self.ready: list[torch.Tensor] = []

    def next(self) -> torch.Tensor:
        if self.left <= 0:
            raise RuntimeError("NoiseStream: more draws taken than were announced")
        self.left -= 1
        if not self.prefetch:
            return gaussian_like(self.like, self.gens)
        if not self.ready:
            n = min(self.chunk, self.left + 1)
            shape = tuple(self.like.shape)
            host = torch.stack([randn_tensor(shape, generator=self.gens, device=torch.device("cpu"),
                                             dtype=self.like.dtype) for _ in range(n)])
            if torch.cuda.is_available():
                host = host.pin_memory()
            self.ready = list(host.to(self.like.device, non_blocking=True).unbind(0))
        return self.ready.pop(0)

"""The editing methods as records: each method's options type (:mod:`cyclediff.options`: its knobs and
capabilities) with its algorithm, run on the common head's grid, and its cost in network evaluations.

They differ in where each step's noise comes from: CycleDiffusion's posterior chain q(x_{t−1} | x_t, x0), the
edit-friendly inversion's independent marginals q(x_t | x0), FlowEdit's fresh draw at every step (no inversion),
SDEdit's fresh sampler noise after one marginal draw, DDIB's none (the deterministic ODE both ways). Everything else
— the grid, the conditions, the generator, masks, many targets — is the head's (:mod:`cyclediff.api.head`), and
every front end (names, labels, the PIE-Bench count, the demo's table) asks these records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .baselines import ddib, flow_edit, sdedit
from .cycle import cycle
from .errors import CycleDiffError
from .latent import Latent
from .options import KEEPS_SOURCE, OPTIONS, CycleDiffusion, FlowEdit, Options, options_of
from .schedule import Grid

Output = tuple[torch.Tensor, Latent | None]


@dataclass(frozen=True)
class Method:
    """One method: its options type, its algorithm on the grid, and its network rows per edited image."""

    options: type[Options]
    run: Callable[..., Output]
    #: (options, grid, source rows, target rows) → network rows one image costs (each branch's rows: 2 under
    #: classifier-free guidance, 1 without)
    cost: Callable[[Any, Grid, int, int], int]

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def title(self) -> str:
        return self.options.title


def _encoders(o: CycleDiffusion, x0: torch.Tensor, source: Any, target: Any, grid: Grid, **head: Any) -> Output:
    return cycle(x0, source, target, steps=grid.steps, strength=grid.strength, eta=o.eta, encoder=o.name,
                 timesteps=list(grid.run), **head)


def _flowedit(o: FlowEdit, x0: torch.Tensor, source: Any, target: Any, grid: Grid, *, mask: Any, copies: int,
              **head: Any) -> Output:
    n_max = FlowEdit.n_max(grid.steps, grid.strength, o.n_min)
    return flow_edit(x0, source, target, steps=grid.steps, n_max=n_max, n_min=o.n_min, n_avg=o.n_avg,
                     timesteps=list(grid.full), **head), None


def _sdedit(o: Any, x0: torch.Tensor, source: Any, target: Any, grid: Grid, *, source_condition: Any, mask: Any,
            copies: int, **head: Any) -> Output:
    return sdedit(x0, target, steps=grid.steps, strength=grid.strength, eta=o.eta, timesteps=list(grid.run),
                  **head), None


def _ddib(o: Any, x0: torch.Tensor, source: Any, target: Any, grid: Grid, *, generator: Any, mask: Any,
          copies: int, **head: Any) -> Output:
    return ddib(x0, source, target, steps=grid.steps, strength=grid.strength, timesteps=list(grid.run), **head), None


def _both(o: Any, grid: Grid, src: int, tgt: int) -> int:
    return len(grid.run) * (src + tgt)


def _flowedit_cost(o: FlowEdit, grid: Grid, src: int, tgt: int) -> int:
    n_max = FlowEdit.n_max(grid.steps, grid.strength, o.n_min)
    plain = min(o.n_min, n_max)
    return (n_max - plain) * o.n_avg * (src + tgt) + plain * tgt


METHODS: dict[str, Method] = {m.name: m for m in (
    Method(OPTIONS["cyclediffusion"], _encoders, _both),
    Method(OPTIONS["edit-friendly"], _encoders, _both),
    Method(FlowEdit, _flowedit, _flowedit_cost),
    Method(OPTIONS["sdedit"], _sdedit, lambda o, grid, src, tgt: len(grid.run) * tgt),
    Method(OPTIONS["ddib"], _ddib, _both),
)}


def method_of(value: str | Options) -> Method:
    """The record of a method name or of a method's options."""
    return METHODS[options_of(value).name]


def run_method(options: Options, x0: torch.Tensor, source: Any, target: Any, grid: Grid, *, generator: Any,
               source_condition: dict[str, Any], target_condition: dict[str, Any], mask: torch.Tensor | None = None,
               copies: int = 1, progress: bool = False) -> Output:
    """(output in the model's sample space, the latent or None for the methods without one): ``options``' method
    on ``grid`` (the one computed for this call). ``mask`` (at the sample size) and ``copies`` (k targets per
    image, from one source pass) need a method that keeps its source trajectory."""
    if (mask is not None or copies != 1) and not options.keeps_source():
        raise CycleDiffError(f"masks and many targets at once work with methods {' and '.join(KEEPS_SOURCE)} "
                             f"(their source trajectory ends at the input and is shared); not with {options.name}")
    return METHODS[options.name].run(options, x0, source, target, grid, generator=generator, mask=mask,
                                     copies=copies, source_condition=source_condition,
                                     target_condition=target_condition, progress=progress)


def evaluations(options: str | Options, grid: Grid, *, source_guidance: bool, target_guidance: bool) -> int:
    """Network rows one edited image costs on ``grid`` (the real one: a flow model's strength cut differs from a
    variance-preserving model's): a branch under classifier-free guidance takes two rows."""
    options = options_of(options)
    return METHODS[options.name].cost(options, grid, 1 + source_guidance, 1 + target_guidance)


__all__ = ["METHODS", "Method", "evaluations", "method_of", "run_method"]

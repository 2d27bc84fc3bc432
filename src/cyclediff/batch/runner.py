"""One runner for all batch work: the CLI commands, ``cyclediff evaluate`` and ``cyclediff run`` job files.

A *task* (edit, translate, guide, encode, decode, sample: :mod:`cyclediff.batch.tasks`) turns a batch of *units*
(an input × seed × settings, with a stable key) into outputs and their metrics. A *store*
(:mod:`cyclediff.batch.stores`) says where a unit's output goes, whether it is already done, writes it atomically
and keeps the records. The runner does the rest, the same way for every caller:

1. batches: consecutive units in their fixed order, at most ``batch_size``, sharing the task's batch signature;
   batch i goes to rank i mod world (the same members on any number of processes);
2. skips: a batch whose units are all done is not computed; a unit done before is never written or recorded
   again (it is computed along only when a batch-mate is not done, so batch members never change);
3. reads each input (a bad one fails alone), groups the rest by shape, runs the task, and when a group fails as
   a whole retries its units one by one, so one bad item cannot sink the others;
4. writes each output atomically, records the batch's results in one write, and shows progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..checks import check_count
from ..errors import CycleDiffError
from ..settings import RUN, Settings


@dataclass(frozen=True)
class Unit:
    """One output: an input (or none) at one seed with its settings (a :class:`~cyclediff.settings.Settings`).
    ``key`` is stable across runs; ``stamp`` is what the run records beside the settings (task, model specs,
    dtype, size); ``item`` and ``method`` name a job's item and, in a comparison of methods, the method."""

    index: int
    key: str
    seed: int
    name: str  # the output's name inside the store (without folder)
    settings: Any = None
    input: Path | None = None
    stamp: dict[str, Any] = field(default_factory=dict)
    item: str | None = None
    method: str | None = None

    def record(self) -> dict[str, Any]:
        """The settings as recorded (the stamp first, then every setting)."""
        settings = self.settings.record() if isinstance(self.settings, Settings) else dict(self.settings or {})
        return {**self.stamp, **settings}


@dataclass
class Result:
    unit: Unit
    status: str = "ok"  # ok | skipped | failed
    output: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


class Task(Protocol):
    """What a task gives the runner."""

    desc: str

    def signature(self, unit: Unit) -> Hashable:
        """Units with equal signatures may share a batch."""

    def read(self, unit: Unit) -> Any:
        """The unit's input (an image tensor (1, C, H, W), a latent, or None); raises for a bad input."""

    def process(self, units: list[Unit], inputs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        """(output, metrics) per unit: an image (C, H, W) in [0, 1] as it will be written, or a latent."""


class Store(Protocol):
    """Where outputs go and what is already done."""

    def done(self, unit: Unit) -> bool:
        """Whether the unit's output exists from an earlier run with these very settings."""

    def target(self, unit: Unit) -> Path:
        """The file the unit's output goes to."""

    def write(self, unit: Unit, output: Any, metrics: dict[str, Any] | None = None) -> str:
        """Write the output atomically (a store may record its ``metrics`` in it); returns its path as recorded."""

    def record(self, results: list[Result]) -> None:
        """Keep a batch's results (one write)."""


def failure_text(err: BaseException) -> str:
    """One line for a failed unit: the message of an error the user can fix; type and message otherwise."""
    if isinstance(err, (CycleDiffError, OSError)):
        return str(err)
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def plan(units: list[Unit], signature: Callable[[Unit], Hashable], batch_size: int) -> list[list[Unit]]:
    """Consecutive units, at most ``batch_size`` each, with equal signatures: fixed by the units alone."""
    batches: list[list[Unit]] = []
    last: Hashable = object()
    for unit in units:
        sig = signature(unit)
        if batches and len(batches[-1]) < batch_size and sig == last:
            batches[-1].append(unit)
        else:
            batches.append([unit])
        last = sig
    return batches


def rank_batches(units: list[Unit], signature: Callable[[Unit], Hashable], batch_size: int, rank: int = 0,
          world: int = 1) -> list[list[Unit]]:
    """This rank's batches of the :func:`plan`: batch i goes to rank i mod world."""
    check_count("batch_size", batch_size)
    return [b for i, b in enumerate(plan(units, signature, batch_size)) if i % world == rank]


def run(task: Task, units: list[Unit], store: Store, *, batch_size: int = RUN.batch_size, rank: int = 0, world: int = 1,
        progress: bool = True, report_skipped: bool = True, on_result: Callable[[Result], None] | None = None,
        batches: list[list[Unit]] | None = None) -> list[Result]:
    """Run this rank's share of ``units`` (or the ``batches`` given: :func:`rank_batches` computed by the caller);
    returns their results (skipped ones too when ``report_skipped``)."""
    from tqdm.auto import tqdm

    batches = rank_batches(units, task.signature, batch_size, rank, world) if batches is None else batches
    done = {u.key for b in batches for u in b if store.done(u)}
    results: list[Result] = []
    bar = tqdm(total=sum(len(b) for b in batches), desc=task.desc if world == 1 else f"{task.desc} rank {rank}/{world}",
               unit="item", position=rank, disable=not progress or len(units) < 2, leave=False, dynamic_ncols=True)
    for batch in batches:
        new = []
        if any(u.key not in done for u in batch):
            new = _run_batch(task, store, batch, done)
            store.record(new)
        if report_skipped:
            new += [Result(u, "skipped", output=str(store.target(u))) for u in batch if u.key in done]
            new.sort(key=lambda r: r.unit.index)
        for result in new:
            results.append(result)
            if on_result is not None:
                on_result(result)
        bar.update(len(batch))
    bar.close()
    return results


def _run_batch(task: Task, store: Store, batch: list[Unit], done: set[str]) -> list[Result]:
    start = time.perf_counter()
    results: dict[str, Result] = {}
    ready: list[tuple[Unit, Any]] = []
    for unit in batch:
        try:
            ready.append((unit, task.read(unit)))
        except Exception as err:  # noqa: BLE001 - a bad input fails alone
            results[unit.key] = Result(unit, "failed", error=failure_text(err))
    groups: dict[Hashable, list[tuple[Unit, Any]]] = {}
    for unit, value in ready:  # inputs of other shapes form their own group
        shape = tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None
        groups.setdefault(shape, []).append((unit, value))
    for group in groups.values():
        try:
            _compute(task, store, group, done, results)
        except Exception as err:  # noqa: BLE001 - any failure (a user's energy too) is recorded
            if len(group) == 1:
                results[group[0][0].key] = Result(group[0][0], "failed", error=failure_text(err))
                continue
            for member in group:  # retried alone, so that only the bad one fails
                try:
                    _compute(task, store, [member], done, results)
                except Exception as single:  # noqa: BLE001
                    results[member[0].key] = Result(member[0], "failed", error=failure_text(single))
    seconds = round((time.perf_counter() - start) / max(len(batch), 1), 3)
    out = []
    for unit in batch:
        if unit.key in results and unit.key not in done:  # a finished unit keeps its record
            results[unit.key].seconds = seconds
            out.append(results[unit.key])
    return out


def _compute(task: Task, store: Store, group: list[tuple[Unit, Any]], done: set[str],
             results: dict[str, Result]) -> None:
    units = [u for u, _ in group]
    outputs = task.process(units, [value for _, value in group])
    for unit, (output, metrics) in zip(units, outputs):
        if unit.key in done:
            continue  # finished earlier: computed again only because it shares this batch
        results[unit.key] = Result(unit, "ok", output=store.write(unit, output, metrics), metrics=metrics)

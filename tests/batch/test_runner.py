"""The one runner's guarantees (fixed batches, ranks, failure isolation, skips), on small fake tasks."""

from __future__ import annotations

from pathlib import Path

import torch

from cyclediff.batch.runner import Result, Unit, plan, run


class FakeTask:
    """Doubles its input; fails on inputs named 'bad' (alone) or on batches holding a 'poison' unit."""

    desc = "fake"
    progress = False

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def signature(self, unit: Unit) -> str:
        return unit.settings["group"]

    def read(self, unit: Unit) -> torch.Tensor:
        if unit.key.startswith("bad"):
            raise OSError(f"cannot read {unit.key}")
        return torch.full((1, 1, 2, 2), float(unit.seed))

    def process(self, units: list[Unit], inputs: list[torch.Tensor]) -> list[tuple[torch.Tensor, dict]]:
        self.batches.append([u.key for u in units])
        if any(u.key.startswith("poison") for u in units):
            raise RuntimeError("poisoned batch")
        return [(x[0] * 2, {"value": float(x.mean()) * 2}) for x in inputs]


class MemoryStore:
    def __init__(self, done: set[str] = frozenset()) -> None:
        self.finished, self.written, self.recorded = set(done), {}, []

    def done(self, unit: Unit) -> bool:
        return unit.key in self.finished

    def target(self, unit: Unit) -> Path:
        return Path(unit.name)

    def write(self, unit: Unit, output: torch.Tensor, metrics: dict | None = None) -> str:
        self.written[unit.key] = output
        return unit.name

    def record(self, results: list[Result]) -> None:
        self.recorded.append([r.unit.key for r in results])


def units(keys: list[str], groups: list[str] | None = None) -> list[Unit]:
    groups = groups or ["a"] * len(keys)
    return [Unit(i, k, i, name=f"{k}.png", settings={"group": g}) for i, (k, g) in enumerate(zip(keys, groups))]


def test_batches_are_fixed_by_the_units_alone():
    us = units(["u0", "u1", "u2", "u3", "u4"], ["a", "a", "b", "b", "b"])
    assert [[u.key for u in b] for b in plan(us, lambda u: u.settings["group"], 2)] == [
        ["u0", "u1"], ["u2", "u3"], ["u4"]]
    store = MemoryStore(done={"u2"})  # done before: computed along with u3 (same batch), never written again
    task = FakeTask()
    results = run(task, us, store, batch_size=2, progress=False)
    assert task.batches == [["u0", "u1"], ["u2", "u3"], ["u4"]]
    assert set(store.written) == {"u0", "u1", "u3", "u4"}
    assert {r.unit.key: r.status for r in results} == {"u0": "ok", "u1": "ok", "u2": "skipped", "u3": "ok",
                                                       "u4": "ok"}
    # ranks: batch i goes to rank i mod world
    task1 = FakeTask()
    run(task1, us, MemoryStore(), batch_size=2, rank=1, world=2, progress=False)
    assert task1.batches == [["u2", "u3"]]


def test_one_bad_unit_fails_alone():
    us = units(["ok0", "bad1", "poison2", "ok3"])
    task, store = FakeTask(), MemoryStore()
    results = {r.unit.key: r for r in run(task, us, store, batch_size=4, progress=False)}
    assert results["bad1"].status == "failed" and "cannot read bad1" in results["bad1"].error
    assert results["poison2"].status == "failed" and "RuntimeError: poisoned batch" in results["poison2"].error
    assert results["ok0"].status == results["ok3"].status == "ok"  # retried alone after the batch failed
    assert torch.equal(store.written["ok3"], torch.full((1, 2, 2), 6.0)) and results["ok3"].metrics == {"value": 6.0}
    assert store.recorded == [["ok0", "bad1", "poison2", "ok3"]]  # one record write per batch

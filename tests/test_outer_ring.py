"""Issue 13: the outer ring's shape (layers, size, probes), the one condition convention, and the one runner's
guarantees (fixed batches, failure isolation, skips) checked on small fake tasks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from conftest import images, pixel
from cyclediff import decode, encode, sample_latent
from cyclediff.batch.runner import Result, Unit, plan, run
from cyclediff.errors import CycleDiffError

SRC = Path(__file__).resolve().parents[1] / "src" / "cyclediff"
CORE = ["schedule.py", "transitions.py", "latent.py", "encoder.py", "sampler.py", "cycle.py", "baselines.py",
        "masks.py", "interpolation.py", "settings.py", "checks.py", "models", "guidance", "metrics"]


def _imports(path: Path) -> set[str]:
    """Modules a file imports, resolved to cyclediff's top-level packages ('apps', 'cli', 'models', …)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            depth = len(path.relative_to(SRC).parts) - 1  # 0 for cyclediff/x.py, 1 for cyclediff/pkg/x.py
            if node.level == depth + 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level <= depth:  # inside its own package
                found.add(path.relative_to(SRC).parts[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cyclediff."):
            found.add(node.module.split(".")[1])
    return found


def test_the_core_imports_no_app_and_no_command_line():
    files = [p for name in CORE for p in ([SRC / name] if name.endswith(".py") else (SRC / name).rglob("*.py"))]
    assert len(files) > 15
    for path in files:
        bad = _imports(path) & {"apps", "cli", "web"}
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_the_apps_import_neither_the_command_line_nor_the_web_app():
    for path in [*(SRC / "apps").rglob("*.py"), *(SRC / "web").rglob("*.py")]:
        bad = _imports(path) & {"cli"} | (_imports(path) & {"web"} if path.parent.name == "apps" else set())
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_no_source_file_is_over_400_lines_and_probes_are_few():
    sizes = {p.relative_to(SRC): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    probes = [(p, line) for p in SRC.rglob("*.py") for line in p.read_text().splitlines() if "hasattr(" in line]
    assert len(probes) <= 3
    for path, _ in probes:  # each one says why it is there
        text = path.read_text().splitlines()
        at = next(i for i, line in enumerate(text) if "hasattr(" in line)
        assert text[at - 1].strip().startswith("#"), path


def test_one_condition_convention_for_encode_decode_and_sample(gen):
    den = pixel(num_classes=3)
    x0 = images(2)
    by_keyword = encode(x0, den, steps=6, generator=[gen(0), gen(1)], class_labels=[1, 2])
    by_condition = encode(x0, den, steps=6, generator=[gen(0), gen(1)], condition={"class_labels": [1, 2]})
    assert torch.equal(by_keyword.eps, by_condition.eps)
    torch.testing.assert_close(decode(by_keyword, den, condition=[0, 0]), decode(by_keyword, den, class_labels=0))
    a = sample_latent(den, steps=4, generator=gen(3), condition=2)
    b = sample_latent(den, steps=4, generator=gen(3), class_labels=2)
    assert a.condition == b.condition and torch.equal(a.eps, b.eps)
    with pytest.raises(CycleDiffError, match="takes no condition 'stregth'"):
        encode(x0, den, steps=6, stregth=0.5)


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

    def write(self, unit: Unit, output: torch.Tensor) -> str:
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

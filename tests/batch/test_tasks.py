"""The tasks the CLI, jobs and the web run: what they return and report."""

from __future__ import annotations

import pytest
import torch

from cyclediff._images import load_image
from cyclediff.batch.runner import Unit, run
from cyclediff.batch.stores import FileStore
from cyclediff.batch.tasks import GuideTask
from cyclediff.models import load
from cyclediff.settings import GuideSettings

ONE_LEVEL = 1 / 255 + 1e-6


class Scripted:
    """An energy whose values per Langevin step are given (flat in the image: the chains move by noise alone)."""

    def __init__(self, values: list[list[float]]) -> None:
        self.values, self.calls = values, 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        e = images.flatten(1).sum(1) * 0 + torch.tensor(self.values[self.calls], dtype=images.dtype)
        self.calls += 1
        return e


@pytest.mark.parametrize("keep_best", [True, False])
def test_guide_task_returns_and_reports_the_kept_state(tmp_path, keep_best):
    """With keep_best the image is the chain's lowest-energy state and energy_end its energy (not the last
    state's, which jumped up); without it, the last state and its energy."""
    model = load("demo:digits")
    values = [[5.0, 5.0], [1.0, 4.0], [9.0, 2.0]]  # chain 0 is best at step 1 and jumps at step 2; chain 1 at 2
    settings = GuideSettings(model="demo:digits", energy="scripted", weight=1.0, langevin_steps=2, step_size=0.5,
                             steps=3, class_label=8, keep_best=keep_best)
    units = [Unit(i, f"seed{s}", s, name=f"g{s}.png", settings=settings) for i, s in enumerate((0, 1))]
    seen: dict[int, torch.Tensor] = {}
    task = GuideTask(model, lambda _: Scripted(values), on_step=lambda n, images, e: seen.update({n: images}))
    results = run(task, units, FileStore(lambda u: tmp_path / u.name), batch_size=2, progress=False)
    assert [r.status for r in results] == ["ok", "ok"]
    ends = [r.metrics["energy_end"] for r in results]
    assert ends == ([1.0, 2.0] if keep_best else [9.0, 2.0])
    assert [r.metrics["energy_start"] for r in results] == [5.0, 5.0]
    out = load_image(results[0].output, channels=1)[0]
    kept, last = seen[1][0], seen[2][0]
    assert (kept - last).abs().max() > 0.1  # the states differ: the test can tell them apart
    expected = kept if keep_best else last
    assert (out - expected).abs().max() <= ONE_LEVEL

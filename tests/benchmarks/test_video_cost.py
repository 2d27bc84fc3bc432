"""benchmarks/video_cost.py on the test suite's tiny Wan, LTX-Video and HunyuanVideo pipelines (its code path, not
its times): every family's edit and floor lines, the rows each edit evaluates counted by a hook equal to the
methods' counts, encode once + N prompts against N FlowEdit runs, the A100 anchor computed from the counts; and its
bench-size transformers are the published blocks (meta builds)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "video_cost.py"


@pytest.fixture(scope="module")
def video_cost():
    if str(SCRIPT.parent) not in sys.path:  # its siblings (flow_gpu.py, gpu_edit.py, video_families.py)
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("video_cost_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tiny_run_counts_every_edits_rows_exactly(video_cost, capsys, tmp_path):
    log = tmp_path / "video.jsonl"
    video_cost.main(["--size", "tiny", "--steps", "4", "--strength", "0.5", "--prompts", "1,3",
                    "--prompt-strength", "0.5", "--log", str(log)])
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert not [r for r in lines if r["phase"] == "error"]
    setups = {r["family"]: r for r in lines if r["phase"] == "setup"}
    assert list(setups) == ["wan-1.3b", "ltx-video", "hunyuan-video"]
    assert all(s["threads"] >= 1 and s["cpu"] and s["steps_run"] == 2 for s in setups.values())
    # classifier-free guidance on both branches (Wan, LTX): 4 rows a step; HunyuanVideo's embedded guidance: 2
    assert {k: s["rows_per_step"] for k, s in setups.items()} == {"wan-1.3b": 4, "ltx-video": 4, "hunyuan-video": 2}
    edits = {(r["family"], r["method"]): r for r in lines if r["phase"] == "edit"}
    expected = {"wan-1.3b": 8, "ltx-video": 8, "hunyuan-video": 4}  # 2 steps run × rows a step, both methods
    assert {k: (r["rows"], r["rows_counted"]) for k, r in edits.items()} == {
        (f, m): (n, n) for f, n in expected.items() for m in ("cyclediffusion", "flowedit")}
    assert all(r["seconds"] > 0 and r["floor_s"] > 0 and r["vs_floor"] > 0 for r in edits.values())
    prompts = [r for r in lines if r["phase"] == "prompts"]
    # encode once: 2 steps × (2 source rows + N × 2 target rows); FlowEdit: N runs of 8
    assert all(r["steps_run"] == 2 for r in prompts)
    assert [(r["prompts"], r["encode_once_rows"], r["encode_once_rows_counted"], r["flowedit_rows"],
             r["flowedit_rows_counted"]) for r in prompts] == [(1, 8, 8, 8, 8), (3, 16, 16, 24, 24)]
    anchors = [r for r in lines if r["phase"] == "anchor"]
    assert all(r["computed_from"].startswith("evaluation counts") for r in anchors)
    assert [(r["prompts"], r["flowedit_s"], r["encode_once_s"]) for r in anchors] == [(1, 150.0, 150.0),
                                                                                     (3, 450.0, 300.0)]


def test_a_family_that_cannot_run_is_one_line_and_the_others_run(video_cost, capsys, monkeypatch):
    monkeypatch.setitem(video_cost.SETUPS, "ltx-video", {**video_cost.SETUPS["ltx-video"],
                                                         "tiny": ("tiny_ltx", "no_such_builder")})
    video_cost.main(["--size", "tiny", "--families", "ltx-video,hunyuan-video", "--prompts", ""])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    errors = [r for r in lines if r["phase"] == "error"]
    assert len(errors) == 1 and errors[0]["family"] == "ltx-video" and "\n" not in errors[0]["error"]
    assert [r["method"] for r in lines if r["phase"] == "edit"] == ["cyclediffusion", "flowedit"]


@pytest.mark.parametrize(("kind", "billions"), [("wan-1.3b", 1.413), ("ltx-video", 1.915), ("hunyuan-video", 1.579)])
def test_the_bench_transformers_are_the_published_blocks(video_cost, kind, billions, tmp_path):
    """The published width, heads and depth (HunyuanVideo: 2 + 4 of its 20 + 40 blocks), only the projections
    from the tiny VAE's channels and text widths changed."""
    pipe = video_cost.tiny_pipeline(kind, tmp_path)
    with torch.device("meta"):
        net = video_cost.bench_transformer(kind, pipe)
    name, published = video_cost.TRANSFORMERS[kind]
    kept = {k: v for k, v in published.items() if k not in video_cost.io_widths(kind, pipe)}
    kept.update(video_cost.SETUPS[kind]["depth"] or {})
    same = lambda a, b: list(a) == list(b) if isinstance(b, (list, tuple)) else a == b  # noqa: E731
    assert type(net).__name__ == name and all(same(net.config[k], v) for k, v in kept.items())
    assert abs(sum(p.numel() for p in net.parameters()) / 1e9 / billions - 1) < 0.02

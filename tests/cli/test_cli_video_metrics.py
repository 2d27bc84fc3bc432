"""The video metrics (metrics.video) in each clip output's record and in ``evaluate edit``'s summary, on the tiny
Wan folder and the tiny CLIP: known answers where there are some (a clip kept whole by an empty mask: background
PSNR infinite; a still clip: temporal consistency 1)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cyclediff._images import save_image
from cyclediff._video import write_clip
from cyclediff.cli import main
from tiny_sd import tiny_clip

FRAMES = 5


def still(path: Path) -> Path:
    """A clip whose frames are all one frame."""
    torch.manual_seed(0)
    return write_clip(path, torch.rand(1, 3, 16, 16).expand(FRAMES, -1, -1, -1), 12)


def test_a_clip_edit_records_the_video_metrics_with_their_known_answers(tmp_path, wan):
    clip, tok = tiny_clip(tmp_path)
    clip.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    still(tmp_path / "clips" / "still.mp4")
    save_image(torch.zeros(1, 16, 16), tmp_path / "none.png")  # nothing to edit: every pixel is background
    for name, mask in (("kept", 'mask = "none.png"'), ("edited", "")):
        (tmp_path / f"{name}.toml").write_text(f"""task = "edit"
inputs = "clips"
out = "{name}"
[settings]
model = "{wan}"
source_prompt = "a cat"
prompt = "a dog"
steps = 3
clip_model = "clip"
{mask}
""")
        res = CliRunner().invoke(main, ["run", str(tmp_path / f"{name}.toml"), "--quiet"])
        assert res.exit_code == 0, res.output
    (kept,) = [json.loads(line) for line in (tmp_path / "kept" / "manifest.jsonl").read_text().splitlines()]
    m = kept["metrics"]
    assert len(m["clip_frame_scores"]) == FRAMES and all(math.isfinite(v) for v in m["clip_frame_scores"])
    assert m["clip_score"] == pytest.approx(sum(m["clip_frame_scores"]) / FRAMES, abs=1e-4)
    assert m["temporal_consistency"] == pytest.approx(1, abs=1e-4)  # the still clip, kept whole
    assert m["background_psnr"] > 60 and m["background_ssim"] == pytest.approx(1, abs=1e-4)
    assert m["psnr"] > 60 and math.isfinite(m["directional_clip"])
    (edited,) = [json.loads(line) for line in (tmp_path / "edited" / "manifest.jsonl").read_text().splitlines()]
    e = edited["metrics"]
    assert "background_psnr" not in e  # no mask, no background
    assert math.isfinite(e["temporal_consistency"]) and e["psnr"] < m["psnr"]
    assert len(e["clip_frame_scores"]) == FRAMES and e["clip_frame_scores"] != m["clip_frame_scores"]


def test_evaluate_edit_averages_the_video_metrics_over_clips(tmp_path, wan):
    from cyclediff.jobs.evaluate import EditSpec, evaluate_edit
    from cyclediff.metrics import ClipScorer
    from cyclediff.models import load

    for i in range(2):
        still(tmp_path / f"c{i}.mp4")
    (tmp_path / "spec.json").write_text(json.dumps({"items": [
        {"image": "c0.mp4", "source": "a cat", "target": "a dog"},
        {"image": "c1.mp4", "source": "a cat", "target": "a red car"}], "settings": {"steps": 3}}))
    out = tmp_path / "eval"
    rows = evaluate_edit(EditSpec.load(tmp_path / "spec.json"), out, model=load(wan),
                         scorer=ClipScorer(tiny_clip(tmp_path)), progress=False)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    for row in rows:  # single sample and best of 1: both clips, their means
        assert row["items"] == 2
        for name in ("clip_score", "directional_clip", "temporal_consistency", "psnr"):
            assert row[name] == pytest.approx(sum(r["metrics"][name] for r in records) / 2, abs=1e-4)
    assert "temporal_consistency" in (out / "summary.md").read_text().splitlines()[0]

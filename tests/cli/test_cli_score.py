"""``edit --score`` / ``translate --score``: each output's scores printed on its line and recorded in the file (not
as settings: a scored output is still skipped when made again); CLIP scores only with --clip-model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from cyclediff._images import load_image, save_image
from cyclediff._video import read_clip, read_record, write_clip
from cyclediff.batch.outputs import recorded
from cyclediff.cli import main
from cyclediff.metrics import psnr, ssim
from tiny_sd import tiny_clip

FRAMES = 5


def cli(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_an_image_edit_with_score_records_psnr_and_ssim_of_the_very_output(tmp_path):
    torch.manual_seed(0)
    save_image(torch.rand(1, 8, 8), tmp_path / "three.png")
    args = ["edit", tmp_path / "three.png", "--model", "demo:digits", "--source-class", "3", "--target-class", "8",
            "--steps", 3, "--score", "--out", tmp_path / "out"]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "out").iterdir()
    scores = recorded(out)["scores"]
    assert set(scores) == {"psnr", "ssim"}  # no CLIP without --clip-model
    source, made = load_image(tmp_path / "three.png", channels=1), load_image(out, channels=1)
    assert scores["psnr"] == pytest.approx(float(psnr(made, source)), abs=1e-4)
    assert scores["ssim"] == pytest.approx(float(ssim(made, source)), abs=1e-4)
    (line,) = [x for x in res.output.splitlines() if str(out) in x]
    assert f"psnr {scores['psnr']:.4g}" in line and f"ssim {scores['ssim']:.4g}" in line
    again = cli(*args)  # the scores are facts of the output, not settings: made again, it is skipped
    assert again.exit_code == 0 and "exists" in again.output
    plain = cli(*args[:-3], "--out", tmp_path / "plain")  # without --score: nothing scored, nothing recorded
    (made,) = (tmp_path / "plain").iterdir()
    assert "scores" not in recorded(made) and "psnr" not in plain.output


def test_a_clip_edit_with_score_and_clip_records_the_video_scores(tmp_path, wan):
    model, tok = tiny_clip(tmp_path)
    model.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    torch.manual_seed(0)
    source = write_clip(tmp_path / "a.webm", torch.rand(FRAMES, 3, 16, 16), 12)
    base = ["edit", source, "--model", wan, "--source-prompt", "a cat", "--prompt", "a dog", "--steps", 2]
    res = cli(*base, "--score", "--out", tmp_path / "pixels")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "pixels").iterdir()
    pixel = json.loads(read_record(out))["scores"]
    assert set(pixel) == {"psnr", "ssim"} and math.isfinite(pixel["psnr"])
    frames = read_clip(source).frames, read_clip(out).frames  # the clip's PSNR: its frames' mean
    each = psnr(frames[1], frames[0])
    assert pixel["psnr"] == pytest.approx(float(each.mean()), abs=0.5)  # the .webm re-read is lossy
    res = cli(*base, "--clip", tmp_path / "clip", "--out", tmp_path / "clip_scored")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "clip_scored").iterdir()
    scores = json.loads(read_record(out))["scores"]
    assert {"psnr", "ssim", "clip_score", "directional_clip", "temporal_consistency"} <= set(scores)
    assert len(scores["clip_frame_scores"]) == FRAMES
    assert scores["clip_score"] == pytest.approx(sum(scores["clip_frame_scores"]) / FRAMES, abs=1e-4)
    assert scores["psnr"] == pixel["psnr"]  # the same seed: the same output
    assert f"temporal_consistency {scores['temporal_consistency']:.4g}" in res.output


def test_translate_with_score_and_a_clip_model_on_a_class_edit(tmp_path, wan):
    torch.manual_seed(1)
    source = write_clip(tmp_path / "b.mp4", torch.rand(FRAMES, 3, 16, 16), 12)
    res = cli("translate", source, "--source-model", wan, "--target-model", wan, "--source-prompt", "a",
              "--target-prompt", "b", "--steps", 2, "--score", "--out", tmp_path / "tr")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "tr").iterdir()
    assert set(json.loads(read_record(out))["scores"]) == {"psnr", "ssim"}
    res = cli("edit", tmp_path / "x.png", "--model", "demo:digits", "--source-class", "3", "--target-class", "8",
              "--clip", tmp_path / "clip", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "class edits have none: give --score alone" in res.output

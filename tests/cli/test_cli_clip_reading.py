"""--max-frames and --stride: how a long clip is read by edit / translate / encode and by job files (every K-th
frame at the frame rate divided by K, at most N of them, then the model's own rounding), on the tiny Wan folder
(clips of 4k + 1 frames); bad values are one line and exit code 2; images ignore them, said once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cyclediff._video import read_clip, read_record, write_clip
from cyclediff.batch.outputs import latent_clip
from cyclediff.cli import main

STEPS = ["--steps", "2"]


def clip12(path: Path) -> Path:
    torch.manual_seed(0)
    return write_clip(path, torch.rand(12, 3, 16, 16), 12)


def cli(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize(("stride", "frames", "fps"), [(1, 9, 12), (2, 5, 6)])
def test_edit_reads_at_most_max_frames_every_stride_th_frame(tmp_path, wan, stride, frames, fps):
    source = clip12(tmp_path / "walk.webm")
    res = cli("edit", source, "--model", wan, "--source-prompt", "a cat", "--prompt", "a dog", *STEPS,
              "--max-frames", 9, "--stride", stride, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "out").iterdir()
    made = read_clip(out)
    # stride 1: 12 → the first 9 (= 1 + 4·2); stride 2: 6 frames at 6 fps, which Wan cuts to 5 (= 1 + 4·1)
    assert made.frames.shape[0] == frames and made.fps == fps
    assert "cut to its first 9 frames" in res.output if stride == 1 else "every 2nd frame taken" in res.output
    record = json.loads(read_record(out))
    assert record["max_frames"] == 9 and record.get("stride", 1) == stride


def test_translate_and_encode_take_them_too(tmp_path, wan):
    source = clip12(tmp_path / "a.mp4")
    res = cli("translate", source, "--source-model", wan, "--target-model", wan, "--source-prompt", "a",
              "--target-prompt", "b", *STEPS, "--stride", 2, "--out", tmp_path / "tr")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "tr").iterdir()
    made = read_clip(out)
    assert made.frames.shape[0] == 5 and made.fps == 6
    latent = tmp_path / "a.latent.safetensors"
    res = cli("encode", source, "--model", wan, "--prompt", "a", *STEPS, "--max-frames", 5, "-o", latent)
    assert res.exit_code == 0, res.output
    assert latent_clip(latent) == {"frames": 5, "fps": 12.0, "suffix": ".mp4"}


def test_a_job_file_sets_them_at_its_top_level(tmp_path, wan):
    clip12(tmp_path / "clips" / "c.webm")
    (tmp_path / "job.toml").write_text(f"""task = "edit"
inputs = "clips"
out = "out"
max_frames = 9
stride = 2
[settings]
model = "{wan}"
source_prompt = "a cat"
prompt = "a dog"
steps = 2
""")
    res = cli("run", tmp_path / "job.toml", "--quiet")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "out" / "images").iterdir()
    made = read_clip(out)
    assert made.frames.shape[0] == 5 and made.fps == 6
    (line,) = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert json.loads(line)["settings"]["stride"] == 2
    (tmp_path / "bad.toml").write_text((tmp_path / "job.toml").read_text().replace("stride = 2", "stride = 0"))
    res = cli("run", tmp_path / "bad.toml", "--quiet")
    assert res.exit_code != 0 and "stride must be a positive integer; got 0" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(("option", "value"), [("--max-frames", "0"), ("--stride", "-1"), ("--stride", "1.5")])
def test_bad_values_are_one_line_and_exit_code_2(tmp_path, option, value):
    res = cli("edit", tmp_path / "a.webm", "--model", "demo:moving-digits", "--source-class", "3",
              "--target-class", "8", option, value, "--out", tmp_path / "out")
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and option in errors[0] and "Traceback" not in res.output
    assert "must be a positive integer" in errors[0] or "is not a valid integer" in errors[0]


def test_images_ignore_them_said_once(tmp_path):
    from cyclediff._images import save_image

    save_image(torch.rand(1, 8, 8), tmp_path / "three.png")
    res = cli("edit", tmp_path / "three.png", "--model", "demo:digits", "--source-class", "3", "--target-class", "8",
              "--steps", 2, "--stride", 2, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert res.output.count("apply to clips only") == 1 and len(list((tmp_path / "out").iterdir())) == 1


def test_a_folder_that_is_no_clip_is_one_line_naming_the_fix_not_an_image(tmp_path):
    """An empty folder, or one of clips, given to a video model: said as such (was "… is an image"); one of both
    frames and clips too."""
    clip12(tmp_path / "clips" / "a.webm")
    (tmp_path / "empty").mkdir()
    write_clip(tmp_path / "both", torch.rand(2, 3, 8, 8), 12)
    clip12(tmp_path / "both" / "b.mp4")
    res = cli("edit", tmp_path / "clips", tmp_path / "empty", tmp_path / "both", "--model", "demo:moving-digits",
              "--source-class", 3, "--target-class", 8, "--out", tmp_path / "out")
    assert res.exit_code == 1 and "is an image" not in res.output and "Traceback" not in res.output
    assert f"is a folder without frames: give its clips ({tmp_path / 'clips'}/*.webm) or a job file" in res.output
    assert f"{tmp_path / 'empty'} is a folder without frames: give it image files (.png" in res.output
    assert f"{tmp_path / 'both'} holds both frames and clips: give its clips ({tmp_path / 'both'}/*.mp4)" in res.output

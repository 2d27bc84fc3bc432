"""Clips through the front ends: edit / translate / encode / decode of clips and jobs over folders of clips, on a
tiny Wan pipeline saved to a folder (clips of 4k + 1 frames, sides multiples of 16)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from click.testing import CliRunner

from cyclediff._video import read_clip, read_record, write_clip
from cyclediff.batch.outputs import latent_clip
from cyclediff.cli import main

STEPS = ["--steps", "3"]


def clip(path: Path, frames: int = 11, h: int = 20, w: int = 24, fps: float = 12, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return write_clip(path, torch.rand(frames, 3, h, w), fps)


def cli(*args: str) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def failures(output: str) -> list[str]:
    """The FAILED lines (progress bars share the terminal's lines, redrawn after a carriage return)."""
    return [line[line.index("FAILED"):] for line in re.split(r"[\r\n]", output) if "FAILED" in line]


def test_edit_a_clip_keeps_container_fps_and_says_the_fit(tmp_path, wan):
    source = clip(tmp_path / "walk.webm")
    args = ["edit", source, "--model", wan, "--source-prompt", "a cat", "--prompt", "a dog", *STEPS,
            "--out", tmp_path / "out"]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    (out,) = sorted((tmp_path / "out").iterdir())
    assert out.suffix == ".webm" and out.name.startswith("walk_a-dog_")
    made = read_clip(out)
    assert made.frames.shape == (9, 3, 16, 16) and made.fps == 12  # 11 → 9 = 1 + 4·2 frames; 20×24 → 16×16
    assert "11 frames cut to 9 (Wan takes 1 + 4·k)" in res.output and "24×20 cropped to 16×16" in res.output
    assert json.loads(read_record(out))["prompt"] == "a dog"
    again = cli(*args)  # the same settings: skipped, per clip
    assert again.exit_code == 0 and "exists" in again.output


def test_frames_on_request_and_folders_of_frames_in_and_out(tmp_path, wan):
    frames = clip(tmp_path / "frames_in", frames=5, h=16, w=16)  # a folder of PNGs is a clip too
    source = clip(tmp_path / "a.mp4", frames=5, h=16, w=32, fps=25)
    res = cli("edit", source, frames, "--model", wan, "--source-prompt", "a", "--prompt", "b", *STEPS,
              "--out", tmp_path / "out", "--frames")
    assert res.exit_code == 0, res.output
    outs = sorted((tmp_path / "out").iterdir())
    assert [p.is_dir() for p in outs] == [True, True]
    assert sorted(len(list(p.iterdir())) for p in outs) == [5, 5]
    assert "a folder of frames has no frame rate; 24 fps assumed" in res.output


def test_translate_a_clip(tmp_path, wan):
    source = clip(tmp_path / "a.gif", frames=5, h=16, w=16, fps=10)
    res = cli("translate", source, "--source-model", wan, "--target-model", wan, "--source-prompt", "a cat",
              "--target-prompt", "a dog", *STEPS, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "out").iterdir()
    made = read_clip(out)
    assert out.suffix == ".gif" and made.frames.shape == (5, 3, 16, 16) and made.fps == 10


def test_encode_records_frames_and_fps_and_decode_writes_the_clip_back(tmp_path, wan):
    source = clip(tmp_path / "a.mov", frames=9, h=16, w=16, fps=15)
    latent = tmp_path / "a.latent.safetensors"
    res = cli("encode", source, "--model", wan, "--prompt", "a cat", *STEPS, "-o", latent)
    assert res.exit_code == 0, res.output
    assert latent_clip(latent) == {"frames": 9, "fps": 15.0, "suffix": ".mov"}
    again = cli("encode", source, "--model", wan, "--prompt", "a cat", *STEPS, "-o", latent)
    assert "exists" in again.output  # the clip facts do not count as settings: still skipped
    res = cli("decode", latent, "--model", wan, "--out", tmp_path / "dec")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "dec").iterdir()
    made = read_clip(out)
    assert out.name == "a.mov" and made.frames.shape == (9, 3, 16, 16) and made.fps == 15
    res = cli("decode", latent, "--model", wan, "--prompt", "a dog", "--out", tmp_path / "dec2", "--frames")
    assert res.exit_code == 0 and len(list((tmp_path / "dec2" / "a").iterdir())) == 9


ROOT_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits" / "three.png"


def test_an_image_model_given_a_clip_and_a_bad_clip_fail_alone_in_one_line(tmp_path, wan):
    source = clip(tmp_path / "a.mp4", frames=5, h=16, w=16)
    res = cli("edit", source, "--model", "demo:digits", "--source-class", "3", "--target-class", "8",
              "--out", tmp_path / "o1")
    assert res.exit_code == 1
    failed = failures(res.output)
    assert len(failed) == 1 and "is a clip, but the model is" in failed[0] and "video model" in failed[0]
    res = cli("edit", ROOT_EXAMPLE, "--model", "demo:moving-digits", "--source-class", "3", "--target-class", "8",
              "--out", tmp_path / "o0")  # and an image given to a video model
    assert res.exit_code == 1
    failed = failures(res.output)
    assert len(failed) == 1 and "three.png is an image, but the model is" in failed[0] and "give a clip" in failed[0]
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 500)
    res = cli("edit", tmp_path / "bad.mp4", source, "--model", wan, "--source-prompt", "a", "--prompt", "b", *STEPS,
              "--out", tmp_path / "o2")
    assert res.exit_code == 1 and len(list((tmp_path / "o2").iterdir())) == 1  # the good clip is written
    failed = failures(res.output)
    assert len(failed) == 1 and "re-encode it as .mp4" in failed[0] and "Traceback" not in res.output


def test_a_job_over_a_folder_of_clips_resumes_per_clip(tmp_path, wan):
    for i in range(2):
        clip(tmp_path / "clips" / f"c{i}.mp4", frames=5, h=16, w=16, seed=i)
    job = tmp_path / "job.toml"
    job.write_text(f"""task = "edit"
inputs = "clips"
out = "out"
[settings]
model = "{wan}"
source_prompt = "a cat"
prompt = "a dog"
steps = 3
""")
    res = cli("run", job, "--quiet")
    assert res.exit_code == 0, res.output
    made = sorted((tmp_path / "out" / "images").iterdir())
    assert [p.suffix for p in made] == [".mp4", ".mp4"] and all(read_clip(p).fps == 12 for p in made)
    made[0].unlink()  # resume: only the missing clip is computed again
    stamps = made[1].stat().st_mtime_ns
    res = cli("run", job, "--quiet")
    assert res.exit_code == 0, res.output
    assert made[0].is_file() and made[1].stat().st_mtime_ns == stamps


def test_a_mask_image_for_all_frames_or_a_mask_clip_with_one_frame_per_frame(tmp_path, wan):
    source = clip(tmp_path / "a.webm", frames=5, h=16, w=16)
    mask = torch.zeros(5, 1, 16, 16)
    mask[..., 8:] = 1
    for name, frames in (("right.webm", 5), ("short.webm", 3)):
        write_clip(tmp_path / name, mask[:frames], 24)
    for spec, ok in (("right.webm", True), ("short.webm", False)):
        res = cli("edit", source, "--model", wan, "--source-prompt", "a", "--prompt", "b", *STEPS, "--mask",
                  tmp_path / spec, "--out", tmp_path / spec.replace(".", "_"))
        assert (res.exit_code == 0) == ok, res.output
    assert "the mask clip has 3 frames, the clip 5" in failures(res.output)[0]
    from cyclediff._images import save_image

    save_image(mask[0], tmp_path / "mask.png")
    res = cli("edit", source, "--model", wan, "--source-prompt", "a", "--prompt", "b", *STEPS, "--mask",
              tmp_path / "mask.png", "--out", tmp_path / "png_mask")
    assert res.exit_code == 0, res.output
    assert read_clip(next((tmp_path / "png_mask").iterdir())).frames.shape == (5, 3, 16, 16)


def test_decode_overwrite_never_replaces_the_source_clip_it_is_named_after(tmp_path):
    """A decoded clip is named after the clip it was encoded from: decoding into that clip's folder with
    --overwrite writes beside it (it is the user's, not an output); -o naming it explicitly still replaces it."""
    from cyclediff.demo.video_data import clips

    video, _, _ = clips(1, seed=1, digit=3)
    source = write_clip(tmp_path / "three.mp4", video[0].transpose(0, 1), 10)
    before = source.read_bytes()
    model = ["--model", "demo:moving-digits"]
    latent = tmp_path / "three.latent.safetensors"
    assert cli("encode", source, *model, "--steps", 2, "--class-label", 3, "-o", latent).exit_code == 0
    for _ in range(2):  # the second run replaces its own output, and still not the source
        res = cli("decode", latent, *model, "--class-label", "8", "--out", tmp_path, "--overwrite")
        assert res.exit_code == 0, res.output
        assert source.read_bytes() == before and len(list(tmp_path.glob("three_*.mp4"))) == 1
    res = cli("decode", latent, *model, "--class-label", "8", "-o", source, "--overwrite")
    assert res.exit_code == 0 and source.read_bytes() != before, res.output


def test_decode_weights_between_two_clips_latents_writes_one_clip_side_by_side(tmp_path):
    """--weights over two clips' latents: one clip (the encoded container, its frame rate) of the decodings side by
    side, not a folder of frames named .png."""
    from cyclediff.demo.video_data import clips

    model, latents = ["--model", "demo:moving-digits"], []
    for digit, seed in ((3, 1), (8, 2)):
        video, _, _ = clips(1, seed=seed, digit=digit)
        source = write_clip(tmp_path / f"d{digit}.mp4", video[0].transpose(0, 1), 10)
        latents.append(tmp_path / f"d{digit}.latent.safetensors")
        res = cli("encode", source, *model, "--steps", 2, "--class-label", digit, "-o", latents[-1])
        assert res.exit_code == 0, res.output
    res = cli("decode", *latents, *model, "--weights", "0,0.5,1", "--out", tmp_path / "dec")
    assert res.exit_code == 0, res.output
    (out,) = (tmp_path / "dec").iterdir()
    made = read_clip(out, channels=1)
    assert out.name == "d3_to_d8.mp4" and made.frames.shape == (8, 1, 16, 48) and made.fps == 10

"""The web app's Video tab (issue 35): its service on the shipped video demo (demo:moving-digits) edits a clip of a
moving 3 into an 8 keeping its frame count and fps, shows the model's input with what was done to the upload, says
what is wrong with a bad upload in one line, and stops when stopped; the page opens on the demo clip."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("gradio")

from cyclediff._video import read_clip, read_record, write_clip  # noqa: E402
from cyclediff.demo.video_data import clips  # noqa: E402
from cyclediff.errors import CycleDiffError  # noqa: E402
from cyclediff.web import Studio  # noqa: E402
from cyclediff.web.clip_service import VIDEO_DEMO, clip_input, edit_clip, example_clip  # noqa: E402
from cyclediff.web.uploads import public  # noqa: E402

FORM = {"method": "cyclediffusion", "strength": 0.8, "steps": 4, "eta": 0.1, "guidance_scale": 1.0, "seed": "0"}


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio([VIDEO_DEMO], workdir=tmp_path_factory.mktemp("video") / "work")


def _three(path: Path, frames: int = 8, fps: float = 10.0) -> Path:
    video, _, _ = clips(1, seed=1, digit=3, frames=frames)
    return write_clip(path, video[0].transpose(0, 1), fps)


def test_a_three_edited_to_an_eight_keeps_frames_and_fps_written_atomically_with_a_playable_preview(
        studio, tmp_path, monkeypatch):
    import cyclediff._files as files

    replaced: list[tuple[str, str]] = []
    real = files.os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: (replaced.append((str(a), str(b))), real(a, b))[1])
    clip = _three(tmp_path / "three.webm")
    events = list(edit_clip(studio, str(clip), VIDEO_DEMO, "3", "8", **FORM))
    kinds = [k for k, _ in events]
    assert kinds[0] == "input" and "progress" in kinds and kinds[-1] == "done"
    (result,) = [v for k, v in events if k == "result"]
    assert result.status == "ok", result.error
    out = Path(result.output)
    assert out.suffix == ".webm" and out.parent != clip.parent  # the input's container, never beside the upload
    assert any(b == str(out) and Path(a).parent == out.parent for a, b in replaced), "not written atomically"
    edited, given = read_clip(out, channels=1), read_clip(clip, channels=1)
    assert edited.frames.shape == given.frames.shape and edited.fps == given.fps == 10.0
    assert (edited.frames - given.frames).abs().max() > 0.1, "the edit changed nothing"
    (shown,) = [v for k, v in events if k == "preview"]
    preview = read_clip(shown)  # plays: a VP9 .webm, the same frames enlarged (nearest) so that a 16×16 is seen
    assert Path(shown).suffix == ".webm" and preview.frames.shape[0] == 8 and preview.frames.shape[2] >= 128
    assert Path(events[0][1]["preview"]).suffix == ".webm"


def test_the_models_input_of_twelve_frames_is_cut_to_eight_and_says_so(studio, tmp_path):
    clip = _three(tmp_path / "twelve.mp4", frames=12)
    preview, note = clip_input(studio, str(clip), VIDEO_DEMO)
    seen = read_clip(preview)
    assert preview.suffix == ".webm" and seen.frames.shape[0] == 8 and seen.frames.shape[2:] == (256, 256)
    assert "8 frames of 16×16" in note and "cut to its first 8 frames of 12" in note, note
    assert "\n" not in note and str(tmp_path) not in note


def test_a_twenty_frame_clip_taken_every_second_frame_is_eight_frames_at_half_the_fps_and_recorded(studio, tmp_path):
    clip = _three(tmp_path / "twenty.webm", frames=20)  # 10 fps; every 2nd: 10 frames at 5 fps, cut to the model's 8
    preview, note = clip_input(studio, str(clip), VIDEO_DEMO, stride=2)
    assert read_clip(preview).frames.shape[0] == 8
    assert "8 frames of 16×16 grey at 5 fps" in note and "every 2nd frame taken (10 → 5 fps)" in note, note
    events = list(edit_clip(studio, str(clip), VIDEO_DEMO, "3", "8", **FORM, stride=2, max_frames=8))
    assert events[0][1]["note"] == note
    (result,) = [v for k, v in events if k == "result"]
    assert result.status == "ok", result.error
    made = read_clip(result.output, channels=1)
    assert made.frames.shape[0] == 8 and made.fps == 5.0
    record = json.loads(read_record(result.output))  # as the CLI records --stride / --max-frames
    assert record["stride"] == 2 and record["max_frames"] == 8
    plain = list(edit_clip(studio, str(_three(tmp_path / "eight.webm")), VIDEO_DEMO, "3", "8", **FORM, max_frames=0))
    (result,) = [v for k, v in plain if k == "result"]  # 0 (or empty): the model's own length, nothing recorded
    assert result.status == "ok" and not {"stride", "max_frames"} & set(json.loads(read_record(result.output)))


@pytest.mark.parametrize("stride, max_frames, words", [(0, None, "stride must be a positive integer; got 0"),
                                                       ("two", None, "stride must be a positive integer"),
                                                       (1, -3, "max_frames must be a positive integer; got -3"),
                                                       (2.5, None, "stride must be a positive integer; got 2.5")])
def test_a_bad_stride_or_frame_limit_is_one_line_in_the_status(studio, tmp_path, stride, max_frames, words):
    from cyclediff.web.video import _view

    clip = str(_three(tmp_path / "three.webm"))
    seen, line = _view(studio, clip, VIDEO_DEMO, stride, max_frames)
    assert seen is None and words in line and "\n" not in line, line
    with pytest.raises(CycleDiffError, match=words.split(";")[0]):
        list(edit_clip(studio, clip, VIDEO_DEMO, "3", "8", **FORM, stride=stride, max_frames=max_frames))


@pytest.mark.parametrize("name, content, words", [
    ("notes.txt", b"not a clip\n", "is not a clip"),
    ("broken.webm", b"not a clip at all\n", "cannot read broken.webm"),
    ("short", None, "takes clips of 8 frames of at least 4×4 pixels; got 3 frames of 16×16: give a longer (or "
                    "larger) clip, a smaller --stride, or a larger --max-frames"),
])
def test_a_bad_upload_is_one_line_without_a_server_path(studio, tmp_path, name, content, words):
    if content is None:
        path = _three(tmp_path / "short.gif", frames=3)
    else:
        path = tmp_path / name
        path.write_bytes(content)
    for call in (lambda: clip_input(studio, str(path), VIDEO_DEMO),
                 lambda: list(edit_clip(studio, str(path), VIDEO_DEMO, "3", "8", **FORM))):
        with pytest.raises(CycleDiffError) as err:
            call()
        line = public(str(err.value))
        assert words in line and "\n" not in line and str(tmp_path) not in line, line


def test_stop_ends_the_run_early_without_a_result(studio, tmp_path):
    clip = _three(tmp_path / "three.mov")
    events = edit_clip(studio, str(clip), VIDEO_DEMO, "3", "8", **{**FORM, "steps": 400})
    kinds = []
    for kind, value in events:
        kinds.append(kind)
        if kind == "input":
            folder = Path(value["folder"])
        if kind == "progress":
            break
    events.close()  # the page's Stop (gradio closes the request's generator)
    assert studio._device.acquire(timeout=30), "the stopped run still holds the device"
    studio._device.release()
    assert "result" not in kinds and "done" not in kinds
    assert not [p for p in folder.iterdir() if p.name.startswith("three_edit")], "a stopped run wrote its result"


def test_the_example_is_a_held_out_moving_three_in_the_studios_own_folder(studio):
    path = example_clip(studio)
    assert path is not None and path.is_relative_to(studio.workdir) and path.suffix == ".webm"
    clip = read_clip(path, channels=1)
    assert clip.frames.shape == (8, 1, 16, 16)
    video, _, _ = clips(1, seed=0, digit=3)
    assert torch.allclose(clip.frames, video[0].transpose(0, 1), atol=0.06)  # VP9 at high quality
    assert example_clip(Studio(["demo:digits"], workdir=studio.workdir / "other")) is None


def test_the_page_opens_on_the_demo_clip_and_a_click_edits_it(tmp_path):
    """A real browser (Debian's chromium): the Video tab shows the example 3 as the model's input, the target 8 is
    filled in, one click on Edit gives the result player a source, and a bad upload is one line."""
    import shutil

    from cyclediff.web.app import build_app, launch

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make install does)")
    from playwright.sync_api import sync_playwright

    studio = Studio(["demo:digits", VIDEO_DEMO], workdir=tmp_path / "work")
    app = build_app(studio)
    url = launch(app, studio, port=None, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox",
                                                                        "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Video").click()
            page.wait_for_selector("#video-seen video[src]", timeout=60_000)
            assert page.locator("#video-target textarea, #video-target input").first.input_value() == "8"
            page.locator("#video-run").click()
            page.wait_for_function("document.querySelector('#video-status')?.innerText.includes('1 of 1 done')",
                                   timeout=120_000)
            page.wait_for_selector("#video-result video[src]", timeout=30_000)
            shots = os.environ.get("CYCLEDIFF_SCREENSHOTS")
            if shots:
                time.sleep(1.0)  # the players show a frame
                page.screenshot(path=str(Path(shots) / "web-video.png"), full_page=True)
            bad = tmp_path / "bad.webm"  # the browser lets it through (its name is a clip's): the server says
            bad.write_text("not a clip\n")
            page.locator("#video-clip button[aria-label='Clear']").click()  # the example goes: a new upload
            page.locator("#video-clip input[type=file]").set_input_files(str(bad))
            page.locator(".toast-body").first.wait_for(timeout=60_000)
            lines = [line.strip() for line in page.locator(".toast-body").first.inner_text().splitlines()
                     if line.strip() not in ("", "Error", "×")]
            assert len(lines) == 1 and "cannot read bad.webm" in lines[0] and "/tmp" not in lines[0], lines
            browser.close()
    finally:
        app.close()


def test_the_latents_tab_decodes_a_clips_latent_to_a_clip_in_its_container(studio, tmp_path):
    """A clip's latent file (``cyclediff encode`` of a .gif) decodes in the Latents tab's service to a .gif with the
    clip's frames and fps (the code is exact: the clip back within a level of 8-bit rounding) and plays enlarged;
    under another class it is another clip."""
    from click.testing import CliRunner

    from cyclediff.cli import main
    from cyclediff.web.clip_service import clip_preview

    clip = _three(tmp_path / "three.gif", fps=8.0)
    res = CliRunner().invoke(main, ["encode", str(clip), "--model", VIDEO_DEMO, "--class-label", "3", "--steps", "10",
                                    "--out", str(tmp_path / "latents")])
    assert res.exit_code == 0, res.output
    (latent,) = (tmp_path / "latents").iterdir()
    back = studio.decode(str(latent), VIDEO_DEMO)
    assert back.suffix == ".gif"
    made, given = read_clip(back, channels=1), read_clip(clip, channels=1)
    assert made.fps == 8.0 and made.frames.shape == given.frames.shape
    assert (made.frames - given.frames).abs().max() <= 1.5 / 255
    other = read_clip(studio.decode(str(latent), VIDEO_DEMO, "8", guidance_scale=3.0), channels=1)
    assert (other.frames - given.frames).abs().max() > 0.1
    played = read_clip(clip_preview(back))
    assert played.frames.shape[0] == 8 and played.frames.shape[2] >= 128

"""Image models and video models in the web app: each tab offers the models it can use, told by the models' facts
(a model that makes clips says its frames), not by their names; an image given to a video model, or a clip to an
image model, anywhere in the app is one line naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gradio")

from cyclediff._images import save_image  # noqa: E402
from cyclediff._video import write_clip  # noqa: E402
from cyclediff.demo.video_data import clips  # noqa: E402
from cyclediff.errors import CycleDiffError  # noqa: E402
from cyclediff.web import Studio  # noqa: E402
from cyclediff.web.clip_service import VIDEO_DEMO, clip_input, edit_clip  # noqa: E402
from cyclediff.web.controls import models_for  # noqa: E402
from cyclediff.web.service import DEMO_MODELS  # noqa: E402
from cyclediff.web.uploads import public  # noqa: E402

FORM = {"strength": 0.5, "steps": 2, "eta": 0.1, "guidance_scale": 1.0}


def test_each_tab_offers_only_the_models_it_can_use_told_by_their_facts(tmp_path):
    from cyclediff.models import load
    from cyclediff.web.app import build_app

    demos = Studio(list(DEMO_MODELS), workdir=tmp_path / "demos")
    assert models_for(demos, clips=True) == [VIDEO_DEMO]
    assert models_for(demos, clips=False) == [n for n in DEMO_MODELS if n != VIDEO_DEMO] and len(DEMO_MODELS) > 2
    # served under names that say nothing: the loaded models' own facts decide; one not loaded yet is in both
    named = Studio({"first": load("demo:moving-digits"), "second": load("demo:digits"), "later": "some/folder"},
                   workdir=tmp_path / "named")
    assert models_for(named, clips=True) == ["first", "later"]
    assert models_for(named, clips=False) == ["second", "later"]
    assert models_for(Studio(["demo:digits"], workdir=tmp_path / "one"), clips=True) == ["demo:digits"]  # else none
    choices = {c["props"]["elem_id"]: [v for v, _ in c["props"]["choices"]]
               for c in build_app(demos).config["components"]
               if c["type"] == "dropdown" and c["props"].get("label") == "Model" and c["props"].get("elem_id")}
    assert choices["video-model"] == [VIDEO_DEMO] and VIDEO_DEMO not in choices["edit-model"], choices


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    video, _, _ = clips(1, seed=1, digit=3)
    return {"clip": write_clip(folder / "three.webm", video[0].transpose(0, 1), 8.0),
            "image": save_image(video[0, :, 0], folder / "three.png")}


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(["demo:digits", VIDEO_DEMO], workdir=tmp_path_factory.mktemp("kinds"))


CALLS = {
    "edit: an image for a video model": (lambda s, f: list(s.edit(str(f["image"]), VIDEO_DEMO, "3", "8", **FORM)),
                                         f"{VIDEO_DEMO} is a video model, which edits clips: choose an image model"),
    "edit: a clip": (lambda s, f: list(s.edit(str(f["clip"]), "demo:digits", "3", "8", **FORM)),
                     "three.webm is a clip: edit clips in the Video tab"),
    "translate: to a video model": (
        lambda s, f: list(s.translate(str(f["image"]), "demo:digits", VIDEO_DEMO, target="8", strength=0.5,
                                      steps=2, eta=0.1)), f"{VIDEO_DEMO} is a video model"),
    "encode: an image for a video model": (lambda s, f: s.encode(str(f["image"]), VIDEO_DEMO, "3", steps=2),
                                           f"{VIDEO_DEMO} is a video model"),
    "encode: a clip": (lambda s, f: s.encode(str(f["clip"]), "demo:digits", "3", steps=2),
                       "three.webm is a clip: edit clips in the Video tab"),
    "video: a clip for an image model": (lambda s, f: clip_input(s, str(f["clip"]), "demo:digits"),
                                         "demo:digits is an image model, which edits images: choose a video model"),
    "video: an edit by an image model": (lambda s, f: list(edit_clip(s, str(f["clip"]), "demo:digits", "3", "8",
                                                                     **FORM)), "demo:digits is an image model"),
    "video: an image": (lambda s, f: clip_input(s, str(f["image"]), VIDEO_DEMO),
                        "three.png is not a clip: upload a .mp4"),
}


@pytest.mark.parametrize("case", list(CALLS))
def test_an_image_for_a_video_model_or_a_clip_for_an_image_model_is_one_line_naming_the_fix(studio, files, case):
    call, words = CALLS[case]
    before = set(studio.folders.root.rglob("*")) if studio.folders.root.exists() else set()
    with pytest.raises(CycleDiffError) as err:
        call(studio, files)
    line = public(str(err.value))
    assert words in line and "\n" not in line and str(files["clip"].parent) not in line, line
    after = set(studio.folders.root.rglob("*")) if studio.folders.root.exists() else set()
    assert not [p for p in after - before if p.is_file()], "a refused upload wrote something"

"""The web forms' field of a target's own condition keywords (the CLI's --condition): read into the edit's settings
as the CLI reads them, a keyword the model does not take one line on the page, a class-conditional model none."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from cyclediff.errors import CycleDiffError  # noqa: E402
from cyclediff.models import load  # noqa: E402
from cyclediff.models.wan import Wan  # noqa: E402
from cyclediff.web import Studio  # noqa: E402
from cyclediff.web.forms import family_keywords  # noqa: E402
from tiny_wan import FRAMES, SIZE, wan_pipeline  # noqa: E402

SHARED = {"strength": 0.5, "steps": 2, "eta": 0.1, "method": "cyclediffusion"}


@pytest.fixture(scope="module")
def studio(tmp_path_factory, wan):
    """Wan 2.2 A14B-shaped (its own keyword: guidance_scale_2), Wan 2.1 (none of its own) and the demo digits."""
    wan22 = Wan(wan_pipeline(tmp_path_factory.mktemp("wan22"), two_stage=True), frames=FRAMES, size=(SIZE, SIZE))
    return Studio({"wan": wan22, "wan21": load(str(wan)), "digits": "demo:digits"},
                  workdir=tmp_path_factory.mktemp("forms"))


def test_the_field_reaches_the_edits_settings(studio):
    settings, _ = studio.edit_task(studio.model("wan"), "wan", "a cat", "a dog", SHARED, 5.0, 1.0,
                                   own="guidance_scale_2=3\n\n")
    assert settings.condition == {"guidance_scale_2": 3} and settings.api()["prompt"] == {
        "prompt": "a dog", "guidance_scale_2": 3}
    plain, _ = studio.edit_task(studio.model("wan"), "wan", "a cat", "a dog", SHARED, 5.0, 1.0)
    assert plain.condition == {} and "condition" not in plain.record()


@pytest.mark.parametrize("model, text, message", [
    ("wan", "guidance_rescale=0.7",
     "own condition keywords: Wan's video transformer takes no condition keyword 'guidance_rescale'"),
    ("wan", "guidance_scale=2", "guidance_scale has its own option"),
    ("wan", "three", "give a condition keyword as KEY=VALUE"),
    ("wan21", "guidance_scale_2=3", "no condition keyword 'guidance_scale_2' \\(--target-condition\\); it has none"),
    ("digits", "eta=1", "it has none beyond the prompt and the guidance scale"),
])
def test_a_keyword_the_model_does_not_take_is_one_line(studio, model, text, message):
    with pytest.raises(CycleDiffError, match=message) as err:
        family_keywords(studio.model(model), text)
    assert "\n" not in str(err.value)

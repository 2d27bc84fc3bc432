"""The page's starting values: the Edit form takes the served model's recommended settings (``model.defaults``,
from its cyclediff.json), else the settings' defaults; the Guide tab keeps each chain's best state and shows
whole captions and a legend that fits."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from cyclediff.demo.train import SCHEDULER, make_unet  # noqa: E402
from cyclediff.models.pixel import PixelDenoiser  # noqa: E402
from cyclediff.settings import EDIT  # noqa: E402
from cyclediff.web import Studio  # noqa: E402


def _component(config: dict, elem_id: str) -> dict:
    (found,) = [c for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    return found["props"]


def _plain_model() -> PixelDenoiser:
    """A class-conditional pixel model with no cyclediff.json: no recommended settings."""
    return PixelDenoiser(make_unet(11), SCHEDULER, null_class_label=10)


def test_the_edit_form_starts_from_the_served_models_recommended_guidance(tmp_path):
    from cyclediff.models import load
    from cyclediff.web.app import _model_defaults, build_app

    assert load("demo:digits").defaults == {"guidance_scale": 1.0}  # shipped in its cyclediff.json
    assert _plain_model().defaults == {}
    assert EDIT.guidance_scale != 1.0  # else this test could not fail
    studio = Studio({"demo:digits": "demo:digits", "plain": _plain_model()}, workdir=tmp_path / "a")
    assert studio.defaults("demo:digits").guidance_scale == 1.0
    assert studio.defaults("plain") == EDIT
    config = build_app(studio).get_config_file()
    assert _component(config, "edit-guidance")["value"] == 1.0
    assert _component(config, "edit-steps")["value"] == EDIT.steps
    # choosing another model in the form sets its values
    assert list(_model_defaults(studio, "plain"))[0][3] == EDIT.guidance_scale
    assert list(_model_defaults(studio, "demo:digits"))[0][3] == 1.0
    # a server whose first model recommends nothing starts from the settings' defaults
    plain = Studio({"plain": _plain_model(), "demo:digits": "demo:digits"}, workdir=tmp_path / "b")
    assert _component(build_app(plain).get_config_file(), "edit-guidance")["value"] == EDIT.guidance_scale

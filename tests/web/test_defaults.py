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


SCRIPTED = ("VALUES = [[5.0, 5.0], [1.0, 4.0], [9.0, 2.0]]\nCALLS = []\n\n"
            "def energy(x):\n    CALLS.append(1)\n    import torch\n"
            "    return x.flatten(1).sum(1) * 0 + torch.tensor(VALUES[len(CALLS) - 1], dtype=x.dtype)\n")


def test_the_guide_tab_shows_each_chains_best_state_with_a_whole_caption(tmp_path, monkeypatch):
    """Chain 0's energy jumps at its last step: the page shows its best state (step 1) and that state's energy."""
    import json

    from PIL import Image

    from cyclediff._images import load_image
    from cyclediff.batch.outputs import PNG_KEY
    from cyclediff.web.app import CSS, build_app, chain_caption

    (tmp_path / "scripted_energy.py").write_text(SCRIPTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    studio = Studio(workdir=tmp_path / "w", energies=["scripted_energy:energy"])
    events = list(studio.guide("demo:digits", "scripted_energy:energy", weight=1.0, langevin_steps=2,
                               step_size=0.5, steps=3, seeds="0", count=2))
    frames = {n: images for kind, (n, images, _) in ((k, v) for k, v in events if k == "step")}
    (results,) = [value for kind, value in events if kind == "done"]
    assert [r.metrics["energy_end"] for r in results] == [1.0, 2.0]  # the last state's were 9 and 2
    out = load_image(results[0].output, channels=1)[0]
    assert (frames[1][0] - frames[2][0]).abs().max() > 0.1
    assert (out - frames[1][0]).abs().max() <= 1 / 255 + 1e-6
    with Image.open(results[0].output) as img:
        assert json.loads(img.text[PNG_KEY])["keep_best"] is True
    # captions whole (and short), wrapped rather than cut off; the legend's chain names short, under a title
    assert chain_caption(results[0]) == "seed 0: 5 → 1"
    assert "white-space: normal" in CSS and "text-overflow: clip" in CSS
    plot = _component(build_app(studio).get_config_file(), "guide-plot")
    assert plot["color_title"] == "seed" and plot["x_title"] == "Langevin step"

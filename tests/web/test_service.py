"""The web service: its default model list comes from the shipped demo weights (``models.demo_names``), not from
the demo's training code; its forms build settings through the job files' constructor."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_serving_lists_the_shipped_demos_without_importing_the_trainer():
    code = ("import sys, cyclediff.web.service as s; from cyclediff.models import demo_names; "
            "print(sorted(n.removeprefix('demo:') for n in s.DEMO_MODELS) == demo_names(), s.DEMO_MODELS[0], "
            "'cyclediff.demo.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "demo:digits", "False"]  # every shipped demo; the page's examples use the first


def test_the_form_builds_settings_as_a_job_file_does_and_drops_knobs_the_method_does_not_take(tmp_path):
    """The form always sends η; with a method that takes none (DDIB, FlowEdit) it is left out, not refused, and
    the result is the Python API's edit with that method; an unknown method is one line naming the choices."""
    import torch

    from cyclediff import CycleDiffError, translate
    from cyclediff._images import as_written, load_image, save_image
    from cyclediff.models import StableDiffusion3, load
    from cyclediff.settings import EditSettings
    from cyclediff.web import Studio
    from cyclediff.web.service import form_settings
    from tiny_sd import photos, sd3_pipeline, tiny_clip

    digit = tmp_path / "d.png"
    save_image(torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)), digit)
    studio = Studio({"demo:digits": "demo:digits", "sd3": StableDiffusion3(sd3_pipeline(tmp_path))},
                    clip=tiny_clip(tmp_path), workdir=tmp_path / "w")
    events = list(studio.edit(str(digit), "demo:digits", "3", "8", strength=0.8, steps=10, eta=0.7,
                              guidance_scale=2.0, method="ddib"))
    (result,) = events[-1][1]
    assert result.status == "ok", result.error
    model = load("demo:digits")
    ours = translate(load_image(digit, channels=1), model, model, strength=0.8, steps=10, method="ddib",
                     source_condition={"class_labels": [3]},
                     target_condition={"class_labels": [8], "guidance_scale": 2.0}).images
    torch.testing.assert_close(load_image(result.output, channels=1), as_written(ours), rtol=0, atol=1 / 255 + 1e-6)
    save_image(photos(1)[0], tmp_path / "photo.png")
    events = list(studio.edit(str(tmp_path / "photo.png"), "sd3", "a cat", "a dog", strength=0.5, steps=4, eta=0.7,
                              guidance_scale=2.0, method="flowedit"))
    assert [r.status for r in events[-1][1]] == ["ok"]
    settings = form_settings(EditSettings, {"method": "flowedit", "eta": 0.7, "steps": 4, "strength": 0.5})
    assert settings.eta == EditSettings().eta and settings.method == "flowedit"
    assert form_settings(EditSettings, {"method": "sdedit", "eta": 0.7}).eta == 0.7  # a method's own knob stays
    with pytest.raises(CycleDiffError, match="method must be one of"):
        form_settings(EditSettings, {"method": "bogus", "eta": 0.7})
    with pytest.raises(CycleDiffError, match="the edit task has no settings"):
        form_settings(EditSettings, {"method": "sdedit", "colour": "red"})

"""The web service: its default model list comes from the shipped demo weights (``models.demo_names``), not from
the demo's training code; its forms build settings through the job files' constructor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch


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
    from cyclediff.web.forms import form_settings
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


DIGIT = Path(__file__).resolve().parents[2] / "examples" / "digits" / "three.png"


def _sweep(studio, strengths: str, **kw):
    return studio.edit(str(DIGIT), "demo:digits", "3", "8", strength=kw.pop("strength", 0.8), steps=kw.pop("steps", 8),
                       eta=0.7, guidance_scale=1.0, strengths=strengths, **kw)


def test_a_strength_list_edits_at_each_streams_captions_and_ends_with_a_contact_sheet(tmp_path):
    """"Strengths to compare": one edit per strength (each the single edit at that strength), captioned with its
    strength as it comes, then the contact sheet (the input, then each output, 2 px gaps) as the gallery's last
    item; a bad list is one line naming the fix, refused before any upload is read or model loaded."""
    pytest.importorskip("gradio")
    from cyclediff import CycleDiffError
    from cyclediff._images import load_image
    from cyclediff.web import Studio
    from cyclediff.web.results import show

    studio = Studio(["demo:digits"], workdir=tmp_path / "w")
    events = list(_sweep(studio, "0.5, 0.75,1"))
    results = [v for k, v in events if k == "result"]
    assert [(r.status, r.unit.settings.strength) for r in results] == [("ok", 0.5), ("ok", 0.75), ("ok", 1.0)]
    (sheet,) = [v for k, v in events if k == "sheet"]
    assert sheet.strengths == (0.5, 0.75, 1.0) and sheet.seed == 0 and [k for k, _ in events][-2:] == ["sheet", "done"]
    outs = [load_image(r.output) for r in results]
    assert all((a - b).abs().max() > 0.05 for a, b in ((outs[0], outs[1]), (outs[1], outs[2])))  # strength applied
    single = [v for k, v in _sweep(studio, "", strength=0.75) if k == "done"][0][0]
    torch.testing.assert_close(load_image(single.output), outs[1], rtol=0, atol=0)  # the edit at that strength
    tiles, (h, w) = load_image(sheet.path), outs[0].shape[-2:]
    assert tiles.shape[-2:] == (h, 4 * w + 3 * 2)
    torch.testing.assert_close(tiles[..., :w], load_image(DIGIT, size=(h, w), fit="resize"), rtol=0, atol=0)
    for k, out in enumerate(outs, start=1):
        torch.testing.assert_close(tiles[..., k * (w + 2):k * (w + 2) + w], out, rtol=0, atol=0)
        assert (tiles[..., k * (w + 2) - 2:k * (w + 2)] == 1).all()  # the white gap before it
    *_, (gallery, status, *_) = show(iter(events), 1, lambda *a, **k: None)
    assert [caption for _, caption in gallery] == ["strength 0.5 · seed 0", "strength 0.75 · seed 0",
                                                   "strength 1 · seed 0", "seed 0: input, then strength 0.5, 0.75, 1"]
    assert gallery[-1][0] == str(sheet.path) and status.startswith("3 of 3 done")
    for bad, words in (("0.5,2", "strength must lie in (0, 1]; got 2"), ("0.5,abc", "give a number or a comma list"),
                       ("0.5,nan", "finite")):
        with pytest.raises(CycleDiffError, match="strengths to compare") as err:
            studio.edit(None, "demo:digits", "3", "8", strength=0.8, steps=8, eta=0.7, guidance_scale=1.0,
                        strengths=bad)
        assert words in str(err.value) and "\n" not in str(err.value) and "/" not in str(err.value)


def test_stopping_a_strength_sweep_stops_it_and_writes_no_sheet(tmp_path):
    from cyclediff.web import Studio

    studio = Studio(["demo:digits"], workdir=tmp_path / "w", batch_size=1)
    events = _sweep(studio, "0.5,0.75,1", steps=400)
    first = next(v for k, v in events if k == "result")
    events.close()  # the page's Stop: the request's generator closed
    with studio._device:  # held by the work until its thread has really ended
        pass
    folder = Path(first.output).parent
    assert [p.name for p in folder.glob("*_edit_*.png")] == [Path(first.output).name]

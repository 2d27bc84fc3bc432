"""A model's recommended settings (its family's preset, a demo model's cyclediff.json) reach the command line where
the user gave no value, said in one line; a value the user gave wins."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cyclediff.cli import main
from cyclediff.models import load
from cyclediff.models.presets import recommended

DIGIT = str(Path(__file__).resolve().parents[2] / "examples" / "digits" / "three.png")


def _edit(tmp_path: Path, *extra: str):
    return CliRunner().invoke(main, ["edit", DIGIT, "--model", "demo:digits", "--source-class", "3",
                                     "--target-class", "8", "--steps", "4", "--out", str(tmp_path), *extra])


def test_the_model_recommended_guidance_is_used_when_none_is_given_and_said(tmp_path):
    assert recommended(load("demo:digits")) == {"guidance_scale": 1.0}  # its cyclediff.json
    res = _edit(tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert "recommended guidance scale 1.0 (give --guidance-scale to choose)" in res.output
    assert [p.name for p in (tmp_path / "a").glob("*.png")] == ["three_class8_s0.8_w1_seed0.png"]
    given = _edit(tmp_path / "b", "--guidance-scale", "3")
    assert given.exit_code == 0 and "its recommended" not in given.output
    assert [p.name for p in (tmp_path / "b").glob("*.png")] == ["three_class8_s0.8_w3_seed0.png"]


def test_a_family_record_preset_is_recommended_and_a_model_own_value_wins():
    class Model:
        family = "flux"
        defaults = {"steps": 4}

    from cyclediff.models.families import family

    assert recommended(Model()) == {**family("flux").defaults, "steps": 4}
    assert recommended(object()) == {}


def test_a_strength_list_edits_at_each_and_writes_one_contact_sheet(tmp_path):
    res = _edit(tmp_path, "--strength", "0.5,0.75,1", "--guidance-scale", "1")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["three_class8_s0.5_w1_seed0.png", "three_class8_s0.5_w1_seed0_strengths.png",
                     "three_class8_s0.75_w1_seed0.png", "three_class8_s1_w1_seed0.png"], names
    assert "contact sheet: input, s0.5, s0.75, s1" in res.output
    from cyclediff._images import load_image

    sheet, one = load_image(tmp_path / names[1]), load_image(tmp_path / names[0])
    assert sheet.shape[-1] == 4 * one.shape[-1] + 3 * 2 and sheet.shape[-2] == one.shape[-2]  # input + 3, 2 px gaps
    again = _edit(tmp_path, "--strength", "0.5,0.75,1", "--guidance-scale", "1")  # resumed: nothing to redo
    assert again.exit_code == 0 and again.output.count("exists; --overwrite to redo") == 3
    bad = _edit(tmp_path / "bad", "--strength", "0.5,2")
    assert bad.exit_code != 0 and "strength must lie in (0, 1]" in bad.output and "Traceback" not in bad.output

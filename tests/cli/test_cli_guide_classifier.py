"""``cyclediff guide --energy classifier``: the web app's classifier energy on the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cyclediff._images import load_image
from cyclediff.batch.outputs import recorded
from cyclediff.cli import main
from cyclediff.guidance.energies import DIGITS_CLASSIFIER

COMMON = ["guide", "--model", "demo:digits", "--energy", "classifier", "--weight", "10", "--langevin-steps", "3",
          "--steps", "5", "--seeds", "0-1", "--json"]


def test_the_classifier_energy_reaches_the_chains_and_is_recorded(tmp_path):
    out = {}
    for target in (7, 1):
        res = CliRunner().invoke(main, [*COMMON, "--target-class", str(target), "--out", str(tmp_path / str(target))])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output[res.output.index("{"):])["ok"] == 2
        out[target] = load_image(tmp_path / str(target) / "seed0000.png", channels=1)
        record = recorded(tmp_path / str(target) / "seed0000.png")
        assert record["target_class"] == target and record["classifier"] == DIGITS_CLASSIFIER
    assert (out[7] - out[1]).abs().max() > 0.05  # the class moves the chains


def test_the_classifier_energy_is_refused_in_one_line_without_its_class_or_with_a_bad_one(tmp_path):
    res = CliRunner().invoke(main, [*COMMON, "--out", str(tmp_path / "g")])
    assert res.exit_code == 2 and "--target-class" in res.output
    res = CliRunner().invoke(main, [*COMMON, "--target-class", "12", "--out", str(tmp_path / "g")])
    assert res.exit_code != 0 and "not one of the classifier's 10 classes" in res.output
    assert "Traceback" not in res.output

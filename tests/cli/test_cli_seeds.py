"""--seed and --seeds mean the same in edit, translate and guide; both at once is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cyclediff._images import save_image
from cyclediff.cli import main
from cyclediff.demo.data import split


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Path:
    _, _, x, y = split()
    return save_image((x[y == 3][0] + 1) / 2, tmp_path_factory.mktemp("in") / "three.png")


def cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_translate_takes_seed_and_seeds(three, tmp_path):
    base = ["translate", three, "--source-model", "demo:digit-3", "--target-model", "demo:digit-8", "--steps", "4",
            "--quiet"]
    res = cli(*base, "--seed", "5", "--out", tmp_path / "one")
    assert res.exit_code == 0, res.output
    assert [p.name.rsplit("_", 1)[-1] for p in (tmp_path / "one").glob("*.png")] == ["seed5.png"]
    res = cli(*base, "--seeds", "1-2", "--out", tmp_path / "two")
    assert res.exit_code == 0, res.output
    assert sorted(p.name.rsplit("_", 1)[-1] for p in (tmp_path / "two").glob("*.png")) == ["seed1.png", "seed2.png"]
    res = cli(*base, "--out", tmp_path / "default")
    assert res.exit_code == 0 and [p.name.rsplit("_", 1)[-1] for p in (tmp_path / "default").glob("*.png")] == [
        "seed0.png"]


@pytest.mark.parametrize("command", [
    ["translate", "x.png", "--source-model", "demo:digit-3", "--target-model", "demo:digit-8"],
    ["guide", "--model", "demo:digits", "--energy", "clip", "--text", "a digit"],
    ["edit", "x.png", "--model", "demo:digits"]])
def test_seed_and_seeds_together_are_refused(command, tmp_path):
    res = cli(*command, "--seed", "1", "--seeds", "0-3", "--out", tmp_path / "out")
    assert res.exit_code == 2 and "give --seed or --seeds, not both" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_guide_takes_seed(tmp_path):
    res = cli("guide", "--model", "demo:digits", "--energy", "cyclediff.demo.guidance:nonexistent", "--seed", "3",
              "--out", tmp_path)
    assert "No such option" not in res.output and res.exit_code != 0, res.output  # parsed; the energy refused


def test_output_file_of_other_settings_is_said_not_silently_renamed(three, tmp_path):
    """-o naming a file that holds another settings' output: the new one goes beside it, and that is said."""
    out = tmp_path / "three.latent.safetensors"
    base = ["encode", three, "--model", "demo:digit-3", "-o", out, "--quiet"]
    assert cli(*base, "--steps", "4").exit_code == 0 and out.is_file()
    res = cli(*base, "--steps", "5")
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if str(out) in line]
    assert len(lines) == 1 and "other settings" in lines[0] and "--overwrite" in lines[0], res.output
    assert len(list(tmp_path.glob("three_*.latent.safetensors"))) == 1

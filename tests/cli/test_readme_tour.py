"""The README's offline tour runs as written: every ``cyclediff …`` line of its command-line block, in order, in a
fresh folder (the paths it names relative to the checkout), and each writes what its comment says."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from cyclediff._video import read_clip
from cyclediff.cli import main

ROOT = Path(__file__).resolve().parents[2]


def tour_commands() -> list[list[str]]:
    """The command lines of the README's tour block (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("**Command line**", 1)[1].split("(`cyclediff` is", 1)[0]
    joined = block.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("cyclediff "):
            commands.append(shlex.split(line)[1:])
    return commands


def test_the_tour_block_is_found():
    commands = tour_commands()
    assert len(commands) >= 5 and {c[0] for c in commands} >= {"edit", "translate", "encode", "decode"}
    assert any(arg.endswith(".gif") for c in commands for arg in c)  # the clip line


def test_readme_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for args in tour_commands():
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, f"cyclediff {shlex.join(args)}\n{res.output}"
    tour = tmp_path / "tour"
    three = np.asarray(Image.open(ROOT / "examples" / "digits" / "three.png"), dtype=np.float64)
    back = np.asarray(Image.open(tour / "back.png"), dtype=np.float64)
    assert np.abs(back - three).max() <= 1  # "the input, exactly" (8-bit PNGs)
    assert len(list(tour.glob("three_class8_*seed*.png"))) == 4  # "four 8s, one per seed"
    source = read_clip(ROOT / "examples" / "digits" / "three-moving.gif", channels=1)
    (clip,) = tour.glob("three-moving_*.gif")
    out = read_clip(clip, channels=1)
    assert out.frames.shape == source.frames.shape and out.fps == source.fps  # 8 frames in, 8 out, same fps

"""Strength sweeps shared by the CLI and the web app: the comma list read once, units keyed per strength, and one
contact sheet per input and seed holding only the outputs that exist (a partial sweep's too)."""

from __future__ import annotations

import pytest
import torch

from cyclediff._images import load_image, save_image
from cyclediff.batch.runner import Unit
from cyclediff.batch.sheets import strengths_from, sweep_units, write_sheets
from cyclediff.errors import CycleDiffError
from cyclediff.settings import EditSettings


def test_a_strength_list_is_read_in_order_without_repeats_and_refused_in_one_line():
    assert strengths_from(" 0.7, 0.5,0.7,1 ") == (0.7, 0.5, 1.0)
    for bad, words in (("0.5,0", "strength must lie in (0, 1]"), ("a,b", "give a number or a comma list"),
                       (",", "give a number or a comma list")):
        with pytest.raises(CycleDiffError, match=r"^[^\n]*$") as err:
            strengths_from(bad)
        assert words in str(err.value)


def test_a_partial_sweep_gets_sheets_of_what_exists_per_input_and_seed(tmp_path):
    inputs = {}
    for stem in ("a", "b"):
        inputs[stem] = save_image(torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(len(stem))),
                                  tmp_path / f"{stem}.png")

    def units_at(strength: float) -> list[Unit]:
        return [Unit(i, f"{stem}/seed{s}", s, name=f"{stem}_s{strength:g}_seed{s}.png", input=inputs[stem],
                     settings=EditSettings(strength=strength)) for i, (stem, s) in enumerate(
                         [("a", 0), ("a", 1), ("b", 0)])]

    units = sweep_units((0.5, 0.6, 0.7), units_at)
    assert [u.index for u in units] == list(range(9)) and len({u.key for u in units}) == 9
    out = tmp_path / "out"
    written = {}
    for u in units:
        if u.name not in ("a_s0.6_seed0.png",) and not u.name.startswith("b_"):  # a's seed-0 s0.6 failed; b: none
            written[u.name] = save_image(torch.rand(3, 4, 4), out / u.name)
    sheets = write_sheets(units, out)
    assert [(s.path.name, s.seed, s.strengths) for s in sheets] == [
        ("a_s0.5_seed0_strengths.png", 0, (0.5, 0.7)), ("a_s0.5_seed1_strengths.png", 1, (0.5, 0.6, 0.7))]
    tiles = load_image(sheets[0].path)
    assert tiles.shape[-2:] == (4, 3 * 4 + 2 * 2)
    torch.testing.assert_close(tiles[..., 12:16], load_image(written["a_s0.7_seed0.png"]), rtol=0, atol=0)
    assert sorted(p.name for p in out.iterdir()) == sorted([*written, *(s.path.name for s in sheets)])

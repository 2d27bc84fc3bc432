"""Strength sweeps for every front end (``cyclediff edit --strength 0.5,0.6,0.7``, the web app's "Strengths to
compare"): a comma list of strengths read once, one run's units per strength (each its own encoding pass: the
strength picks where on the grid the encoding starts), and per input and seed one contact sheet — the input, then
the output at each strength, left to right, 2 px white gaps — to answer "which strength?"."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .._images import load_image, save_image
from ..errors import CycleDiffError
from ..settings import check_setting
from .runner import Unit

GAP = 2  # white pixels between two tiles of a sheet
SHEET_SUFFIX = "_strengths.png"  # a sheet is named by its row's first output


class Sheet(NamedTuple):
    """A contact sheet written: its file, the seed of its row and the strengths it shows (after the input)."""

    path: Path
    seed: int
    strengths: tuple[float, ...]


def strengths_from(text: Any) -> tuple[float, ...]:
    """``"0.5,0.6,0.7"`` → (0.5, 0.6, 0.7), each checked as the strength setting is, repeats dropped (order
    kept); anything else is one line naming the fix."""
    try:
        numbers = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError as err:
        raise CycleDiffError(f"give a number or a comma list of numbers in (0, 1], e.g. 0.5,0.6,0.7; got "
                             f"{str(text)[:60]!r}") from err
    if not numbers:
        raise CycleDiffError("give a number or a comma list of numbers in (0, 1], e.g. 0.5,0.6,0.7")
    return tuple(dict.fromkeys(check_setting("strength", v) for v in numbers))


def sweep_units(strengths: tuple[float, ...], units_at: Callable[[float], list[Unit]]) -> list[Unit]:
    """Every strength's units in one list, keyed by strength (a resumed sweep skips what it has); one strength:
    its units as they are."""
    if len(strengths) == 1:
        return units_at(strengths[0])
    units: list[Unit] = []
    for strength in strengths:
        for u in units_at(strength):
            units.append(dataclasses.replace(u, index=len(units), key=f"{u.key}/s{strength:g}"))
    return units


def sheet_rows(units: list[Unit]) -> list[list[Unit]]:
    """A sweep's units by input and seed (each row in the order of the strengths)."""
    rows: dict[tuple[str, int], list[Unit]] = {}
    for u in units:
        rows.setdefault((u.key.rsplit("/s", 1)[0], u.seed), []).append(u)
    return list(rows.values())


def contact_sheet(source: Path, outputs: list[Path], path: Path) -> Path:
    """One row, written atomically at ``path``: ``source`` resized to the outputs' size, then each output, with
    2 px white gaps."""
    shown = [_rgb(load_image(f)) for f in outputs]
    size = tuple(shown[0].shape[-2:])
    gap = torch.ones(3, size[0], GAP)
    tiles = [_rgb(load_image(source, size=size, fit="resize")), *shown]
    return save_image(torch.cat([t for tile in tiles for t in (tile, gap)][:-1], dim=2), path)


def write_sheets(units: list[Unit], out: Path) -> list[Sheet]:
    """After a sweep into ``out`` (a failed or partial one too): per input and seed,
    ``<first output's stem>_strengths.png`` holding the input and each strength's output that exists."""
    sheets = []
    for row in sheet_rows(units):
        done = [u for u in row if u.name.endswith(".png") and (out / u.name).is_file()]
        if not done or row[0].input is None:
            continue
        path = contact_sheet(row[0].input, [out / u.name for u in done], out / (Path(row[0].name).stem + SHEET_SUFFIX))
        sheets.append(Sheet(path, row[0].seed, tuple(u.settings.strength for u in done)))
    return sheets


def _rgb(image: torch.Tensor) -> torch.Tensor:
    return image[0] if image.ndim == 4 else image


__all__ = ["Sheet", "contact_sheet", "sheet_rows", "strengths_from", "sweep_units", "write_sheets"]

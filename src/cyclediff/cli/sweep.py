"""``--strength 0.5,0.6,0.7,0.8``: one edit per strength (each its own encoding pass: the strength picks where on
the grid the encoding starts), the outputs named by their strength as single runs name them, and one contact sheet
per input and seed — the input, then the edit at each strength, left to right — to answer "which strength?"."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import torch

from .._images import load_image, save_image
from ..batch.runner import Unit
from ..errors import CycleDiffError
from ..settings import check_setting


def parse_strengths(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``--strength``: one number, or a comma list of them (a sweep), each checked as the setting is."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        numbers = [float(v) for v in str(value).split(",") if v.strip()]
    except ValueError as err:
        raise click.BadParameter(f"give a number or a comma list of numbers in (0, 1], e.g. 0.5,0.6,0.7; got "
                                 f"{value!r}") from err
    try:
        values = tuple(check_setting("strength", v) for v in numbers)
    except CycleDiffError as err:  # the setting's own one-line range error
        raise click.BadParameter(str(err)) from err
    if not values:
        raise click.BadParameter("give a number or a comma list of numbers in (0, 1]")
    values = tuple(dict.fromkeys(values))
    return values[0] if len(values) == 1 else values


def strengths_of(opts: dict[str, Any]) -> tuple[tuple[float, ...], dict[str, Any]]:
    """(the strengths asked for, the options with the first one as ``strength``: settings are built from it)."""
    value = opts["strength"]
    strengths = value if isinstance(value, tuple) else (value,)
    return strengths, {**opts, "strength": strengths[0]}


def sweep_units(strengths: tuple[float, ...], units_at: Callable[[float], list[Unit]]) -> list[Unit]:
    """Every strength's units in one list, keyed by strength (a resumed sweep skips what it has)."""
    if len(strengths) == 1:
        return units_at(strengths[0])
    units: list[Unit] = []
    for strength in strengths:
        for u in units_at(strength):
            units.append(dataclasses.replace(u, index=len(units), key=f"{u.key}/s{strength:g}"))
    return units


@contextlib.contextmanager
def contact_sheets(units: list[Unit], out: Path, strengths: tuple[float, ...], *, quiet: bool) -> Iterator[None]:
    """After the run (a failed one too): per input and seed, ``<first output's name>_strengths.png`` holding the
    input and each strength's output that exists, at the outputs' size."""
    try:
        yield
    finally:
        if len(strengths) > 1:
            _write_sheets(units, out, strengths, quiet)


def _write_sheets(units: list[Unit], out: Path, strengths: tuple[float, ...], quiet: bool) -> None:
    rows: dict[tuple[str, int], list[Unit]] = {}
    for u in units:
        rows.setdefault((u.key.rsplit("/s", 1)[0], u.seed), []).append(u)
    for row in rows.values():
        files = [out / u.name for u in row if (out / u.name).is_file() and u.name.endswith(".png")]
        if not files or row[0].input is None:
            continue
        shown = [load_image(f) for f in files]
        size = tuple(shown[0].shape[-2:])
        source = load_image(row[0].input, size=size, fit="resize")
        gap = torch.ones(3, size[0], 2)
        tiles = [source] + shown
        sheet = torch.cat([t for tile in tiles for t in (tile[0] if tile.ndim == 4 else tile, gap)][:-1], dim=2)
        path = out / (Path(row[0].name).stem + "_strengths.png")
        save_image(sheet, path)
        if not quiet:
            said = ", ".join(f"s{s:g}" for s, u in zip(strengths, row) if (out / u.name).is_file())
            click.echo(f"contact sheet: input, {said} → {path}")


__all__ = ["contact_sheets", "parse_strengths", "strengths_of", "sweep_units"]

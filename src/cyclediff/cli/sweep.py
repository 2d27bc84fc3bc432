"""``--strength 0.5,0.6,0.7,0.8``: one edit per strength (each its own encoding pass: the strength picks where on
the grid the encoding starts), the outputs named by their strength as single runs name them, and one contact sheet
per input and seed — the input, then the edit at each strength, left to right — to answer "which strength?"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..batch.runner import Unit
from ..batch.sheets import strengths_from, sweep_units, write_sheets
from ..errors import CycleDiffError


def parse_strengths(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``--strength``: one number, or a comma list of them (a sweep), each checked as the setting is."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        values = strengths_from(value)
    except CycleDiffError as err:  # one line: the list's own error, or the setting's range error
        raise click.BadParameter(str(err)) from err
    return values[0] if len(values) == 1 else values


def strengths_of(opts: dict[str, Any]) -> tuple[tuple[float, ...], dict[str, Any]]:
    """(the strengths asked for, the options with the first one as ``strength``: settings are built from it)."""
    value = opts["strength"]
    strengths = value if isinstance(value, tuple) else (value,)
    return strengths, {**opts, "strength": strengths[0]}


@contextlib.contextmanager
def contact_sheets(units: list[Unit], out: Path, strengths: tuple[float, ...], *, quiet: bool) -> Iterator[None]:
    """After the run (a failed one too): per input and seed, ``<first output's name>_strengths.png`` holding the
    input and each strength's output that exists, at the outputs' size (:func:`cyclediff.batch.sheets.write_sheets`)."""
    try:
        yield
    finally:
        if len(strengths) > 1:
            for sheet in write_sheets(units, out):
                if not quiet:
                    said = ", ".join(f"s{s:g}" for s in sheet.strengths)
                    click.echo(f"contact sheet: input, {said} → {sheet.path}")


__all__ = ["contact_sheets", "parse_strengths", "strengths_of", "sweep_units"]

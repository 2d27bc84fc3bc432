"""The ``cyclediff`` command group: library errors (bad input the user can fix) become one-line messages."""

from __future__ import annotations

from typing import Any

import click

from .._version import __version__
from ..errors import CycleDiffError


def _one_line(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Python warnings as ``warning: …`` lines (not a source path and line of code)."""
    click.echo(f"warning: {message}", err=True)


class _Group(click.Group):
    """Turns library errors (bad input the user can fix) into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        import warnings

        warnings.showwarning = _one_line
        try:
            return super().invoke(ctx)
        except CycleDiffError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="cyclediff")
def main() -> None:
    """The stochastic latent space of diffusion models: encode real images, decode them with other prompts or
    other models (CycleDiffusion)."""

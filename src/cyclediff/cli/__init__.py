"""The ``cyclediff`` command line: one module per command group, each only options → settings → the runner
(:mod:`cyclediff.batch.runner`); devices, dtypes, seeds, progress and files are chosen here, the library does the
work. Errors users can fix become one-line messages (:mod:`cyclediff.cli.main`)."""

from __future__ import annotations

from . import batch, bench, convert, demo, guide, images, latents, serve  # noqa: F401 - each registers its commands on main
from .main import main
from .options import parse_seeds, resolve_device

__all__ = ["main", "parse_seeds", "resolve_device"]

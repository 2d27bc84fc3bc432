"""Folders written whole: a new folder put in the place of an old one, never merged into it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ._files import process_umask
from .errors import CycleDiffError


def atomic_folder(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a new folder beside ``path``, then put it in the place of ``path``: a folder there is
    replaced whole (renamed aside, then removed), never merged into. On failure ``path`` is as it was and no
    temporary folder is left; the new folder gets the permissions a new folder gets under the umask."""
    import shutil

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CycleDiffError(f"{path} is a file; name a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = tmp.with_suffix(".old")
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~process_umask())  # mkdtemp's folder is private (0700)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path

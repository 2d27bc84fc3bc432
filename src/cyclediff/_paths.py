"""Input paths and output names: the images of a folder, repeats dropped, one distinct file-name-safe name each."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import CycleDiffError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")  # what folders of inputs hold


def list_images(folder: Path) -> list[Path]:
    """The images (:data:`IMAGE_SUFFIXES`) in a folder, sorted; an error naming the folder when there are none."""
    if not folder.is_dir():
        raise CycleDiffError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CycleDiffError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def distinct_paths(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(the paths with repeats of the same file removed, in order; the repeats dropped)."""
    seen: set[Path] = set()
    kept, dropped = [], []
    for p in paths:
        key = Path(p).resolve()
        (dropped if key in seen else kept).append(p)
        seen.add(key)
    return kept, dropped


def unique_names(paths: list[Path]) -> list[str]:
    """One distinct, file-name-safe name per input path: its stem where that is unique; where stems repeat, the
    path from the clashing files' common folder ('c1__cat', 'c2__cat'), with the suffix where only it differs
    ('cat-png', 'cat-jpg'). Paths must be distinct (dedupe them first)."""
    names = []
    for p in paths:
        clash = [q for q in paths if q.stem == p.stem]
        if len(clash) == 1:
            names.append(safe_id(p.stem))
            continue
        resolved = [q.resolve() for q in clash]
        root = Path(os.path.commonpath([str(q.parent) for q in resolved]))
        parts = list(p.resolve().relative_to(root).parts)
        same_suffix = len({q.suffix for q in clash}) == 1
        parts[-1] = p.stem if same_suffix else p.name.replace(".", "-")
        names.append(safe_id("__".join(parts)))
    return names


def safe_id(text: str) -> str:
    """A file-name-safe form of ``text``: itself when already safe, else the cleaned text plus a short hash of the
    original, so that different texts ('a/b', 'a b', 'a-b') never share an id."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "item"
    return clean if clean == text else f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"

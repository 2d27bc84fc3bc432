"""Output files that know how they were made: a name with a short hash of every setting that changes the result,
the settings themselves recorded in the file, and a skip decision that compares them."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .._files import check_writable
from ..errors import CycleDiffError

PNG_KEY = "cyclediff"  # the PNG text chunk holding the settings of an output
RECORD_KEY = "cyclediff.record"  # the same in a latent file's metadata
CLIP_FACTS = "clip"  # a clip latent's record: the clip's frames and fps (facts of the output, not settings)
SCORES = "scores"  # an output's record: its scores (edit --score), facts of the output, not settings


def slug(text: str, limit: int = 40) -> str:
    """A readable, file-name-safe fragment of ``text`` (not unique: names also carry :func:`settings_key`)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "empty"


def settings_key(settings: dict[str, Any]) -> str:
    """8 hex digits of a hash of the settings: outputs of different settings never share a name."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (an input's identity: same name, other pixels is another input); of a folder of
    frames, its files' names and bytes in order."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]:
        if path.is_dir():
            h.update(file.name.encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def recorded(path: Path) -> dict[str, Any] | None:
    """The settings recorded in an output cyclediff wrote (a PNG's text chunk, a latent file's metadata), or None
    (no such file, another kind of file, nothing recorded)."""
    from .._video import CLIP_SUFFIXES, read_record

    if path.is_dir() or path.suffix.lower() in CLIP_SUFFIXES:  # a clip (or folder of frames) cyclediff wrote
        text = read_record(path)
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return None
    if not path.is_file():
        return None
    try:
        if path.name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get(RECORD_KEY)
        else:
            from PIL import Image

            with Image.open(path) as img:
                text = getattr(img, "text", {}).get(PNG_KEY)
        return json.loads(text) if text else None
    except Exception:  # noqa: BLE001 - unreadable or foreign: nothing recorded
        return None


def as_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it reads back from a file (JSON types)."""
    return json.loads(json.dumps(record, default=str))


def place(base: Path, record: dict[str, Any], *, overwrite: bool, named: bool = False) -> tuple[Path, bool]:
    """(where to write the output of ``record``'s settings, whether it is already there).

    ``base`` when free, when it holds this very output (then it is skipped) or with ``overwrite`` (an output
    cyclediff wrote; a file it did not write only when the user ``named`` it, with -o); when it holds anything else
    (other settings, another input under the same name, a file cyclediff did not write: a decoded clip's name is
    its source clip's) the output gets a new name with the settings' key, ``<name>_<key>.png``, so nothing stale is
    kept and nothing is lost.
    """
    if not base.exists() or (overwrite and (named or recorded(base) is not None)):
        return base, False
    want = as_record(record)
    if not overwrite and _settings(base) == want:
        return base, True
    suffix = ".latent.safetensors" if base.name.endswith(".latent.safetensors") else base.suffix
    other = base.with_name(f"{base.name[: len(base.name) - len(suffix)]}_{settings_key(want)}{suffix}")
    return other, not overwrite and _settings(other) == want


def _settings(path: Path) -> dict[str, Any] | None:
    """What :func:`recorded` reads, less the output's facts (a clip latent's frames and fps, the scores)."""
    found = recorded(path)
    return {k: v for k, v in found.items() if k not in (CLIP_FACTS, SCORES)} if found else found


def decoded_suffix(path: Path, *, frames: bool = False) -> str:
    """A decoded latent's suffix: .png for an image's; a clip's: its encoded container (.mp4 when it recorded none),
    or none for a folder of frames (``frames``)."""
    facts = latent_clip(path)
    if facts is None:
        return ".png"
    return "" if frames else facts.get("suffix", ".mp4")


def latent_clip(path: Path) -> dict[str, Any] | None:
    """The clip facts a latent file records ({"frames", "fps", "suffix"}), {} for a clip's latent that records
    none (saved through the API), None for an image's latent."""
    facts = (recorded(path) or {}).get(CLIP_FACTS)
    if isinstance(facts, dict):
        return facts
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            shape = json.loads((f.metadata() or {}).get("cyclediff") or "{}").get("shape")
    except Exception:  # noqa: BLE001 - not a latent: decoding will say why
        return None
    return {} if isinstance(shape, list) and len(shape) == 5 else None


def check_out_folder(out: Path, option: str = "--out") -> Path:
    """A folder for outputs: refused up front when it, or a parent, is a file."""
    if out.exists() and not out.is_dir():
        raise CycleDiffError(f"{option} {out} is a file; name a folder (it is created when missing)")
    check_writable(out / "probe")
    _try_writing(out, option)
    return out


def _try_writing(out: Path, option: str) -> None:
    """Make and remove a folder in ``out`` (or its nearest existing parent): a place that takes no files (/proc,
    a read-only mount, another user's folder) is refused before anything is computed, not after."""
    import tempfile

    where = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    try:
        os.rmdir(tempfile.mkdtemp(dir=where, prefix=".cyclediff-probe-"))
    except OSError as err:
        raise CycleDiffError(f"cannot write to {option} {out} ({err.strerror or err}); choose a folder you can "
                             "write") from err


def check_out_file(path: Path, option: str = "-o/--output") -> Path:
    """One output file: refused up front when it is a folder, a device or under a file."""
    if path.is_dir():
        raise CycleDiffError(f"{option} {path} is a folder; name a file, or use --out DIR for a folder")
    return check_writable(path)

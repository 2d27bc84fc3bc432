"""Where the runner's outputs go and how it knows what is done.

- :class:`FileStore` (the CLI): outputs under names the user reads, each file recording the settings that made it
  (:mod:`cyclediff.batch.outputs`); a unit is done when its file holds exactly its settings.
- :class:`RecordStore` (jobs, evaluation): images under ``images/`` and one JSON line per unit in a records file;
  a unit is done when an ok record names an existing image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._images import save_image
from .._video import Clip, is_clip, write_clip
from ..latent import Latent
from ..settings import Settings
from .outputs import CLIP_FACTS, PNG_KEY, SCORES, as_record, file_digest, place
from .runner import Result, Unit


@dataclass(frozen=True)
class ClipLatent:
    """A clip's latent and the clip's facts (``frames``, ``fps``, the container ``suffix``), which its file's record
    keeps (``clip``) so that decoding writes the clip back at its frame rate."""

    latent: Latent
    facts: dict[str, Any]


class Records:
    """A JSONL file of records: appended a batch at a time, flushed and synced; torn lines are ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict] = {}
        for rec in read_records([path]):
            if rec.get("status") == "ok" and Path(rec.get("output") or "").is_file():
                self.done[rec["key"]] = rec
        self.new: list[dict] = []

    def add_many(self, records: list[dict]) -> None:
        """Several lines in one synced write (a crash tears at most the last line, which readers skip)."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r) + "\n" for r in records)
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a line torn by a crash: end it, so that it cannot swallow this one
                    text = "\n" + text
        with open(self.path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        for record in records:
            self.new.append(record)
            if record["status"] == "ok":
                self.done[record["key"]] = record

    def ok(self) -> list[dict]:
        return list(self.done.values())


def read_records(paths: Iterable[Path]) -> Iterable[dict]:
    """Every record (a JSON object with a key) in these files, skipping lines torn by a crash."""
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "key" in rec:
                yield rec


class FileStore:
    """Outputs at ``name(unit)``, each recording its settings (``record(unit)``: the unit's settings, its seed and
    the SHA-256 of its input); see :func:`~cyclediff.batch.outputs.place` for names and skipping. ``scores``: each
    file also records its task's scores (``scores``: PSNR, SSIM, CLIP scores; not settings, so not compared).
    ``named``: the user named the file (-o), which ``overwrite`` then replaces even when cyclediff did not write it."""

    def __init__(self, name: Callable[[Unit], Path], *, overwrite: bool = False,
                 latent_dtype: torch.dtype | None = None, scores: bool = False, named: bool = False) -> None:
        self.name, self.overwrite, self.latent_dtype, self.scores = name, overwrite, latent_dtype, scores
        self.named = named
        self._placed: dict[str, tuple[Path, bool, dict]] = {}

    def record(self, results: list[Result]) -> None:
        """Nothing to keep: each file records itself."""

    def settings_of(self, unit: Unit) -> dict[str, Any]:
        """The unit's record with its seed and the SHA-256 of its input and of every file a setting names (a mask,
        another latent): the same name with other bytes is another output."""
        record = {**unit.record(), "seed": unit.seed}
        for name in unit.settings.files if isinstance(unit.settings, Settings) else ():
            if isinstance(record.get(name), str) and Path(record[name]).is_file():
                record[f"{name}_sha256"] = file_digest(Path(record[name]))
        if unit.input is not None:
            record.update(input=unit.input.name, input_sha256=file_digest(unit.input))
        return as_record(record)

    def _place(self, unit: Unit) -> tuple[Path, bool, dict]:
        if unit.key not in self._placed:
            record = self.settings_of(unit)
            where = place(self.name(unit), record, overwrite=self.overwrite, named=self.named)
            self._placed[unit.key] = (*where, record)
        return self._placed[unit.key]

    def done(self, unit: Unit) -> bool:
        try:
            return self._place(unit)[1]
        except OSError:  # an unreadable input: not done; reading it will fail and say why
            return False

    def target(self, unit: Unit) -> Path:
        try:
            return self._place(unit)[0]
        except OSError:
            return self.name(unit)

    def write(self, unit: Unit, output: Any, metrics: dict[str, Any] | None = None) -> str:
        """One output (an image or a latent) at the unit's path; a dict of them (suffix → output, e.g.
        ``{".png": image, "_chain.png": strip}``) beside each other, the first one's path recorded."""
        path, _, record = self._place(unit)
        scores = {k: v for k, v in (metrics or {}).items() if k != "notes"} if self.scores else {}
        record = {**record, SCORES: scores} if scores else record
        if not isinstance(output, dict):
            return str(self._write_one(path, output, record))
        stem = path.name.removesuffix(".latent.safetensors").removesuffix(".png")
        written = [self._write_one(path.with_name(stem + suffix), value, record) for suffix, value in output.items()]
        return ", ".join(str(p) for p in written)

    def _write_one(self, path: Path, output: Any, record: dict) -> Path:
        if isinstance(output, Latent):
            return output.save(path, dtype=self.latent_dtype, record=record)
        if isinstance(output, ClipLatent):
            return output.latent.save(path, dtype=self.latent_dtype, record={**record, CLIP_FACTS: output.facts})
        if isinstance(output, Clip):
            return write_clip(path, output.frames, output.fps, record=json.dumps(record))
        return save_image(output, path, text={PNG_KEY: json.dumps(record)})


class RecordStore:
    """Images at ``folder / images / <unit.name>.png``, records in ``records`` (one JSON line per unit, built by
    ``line(result)``). ``done`` are the keys finished before; by default those the records file holds as ok with
    an existing image (jobs pass theirs: every rank's part and the merged manifest count)."""

    def __init__(self, folder: Path, records: Path, line: Callable[[Result], dict], *, done: set[str] | None = None,
                 relative: bool = True, on_line: Callable[[dict], None] | None = None) -> None:
        self.folder, self.records, self.line = folder, Records(records), line
        self.finished = set(self.records.done) if done is None else done
        self.relative, self.on_line = relative, on_line

    def done(self, unit: Unit) -> bool:
        return unit.key in self.finished

    def target(self, unit: Unit) -> Path:
        clip = unit.input is not None and is_clip(unit.input)  # a clip's output: its input's container (or frames)
        suffix = (unit.input.suffix.lower() if unit.input.is_file() else "") if clip else ".png"
        return self.folder / "images" / f"{unit.name}{suffix}"

    def write(self, unit: Unit, output: Any, metrics: dict[str, Any] | None = None) -> str:
        """The image at the unit's path; a dict of them (suffix → image: ``{".png": image, "_mask.png": mask}``)
        beside each other, the first one recorded; a clip as its input's container (``metrics``: the records line's)."""
        target = self.target(unit)
        if isinstance(output, Clip):
            written = write_clip(target, output.frames, output.fps)
            return written.relative_to(self.folder).as_posix() if self.relative else str(written)
        items = output.items() if isinstance(output, dict) else [(".png", output)]
        paths = [save_image(image, target.with_name(target.stem + suffix)) for suffix, image in items]
        return paths[0].relative_to(self.folder).as_posix() if self.relative else str(paths[0])

    def record(self, results: list[Result]) -> None:
        lines = [self.line(r) for r in results]
        self.records.add_many(lines)
        for line in lines if self.on_line is not None else []:
            self.on_line(line)

"""The web app's Video tab without the web: a clip upload read as the chosen video model takes it (frames cut or
strided, sides rounded: :func:`~cyclediff.api.clips.read_clip_for`, each change said in the status line), shown
enlarged as a VP9 .webm (every browser plays it; a 16 × 16 clip is seen), and edited through the runner as the CLI
edits clips: the result is the real-size clip in the upload's container, written atomically into the request's
folder. Work runs as the Edit tab's (:meth:`~cyclediff.web.service.Studio._run`): one computation on the device at
a time, ended at its next step when the page's Stop closes the request."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .._video import Clip, read_clip, write_clip
from ..api.clips import clip_frames, read_clip_for
from ..settings import EDIT, RUN, RunOptions
from .forms import whole
from .service import Studio, seeds_of
from .streams import first_then
from .uploads import upload

VIDEO_DEMO = "demo:moving-digits"  # the shipped video demo: the tab opens on it, with a moving 3 to edit into an 8
EXAMPLE_FPS = 8.0  # the example clip's frame rate (its 8 frames play in a second)
PREVIEW_SIDE = 256  # a clip shown on the page is enlarged (nearest, a whole factor) to at least this many pixels


def example_clip(studio: Studio) -> Path | None:
    """A held-out moving 3 (the video demo's data) as a .webm in the studio's own folder, when it serves the video
    demo; None otherwise."""
    if VIDEO_DEMO not in studio.names:
        return None
    path = studio.workdir / "examples" / "moving-3.webm"
    if not path.is_file():
        from ..demo.video_data import clips

        video, _, _ = clips(1, seed=0, digit=3)
        write_clip(path, clip_frames(video[0]), EXAMPLE_FPS)
    return path


def preview(frames: torch.Tensor, fps: float, path: Path) -> Path:
    """(F, C, H, W) frames in [0, 1] enlarged by a whole factor (nearest: pixels stay sharp) to at least
    :data:`PREVIEW_SIDE` a side, written as a VP9 .webm at ``fps``: what the page plays, not the result's file."""
    factor = max(1, -(-PREVIEW_SIDE // max(frames.shape[2:])))
    big = frames.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3) if factor > 1 else frames
    return write_clip(path.with_suffix(".webm"), big, fps)


def reading(studio: Studio, stride: Any = RUN.stride, max_frames: Any = RUN.max_frames) -> RunOptions:
    """How the Video tab reads a clip: the server's options with the form's "take every k-th frame" (``stride``;
    empty: every frame) and "at most N frames" (``max_frames``; empty or 0: the model's own length), checked as the
    CLI's --stride / --max-frames are (a bad value is one line)."""
    stride = RUN.stride if stride is None or stride == "" else whole(stride)
    max_frames = None if max_frames in (None, "", 0) else whole(max_frames)
    return studio.options().replace(stride=stride, max_frames=max_frames)


def _read(clip: Any, model: Any, policy: RunOptions) -> tuple[Path, Clip]:
    """The upload as ``model`` takes it (read as ``policy`` says), or one line saying what is wrong with it."""
    path = upload(clip, "a clip", model)
    return path, read_clip_for(model, path, size=policy.size, fit=policy.fit, max_pixels=policy.max_pixels,
                               max_frames=policy.max_frames, stride=policy.stride)


def _describe(clip: Clip) -> str:
    """The status line of the model's input: its frames, size and rate, and what reading did to the upload."""
    f, c, h, w = clip.frames.shape
    fps = f"{clip.fps:.3f}".rstrip("0").rstrip(".")
    line = f"the model's input: {f} frames of {h}×{w} {'grey' if c == 1 else 'colour'} at {fps} fps"
    return f"{line} ({'; '.join(clip.notes)})" if clip.notes else f"{line}, as uploaded"


def clip_input(studio: Studio, clip: Any, model: str, folder: Path | None = None, *, stride: Any = RUN.stride,
               max_frames: Any = RUN.max_frames) -> tuple[Path, str]:
    """The upload exactly as ``model`` will see it (every ``stride``-th frame, at most ``max_frames``: see
    :func:`reading`), enlarged for the page (a .webm), and the line saying what was done to the upload to get it
    (frames cut or strided, size rounded, audio dropped)."""
    _, seen = _read(clip, studio.model(model), reading(studio, stride, max_frames))
    return preview(seen.frames, seen.fps, (folder or studio.folder()) / "model-input.webm"), _describe(seen)


def edit_clip(studio: Studio, clip: Any, model: str, source: Any, target: Any, *, method: str = EDIT.method,
              strength: float, steps: int, eta: float, guidance_scale: float,
              source_guidance_scale: float = EDIT.source_guidance_scale, negative_prompt: str | None = None,
              seed: Any = "0", stride: Any = RUN.stride, max_frames: Any = RUN.max_frames,
              own: Any = "") -> Iterator[tuple[str, Any]]:
    """Edit one clip from ``source`` to ``target`` (prompts, or class labels for class-conditional models), as the
    Edit tab edits an image, the clip read as :func:`reading` says (the run reads it so too, and records the stride
    and frame limit given as the CLI does): first ("input", {"preview", "note", "folder"}) (the model's input,
    enlarged), then ("progress", (stage, k, n)) per step, ("result", Result) (its output: the real-size clip in the
    upload's container), ("preview", path) (the result enlarged, a .webm) and ("done", [Result]). Closing the iterator
    stops the work at its next step; nothing is written then."""
    m, policy = studio.model(model), reading(studio, stride, max_frames)
    path, seen = _read(clip, m, policy)
    folder = studio.folder()
    shown = {"preview": preview(seen.frames, seen.fps, folder / "model-input.webm"), "note": _describe(seen),
             "folder": folder}
    shared = {"strength": strength, "steps": whole(steps), "eta": eta, "method": method}
    settings, task = studio.edit_task(m, model, source, target, shared, guidance_scale, source_guidance_scale,
                                      negative_prompt, policy, own=own)
    units = [dataclasses.replace(u, name=str(Path(u.name).with_suffix(path.suffix.lower())),
                                 stamp={**u.stamp, **policy.clip_reading()})
             for u in studio._units(path, seeds_of(seed, 1)[:1], settings, "edit")]
    return first_then(("input", shown), _previewed(studio._run(task, units, folder=folder)))


def _previewed(events: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """The run's events, with ("preview", path) after each written clip: the file as written, enlarged."""
    with contextlib.closing(events):  # closing this (Stop) closes the run
        for kind, value in events:
            yield kind, value
            if kind == "result" and value.status == "ok":
                yield "preview", clip_preview(Path(value.output))


def clip_preview(path: Path) -> Path:
    """A written clip enlarged (:func:`preview`) as a .webm beside it: what the page plays of a result."""
    written = read_clip(path)
    return preview(written.frames, written.fps, path.with_name(f"{path.stem}-preview.webm"))


__all__ = ["EXAMPLE_FPS", "PREVIEW_SIDE", "VIDEO_DEMO", "clip_input", "clip_preview", "edit_clip", "example_clip",
           "preview", "reading"]

"""How results reach the page: the runner's events as a growing gallery with captions, a status line, the input
the model saw, the mask used and a before / after pair."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from .uploads import public

# the core's stages in a user's words (the progress line says what is being done, not a function's name)
STAGES = {"encode": "encoding", "decode": "decoding", "cycle": "editing", "invert": "inverting",
          "ddim": "generating", "sdedit": "generating", "flowedit": "editing", "guide": "guiding"}
EVERY = 0.2  # seconds between two progress updates (and at least this often a chance to stop)


def stage_progress(progress: Any, value: tuple[str, int, int], done: int, total: int) -> None:
    """One progress line for a step of the work: how many results are done, what is being done, which step."""
    stage, k, n = value
    progress((k, n), desc=f"{done} of {total} done · {STAGES.get(stage, 'working')}", unit="steps")


def show(events: Iterator[tuple[str, Any]], total: int, progress: Any, *, rank: bool = False) -> Iterator[tuple]:
    """The runner's results as a growing gallery and a status line, with the input the model saw, the mask used
    and a before / after pair: (gallery, status, input, mask, before-after). A strength sweep's results say their
    strength, and its contact sheets come last. ``total``: the results expected, unless the input event says."""
    shown: list[Any] = []
    sheets: list[Any] = []
    failed: list[str] = []
    seen: dict[str, Any] = {}
    last = 0.0
    for kind, value in events:
        if kind == "progress" and time.monotonic() - last > EVERY:
            stage_progress(progress, value, len(shown) + len(failed), total)
            kind = "tick"
        if kind in ("tick", "progress"):  # nothing new: no update (a stopped request is closed here)
            if kind == "tick":
                last = time.monotonic()
                yield (gr.skip(),) * 5
            continue
        if kind == "input":
            seen = dict(value)
            total = seen.get("total", total)
        if kind == "sheet":
            sheets.append(value)
        if kind == "result":
            if value.status == "failed":
                failed.append(f"seed {value.unit.seed}: {public(value.error)}")
            else:
                shown.append(value)
                seen["mask"] = seen.get("mask") or _files(value)[1]  # an automatic mask, found per edit
        ranked = rank and kind == "done" and any("directional_clip" in r.metrics for r in shown)
        if ranked:  # the paper's best of N: the largest directional CLIP first
            shown.sort(key=lambda r: -r.metrics.get("directional_clip", 0.0))
        items = [(_files(r)[0], _caption(r, bool(seen.get("strengths")))) for r in shown]
        lines = [f"{len(shown)} of {total} done" + (" · ranked by directional CLIP" if ranked else "")]
        lines += [seen["note"]] * ("note" in seen) + [f"**failed** {f}" for f in failed]
        pair = (seen["image"], items[0][0]) if items and seen.get("image") else None
        items += [(str(sheet.path), _sheet_caption(sheet)) for sheet in sheets]
        yield items, "\n\n".join(lines), seen.get("image"), _str(seen.get("mask")), pair


def _files(result: Any) -> tuple[str, str | None]:
    """A result's image, and the mask written beside it (an automatic mask), if any."""
    paths = str(result.output).split(", ")
    return paths[0], next((p for p in paths[1:] if p.endswith("_mask.png")), None)


def _str(path: Any) -> str | None:
    return None if path is None else str(path)


def _caption(result: Any, strength: bool = False) -> str:
    parts = [f"strength {result.unit.settings.strength:g}"] * strength + [f"seed {result.unit.seed}"]
    if "directional_clip" in result.metrics:
        parts.append(f"directional CLIP {result.metrics['directional_clip']:.3f}")
        parts.append(f"CLIP {result.metrics['clip_score']:.3f}")
    return " · ".join(parts)


def _sheet_caption(sheet: Any) -> str:
    """A contact sheet's caption: what its tiles are, left to right."""
    return f"seed {sheet.seed}: input, then strength {', '.join(f'{s:g}' for s in sheet.strengths)}"


def u8(images01: Any) -> Any:
    """(C, H, W) in [0, 1] → an 8-bit H × W (× 3) array for the live gallery."""
    arr = (images01.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr

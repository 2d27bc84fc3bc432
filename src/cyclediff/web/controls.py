"""What the page's tabs share: errors shown as one line, Stop, the one device slot, the sampling sliders and a
model's recommended values (:mod:`cyclediff.web.app` and :mod:`cyclediff.web.video` lay out their tabs with them)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import gradio as gr

from ..api.clips import is_video_model
from ..errors import CycleDiffError
from ..options import OPTIONS
from ..settings import EDIT
from .service import Studio
from .uploads import public

# Stop, in the browser: the status line says the run was stopped (unless it had finished: "N of N done")
STOPPED = r"""(s) => { s = s || ""; const m = /^(\d+) of (\d+) done/.exec(s);
  if (m && m[1] === m[2]) return s; return m ? s.replace(m[0], m[0] + " · stopped") : "stopped"; }"""
HEAVY = {"concurrency_id": "device", "concurrency_limit": 1}  # one job at a time on the model's device


def errors(fn):
    """Errors a user can fix shown as one message on the page (and the API's error), never a traceback, never a
    server path."""

    @functools.wraps(fn)  # gradio reads the signature (its gr.Progress parameter) through __wrapped__
    def wrapped(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            if isinstance(result, Iterator):
                yield from result
            else:
                yield result
        except CycleDiffError as err:
            raise gr.Error(public(err), print_exception=False) from err
        except MemoryError as err:
            raise gr.Error("out of memory: ask for fewer seeds or smaller images", print_exception=False) from err

    return wrapped


def sampling(defaults: Any, tab: str) -> tuple[gr.Slider, gr.Slider, gr.Slider]:
    return (gr.Slider(0.05, 1.0, value=defaults.strength, step=0.05, label="Strength", elem_id=f"{tab}-strength"),
            gr.Slider(1, 1000, value=defaults.steps, step=1, label="Steps", elem_id=f"{tab}-steps"),
            gr.Slider(0.05, 1.0, value=defaults.eta, step=0.05, label="η (eta)", elem_id=f"{tab}-eta"))


def eta_shown(method: str) -> Any:
    """η only for the methods that take it (DDIB and FlowEdit have none: the value sent is then left out)."""
    return gr.update(visible=method not in OPTIONS or "eta" in OPTIONS[method].knobs())


@errors
def model_defaults(studio: Studio, model: str) -> tuple[float, int, float, float, float]:
    """An edit form's sampling and guidance values for a model: its recommended ones, else the settings'."""
    s = studio.defaults(model, EDIT)
    return s.strength, s.steps, s.eta, s.guidance_scale, s.source_guidance_scale


def models_for(studio: Studio, clips: bool) -> list[str]:
    """The served models a tab can use, by each one's facts (:func:`~cyclediff.api.clips.is_video_model`: it says
    its clips' frames): the Video tab's (``clips``) make clips, the image tabs' the others. A shipped demo is loaded
    to ask (it is tiny); another model not loaded yet is offered to both (given the wrong input, it says so in one
    line). With none of the kind: every served model (the tab's error names the fix)."""
    kinds = {name: _makes_clips(studio, name) for name in studio.names}
    return [name for name, kind in kinds.items() if kind in (clips, None)] or studio.names


def _makes_clips(studio: Studio, name: str) -> bool | None:
    """Whether a served model makes clips; None: not known before it is loaded (a large model is not loaded for a
    list, nor one that fails to load)."""
    spec = studio.models[name]
    if isinstance(spec, str) and not spec.startswith("demo:"):
        return None
    try:
        return is_video_model(studio.model(name))
    except CycleDiffError:
        return None


def own_keywords(tab: str) -> Any:
    """The field of the target's own condition keywords (the CLI's --condition), one KEY=VALUE per line."""
    return gr.Textbox("", label="Target's own condition keywords", lines=1, max_lines=4, elem_id=f"{tab}-own",
                      placeholder="guidance_scale_2=3", info="KEY=VALUE per line: a model family's keywords beyond "
                      "the prompt and guidance (Wan 2.2's guidance_scale_2, LTX's guidance_rescale …)")

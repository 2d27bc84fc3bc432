"""The page's Video tab: a clip upload, the model's input as it sees it (frames cut, size rounded, said in the status
line), the edit's progress over its steps, the result playing beside the input and Stop; the work is
:mod:`cyclediff.web.clip_service`'s. With the video demo served it opens on a moving 3, target class 8."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from .._video import CLIP_SUFFIXES
from ..errors import CycleDiffError
from ..settings import EDIT, RUN
from .clip_service import VIDEO_DEMO, clip_input, edit_clip, example_clip, reading
from .controls import HEAVY, STOPPED, errors, eta_shown, model_defaults, own_keywords, sampling
from .results import EVERY, stage_progress
from .service import Studio
from .uploads import public

PLAYER = {"interactive": False, "autoplay": True, "loop": True, "height": 288, "buttons": []}


def video_tab(studio: Studio, names: list[str]) -> None:
    """The Video tab: the form on the left, the model's input and the result side by side on the right."""
    example = example_clip(studio)
    model = VIDEO_DEMO if VIDEO_DEMO in names else names[0]
    seen, note = _first_view(studio, example, model)
    with gr.Tab("Video", elem_id="video-tab"):
        with gr.Row():
            with gr.Column():
                form = _form(studio, names, model, example)
                with gr.Row():
                    run = gr.Button("Edit", variant="primary", elem_id="video-run")
                    stop = gr.Button("Stop", elem_id="video-stop")
            with gr.Column():
                status = gr.Markdown(note, label="Status", elem_id="video-status")
                with gr.Row():
                    v_seen = gr.Video(seen, label="The model's input", elem_id="video-seen", **PLAYER)
                    v_result = gr.Video(label="Result", elem_id="video-result", **PLAYER)
                v_file = gr.File(label="The result clip (its real size, the upload's container)",
                                 elem_id="video-download", interactive=False)
    view = errors(functools.partial(_view, studio))
    for box in ("clip", "model", "stride", "max_frames"):
        form[box].change(view, [form[k] for k in ("clip", "model", "stride", "max_frames")], [v_seen, status],
                         api_visibility="private")
    form["model"].change(functools.partial(model_defaults, studio), form["model"],
                         [form[k] for k in ("strength", "steps", "eta", "guidance", "source_guidance")],
                         api_visibility="private")
    form["method"].change(eta_shown, form["method"], form["eta"], api_visibility="private")

    @errors
    def edit(clip, model, source, target, method, strength, steps, eta, guidance_scale, source_guidance_scale,
             negative_prompt, seed, stride=RUN.stride, max_frames=RUN.max_frames, own="",
             progress=gr.Progress()):  # noqa: B008
        """Edit a clip from a source prompt (or class) to a target one, taking every ``stride``-th frame, at most
        ``max_frames`` (empty or 0: the model's own length): the result clip, in the upload's container and size,
        and an enlarged .webm of it that the page plays."""
        events = edit_clip(studio, clip, model, source, target, method=method, strength=strength, steps=steps,
                           eta=eta, guidance_scale=guidance_scale, source_guidance_scale=source_guidance_scale,
                           negative_prompt=negative_prompt, seed=seed, stride=stride, max_frames=max_frames,
                           own=own)
        yield from shown(events, progress)

    keys = ("clip", "model", "source", "target", "method", "strength", "steps", "eta", "guidance",
            "source_guidance", "negative", "seed", "stride", "max_frames", "own")
    event = run.click(edit, [form[k] for k in keys], [status, v_seen, v_result, v_file], api_name="edit_clip",
                      show_progress_on=[v_result], **HEAVY)
    stop.click(None, status, status, js=STOPPED, cancels=[event])


def _form(studio: Studio, names: list[str], model: str, example: Any) -> dict[str, Any]:
    """The clip, model, conditions and settings (the model's recommended values, as the Edit tab's)."""
    start = studio.defaults(model, EDIT)
    form = {"clip": gr.File(str(example) if example else None, label="Clip", file_types=list(CLIP_SUFFIXES),
                            elem_id="video-clip", height=120),
            "model": gr.Dropdown(names, value=model, label="Model", elem_id="video-model", info="a video model")}
    with gr.Row():
        form["source"] = gr.Textbox("3" if example else "", label="Source", elem_id="video-source",
                                    info="what the clip shows: a prompt, or a class label")
        form["target"] = gr.Textbox("8" if example else "", label="Target", elem_id="video-target",
                                    info="what it should show")
    form["method"] = gr.Radio(studio.methods(), value=start.method, label="Method", elem_id="video-method")
    with gr.Accordion("Settings", open=False, elem_id="video-settings"):
        form["strength"], form["steps"], form["eta"] = sampling(start, "video")
        form["guidance"] = gr.Slider(0, 20, value=start.guidance_scale, step=0.5, label="Target guidance scale",
                                     elem_id="video-guidance")
        form["source_guidance"] = gr.Slider(0, 20, value=start.source_guidance_scale, step=0.5,
                                            label="Source guidance scale", elem_id="video-source-guidance")
        form["negative"] = gr.Textbox(label="Negative prompt (text models)", elem_id="video-negative")
        form["own"] = own_keywords("video")
        form["seed"] = gr.Textbox("0", label="Seed", elem_id="video-seed")
        with gr.Row():  # how a long clip is read (the CLI's --stride and --max-frames)
            form["stride"] = gr.Number(RUN.stride, label="Take every k-th frame", elem_id="video-stride",
                                       info="k = 2 halves the frame rate (stride)")
            form["max_frames"] = gr.Number(None, label="At most N frames", elem_id="video-max-frames",
                                           info="empty or 0: the model's own length (max frames)")
    return form


def _first_view(studio: Studio, example: Any, model: str) -> tuple[str | None, str]:
    """The example clip as the model sees it, for the page as it opens (nothing when there is none)."""
    if example is None:
        return None, ""
    try:
        path, note = clip_input(studio, example, model, example.parent)  # kept: no request's folder
    except CycleDiffError as err:  # the page still opens; the status line says why there is no input shown
        return None, public(err)
    return str(path), note


def _view(studio: Studio, clip: Any, model: str, stride: Any = RUN.stride,
          max_frames: Any = RUN.max_frames) -> tuple[str | None, str]:
    """A new upload (or model, or way of reading it): the model's input and its status line; no upload: nothing.
    A bad stride or frame limit is the status line (the upload itself: the page's error)."""
    if not clip:
        return None, ""
    try:
        reading(studio, stride, max_frames)
    except CycleDiffError as err:
        return None, public(err)
    path, note = clip_input(studio, clip, model, stride=stride, max_frames=max_frames)
    return str(path), note


def shown(events: Iterator[tuple[str, Any]], progress: Any) -> Iterator[tuple]:
    """The clip edit's events as (status, the model's input, the result playing, the result's file); the status
    starts "0 of 1 done" (Stop appends "· stopped") and says the input's notes."""
    note, last = "", 0.0
    for kind, value in events:
        if kind == "progress" and time.monotonic() - last > EVERY:
            stage_progress(progress, value, 0, 1)
            kind, last = "tick", time.monotonic()
        if kind == "tick":  # nothing new (a stopped request is closed here)
            yield (gr.skip(),) * 4
        elif kind == "input":
            note = value["note"]
            yield f"0 of 1 done\n\n{note}", str(value["preview"]), None, None
        elif kind == "result" and value.status == "failed":
            yield f"0 of 1 done\n\n{note}\n\n**failed**: {public(value.error)}", gr.skip(), None, None
        elif kind == "preview":
            yield f"1 of 1 done\n\n{note}", gr.skip(), str(value), gr.skip()
        elif kind == "done" and value and value[0].status == "ok":
            yield gr.skip(), gr.skip(), gr.skip(), str(value[0].output)

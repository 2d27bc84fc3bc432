"""The Gradio app: forms, galleries and plots over :class:`~cyclediff.web.service.Studio`; nothing here computes.

Every action is also a named API endpoint (``/edit``, ``/translate``, ``/edit_clip``, ``/guide``, ``/encode``,
``/decode``) for ``gradio_client``. Heavy actions share one queue slot (one job at a time on the device), the
queue is bounded, and each can be stopped from the page.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import gradio as gr

from ..settings import EDIT, GUIDE, TRANSLATE
from .clip_service import clip_preview
from .components import FileImage, FileImageEditor
from .controls import HEAVY, STOPPED, models_for, own_keywords
from .controls import errors as _errors
from .controls import eta_shown as _eta_shown
from .controls import model_defaults as _model_defaults
from .controls import sampling as _sampling
from .results import EVERY, show, u8
from .service import Studio, seeds_of
from .uploads import for_painting
from .video import video_tab

# tiny demo images (8 × 8 digits) are enlarged crisply; whole images, never under a label or a caption: the label
# gets its own row (padding), captions go below the image and wrap (never cut off), a gallery keeps four columns
# (one result is not one huge, cut-off thumbnail), the slider fits its box
CSS = (".cyclediff-pixels img { image-rendering: pixelated; object-fit: contain; }\n"
       ".cyclediff-input img { width: 100%; height: 100%; padding-top: 28px; box-sizing: border-box; }\n"
       ".cyclediff-pixels .grid-container { padding-top: 2.5rem; --grid-cols: 4 !important; }\n"
       ".cyclediff-pixels .thumbnail-item { aspect-ratio: auto; height: auto; }\n"
       ".cyclediff-pixels .thumbnail-item img { display: block; width: 100%; aspect-ratio: 1; }\n"
       ".cyclediff-pixels .caption-label { position: static; max-width: none; border: 0; white-space: normal;\n"
       "  overflow: visible; text-overflow: clip; overflow-wrap: anywhere; }\n"
       ".cyclediff-compare .slider-wrap { padding-top: 28px; }\n"
       "#edit-examples img { image-rendering: pixelated; width: 64px; height: 64px; object-fit: contain; }")
GALLERY = {"format": "png", "columns": 4, "height": "auto", "object_fit": "contain",
           "elem_classes": ["cyclediff-pixels"], "buttons": ["download", "download_all", "fullscreen"]}
TICK = 0.25  # seconds: a stopped request ends within this and the result being computed


def _picture(label: str, **kwargs: Any) -> gr.Image:
    """An image box (upload or result) that keeps the file's pixels and mode, enlarged crisply."""
    return FileImage(type="filepath", format="png", label=label, sources=["upload", "clipboard"], height=256,
                     image_mode=None, elem_classes=["cyclediff-pixels", "cyclediff-input"], **kwargs)


def _seeds(tab: str) -> tuple[gr.Textbox, gr.Slider]:
    return (gr.Textbox("0", label="Seeds", info="a first seed, or a list: 1,5,9 or 0-7", elem_id=f"{tab}-seeds"),
            gr.Slider(1, 16, value=1, step=1, label="Results", info="with one seed: this many, from it on",
                      elem_id=f"{tab}-count"))


def build_app(studio: Studio) -> gr.Blocks:
    """The page: Edit, Translate, Video, Guide and Latents tabs over the studio's models."""
    names = models_for(studio, clips=False)  # the image tabs' models; the Video tab's: those that make clips
    examples = _examples(studio)
    # gradio's copies of uploads and results: those older than an hour deleted every ten minutes
    with gr.Blocks(title="cyclediff", analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown("## cyclediff — edit, translate and guide with the stochastic latent space of diffusion models")
        _edit_tab(studio, names, examples)
        _translate_tab(studio, names, examples)
        video_tab(studio, models_for(studio, clips=True))
        _guide_tab(studio, names)
        _latents_tab(studio, names)
    return app


def _edit_tab(studio: Studio, names: list[str], examples: list[str]) -> None:
    with gr.Tab("Edit"):
        with gr.Row():
            with gr.Column():
                e_image = _picture("Image", elem_id="edit-image")
                e_model = gr.Dropdown(names, value=names[0], label="Model", elem_id="edit-model", render=False)
                e_source = gr.Textbox(label="Source", info="what the image shows: a prompt, or a class label",
                                      elem_id="edit-source", render=False)
                e_target = gr.Textbox(label="Target", info="what it should show", elem_id="edit-target",
                                      render=False)
                if examples:  # right under the image: the first step, above the fold
                    gr.Examples([[examples[0], names[0], "3", "8"], [examples[1], names[0], "5", "0"]],
                                [e_image, e_model, e_source, e_target], elem_id="edit-examples")
                for box in (e_model, e_source, e_target):
                    box.render()
                e_mask, e_mode, e_threshold = _mask_inputs()
                # the first model's recommended settings
                e_strength, e_strengths, e_steps, e_eta, e_w, e_sw, e_neg, e_own, e_method = _edit_settings(
                    studio, names[0])
                e_seeds, e_count = _seeds("edit")
                with gr.Row():
                    e_run = gr.Button("Edit", variant="primary", elem_id="edit-run")
                    e_stop = gr.Button("Stop", elem_id="edit-stop")
                    e_encode = gr.Button("Latent file of the encoding", elem_id="edit-encode")
            with gr.Column():
                shown = _edit_results()
                e_latent = gr.File(label="Latent file (decode it in the Latents tab)", elem_id="edit-latent")
        # another model: its recommended settings (the demo digits' guidance 1; others the settings' defaults)
        e_model.change(functools.partial(_model_defaults, studio), e_model, [e_strength, e_steps, e_eta, e_w, e_sw],
                       api_visibility="private")
        e_method.change(_eta_shown, e_method, e_eta, api_visibility="private")
        # a new image: the editor shows it (paint cleared), the previous image's latent file goes
        e_image.change(functools.partial(_onto_editor, studio), e_image, [e_mask, e_latent], api_visibility="private")

        @_errors
        def edit(image, model, source, target, strength, steps, eta, guidance_scale, source_guidance_scale,
                 negative_prompt, seeds, count, method, mask=None, mask_mode="painted",
                 mask_threshold=EDIT.mask_threshold, strengths="", own="", progress=gr.Progress()):  # noqa: B008
            """Edit an image from a source prompt (or class) to a target one; one result per seed (and strength), where
            the mask allows; ``own``: the target's own condition keywords, KEY=VALUE per line."""
            events = studio.edit(image, model, source, target, strength=strength, steps=steps, eta=eta,
                                 guidance_scale=guidance_scale, source_guidance_scale=source_guidance_scale,
                                 negative_prompt=negative_prompt, seeds=seeds, count=count, method=method, mask=mask,
                                 mask_mode=mask_mode, mask_threshold=mask_threshold, strengths=strengths, own=own)
            total = len(seeds_of(seeds, count))
            yield from show(events, total, progress, rank=studio.scorer() is not None)

        e_event = e_run.click(edit, [e_image, e_model, e_source, e_target, e_strength, e_steps, e_eta, e_w, e_sw, e_neg,
                                     e_seeds, e_count, e_method, e_mask, e_mode, e_threshold, e_strengths, e_own],
                              shown, api_name="edit", show_progress_on=shown[0], **HEAVY)
        e_stop.click(None, shown[1], shown[1], js=STOPPED, cancels=[e_event])

        @_errors
        def encode(image, model, source, strength, steps, eta, source_guidance_scale, seeds):
            """The latent file of an image under the source prompt (or class), at the first seed."""
            return str(studio.encode(image, model, source, strength=strength, steps=steps, eta=eta,
                                     guidance_scale=source_guidance_scale, seed=seeds_of(seeds, 1)[0]))

        e_encode.click(encode, [e_image, e_model, e_source, e_strength, e_steps, e_eta, e_sw, e_seeds], e_latent,
                       api_name="encode", **HEAVY)


def _edit_settings(studio: Studio, model: str) -> tuple[Any, ...]:
    """The Edit tab's settings, starting from ``model``'s recommended values."""
    start = studio.defaults(model, EDIT)
    with gr.Accordion("Settings", open=False, elem_id="edit-settings"):
        strength, steps, eta = _sampling(start, "edit")
        strengths = gr.Textbox("", label="Strengths to compare", placeholder="0.5,0.6,0.7,0.8",
                               info="one edit per strength, then a contact sheet; empty: the slider's strength",
                               elem_id="edit-strengths")
        w = gr.Slider(0, 20, value=start.guidance_scale, step=0.5, label="Target guidance scale",
                      elem_id="edit-guidance")
        sw = gr.Slider(0, 20, value=start.source_guidance_scale, step=0.5, label="Source guidance scale",
                       elem_id="edit-source-guidance")
        negative = gr.Textbox(label="Negative prompt (text models)")
        own = own_keywords("edit")
        method = gr.Radio(studio.methods(), value=start.method, label="Method")
    return strength, strengths, steps, eta, w, sw, negative, own, method


def _edit_results() -> list[Any]:
    """The results, the status line, the model's input with the mask used, and a before / after slider."""
    gallery = gr.Gallery(label="Results", elem_id="edit-gallery", **GALLERY)
    status = gr.Markdown(label="Status", elem_id="edit-status")
    with gr.Row():
        seen = _picture("The model's input", elem_id="edit-seen", interactive=False)
        used = _picture("Mask used (white: may change)", elem_id="edit-mask-used", interactive=False)
    compare = gr.ImageSlider(label="Before / after (the first result)", type="filepath", format="png",
                             image_mode=None, max_height=224, interactive=False, elem_id="edit-compare",
                             elem_classes=["cyclediff-pixels", "cyclediff-compare"])
    return [gallery, status, seen, used, compare]


def _mask_inputs() -> tuple[gr.ImageEditor, gr.Radio, gr.Slider]:
    """Where an edit may change the image: painted with a brush on the uploaded image, or found automatically."""
    with gr.Accordion("Local edit (mask)", open=False, elem_id="edit-mask-settings"):
        editor = FileImageEditor(label="Paint where the image may change (nothing painted: all of it)",
                                type="filepath", image_mode="RGBA", sources=[], layers=False, transforms=[],
                                brush=gr.Brush(default_size=24, colors=["#ff2266"], color_mode="fixed"), format="png",
                                elem_id="edit-mask", elem_classes=["cyclediff-pixels"], height=320)
        mode = gr.Radio(["painted", "automatic"], value="painted", label="Mask", elem_id="edit-mask-mode",
                        info="automatic: where the source and target predictions disagree (method cyclediffusion)")
        threshold = gr.Slider(0.05, 0.95, value=EDIT.mask_threshold, step=0.05, label="Automatic mask threshold",
                              elem_id="edit-mask-threshold")
    return editor, mode, threshold


def _onto_editor(studio: Studio, image: Any) -> tuple[Any, None]:
    """The uploaded image as the mask editor's background (paint cleared), and no latent file."""
    background = for_painting(image, studio.folder())
    return None if background is None else {"background": str(background), "layers": [], "composite": None}, None


def _translate_tab(studio: Studio, names: list[str], examples: list[str]) -> None:
    with gr.Tab("Translate"):
        with gr.Row():
            with gr.Column():
                t_image = _picture("Input", elem_id="translate-image")
                with gr.Row():
                    t_src = gr.Dropdown(names, value=names[min(1, len(names) - 1)], label="Source model")
                    t_dst = gr.Dropdown(names, value=names[min(2, len(names) - 1)], label="Target model")
                with gr.Row():
                    t_sc = gr.Textbox(label="Source condition", info="prompt or class label; empty: none")
                    t_tc = gr.Textbox(label="Target condition", info="prompt or class label; empty: none")
                t_method = gr.Radio(studio.methods(), value=TRANSLATE.method, label="Method")
                with gr.Accordion("Settings", open=False):
                    t_strength, t_steps, t_eta = _sampling(TRANSLATE, "translate")
                    t_refine = gr.Slider(0, 100, value=TRANSLATE.refine_steps, step=1, label="Refinement steps")
                    t_w = gr.Slider(0, 20, value=1, step=0.5, label="Target guidance scale")
                t_method.change(_eta_shown, t_method, t_eta, api_visibility="private")
                t_seeds, t_count = _seeds("translate")
                with gr.Row():
                    t_run = gr.Button("Translate", variant="primary")
                    t_stop = gr.Button("Stop")
                if examples:
                    gr.Examples([[examples[0]]], [t_image])
            with gr.Column():
                t_gallery = gr.Gallery(label="Outputs", elem_id="translate-gallery", **GALLERY)
                t_status = gr.Markdown(label="Status", elem_id="translate-status")
                t_seen = _picture("The model's input", elem_id="translate-seen", interactive=False)

        @_errors
        def translate(image, source_model, target_model, source, target, method, strength, steps, eta,
                      refine_steps, guidance_scale, seeds, count, progress=gr.Progress()):  # noqa: B008
            """Translate an image from the source model's domain to the target model's."""
            events = studio.translate(image, source_model, target_model, source=source, target=target,
                                      method=method, strength=strength, steps=steps, eta=eta,
                                      refine_steps=refine_steps, guidance_scale=guidance_scale, seeds=seeds,
                                      count=count)
            for update in show(events, len(seeds_of(seeds, count)), progress):
                yield update[:3]

        t_event = t_run.click(translate, [t_image, t_src, t_dst, t_sc, t_tc, t_method, t_strength, t_steps, t_eta,
                                          t_refine, t_w, t_seeds, t_count], [t_gallery, t_status, t_seen],
                              api_name="translate", show_progress_on=t_gallery, **HEAVY)
        t_stop.click(None, t_status, t_status, js=STOPPED, cancels=[t_event])


def _guide_tab(studio: Studio, names: list[str]) -> None:
    import pandas as pd

    choices = studio.energy_choices()
    with gr.Tab("Guide"):
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown(names, value=names[0], label="Model")
                energy = gr.Dropdown(choices, value=choices[0] if choices else None, label="Energy",
                                     info="offered by the server's command line (--clip, --classifier, --energy)")
                text = gr.Textbox(label="Text (clip energy)")
                target = gr.Number(3, label="Class (classifier energy)")  # checked by the studio (NaN, 2.5)
                condition = gr.Textbox(label="Model condition", info="prompt or class label; empty: unconditional")
                with gr.Accordion("Settings", open=False, elem_id="guide-settings"):
                    weight = gr.Number(10.0 if studio.classifier_spec else GUIDE.weight, label="Weight λ")
                    langevin = gr.Slider(0, 1000, value=30, step=1, label="Langevin steps", elem_id="guide-langevin")
                    step_size = gr.Number(GUIDE.step_size, label="Step size")
                    steps = gr.Slider(1, 1000, value=10, step=1, label="Sampler steps of G(z)")
                seeds, count = _seeds("guide")
                with gr.Row():
                    run = gr.Button("Guide", variant="primary", elem_id="guide-run")
                    stop = gr.Button("Stop")
            with gr.Column():
                gallery = gr.Gallery(label="Chains (seed: energy at the start → the best state's, shown)",
                                     elem_id="guide-gallery", **GALLERY)
                # short chain names ("0", "1" under the title "seed"): the legend (below the plot) fits its width
                plot = gr.LinePlot(x="step", y="energy", color="chain", color_title="seed", x_title="Langevin step",
                                   label="Energy", height=300, elem_id="guide-plot")
                status = gr.Markdown(label="Status", elem_id="guide-status")

        @_errors
        def guide(model, energy, text, target, condition, weight, langevin_steps, step_size, steps, seeds, count):
            """Langevin dynamics in the latent space toward low energy; images and energies as the chains run."""
            seed_list = seeds_of(seeds, count)
            events = studio.guide(model, energy, text=text or "", target=target, condition=condition,
                                  weight=weight, langevin_steps=langevin_steps, step_size=step_size, steps=steps,
                                  seeds=seeds, count=count)
            rows: list[dict] = []
            last = 0.0
            for kind, value in events:
                if kind == "progress" and time.monotonic() - last > EVERY:  # a long step: still a chance to stop
                    kind, last = "tick", time.monotonic()
                if kind == "tick":
                    yield gr.skip(), gr.skip(), gr.skip()
                elif kind == "step":
                    n, images, energies = value
                    rows += [{"step": n, "energy": float(e), "chain": str(s)} for s, e in zip(seed_list, energies)]
                    if time.monotonic() - last > 0.3 or n == langevin_steps:
                        last = time.monotonic()
                        frames = [(u8(img), f"seed {s} · step {n}") for s, img in zip(seed_list, images)]
                        yield frames, pd.DataFrame(rows), f"step {n} of {int(langevin_steps)}"
                elif kind == "done":
                    ok = [r for r in value if r.status == "ok"]
                    failed = [f"**failed** seed {r.unit.seed}: {r.error}" for r in value if r.status == "failed"]
                    items = [(r.output, chain_caption(r)) for r in ok]
                    yield items, pd.DataFrame(rows), "\n\n".join([f"{len(ok)} of {len(value)} done", *failed])

        event = run.click(guide, [model, energy, text, target, condition, weight, langevin, step_size, steps, seeds,
                                  count], [gallery, plot, status], api_name="guide", **HEAVY)
        stop.click(None, cancels=[event])


def chain_caption(result: Any) -> str:
    """A guided chain's caption, short enough for a thumbnail: its seed, its energy at the start and that of the
    state shown (its best)."""
    m = result.metrics
    return f"seed {result.unit.seed}: {m['energy_start']:.3g} → {m['energy_end']:.3g}"


def _latents_tab(studio: Studio, names: list[str]) -> None:
    with gr.Tab("Latents"):
        gr.Markdown("Decode a latent file (from the Edit tab or `cyclediff encode`) with another prompt, class or "
                    "model; leave the condition empty to get the encoded image back.")
        with gr.Row():
            with gr.Column():
                latent = gr.File(label="Latent file", file_types=[".safetensors"])
                model = gr.Dropdown(names, value=names[0], label="Model")
                target = gr.Textbox(label="Condition", info="prompt or class label; empty: the recorded one")
                scale = gr.Slider(0, 20, value=1, step=0.5, label="Guidance scale")
                negative = gr.Textbox(label="Negative prompt (text models)")
                run = gr.Button("Decode", variant="primary")
            with gr.Column():
                output = _picture("Decoded", elem_id="decoded", interactive=False)
                played = gr.Video(label="Decoded clip (enlarged)", elem_id="decoded-clip", interactive=False,
                                  autoplay=True, loop=True, height=256)
                made = gr.File(label="Decoded file", elem_id="decoded-file")

        @_errors
        def decode(latent, model, target, guidance_scale, negative_prompt):
            """Decode a latent file, under a new condition when one is given: (the image, None) for an image's
            latent, (None, the clip enlarged as a .webm) for a clip's, and the file written."""
            path = studio.decode(latent, model, target, guidance_scale=guidance_scale, negative_prompt=negative_prompt)
            if path.suffix == ".png":
                return str(path), None, str(path)
            return None, str(clip_preview(path)), str(path)

        run.click(decode, [latent, model, target, scale, negative], [output, played, made], api_name="decode",
                  **HEAVY)


def _examples(studio: Studio) -> list[str]:
    """Two held-out digits (a 3 and a 5) as example inputs, when the server has a demo model."""
    if not studio.serves_demo():
        return []
    from .._images import save_image
    from ..demo.data import split

    _, _, x, y = split()
    paths = []
    for digit in (3, 5):
        path = studio.workdir / "examples" / f"digit-{digit}.png"
        if not path.is_file():
            save_image((x[(y == digit).nonzero()[0, 0]] + 1) / 2, path)
        paths.append(str(path))
    return paths


def launch(app: gr.Blocks, studio: Studio, *, host: str = "127.0.0.1", port: int | None = 7860, queue_size: int = 8,
           max_file_size: str = "25mb", block: bool = True) -> str:
    """Serve the app (never a public share link); returns its local URL."""
    app.queue(max_size=queue_size, default_concurrency_limit=1)
    studio.tick = TICK
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    _, url, _ = app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                           allowed_paths=[str(studio.workdir)], max_file_size=max_file_size, theme=theme, css=CSS,
                           ssr_mode=False, quiet=not block, show_error=True, inbrowser=False, footer_links=["api"])
    return url


__all__ = ["CSS", "Studio", "build_app", "launch"]

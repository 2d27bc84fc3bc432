"""What the browser sends and sees of files: uploads checked in our words, the input the model will see (and what
was done to the upload to get it), masks painted on the image, messages without server paths, and the request
folders a server keeps (a bounded number; the rest deleted)."""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import torch

from .._images import save_image
from ..api.images import read_for
from ..errors import CycleDiffError, IncompatibleModelError
from ..settings import RunOptions

# an absolute path: a "/" not inside a word, a relative path or a URL, then two or more parts
_PATH = re.compile(r"(?<![\w.~/:-])(?:/[^\s'\"/:,;()\[\]]+){2,}")


def public(text: str, limit: int = 300) -> str:
    """A message for the browser: absolute paths (the server's temp folders of uploads) cut to their file names,
    the message cut to ``limit`` characters (a long label is not quoted back in full)."""
    text = _PATH.sub(lambda m: m.group(0).rsplit("/", 1)[-1], str(text))
    return text if len(text) <= limit else text[:limit] + "…"


def upload(value: Any, what: str, *models: Any) -> Path:
    """The file of an upload (a path, or gradio's file dict), or one error saying to upload it. ``what`` is "a
    clip" or an image (or a latent file); with ``models``, a clip given for images, an image for clips, or either
    to a model of the other kind (:func:`~cyclediff.api.clips.is_video_model`) is one line naming the fix."""
    if value is None or value == "":
        raise CycleDiffError(f"upload {what} first")
    path = Path(value.get("path") if isinstance(value, dict) else value)
    if not path.is_file():
        raise CycleDiffError(f"the upload of {what} is gone; upload it again")
    if models:
        _fits(path, what == "a clip", models)
    return path


def _fits(path: Path, clips: bool, models: tuple[Any, ...]) -> None:
    from .._video import CLIP_SUFFIXES, is_clip
    from ..api.clips import is_video_model

    if is_clip(path) != clips:
        fix = (f"upload a {', '.join(CLIP_SUFFIXES)} file, or edit images in the Edit tab" if clips else
               "edit clips in the Video tab, with a video model")
        raise CycleDiffError(f"{path.name} is {'not ' * clips}a clip: {fix}")
    for model in models:
        if is_video_model(model) != clips:
            name = getattr(model, "model_id", None) or "this model"
            raise IncompatibleModelError(
                f"{name} is an image model, which edits images: choose a video model for clips" if clips else
                f"{name} is a video model, which edits clips: choose an image model for images, or edit clips in "
                "the Video tab")


def _describe(channels: int, size: tuple[int, int]) -> str:
    return f"{size[1]} × {size[0]} " + ("grey" if channels == 1 else "colour" if channels == 3 else f"{channels}-ch")


def prepare(model: Any, path: Path, folder: Path, max_pixels: int) -> tuple[Path, str]:
    """The input exactly as the model will see it, written as a PNG, and a line saying what was done to the upload
    to get it (resized, cropped, made grey or colour). A file that is not an image fails here, in one line."""
    from PIL import Image

    x = read_for(model, path, **_policy(max_pixels))
    with Image.open(path) as img:
        w, h = img.size
        grey = img.mode in ("1", "L", "LA", "I", "I;16", "F") or (img.mode == "P" and _grey_palette(img))
    seen = _describe(x.shape[1], tuple(x.shape[2:]))
    given = _describe(1 if grey else 3, (h, w))
    changes = [c for c, on in (("resized", (h, w) != tuple(x.shape[2:])),
                               ("made grey", not grey and x.shape[1] == 1),
                               ("made colour", grey and x.shape[1] == 3)) if on]
    out = save_image(x[0], folder / "model-input.png")
    if not changes:
        return out, f"the model's input: {seen}, as uploaded"
    return out, f"the model's input: {seen} (uploaded {given}: {' and '.join(changes)} for this model)"


def _grey_palette(img: Any) -> bool:
    rgb = img.convert("RGB")
    r, g, b = rgb.split()
    return r.tobytes() == g.tobytes() == b.tobytes()


def _policy(max_pixels: int) -> dict[str, Any]:
    run = RunOptions(max_pixels=max_pixels)
    return {"size": run.size, "fit": run.fit, "max_pixels": run.max_pixels}


PAINT_SIDE = 256  # the mask editor shows a small upload enlarged to at least this many pixels a side


def for_painting(image: Any, folder: Path, side: int = PAINT_SIDE) -> Path | None:
    """The upload as the mask editor's background: a small image (an 8 × 8 digit) enlarged by a whole factor
    (nearest) to at least ``side`` pixels, so that a brush can paint single pixels; others as they are. The
    painted layer is brought back to the model's input size with the image's own geometry."""
    from PIL import Image

    if not image:
        return None
    path = Path(image.get("path") if isinstance(image, dict) else image)
    try:
        with Image.open(path) as img:
            factor = -(-side // max(img.size))
            if factor <= 1:
                return path
            big = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
            out = folder / f"paint-{uuid.uuid4().hex[:8]}.png"
            big.save(out)
            return out
    except OSError:  # not an image: the edit itself says so
        return None


def painted_mask(editor: Any, model: Any, folder: Path, max_pixels: int, image: Path | None = None) -> Path | None:
    """The region painted on the image editor (its layers' paint, any opacity) as a binary mask at the model's
    input size and geometry (resized and cropped as the image is), or None when nothing is painted. A model-input
    pixel at least a quarter covered by paint may change (the resize's ringing, up to about a tenth, is not
    paint); every other pixel is kept. Each layer is checked from its header before it is decoded: an image, of at
    most ``max_pixels`` (or the editor's enlarged copy of a small upload), and of the shape of ``image`` (a layer
    of another shape would be stretched onto it)."""
    layers = (editor or {}).get("layers") if isinstance(editor, dict) else None
    alpha = None
    for layer in layers or []:
        a = torch.from_numpy(_layer_alpha(upload(layer, "the painted mask"), max_pixels, image))
        if alpha is not None and a.shape != alpha.shape:
            raise CycleDiffError(f"the painted layers differ in size ({_size(a.shape)} and {_size(alpha.shape)}); "
                                 "paint on one layer of the image shown")
        alpha = a if alpha is None else torch.maximum(alpha, a)
    if alpha is None or not bool((alpha > 0).any()):
        return None
    drawn = save_image((alpha > 0).float()[None], folder / "painted.png")
    limit = max(max_pixels, alpha.numel())  # the editor's enlarged copy of a small upload may exceed the limit
    mask = (read_for(model, drawn, channels=1, **_policy(limit)) >= 0.25).float()
    return save_image(mask[0], folder / "mask.png")


def _size(shape: Any) -> str:
    return f"{shape[1]} × {shape[0]}"


def _layer_alpha(path: Path, max_pixels: int, image: Path | None) -> Any:
    """A painted layer's alpha, after its header was checked (no decoding before)."""
    from PIL import Image

    limit = max(max_pixels, (2 * PAINT_SIDE) ** 2)  # for_painting enlarges a small upload below 2 × its side
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > limit:
                raise CycleDiffError(f"the painted mask is {w} × {h} pixels, more than this server takes "
                                     f"(--max-pixels {max_pixels}); paint on the image shown in the editor")
            if image is not None:
                with Image.open(image) as shown:
                    iw, ih = shown.size
                if w * ih != h * iw:
                    raise CycleDiffError(f"the painted mask is {w} × {h} pixels but the image is {iw} × {ih}: it "
                                         "would be stretched; paint on the image shown in the editor")
            return _alpha(img)
    except CycleDiffError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise CycleDiffError(f"the painted mask {public(path.name, 80)} is not an image this server reads; "
                             "paint it again in the editor") from err


def _alpha(img: Any) -> Any:
    import numpy as np

    return np.asarray(img.convert("RGBA"), dtype=np.uint8)[..., 3].copy()


class Folders:
    """One new folder per request under ``root``, keeping the newest ``keep`` (older ones are deleted when a new
    one is made: a long-running server's files stay bounded)."""

    def __init__(self, root: Path, keep: int = 32) -> None:
        self.root, self.keep, self._made, self._lock = root, keep, [], threading.Lock()

    def new(self) -> Path:
        path = self.root / uuid.uuid4().hex[:12]
        path.mkdir(parents=True)
        with self._lock:
            self._made.append(path)
            old, self._made = self._made[:-self.keep], self._made[-self.keep:]
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)
        return path

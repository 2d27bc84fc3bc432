"""The page's upload boxes: gradio's image box and image editor, except that they hand the studio the uploaded
files as they are, decoded by nobody. The studio then reads them itself, checks their size from the header first
(``--max-pixels``) and says in one line of ours what is wrong with one (gradio's own preprocessing decodes any
size, and its error quotes the server's temp path: "Could not preprocess input component … /tmp/gradio/…").

They are gradio templates (as gradio's own ImageMask): the browser shows the base component. A session that
updates a box (an example clicked, the editor given a background) gets a new instance of the class, so the
difference lives in the class, not on an instance."""

from __future__ import annotations

import tempfile
import uuid
from abc import ABCMeta
from pathlib import Path
from typing import Any

import gradio as gr


def _path(file: Any) -> str | None:
    """A FileData's path, or None."""
    return None if file is None or getattr(file, "path", None) is None else str(file.path)


def _image_files(self: gr.Image, payload: Any) -> str | None:
    """The upload's own file (the studio reads it)."""
    return _path(payload)


def _editor_files(self: gr.ImageEditor, payload: Any) -> dict[str, Any] | None:
    """The editor's background, layers and composite as files; layers the browser sent as blobs are written out
    first (as they came)."""
    if payload is None:
        return None
    if payload.id is not None:
        blobs = self.blob_storage.pop(payload.id, None)
        if blobs is None:
            return None
        folder = Path(tempfile.mkdtemp(prefix="editor-", dir=self.GRADIO_CACHE))

        def written(data: bytes | None) -> str | None:
            if data is None:
                return None
            out = folder / f"{uuid.uuid4().hex[:8]}.png"
            out.write_bytes(data)
            return str(out)

        return {"background": written(blobs.background), "composite": written(blobs.composite),
                "layers": [p for p in map(written, blobs.layers) if p is not None]}
    return {"background": _path(payload.background), "composite": _path(payload.composite),
            "layers": [p for p in map(_path, payload.layers) if p is not None]}


def _template(base: type, name: str, preprocess: Any) -> type:
    """``base`` with another ``preprocess``, a template of it (the browser shows ``base``). Made without gradio's
    component metaclass hook, which writes a .pyi stub beside the module that defines a component class."""
    return ABCMeta.__new__(type(base), name, (base,), {"is_template": True, "preprocess": preprocess,
                                                       "__module__": __name__, "__qualname__": name})


FileImage = _template(gr.Image, "FileImage", _image_files)
FileImageEditor = _template(gr.ImageEditor, "FileImageEditor", _editor_files)

"""What the browser sends and sees of files (:mod:`cyclediff.web.uploads`), and the studio's use of it: the model's
input and what was done to the upload, painted masks that limit an edit, messages without server paths, bounded
request folders, and classes checked against the classifier."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")

from cyclediff._images import load_image, save_image  # noqa: E402
from cyclediff.errors import CycleDiffError  # noqa: E402
from cyclediff.models import load  # noqa: E402
from cyclediff.web import Studio  # noqa: E402
from cyclediff.web.uploads import Folders, painted_mask, prepare, public  # noqa: E402


def test_messages_name_files_not_server_paths_and_stay_short():
    text = "cannot read image /tmp/gradio/0a1b/notes.txt: cannot identify image file '/tmp/gradio/0a1b/notes.txt'"
    assert public(text) == "cannot read image notes.txt: cannot identify image file 'notes.txt'"
    assert public("model org/name and a/b/c stay; see https://x.org/a/b") == \
        "model org/name and a/b/c stay; see https://x.org/a/b"
    assert len(public("label " + "x" * 120_000)) == 301


def test_the_model_input_and_what_was_done_to_a_colour_photo(tmp_path):
    """A 32 × 24 colour photo on the 8 × 8 grey digits model: the note says so, the image is what the model reads."""
    model = load("demo:digits")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 90, (24, 32, 3), dtype=np.uint8)).save(photo)  # dark: kept
    seen, note = prepare(model, photo, tmp_path, max_pixels=10_000)
    assert note == "the model's input: 8 × 8 grey (uploaded 32 × 24 colour: resized and made grey for this model)"
    expected = load_image(photo, channels=1, size=model.codec.image_size)
    torch.testing.assert_close(load_image(seen, channels=1), expected, rtol=0, atol=1 / 255 + 1e-6)  # 8-bit PNG
    digit = tmp_path / "digit.png"
    save_image(torch.rand(1, 8, 8), digit)
    assert prepare(model, digit, tmp_path, max_pixels=10_000)[1] == "the model's input: 8 × 8 grey, as uploaded"
    text = tmp_path / "photo2.png"
    text.write_text("not an image")
    with pytest.raises(CycleDiffError, match="cannot read image"):
        prepare(model, text, tmp_path, max_pixels=10_000)


def _layer(path, size, box):
    """An RGBA layer of the mask editor: paint (opaque) in ``box`` (left, top, right, bottom), clear elsewhere."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 34, 102, 255), box)
    layer.save(path)
    return str(path)


def test_a_painted_layer_becomes_the_mask_at_the_models_input_size(tmp_path):
    """Paint on the enlarged (32×) editor background over digit pixels rows 1–2, columns 1–3: exactly those cells
    may change; nothing painted is no mask."""
    model = load("demo:digits")
    layer = _layer(tmp_path / "layer.png", (256, 256), (32, 32, 128, 96))
    mask = painted_mask({"background": None, "layers": [layer]}, model, tmp_path, max_pixels=10_000)
    expected = np.zeros((8, 8), bool)
    expected[1:3, 1:4] = True
    assert np.array_equal(np.asarray(Image.open(mask)) > 0, expected)
    empty = _layer(tmp_path / "empty.png", (256, 256), (0, 0, 0, 0))
    assert painted_mask({"layers": [empty]}, model, tmp_path, 10_000) is None
    assert painted_mask(None, model, tmp_path, 10_000) is None


def _png_header(path, width, height):
    """A PNG whose header says ``width`` × ``height`` (one bit a pixel) and which holds no pixels: its size can be
    read, and decoding it fails."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return str(path)


def test_a_painted_layer_is_checked_before_it_is_decoded(tmp_path):
    """A layer that is no image, one whose header says 13000 × 13000 (a 37 kB PNG decoded to gigabytes; refused
    from the header), and one of another shape than the image (it was stretched onto it) are one line each."""
    model = load("demo:digits")
    digit = tmp_path / "digit.png"
    save_image(torch.rand(1, 8, 8), digit)
    text = tmp_path / "notimage.png"
    text.write_text("not an image")
    cases = [(str(text), "the painted mask notimage.png is not an image"),
             (_png_header(tmp_path / "bomb.png", 13000, 13000), "13000 × 13000 pixels, more than this server takes"),
             (_layer(tmp_path / "wide.png", (512, 256), (0, 0, 64, 64)), "the image is 8 × 8: it would be stretched")]
    for layer, message in cases:
        with pytest.raises(CycleDiffError, match=message) as err:
            painted_mask({"layers": [layer]}, model, tmp_path, 10_000, digit)
        assert "/" not in str(err.value) and "\n" not in str(err.value)
    assert painted_mask({"layers": [_layer(tmp_path / "ok.png", (256, 256), (0, 0, 64, 64))]}, model, tmp_path,
                        10_000, digit) is not None


def test_an_edit_under_a_painted_mask_keeps_every_pixel_outside_it(tmp_path):
    from cyclediff.demo.data import split

    studio = Studio(["demo:digits"], workdir=tmp_path / "w")
    _, _, x, y = split()
    digit = tmp_path / "three.png"
    save_image((x[(y == 3).nonzero()[0, 0]] + 1) / 2, digit)
    layer = _layer(tmp_path / "layer.png", (8, 8), (0, 0, 4, 4))
    events = list(studio.edit(str(digit), "demo:digits", "3", "8", strength=0.9, steps=50, eta=0.1,
                              guidance_scale=3.0, seeds="0", count=2, mask={"layers": [layer]}))
    kind, shown = events[0]
    assert kind == "input" and shown["mask"] is not None
    mask = np.asarray(Image.open(shown["mask"])) > 0
    assert mask.sum() == 16
    before = np.asarray(Image.open(digit), dtype=np.int16)
    results = events[-1][1]
    assert [r.status for r in results] == ["ok", "ok"]
    for r in results:
        after = np.asarray(Image.open(r.output), dtype=np.int16)
        assert np.array_equal(after[~mask], before[~mask]) and (after[mask] != before[mask]).any()


def test_an_automatic_mask_is_shown_beside_the_result(tmp_path):
    from cyclediff.web.results import show

    studio = Studio(["demo:digits"], workdir=tmp_path / "w")
    digit = tmp_path / "d.png"
    save_image(torch.rand(1, 8, 8), digit)
    events = studio.edit(str(digit), "demo:digits", "3", "8", strength=0.8, steps=20, eta=0.1, guidance_scale=2.0,
                         mask_mode="automatic", mask_threshold=0.5)
    *_, last = show(events, 1, lambda *a, **k: None)
    items, status, seen, mask, pair = last
    assert status.startswith("1 of 1 done") and mask.endswith("_mask.png") and pair == (seen, items[0][0])
    with pytest.raises(CycleDiffError, match="painted or automatic"):
        studio.edit(str(digit), "demo:digits", "3", "8", strength=0.8, steps=5, eta=0.1, guidance_scale=2.0,
                    mask_mode="lasso")


def test_request_folders_are_bounded_and_a_studios_own_folder_goes_with_it(tmp_path):
    folders = Folders(tmp_path, keep=3)
    made = [folders.new() for _ in range(5)]
    assert [p.exists() for p in made] == [False, False, True, True, True]
    studio = Studio(["demo:digits"])
    root = studio.workdir
    assert root.is_dir()
    del studio
    gc.collect()
    assert not root.exists()


@pytest.mark.parametrize("target, message", [(99, "class 99 is not one of the classifier's 10 classes"),
                                             (float("nan"), "must be a whole number"),
                                             (2.5, "must be a whole number"),
                                             (1e30, "must be at most 2147483647; got 1e[+]30")])
def test_a_guide_class_is_checked_against_the_classifier(tmp_path, target, message):
    studio = Studio(["demo:digits"], workdir=tmp_path)

    def run():
        events = studio.guide("demo:digits", "classifier", target=target, weight=1.0, langevin_steps=2,
                              step_size=0.01, steps=2)
        results = [value for kind, value in events if kind == "done"][0]
        raise CycleDiffError(results[0].error)

    with pytest.raises(CycleDiffError, match=message):
        run()

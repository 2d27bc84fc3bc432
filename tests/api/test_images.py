"""Images as users have them: modes, EXIF orientation, 16-bit, size policy, pixel limits, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cyclediff import CycleDiffError
from cyclediff._images import load_image, save_image
from cyclediff.api.images import as_image_batch
from cyclediff.checks import parse_size


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_round_trip_is_exact(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (1, 3, 20, 30) and x.dtype == torch.float32
    save_image(x[0], tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), _rgb())


def test_modes_are_converted(tmp_path):
    rgba = np.dstack([_rgb(), np.zeros((20, 30), np.uint8)])  # fully transparent: composited on white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert torch.all(load_image(tmp_path / "rgba.png") == 1)
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (1, 3, 20, 30)
    Image.fromarray(_rgb()[..., 0]).save(tmp_path / "l.png")
    gray = load_image(tmp_path / "l.png")
    assert torch.equal(gray[:, 0], gray[:, 1]) and gray.shape[1] == 3
    assert load_image(tmp_path / "l.png", channels=1).shape == (1, 1, 20, 30)
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").shape == (1, 3, 20, 30)


def test_sixteen_bit_keeps_precision(tmp_path):
    values = np.arange(0, 65536, 97, dtype=np.uint16)[: 20 * 30].reshape(20, 30)
    Image.fromarray(values).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "g16.png", channels=1)
    np.testing.assert_allclose(x[0, 0].numpy(), values / 65535.0, atol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(_rgb(10, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(tmp_path / "o.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "o.jpg").shape == (1, 3, 30, 10)


def test_size_policy(tmp_path):
    Image.fromarray(_rgb(21, 35)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", multiple=8).shape[2:] == (16, 32)  # center-crop the rest
    assert load_image(tmp_path / "a.png", multiple=8, fit="resize").shape[2:] == (24, 32)  # nearest multiple
    assert load_image(tmp_path / "a.png", size=(16, 16)).shape[2:] == (16, 16)
    assert load_image(tmp_path / "a.png", size=42, multiple=8).shape[2:] == (40, 64)  # shorter side → 42, crop
    assert parse_size("768x512") == (512, 768) and parse_size("512") == 512
    with pytest.raises(CycleDiffError, match="WxH"):
        parse_size("big")


def test_pixel_limit_and_bad_files(tmp_path):
    Image.fromarray(_rgb(100, 100)).save(tmp_path / "big.png")
    with pytest.raises(CycleDiffError, match="over the limit"):
        load_image(tmp_path / "big.png", max_pixels=5000)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(CycleDiffError, match="cannot read image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(CycleDiffError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_api_image_batches():
    pil = [Image.fromarray(_rgb(8, 8, s)) for s in range(2)]
    x = as_image_batch(pil)
    assert x.shape == (2, 3, 8, 8) and 0 <= x.min() and x.max() <= 1
    with pytest.raises(CycleDiffError, match="share a size"):
        as_image_batch([Image.fromarray(_rgb(8, 8)), Image.fromarray(_rgb(8, 16))])
    with pytest.raises(CycleDiffError, match="divide by 255"):
        as_image_batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))

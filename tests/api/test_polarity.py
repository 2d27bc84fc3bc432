"""Images as users draw them on the demo models: a dark-on-white digit is inverted for a model trained on light
digits on a dark ground (with a warning), in the API, on files and in the CLI; grayscale PIL images reach a
grayscale model as they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cyclediff import CycleDiffusion, edit, translate
from cyclediff._images import load_image, save_image
from cyclediff.api.images import for_model, read_for
from cyclediff.cli import main
from cyclediff.demo.data import split
from cyclediff.demo.models import load_demo


@pytest.fixture(scope="module")
def three() -> torch.Tensor:
    """A test-split 3 of sklearn's digits, light on dark as the models were trained, (1, 1, 8, 8) in [0, 1]."""
    _, _, x, y = split()
    return (x[(y == 3).nonzero()[0, 0]][None] + 1) / 2


def _pil(x01: torch.Tensor) -> Image.Image:
    return Image.fromarray((x01[0, 0].numpy() * 255).round().astype(np.uint8), "L")


def test_a_dark_on_white_digit_is_inverted_with_a_warning(three):
    model = load_demo("digits")
    assert model.codec.foreground == "light"
    with pytest.warns(UserWarning, match="inverted"):
        seen = for_model(model, 1 - three)
    torch.testing.assert_close(seen, three)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model's own polarity: taken as it is, no warning
        torch.testing.assert_close(for_model(model, three), three)


def test_the_edit_of_an_inverted_digit_is_the_edit_of_the_digit(three):
    model = load_demo("digits")
    kw = dict(steps=10, strength=0.8, source_condition=3, target_condition=8)
    want = translate(three, model, model, generator=torch.Generator().manual_seed(0), **kw).images
    with pytest.warns(UserWarning, match="inverted"):
        got = translate(1 - three, model, model, generator=torch.Generator().manual_seed(0), **kw).images
    torch.testing.assert_close(got, want)


def test_files_are_matched_too_and_masks_are_not(three, tmp_path):
    model = load_demo("digits")
    save_image((1 - three)[0], tmp_path / "paper.png")
    with pytest.warns(UserWarning, match="inverted"):
        x = read_for(model, tmp_path / "paper.png", size=None, fit="resize", max_pixels=10**6)
    torch.testing.assert_close(x, load_image(tmp_path / "paper.png", channels=1).sub(1).neg(), atol=1e-6, rtol=0)
    mask = read_for(model, tmp_path / "paper.png", size=None, fit="resize", max_pixels=10**6, channels=1)
    assert mask.mean() > 0.5  # a mask is read as drawn


def test_the_cli_says_it_inverted_the_digit(three, tmp_path):
    save_image((1 - three)[0], tmp_path / "paper.png")
    res = CliRunner().invoke(main, ["translate", str(tmp_path / "paper.png"), "--source-model", "demo:digits",
                                    "--target-model", "demo:digits", "--source-class", "3", "--target-class", "8",
                                    "--steps", "6", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "inverted" in res.output and "warning" in res.output


def test_a_grayscale_pil_image_reaches_a_grayscale_model(three):
    model = load_demo("digits")
    x = for_model(model, _pil(three))
    assert x.shape == (1, 1, 8, 8)
    torch.testing.assert_close(x, three, rtol=0, atol=0.5 / 255 + 1e-6)
    out = translate(_pil(three), model, model, steps=6, source_condition=3, target_condition=8,
                    generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 1, 8, 8)
    rgb = for_model(model, _pil(three).convert("RGB"))  # an RGB picture of a digit: its luminance
    torch.testing.assert_close(rgb, x)


def test_edit_takes_pil_images_of_its_own_channels(tmp_path):
    from cyclediff.models import StableDiffusion
    from tiny_sd import photos, sd_pipeline

    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    pil = Image.fromarray((photos(1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    out = edit(sd, pil.convert("L"), source_prompt="a", prompt="b", steps=3, generator=torch.Generator().manual_seed(0))
    assert out.images.shape[1] == 3  # a grayscale picture given to an RGB model is read as RGB


def test_a_tensor_with_other_channels_is_one_error_even_with_an_automatic_mask(three):
    from cyclediff import IncompatibleModelError

    model = load_demo("digits")
    with pytest.raises(IncompatibleModelError, match="1-channel images; got 3 channels"):
        translate(three.expand(-1, 3, -1, -1), model, model, steps=6, source_condition=3, target_condition=8,
                  method=CycleDiffusion(mask="auto"))


def test_results_come_as_pil_images_too(three):
    model = load_demo("digits")
    out = translate(_pil(three), model, model, steps=6, source_condition=3, target_condition=8,
                    generator=torch.Generator().manual_seed(0))
    pil = out.pil()
    assert len(pil) == 1 and pil[0].mode == "L" and pil[0].size == (8, 8)
    back = torch.from_numpy(np.asarray(pil[0], dtype=np.float32) / 255)
    torch.testing.assert_close(back, out.images[0, 0], rtol=0, atol=0.5 / 255 + 1e-6)

"""LongCat-Image on a tiny pipeline built offline (the tiny Qwen-Image tokenizer and Qwen2.5-VL, a 16-channel VAE):
a seed gives ``LongCatImagePipeline``'s own image (prompt rewriting off) without and with classifier-free guidance
and its renormalisation, exact reconstruction, batch invariance under guidance, loading and the CLI. Diffusers has
no LongCat-Image img2img pipeline (LongCatImageEditPipeline feeds the image as reference tokens): no SDEdit check."""

from __future__ import annotations

import pytest
from family_checks import (
    NEGATIVE,
    assert_batch_invariant_edit,
    assert_cli_edits,
    assert_reconstructs,
    one_line_error,
    ours,
    theirs,
)

from conftest import gens
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.longcat_image import LongCatImage
from tiny_longcat_image import longcat_image_pipeline
from tiny_sd import photos

TOLERANCE = 1e-4  # on [0, 1] images, float32 (the parity holds to about 4e-7)
GUIDANCE_MOVES = 3e-4  # the random text moves this tiny model's images little: another guidance scale, ≥ 4e-4
CFG = {"guidance_scale": 4.5, "negative_prompt": NEGATIVE}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = longcat_image_pipeline(tmp_path_factory.mktemp("longcat"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def longcat(pipe):
    return LongCatImage.from_pipe(pipe)


@pytest.mark.parametrize("guidance, other, size", [
    ({"guidance_scale": 1.0}, {"guidance_scale": 2.0}, (16, 16)),
    (CFG, {"guidance_scale": 2.0}, (16, 16)),
    ({"guidance_scale": 4.5}, {"guidance_scale": 2.0}, (16, 32)),  # the pipeline's negative prompt: ""
], ids=["no-guidance", "cfg-negative", "cfg-empty-negative-16x32"])
def test_a_seed_gives_longcat_images_own_image(longcat, pipe, guidance, other, size):
    reference = theirs(pipe, size=size, enable_prompt_rewrite=False, **guidance)
    assert float((ours(longcat, size=size, **guidance) - reference).abs().max()) <= TOLERANCE
    assert float((ours(longcat, 4, size=size, **guidance) - reference).abs().max()) > 20 * TOLERANCE
    assert float((ours(longcat, size=size, **{**guidance, **other}) - reference).abs().max()) > GUIDANCE_MOVES


@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_longcat_image_encoding_gives_its_latents_back(longcat, eta, strength):
    assert_reconstructs(longcat, to_model_space(longcat, photos(2), gens(0, 1)), strength=strength, eta=eta, **CFG)


def test_longcat_image_edits_are_batch_invariant_under_guidance(longcat):
    """(The random text moves this tiny model's images little: no check that the negative prompt moves them.)"""
    assert_batch_invariant_edit(longcat, photos(2), negatives=["blue", "a horse"], moves=None, steps=4,
                                guidance_scale=4.5)


def test_from_pipe_load_and_the_cli_take_longcat_image(tmp_path, pipe):
    assert isinstance(from_pipe(pipe), LongCatImage)
    pipe.save_pretrained(tmp_path / "lc")
    model = load(str(tmp_path / "lc"))
    assert isinstance(model, LongCatImage) and model.family == "longcat-image"
    assert_cli_edits(tmp_path, tmp_path / "lc", photos(1)[0], "--steps", "4", "--guidance-scale", "4.5")


def test_a_lora_on_a_pipeline_without_a_lora_loader_is_one_line(tmp_path):
    """diffusers' LongCatImagePipeline has no load_lora_weights: one line, not Python's AttributeError."""
    model = from_pipe(longcat_image_pipeline(tmp_path))
    with one_line_error("takes no LoRA here"):
        model.with_lora(tmp_path / "style.safetensors", 0.5)

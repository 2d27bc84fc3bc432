"""Z-Image on a tiny pipeline built offline (a word-level tokenizer with a chat template made with the tokenizers
library, a small Qwen3): a seed gives ``ZImagePipeline``'s own image (no guidance; classifier-free guidance with
and without a negative prompt, where the pipeline's g is our w − 1; its negated output and its 1 − σ time), SDEdit's
path equals ``ZImageImg2ImgPipeline``, exact reconstruction, batch invariance under guidance with prompts of other
lengths in one call, loading (folder, from_pipe, single file) and the CLI."""

from __future__ import annotations

import pytest
from family_checks import (
    NEGATIVE,
    assert_batch_invariant_edit,
    assert_cli_edits,
    assert_img2img_path,
    assert_lora_is_fused,
    assert_parity,
    assert_reconstructs,
    guidance_cases,
    img2img,
    load_keys,
    loaders_seen,
    one_line_error,
)

from conftest import gens
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.z_image import ZImage
from tiny_sd import photos
from tiny_z_image import z_image_pipeline

CFG = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}


def pipeline_scale(condition: dict) -> dict:
    """The pipeline's call for our condition: its guidance_scale g is our w − 1 (g = 0: none)."""
    return {**condition, "guidance_scale": condition["guidance_scale"] - 1}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = z_image_pipeline(tmp_path_factory.mktemp("z_image"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def zimage(pipe):
    return ZImage.from_pipe(pipe)


# ---------------------------------------------------------------------------------------------------- parity
@guidance_cases(CFG)
def test_a_seed_gives_z_images_own_image(zimage, pipe, guidance, other, size):
    assert_parity(zimage, pipe, size=size, pipe_call=pipeline_scale(guidance), other_guidance=other, **guidance)


@pytest.mark.parametrize("strength, guidance", [(0.5, {"guidance_scale": 1.0}), (0.75, CFG), (1.0, CFG)])
def test_sdedits_path_is_z_images_img2img_pipeline(zimage, pipe, strength, guidance):
    """SDEdit's path at η = 0, composed from the core's parts (``family_checks.sdedit_path``: the VAE posterior
    draw, x_start from q(x_t | x0) at the strength's first step, the ODE on the cut grid), is
    ``ZImageImg2ImgPipeline``'s image."""
    from diffusers import ZImageImg2ImgPipeline

    pipeline = ZImageImg2ImgPipeline.from_pipe(pipe)
    pipeline.set_progress_bar_config(disable=True)
    x = photos(1, seed=1)
    reference = img2img(pipeline, x, strength, **pipeline_scale(guidance))
    assert_img2img_path(zimage, reference, x, strength, **guidance)


def test_a_z_image_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with guidance; the base model stays the base."""
    assert_lora_is_fused(z_image_pipeline, ZImage.from_pipe, tmp_path, CFG, pipe_call=pipeline_scale(CFG))


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_z_image_encoding_gives_its_latents_back(zimage, eta, strength):
    assert_reconstructs(zimage, to_model_space(zimage, photos(2), gens(0, 1)), strength=strength, eta=eta, **CFG)


def test_z_image_edits_are_batch_invariant_under_guidance(zimage):
    """Prompts of other lengths (source, target, negative) share one transformer call, each row its own length."""
    assert_batch_invariant_edit(zimage, photos(2), negatives=["blue", "a horse of the car"], steps=5,
                                guidance_scale=4.0)


def test_z_image_conditions_are_checked_in_one_line(zimage):
    with one_line_error("a Z-Image model takes no condition 'cfg_truncation'"):
        zimage.prepare_condition(1, prompt="a cat", cfg_truncation=0.5)
    with one_line_error("guidance_scale"):
        zimage.prepare_condition(1, prompt="a cat", guidance_scale=-1.0)


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_z_image(tmp_path, pipe):
    from diffusers import ZImageImg2ImgPipeline

    assert isinstance(from_pipe(pipe), ZImage)
    assert isinstance(from_pipe(ZImageImg2ImgPipeline.from_pipe(pipe)), ZImage)
    pipe.save_pretrained(tmp_path / "z")
    model = load(str(tmp_path / "z"))
    assert isinstance(model, ZImage) and model.family == "z-image"
    assert_cli_edits(tmp_path, tmp_path / "z", photos(1)[0], "--negative-prompt", "blue", "--steps", "4",
                     "--guidance-scale", "4")


def test_a_z_image_checkpoint_goes_to_its_loader(tmp_path, monkeypatch):
    seen = loaders_seen(monkeypatch, ZImage)
    load_keys(tmp_path / "z.safetensors", ["cap_pad_token", "layers.0.adaLN_modulation.0.weight"])
    assert seen == [ZImage]

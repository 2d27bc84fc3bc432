"""FLUX.2 [klein] (Base and distilled) and [dev] on tiny pipelines built offline (tests/tiny_flux2.py): a seed gives
the pipeline's own image without and with each kind of guidance, exact reconstruction, batch invariance of edits
under guidance, loading and the CLI, and the distilled checkpoints' refusal of a guidance scale."""

from __future__ import annotations

from functools import partial

import family_checks
import pytest
import torch
from family_checks import (
    PROMPT,
    assert_batch_invariant_edit,
    assert_cli_edits,
    assert_lora_is_fused,
    assert_reconstructs,
    one_line_error,
)

from conftest import gens
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.flux2 import Flux2
from tiny_flux2 import dev_pipeline, klein_pipeline
from tiny_sd import photos

TOKENS = 32


def theirs(pipe, s: int = family_checks.SEED, size=(16, 16), **call) -> torch.Tensor:
    return family_checks.theirs(pipe, s, size, max_sequence_length=TOKENS, **call)


assert_parity = partial(family_checks.assert_parity, reference=theirs)


@pytest.fixture(scope="module")
def klein_pipe(tmp_path_factory):
    return klein_pipeline(tmp_path_factory.mktemp("klein"))


@pytest.fixture(scope="module")
def klein(klein_pipe):
    return Flux2(klein_pipe, max_sequence_length=TOKENS)


@pytest.fixture(scope="module")
def dev_pipe(tmp_path_factory):
    return dev_pipeline(tmp_path_factory.mktemp("dev"))


@pytest.fixture(scope="module")
def dev(dev_pipe):
    return Flux2(dev_pipe, max_sequence_length=TOKENS)


# ---------------------------------------------------------------------------------------------------- 1. parity
@pytest.mark.parametrize("guidance, other, size", [
    ({"guidance_scale": 1.0}, {"guidance_scale": 4.0}, (16, 16)),
    ({"guidance_scale": 4.0}, {"guidance_scale": 1.0}, (16, 16)),
    ({"guidance_scale": 4.0}, {"guidance_scale": 2.0}, (16, 32)),
], ids=["no-guidance", "cfg", "cfg-16x32"])
def test_a_seed_gives_flux2_klein_bases_own_image(klein, klein_pipe, guidance, other, size):
    assert_parity(klein, klein_pipe, size=size, other_guidance=other, **guidance)


def test_klein_bases_negative_prompt_is_the_pipelines_negative_embeddings(klein, klein_pipe):
    negative, _ = klein_pipe.encode_prompt("a blue dog", max_sequence_length=TOKENS)
    assert_parity(klein, klein_pipe, pipe_call={"guidance_scale": 4.0, "negative_prompt_embeds": negative},
                  other_guidance={"negative_prompt": ""}, guidance_scale=4.0, negative_prompt="a blue dog")


@pytest.mark.parametrize("guidance, size", [
    ({"guidance_scale": 4.0}, (16, 16)),
    ({"guidance_scale": 4.0}, (16, 32)),
    ({"guidance_scale": 1.0}, (16, 16)),
], ids=["embedded", "embedded-16x32", "embedded-1"])
def test_a_seed_gives_flux2_devs_own_image(dev, dev_pipe, guidance, size):
    other = {"guidance_scale": 20.0 if guidance["guidance_scale"] < 10 else 1.0}
    assert_parity(dev, dev_pipe, size=size, other_guidance=other, **guidance)


def test_the_grid_is_the_pipelines_with_mu_from_the_tokens_and_the_steps(klein, klein_pipe):
    for steps, size in ((4, 16), (9, 16), (4, 32)):
        seen: list[float] = []

        def record(p, i, t, kw, seen=seen):
            seen.append(float(t))
            return kw

        klein_pipe(prompt=PROMPT, num_inference_steps=steps, height=size, width=size, guidance_scale=1.0,
                   output_type="latent", max_sequence_length=TOKENS,
                   callback_on_step_end=record)
        cells = size // klein.codec.factor
        assert klein.schedule_for((1, 16, cells, cells)).timesteps(steps) == pytest.approx(seen, abs=1e-4)


def test_a_flux2_klein_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with guidance; the base model stays the base."""
    assert_lora_is_fused(klein_pipeline, partial(Flux2, max_sequence_length=TOKENS), tmp_path,
                         {"guidance_scale": 4.0}, reference=theirs)


# -------------------------------------------------------------------------------------------- 6. distilled klein
def test_a_distilled_klein_gives_its_own_image_and_refuses_a_guidance_scale(tmp_path):
    pipe = klein_pipeline(tmp_path, distilled=True)
    model = Flux2(pipe, max_sequence_length=TOKENS)
    assert_parity(model, pipe, pipe_call={"guidance_scale": 4.0}, guidance_scale=1.0)  # the pipeline ignores it
    with one_line_error("step-wise distilled and takes no guidance"):
        model.prepare_condition(1, prompt=PROMPT, guidance_scale=4.0)
    with one_line_error("takes no condition 'negative_prompt'"):
        model.prepare_condition(1, prompt=PROMPT, negative_prompt="a dog")
    assert model.defaults["guidance_scale"] == 1.0


def test_dev_takes_no_negative_prompt(dev):
    with one_line_error("takes no condition 'negative_prompt'; it takes prompt, guidance_scale"):
        dev.prepare_condition(1, prompt=PROMPT, negative_prompt="a dog")


# ---------------------------------------------------------------------------------------------------- 2. reconstruction
@pytest.mark.parametrize("which", ["klein", "dev"])
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_flux2_encoding_gives_its_latents_back(request, which, eta, strength):
    model = request.getfixturevalue(which)
    x0 = to_model_space(model, photos(2), gens(0, 1))
    assert x0.shape == (2, 16, 4, 4)
    assert_reconstructs(model, x0, strength=strength, eta=eta, guidance_scale=4.0)


def test_the_codec_is_the_pipelines_batch_norm_normalisation_of_patchified_latents(klein, klein_pipe):
    images = photos(1) * 2 - 1
    mine = klein.codec.encode_images(images, sample=False)
    theirs_ = klein_pipe._encode_vae_image(images, generator=None)  # the pipeline's own (posterior mode)
    torch.testing.assert_close(mine, theirs_, rtol=0, atol=1e-6)
    raw = klein_pipe._patchify_latents(klein_pipe.vae.encode(images).latent_dist.mode())
    assert float((mine - raw).abs().max()) > 0.1  # the normalisation is not the identity on the tiny VAE


# ------------------------------------------------------------------------------------------- 4. batch invariance
@pytest.mark.parametrize("which", ["klein", "dev"])
def test_flux2_edits_are_batch_invariant_under_guidance(request, which):
    plain = {"guidance_scale": 1.0, "source_guidance_scale": 1.0}  # without guidance the edit is another one
    assert_batch_invariant_edit(request.getfixturevalue(which), photos(2), sources=["a cat", "a car"],
                                targets=["a dog", "a red car"], without=plain, steps=5, guidance_scale=4.0)


# ---------------------------------------------------------------------------------------------------- 5. loading
def test_from_pipe_load_and_the_cli_take_flux2(tmp_path, klein_pipe, dev_pipe):
    assert isinstance(from_pipe(klein_pipe), Flux2) and isinstance(from_pipe(dev_pipe), Flux2)
    klein_pipe.save_pretrained(tmp_path / "klein")
    model = load(str(tmp_path / "klein"))
    assert isinstance(model, Flux2) and not model.embedded and model.family == "flux2"
    assert_cli_edits(tmp_path, tmp_path / "klein", photos(1)[0], "--steps", "3", "--guidance-scale", "4")


def test_flux2_files_are_told_apart_from_flux1_by_their_keys():
    from cyclediff.models.families import family_of_keys, family_of_pipeline, lora_match

    assert family_of_pipeline("Flux2KleinPipeline", {}).name == "flux2"
    assert family_of_pipeline("Flux2Pipeline", {}).name == "flux2"
    assert family_of_pipeline("FluxPipeline", {}).name == "flux"
    assert family_of_keys(["double_blocks.0.img_attn.qkv.weight", "single_stream_modulation.lin.weight"]).name == \
        "flux2"
    assert family_of_keys(["single_transformer_blocks.0.attn.to_qkv_mlp_proj.weight"]).name == "flux2"
    assert family_of_keys(["double_blocks.0.img_attn.qkv.weight"]).name == "flux"
    assert lora_match(["transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj.lora_A.weight"])[0].name == \
        "flux2"
    assert lora_match(["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"])[0].name == "flux"

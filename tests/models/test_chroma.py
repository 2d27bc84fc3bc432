"""Chroma on a tiny pipeline built offline (a Unigram T5 tokenizer made with the tokenizers library): a seed gives
``ChromaPipeline``'s own image (no guidance; classifier-free guidance with and without a negative prompt, over the
T5 attention mask), SDEdit's path equals ``ChromaImg2ImgPipeline``, exact reconstruction, batch invariance under
guidance, loading (folder, from_pipe, single file) and the CLI."""

from __future__ import annotations

import pytest
from family_checks import (
    NEGATIVE,
    SENSITIVE,
    TOLERANCE,
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
    ours,
    theirs,
)

from conftest import gens
from cyclediff.models import Flux, from_pipe, load
from cyclediff.models.chroma import Chroma
from cyclediff.models.codec import to_model_space
from tiny_chroma import chroma_pipeline
from tiny_sd import photos

CFG = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return chroma_pipeline(tmp_path_factory.mktemp("chroma"))


@pytest.fixture(scope="module")
def chroma(pipe):
    return Chroma.from_pipe(pipe)


# ---------------------------------------------------------------------------------------------------- parity
@guidance_cases(CFG)
def test_a_seed_gives_chromas_own_image(chroma, pipe, guidance, other, size):
    assert_parity(chroma, pipe, size=size, pipe_call={**guidance, "max_sequence_length": chroma.max_sequence_length},
                  other_guidance=other, **guidance)


def test_the_t5_attention_mask_is_the_pipelines(chroma, pipe, monkeypatch):
    """The prompt's tokens and one padding token attend: without the mask the image is another one."""
    reference = theirs(pipe, max_sequence_length=chroma.max_sequence_length, guidance_scale=1.0)
    forward = chroma.runner.module.forward

    def unmasked(x, timesteps, return_dict=False, attention_mask=None, **kwargs):
        return forward(x, timesteps, return_dict=return_dict, **kwargs)

    monkeypatch.setattr(chroma.runner.module, "forward", unmasked)
    assert float((ours(chroma, guidance_scale=1.0) - reference).abs().max()) > SENSITIVE
    monkeypatch.undo()
    assert float((ours(chroma, guidance_scale=1.0) - reference).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("strength, guidance", [(0.5, {"guidance_scale": 1.0}), (0.75, CFG), (1.0, CFG)])
def test_sdedits_path_is_chromas_img2img_pipeline(chroma, pipe, strength, guidance):
    """SDEdit's path at η = 0, composed from the core's parts (``family_checks.sdedit_path``: the VAE posterior
    draw, x_start from q(x_t | x0) at the strength's first step, the ODE on the cut grid), is
    ``ChromaImg2ImgPipeline``'s image."""
    from diffusers import ChromaImg2ImgPipeline

    pipeline = ChromaImg2ImgPipeline.from_pipe(pipe)
    pipeline.set_progress_bar_config(disable=True)
    x = photos(1, seed=1)
    reference = img2img(pipeline, x, strength, max_sequence_length=chroma.max_sequence_length, **guidance)
    assert_img2img_path(chroma, reference, x, strength, **guidance)


def test_a_chroma_lora_gives_the_pipelines_fused_lora_image(tmp_path, chroma):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with guidance; the base model stays the base."""
    assert_lora_is_fused(chroma_pipeline, Chroma.from_pipe, tmp_path, CFG,
                         pipe_call={**CFG, "max_sequence_length": chroma.max_sequence_length})


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_chroma_encoding_gives_its_latents_back(chroma, eta, strength):
    assert_reconstructs(chroma, to_model_space(chroma, photos(2), gens(0, 1)), strength=strength, eta=eta, **CFG)


def test_chroma_edits_are_batch_invariant_under_guidance(chroma):
    assert_batch_invariant_edit(chroma, photos(2), sources=["a cat", "a car"], targets=["a dog", "a red car"],
                                negatives=["blue", "a horse"], steps=5, guidance_scale=4.0)


def test_chroma_conditions_are_checked_in_one_line(chroma):
    with one_line_error("a Chroma model takes no condition 'true_cfg_scale'"):
        chroma.prepare_condition(1, prompt="a cat", true_cfg_scale=2.0)
    with one_line_error("negative_prompt must be a string or a list of 2"):
        chroma.prepare_condition(2, prompt="a cat", negative_prompt=["a", "b", "c"], guidance_scale=3.0)


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_chroma(tmp_path, pipe):
    from diffusers import ChromaImg2ImgPipeline

    assert isinstance(from_pipe(pipe), Chroma)
    assert isinstance(from_pipe(ChromaImg2ImgPipeline.from_pipe(pipe)), Chroma)
    pipe.save_pretrained(tmp_path / "chroma")
    model = load(str(tmp_path / "chroma"))
    assert isinstance(model, Chroma) and model.family == "chroma"
    assert_cli_edits(tmp_path, tmp_path / "chroma", photos(1)[0], "--negative-prompt", "blue", "--steps", "4",
                     "--guidance-scale", "4")


def test_a_chroma_checkpoint_is_told_from_a_flux_one(tmp_path, monkeypatch):
    """A Chroma network has FLUX's blocks and its own modulation approximator (``distilled_guidance_layer``): its
    single file goes to Chroma's loader, a FLUX file still to FLUX's."""
    seen = loaders_seen(monkeypatch, Chroma, Flux)
    blocks = ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"]
    load_keys(tmp_path / "chroma.safetensors", [*blocks, "distilled_guidance_layer.in_proj.bias"])
    load_keys(tmp_path / "flux.safetensors", blocks)
    assert [c.__name__ for c in seen] == ["Chroma", "Flux"]

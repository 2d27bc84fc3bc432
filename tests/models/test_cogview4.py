"""CogView4 on a tiny pipeline built offline (a word-level tokenizer made with the tokenizers library, a small
GLM): a seed gives ``CogView4Pipeline``'s own image (no guidance; classifier-free guidance with and without a
negative prompt; its integer unshifted timesteps against the shifted levels, its own image-size μ, its text
left-padded to a multiple of 16), exact reconstruction, batch invariance under guidance with texts of other padded
lengths, loading (folder, from_pipe) and the CLI. diffusers has no CogView4 img2img pipeline to hold SDEdit
against."""

from __future__ import annotations

import pytest
from family_checks import (
    NEGATIVE,
    assert_batch_invariant_edit,
    assert_cli_edits,
    assert_lora_is_fused,
    assert_parity,
    assert_reconstructs,
    one_line_error,
)

from conftest import gens
from cyclediff.errors import CycleDiffError
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.cogview4 import CogView4
from tiny_cogview4 import cogview4_pipeline
from tiny_sd import photos

CFG = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}
LONG = " ".join(["a photo of the red car"] * 4)  # 24 words: 32 tokens after the padding to a multiple of 16


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = cogview4_pipeline(tmp_path_factory.mktemp("cogview4"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def cogview(pipe):
    return CogView4.from_pipe(pipe)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, other, size", [
    ({"guidance_scale": 1.0}, CFG, (16, 16)),
    (CFG, {"guidance_scale": 1.0}, (16, 16)),
    (CFG, {"guidance_scale": 1.0}, (16, 32)),
    ({"guidance_scale": 4.0}, CFG, (16, 16)),  # the empty negative prompt, as the pipeline's default
    ({"guidance_scale": 4.0, "negative_prompt": LONG}, CFG, (16, 16)),  # 16 and 32 text tokens
], ids=["no-guidance", "cfg-negative", "cfg-negative-16x32", "cfg-empty-negative", "cfg-long-negative"])
def test_a_seed_gives_cogviews_own_image(cogview, pipe, guidance, other, size):
    assert_parity(cogview, pipe, size=size, other_guidance=other, **guidance)


def test_cogviews_grid_is_its_pipelines(cogview, pipe):
    """The shifted levels are the scheduler's sigmas, the network's timesteps its unshifted integers."""
    from diffusers.pipelines.cogview4.pipeline_cogview4 import calculate_shift

    schedule = cogview.schedule_for((1, 4, 8, 16))
    levels = schedule.grid(5)
    pipe.scheduler.set_timesteps(timesteps=[1000, 750, 500, 250, 1], sigmas=[1.0, 0.75, 0.5, 0.25, 0.001],
                                 mu=calculate_shift(32, 256, 0.25, 0.75))
    assert levels == pytest.approx([float(s) * 1000 for s in pipe.scheduler.sigmas[:-1]], abs=1e-9)
    assert [schedule.network_time(t) for t in levels] == [1000.0, 750.0, 500.0, 250.0, 1.0]
    with pytest.raises(CycleDiffError, match="not on CogView4's grid"):
        schedule.network_time(123.0)


def test_a_cogview4_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with guidance; the base model stays the base."""
    assert_lora_is_fused(cogview4_pipeline, CogView4.from_pipe, tmp_path, CFG)


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_cogview_encoding_gives_its_latents_back(cogview, eta, strength):
    assert_reconstructs(cogview, to_model_space(cogview, photos(2), gens(0, 1)), strength=strength, eta=eta, **CFG)


def test_cogview_edits_are_batch_invariant_under_guidance(cogview):
    """Texts of 16 and 32 tokens (source, target, negative) in one step: rows of one length share a call."""
    assert_batch_invariant_edit(cogview, photos(2), sources=["a cat", LONG], targets=["a dog", "a blue car"],
                                negatives=["blue", LONG], steps=5, guidance_scale=4.0)


def test_cogview_conditions_are_checked_in_one_line(cogview):
    with one_line_error("a CogView4 model takes no condition 'true_cfg_scale'"):
        cogview.prepare_condition(1, prompt="a cat", true_cfg_scale=4.0)
    with one_line_error("guidance_scale"):
        cogview.prepare_condition(1, prompt="a cat", guidance_scale=-1.0)


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_cogview(tmp_path, pipe):
    assert isinstance(from_pipe(pipe), CogView4)
    pipe.save_pretrained(tmp_path / "cv")
    model = load(str(tmp_path / "cv"))
    assert isinstance(model, CogView4) and model.family == "cogview4"
    assert_cli_edits(tmp_path, tmp_path / "cv", photos(1)[0], "--negative-prompt", "blue", "--steps", "4",
                     "--guidance-scale", "4")

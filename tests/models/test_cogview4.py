"""CogView4 on a tiny pipeline built offline (a word-level tokenizer made with the tokenizers library, a small
GLM): a seed gives ``CogView4Pipeline``'s own image (no guidance; classifier-free guidance with and without a
negative prompt; its integer unshifted timesteps against the shifted levels, its own image-size μ, its text
left-padded to a multiple of 16), exact reconstruction, batch invariance under guidance with texts of other padded
lengths, loading (folder, from_pipe) and the CLI. diffusers has no CogView4 img2img pipeline to hold SDEdit
against."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from test_pipeline_parity import NEGATIVE, SENSITIVE, TOLERANCE, assert_parity, ours, theirs

from conftest import gens
from cyclediff import decode, edit, encode
from cyclediff.cli import main
from cyclediff.errors import CycleDiffError
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.cogview4 import CogView4
from tiny_cogview4 import cogview4_pipeline
from tiny_sd import photos

EXACT = 1e-5  # float32 reconstruction bound of the issue
BATCH_ULPS = 1e-5  # a batched transformer call against separate ones: sums in another order
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
    from tiny_sd import make_lora

    file = make_lora(cogview4_pipeline(tmp_path / "donor"), tmp_path / "lora", seed=7, gain=30.0)
    fused = cogview4_pipeline(tmp_path / "fused")
    fused.set_progress_bar_config(disable=True)
    fused.load_lora_weights(str(file))
    fused.fuse_lora()
    reference = theirs(fused, **CFG)
    base = CogView4.from_pipe(cogview4_pipeline(tmp_path / "base"))
    styled = base.with_lora(file)
    with torch.no_grad():  # the LoRA's parameters ask for gradients
        diff = float((ours(styled, **CFG) - reference).abs().max())
        assert diff <= TOLERANCE, diff
        assert float((ours(base, **CFG) - reference).abs().max()) > SENSITIVE


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_cogview_encoding_gives_its_latents_back(cogview, eta, strength):
    x0 = to_model_space(cogview, photos(2), gens(0, 1))
    z = encode(x0, cogview, steps=6, strength=strength, eta=eta, generator=gens(0, 1), prompt="a cat", **CFG)
    assert z.path == "rectified_flow"
    torch.testing.assert_close(decode(z, cogview), x0, rtol=0, atol=EXACT)


def test_cogview_edits_are_batch_invariant_under_guidance(cogview):
    """Texts of 16 and 32 tokens (source, target, negative) in one step: rows of one length share a call."""
    x = photos(2)
    kw = dict(steps=5, guidance_scale=4.0, source_guidance_scale=2.0)
    both = edit(cogview, x, source_prompt=["a cat", LONG], prompt=["a dog", "a blue car"],
                negative_prompt=["blue", LONG], generator=gens(0, 1), **kw).images
    one = edit(cogview, x[1:], source_prompt=LONG, prompt="a blue car", negative_prompt=LONG, generator=gens(1),
               **kw).images
    torch.testing.assert_close(both[1:], one, rtol=0, atol=BATCH_ULPS)
    plain = edit(cogview, x[1:], source_prompt=LONG, prompt="a blue car", generator=gens(1), **kw).images
    assert float((plain - one).abs().max()) > SENSITIVE  # the negative prompt reaches the target's rows


def test_cogview_conditions_are_checked_in_one_line(cogview):
    with pytest.raises(CycleDiffError, match="a CogView4 model takes no condition 'true_cfg_scale'") as err:
        cogview.prepare_condition(1, prompt="a cat", true_cfg_scale=4.0)
    assert "\n" not in str(err.value)
    with pytest.raises(CycleDiffError, match="guidance_scale"):
        cogview.prepare_condition(1, prompt="a cat", guidance_scale=-1.0)


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_cogview(tmp_path, pipe):
    from cyclediff._images import save_image

    assert isinstance(from_pipe(pipe), CogView4)
    pipe.save_pretrained(tmp_path / "cv")
    model = load(str(tmp_path / "cv"))
    assert isinstance(model, CogView4) and model.family == "cogview4"
    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(tmp_path / "cv"),
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--negative-prompt", "blue",
                                    "--steps", "4", "--guidance-scale", "4", "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("cat_a-dog_*.png"))) == 1

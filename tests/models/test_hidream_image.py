"""HiDream-I1 on a tiny pipeline built offline (two CLIPs, T5, a Llama built from a config, tokenizers made with the
tokenizers library, a mixture-of-experts transformer): a seed gives ``HiDreamImagePipeline``'s own image with Dev /
Fast's flow-matching Euler scheduler (any steps, square and non-square) and with Full's UniPC where it takes
first-order steps (1 and 2 steps), without and with classifier-free guidance (a negative prompt, or the pipeline's
""); a scale of 1 or below is no guidance, as the pipeline has it; exact reconstruction, batch invariance under
guidance, loading and the CLI. HiDream has no img2img pipeline in diffusers, so there is no SDEdit check."""

from __future__ import annotations

from functools import partial

import family_checks
import pytest
import torch
from family_checks import (
    NEGATIVE,
    PROMPT,
    SENSITIVE,
    TOLERANCE,
    assert_batch_invariant_edit,
    assert_cli_edits,
    assert_lora_is_fused,
    assert_reconstructs,
    load_keys,
    loaders_seen,
    one_line_error,
)

from conftest import gens
from cyclediff.flow import UniPCFlowSchedule
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.families import family_of_keys, lora_match
from cyclediff.models.hidream_image import HiDreamImage, hidream_schedule
from tiny_hidream import SIZE, hidream_pipeline, unipc
from tiny_sd import photos

CFG = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = hidream_pipeline(tmp_path_factory.mktemp("hidream"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def hidream(pipe):
    return HiDreamImage.from_pipe(pipe)


def ours(model, s: int, steps: int, size=(SIZE, SIZE), **condition) -> torch.Tensor:
    return family_checks.ours(model, s, size=size, steps=steps, **condition)


def theirs(pipe, s: int, steps: int, size=(SIZE, SIZE), **call) -> torch.Tensor:
    return family_checks.theirs(pipe, s, size=size, steps=steps, **call)


# ---------------------------------------------------------------------------------------------------- the grid
@pytest.mark.parametrize("shift", [1.0, 3.0, 6.0])
def test_the_grid_is_hidream_fulls_unipc(shift):
    """Every step count's levels are UniPC's flow σ and the network's timesteps its int64 timesteps."""
    scheduler = unipc(shift)
    schedule = hidream_schedule(scheduler.config, 0.5)
    assert isinstance(schedule, UniPCFlowSchedule)
    for steps in (1, 2, 3, 7, 50):
        scheduler.set_timesteps(steps)
        grid = schedule.grid(steps)
        assert [int(t) for t in grid] == scheduler.timesteps.tolist()
        sigmas = torch.tensor([schedule.sigma_at(t) for t in grid] + [0.0], dtype=torch.float64)
        torch.testing.assert_close(sigmas, scheduler.sigmas.double(), rtol=0, atol=1e-7)


def test_other_schedulers_are_refused_in_one_line():
    from diffusers import DDIMScheduler, UniPCMultistepScheduler

    with one_line_error("HiDream needs a rectified-flow scheduler"):
        hidream_schedule(DDIMScheduler().config, 0.5)
    karras = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, use_karras_sigmas=True)
    with one_line_error("use_karras_sigmas.*not HiDream-I1-Full's"):
        hidream_schedule(karras.config, 0.5)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, call, other", [
    ({}, {"guidance_scale": 0.0}, CFG),  # Dev's and Fast's cards: 0.0
    (CFG, CFG, {"guidance_scale": 2.0, "negative_prompt": NEGATIVE}),
    ({"guidance_scale": 4.0}, {"guidance_scale": 4.0}, CFG),  # the pipeline's negative prompt: ""
], ids=["no-guidance", "cfg-negative", "cfg-empty-negative"])
def test_a_seed_gives_hidreams_own_image_with_dev_and_fasts_euler_scheduler(hidream, pipe, guidance, call, other):
    reference = theirs(pipe, 3, 4, **call)
    assert float((ours(hidream, 3, 4, **guidance) - reference).abs().max()) <= TOLERANCE
    assert float((ours(hidream, 4, 4, **guidance) - reference).abs().max()) > SENSITIVE
    assert float((ours(hidream, 3, 4, **other) - reference).abs().max()) > SENSITIVE


def test_a_seed_gives_hidreams_own_non_square_image(hidream, pipe):
    """Non-square latents: the transformer pads them to its max_seq tokens with a mask (8×32 has the pipeline's
    default area, which it keeps)."""
    reference = theirs(pipe, 3, 3, size=(8, 32), **CFG)
    assert reference.shape == (1, 3, 8, 32)
    assert float((ours(hidream, 3, 3, size=(8, 32), **CFG) - reference).abs().max()) <= TOLERANCE
    assert float((ours(hidream, 4, 3, size=(8, 32), **CFG) - reference).abs().max()) > SENSITIVE


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("guidance, call", [({}, {"guidance_scale": 1.0}), (CFG, CFG)], ids=["no-guidance", "cfg"])
def test_a_seed_gives_hidream_fulls_own_image_where_unipc_is_first_order(tmp_path, steps, guidance, call):
    """Full's UniPC: its grid starts at σ₀ = 1 − 1e-6 and gives the network integer timesteps; at 1 and 2 steps its
    updates are the core's first-order step (the corrector at the second step moves a sample whose x̂0 the final
    step to σ = 0 no longer reads)."""
    full = hidream_pipeline(tmp_path, scheduler=unipc(3.0))
    full.set_progress_bar_config(disable=True)
    model = HiDreamImage.from_pipe(full)
    assert isinstance(model.schedule, UniPCFlowSchedule)
    reference = theirs(full, 3, steps, **call)
    assert float((ours(model, 3, steps, **guidance) - reference).abs().max()) <= TOLERANCE
    assert float((ours(model, 4, steps, **guidance) - reference).abs().max()) > SENSITIVE


def test_a_guidance_scale_of_one_or_below_is_no_guidance_as_in_the_pipeline(hidream, pipe):
    """The pipeline guides only above 1: 0.5 is the conditional output alone (not an extrapolation), the record
    keeps what was asked."""
    half = hidream.prepare_condition(1, prompt=PROMPT, negative_prompt=NEGATIVE, guidance_scale=0.5)
    assert half.inputs["scale"] == 1 and half.inputs["uncond"] is None and half.record["guidance_scale"] == 0.5
    reference = theirs(pipe, 3, 2, guidance_scale=0.5, negative_prompt=NEGATIVE)
    assert float((ours(hidream, 3, 2, guidance_scale=0.5, negative_prompt=NEGATIVE) - reference).abs().max()) \
        <= TOLERANCE


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_hidream_encoding_gives_its_latents_back(hidream, eta, strength):
    x0 = to_model_space(hidream, photos(2, size=SIZE), gens(0, 1))
    assert_reconstructs(hidream, x0, strength=strength, eta=eta, **CFG)


def test_hidream_edits_are_batch_invariant_under_guidance(hidream):
    assert_batch_invariant_edit(hidream, photos(2, size=SIZE), negatives=["blue", "a horse"], steps=4,
                                guidance_scale=4.0)


def test_hidream_conditions_and_samples_are_checked_in_one_line(hidream):
    with one_line_error("a HiDream-I1 model takes no condition 'true_cfg_scale'"):
        hidream.prepare_condition(1, prompt="a cat", true_cfg_scale=2.0)
    hidream.check_sample(torch.zeros(1, 4, 4, 32))  # 32 patches: within the tiny transformer's 64
    with one_line_error("at most 64 2×2 patches; got 8×36"):
        hidream.check_sample(torch.zeros(1, 4, 8, 36))


def test_a_hidream_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (HiDreamImageLoraLoaderMixin's adapters, on for the variant's calls) equals the pipeline's
    load_lora_weights + fuse_lora of the same file, seed for seed; the base model stays the base."""
    assert_lora_is_fused(hidream_pipeline, HiDreamImage.from_pipe, tmp_path, CFG, mine=partial(ours, s=3, steps=3),
                         reference=partial(theirs, s=3, steps=3))


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_hidream(tmp_path, pipe):
    import cyclediff.models

    assert cyclediff.models.HiDreamImage is HiDreamImage  # named by the package, imported when first named
    assert isinstance(from_pipe(pipe), HiDreamImage)
    pipe.save_pretrained(tmp_path / "hidream")
    model = load(str(tmp_path / "hidream"))
    assert isinstance(model, HiDreamImage) and model.family == "hidream"
    assert_cli_edits(tmp_path, tmp_path / "hidream", photos(1, size=SIZE)[0], "--negative-prompt", "blue", "--steps",
                     "4", "--guidance-scale", "4")


def test_a_hidream_folder_without_its_llama_names_the_fix_in_one_line(tmp_path, pipe):
    """The HiDream-ai repositories hold no Llama: it comes from Llama-3.1-8B-Instruct, or one line says how."""
    from diffusers import HiDreamImagePipeline

    HiDreamImagePipeline(**{**pipe.components, "text_encoder_4": None, "tokenizer_4": None}).save_pretrained(
        tmp_path / "no-llama")
    with one_line_error("needs Llama-3.1-8B-Instruct .*tokenizer_4 / text_encoder_4"):
        load(str(tmp_path / "no-llama"))


def test_hidream_files_and_loras_are_told_by_their_blocks(tmp_path, monkeypatch):
    keys = ["double_stream_blocks.0.block.adaLN_modulation.1.bias", "single_stream_blocks.0.block.ff_i.gate.weight",
            "caption_projection.0.linear.weight"]
    assert family_of_keys(keys).name == "hidream"
    assert lora_match(["transformer.single_stream_blocks.0.block.attn1.to_q.lora_A.weight"])[0].name == "hidream"
    seen = loaders_seen(monkeypatch, HiDreamImage)
    load_keys(tmp_path / "hidream.safetensors", keys)
    assert seen == [HiDreamImage]

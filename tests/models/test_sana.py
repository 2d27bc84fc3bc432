"""SANA on a tiny pipeline built offline (a word-level tokenizer made with the tokenizers library, a small Gemma2, a
DC-AE, SANA's flow DPM-solver): the grid is the solver's (its float σ, its integer timesteps), a seed gives
``SanaPipeline``'s own image where the solver takes first-order steps only (1 and 2 steps) and with a flow-matching
Euler scheduler (any steps), without and with classifier-free guidance (the complex human instruction before the
prompt, none before the negative); exact reconstruction, batch invariance under guidance, loading and the CLI.
SANA has no img2img pipeline in diffusers (SanaSprintImg2ImgPipeline is SANA-Sprint's), so there is no SDEdit check."""

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
    seed,
)

from conftest import gens
from cyclediff import decode
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_images, to_model_space
from cyclediff.models.sana import Sana, SanaSchedule, sana_schedule
from cyclediff.sampler import sample_latent
from tiny_sana import sana_pipeline
from tiny_sd import photos

SIZE = 32  # SanaPipeline takes sides that are multiples of 32
CFG = {"guidance_scale": 4.5, "negative_prompt": NEGATIVE}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = sana_pipeline(tmp_path_factory.mktemp("sana"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sana(pipe):
    return Sana.from_pipe(pipe)


def ours(model, s: int, steps: int, **condition) -> torch.Tensor:
    return family_checks.ours(model, s, size=(SIZE, SIZE), steps=steps, **condition)


def theirs(pipe, s: int, steps: int, **call) -> torch.Tensor:
    return family_checks.theirs(pipe, s, size=(SIZE, SIZE), steps=steps, use_resolution_binning=False, **call)


# ---------------------------------------------------------------------------------------------------- the grid
@pytest.mark.parametrize("shift", [1.0, 3.0, 4.5])
def test_the_grid_is_the_flow_dpm_solvers(shift):
    """Every step count's levels are the solver's σ and the network's timesteps its int64 timesteps."""
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                            flow_shift=shift, final_sigmas_type="zero")
    schedule = sana_schedule(scheduler.config)
    assert isinstance(schedule, SanaSchedule)
    for steps in (1, 2, 3, 7, 20, 50):
        scheduler.set_timesteps(steps)
        grid = schedule.grid(steps)
        assert [int(t) for t in grid] == scheduler.timesteps.tolist()
        sigmas = torch.tensor([schedule.sigma_at(t) for t in grid] + [0.0], dtype=torch.float64)
        torch.testing.assert_close(sigmas, scheduler.sigmas.double(), rtol=0, atol=1e-7)


def test_other_schedulers_are_refused_in_one_line():
    from diffusers import DDIMScheduler

    with one_line_error("SANA needs a rectified-flow scheduler"):
        sana_schedule(DDIMScheduler().config)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("guidance, other", [
    ({"guidance_scale": 1.0}, CFG),
    (CFG, {"guidance_scale": 1.0}),
    ({"guidance_scale": 4.5}, CFG),  # the pipeline's negative prompt: ""
], ids=["no-guidance", "cfg-negative", "cfg-empty-negative"])
def test_sanas_flow_dpm_solver_gives_our_image_from_our_first_sample(sana, pipe, steps, guidance, other):
    """The pipeline's default scheduler takes first-order steps only at 1 and 2 steps (the first, and the final to
    σ = 0): there its image is ours within 1e-4, started from our first flow sample. The solver's grid starts below
    σ = 1, at σ₀ = shift(1 − 1/T), where the pipeline's first sample is the seed's draw ε itself and the core's is
    c(σ₀)·ε (its prior draw is in variance-preserving coordinates; c = √((1 − σ)² + σ²)), so the pipeline is handed
    that first sample (see the seed test below)."""
    z = sample_latent(sana, 1, steps=steps, eta=0, generator=seed(3), prompt=PROMPT, sample_shape=(4, 16, 16),
                      **guidance)
    mine = to_images(sana, decode(z, sana))
    first = sana.model_input(z.x_start, z.timesteps[0])  # the flow sample the core starts from
    with torch.no_grad():
        reference = pipe(PROMPT, num_inference_steps=steps, height=SIZE, width=SIZE, latents=first.clone(),
                         output_type="pt", use_resolution_binning=False, **guidance).images
    assert float((mine - reference).abs().max()) <= TOLERANCE
    assert float((ours(sana, 4, steps, **guidance) - reference).abs().max()) > SENSITIVE
    assert float((ours(sana, 3, steps, **other) - reference).abs().max()) > SENSITIVE


def test_a_seed_gives_sanas_own_image_with_its_flow_dpm_solver(sana, pipe):
    """SANA's grid starts at σ₀ < 1, where the pipeline's first sample is ε: the core's prior draw is ε / c(σ₀) in
    its coordinates (was ε, 1.5e-3 away), at the one or two steps its DPM solver takes in Euler form."""
    assert float((ours(sana, 3, 2, **CFG) - theirs(pipe, 3, 2, **CFG)).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("guidance, other", [({"guidance_scale": 1.0}, CFG), (CFG, {"guidance_scale": 2.0})],
                         ids=["no-guidance", "cfg-negative"])
def test_a_seed_gives_sanas_own_image_with_a_flow_matching_euler_scheduler(tmp_path, guidance, other):
    """Diffusers' own SANA tests' scheduler (shifted flow-matching Euler, its grid from σ = 1): any step count."""
    pipe = sana_pipeline(tmp_path, scheduler="euler", flow_shift=7.0)
    pipe.set_progress_bar_config(disable=True)
    model = Sana.from_pipe(pipe)
    reference = theirs(pipe, 3, 4, **guidance)
    assert float((ours(model, 3, 4, **guidance) - reference).abs().max()) <= TOLERANCE
    assert float((ours(model, 4, 4, **guidance) - reference).abs().max()) > SENSITIVE
    assert float((ours(model, 3, 4, **other) - reference).abs().max()) > SENSITIVE


def test_the_complex_human_instruction_is_the_pipelines(sana, pipe):
    """The prompt's embeddings are the pipeline's with its default instruction; without it they differ."""
    cond = sana.prepare_condition(1, prompt=PROMPT, guidance_scale=1.0).inputs["cond"]
    embeds, *_ = pipe.encode_prompt(PROMPT, do_classifier_free_guidance=False,
                                    complex_human_instruction=sana.instruction)
    torch.testing.assert_close(cond, embeds, rtol=0, atol=0)
    assert sana.instruction and Sana(pipe, complex_human_instruction=[]).instruction == []
    plain = Sana(pipe, complex_human_instruction=[]).prepare_condition(1, prompt=PROMPT).inputs["cond"]
    assert float((plain - cond).abs().max()) > 1e-3


def test_a_sana_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with guidance; the base model stays the base."""
    assert_lora_is_fused(sana_pipeline, Sana.from_pipe, tmp_path, CFG, mine=partial(ours, s=3, steps=2),
                         reference=partial(theirs, s=3, steps=2))


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_sana_encoding_gives_its_latents_back(sana, eta, strength):
    x0 = to_model_space(sana, photos(2, size=SIZE), gens(0, 1))
    assert_reconstructs(sana, x0, strength=strength, eta=eta, **CFG)


def test_sana_edits_are_batch_invariant_under_guidance(sana):
    assert_batch_invariant_edit(sana, photos(2, size=SIZE), negatives=["blue", "a horse"], steps=4, guidance_scale=4.5)


def test_sana_conditions_are_checked_in_one_line(sana):
    with one_line_error("a SANA model takes no condition 'true_cfg_scale'"):
        sana.prepare_condition(1, prompt="a cat", true_cfg_scale=2.0)


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_sana(tmp_path, pipe):
    assert isinstance(from_pipe(pipe), Sana)
    pipe.save_pretrained(tmp_path / "sana")
    model = load(str(tmp_path / "sana"))
    assert isinstance(model, Sana) and model.family == "sana" and isinstance(model.schedule, SanaSchedule)
    assert_cli_edits(tmp_path, tmp_path / "sana", photos(1, size=SIZE)[0], "--negative-prompt", "blue", "--steps",
                     "4", "--guidance-scale", "4.5")


@pytest.mark.parametrize("key", ["blocks.0.mlp.inverted_conv.conv.weight",
                                 "transformer_blocks.0.ff.conv_inverted.weight"])
def test_a_sana_checkpoint_goes_to_its_loader(tmp_path, monkeypatch, key):
    seen = loaders_seen(monkeypatch, Sana)
    load_keys(tmp_path / "sana.safetensors", [key, "transformer_blocks.0.attn2.to_k.weight"])
    assert seen == [Sana]

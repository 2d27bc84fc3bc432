"""FlowEdit (:mod:`cyclediff.flowedit`, :func:`cyclediff.baselines.flowedit`): FlowEdit's own outputs on two tiny
pipelines with every noise draw recorded (tests/fixtures/flowedit, made by fallenshock/FlowEdit's
``FlowEditSD3`` / ``FlowEditFLUX``) reproduced from the same draws; batch invariance; its laws; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cyclediff import CycleDiffError, FlowEdit
from cyclediff.baselines import flowedit
from cyclediff.flowedit import draws_needed, flow_edit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flowedit"  # its README says how they were made
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "cases.json").is_file(),
                                    reason="FlowEdit's fixtures (tests/fixtures/flowedit) are missing")
CASES = json.loads((FIXTURES / "cases.json").read_text())["cases"] if (FIXTURES / "cases.json").is_file() else []


@pytest.fixture(scope="module")
def pipes():
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    from cyclediff.models import Flux, StableDiffusion3

    sd3 = StableDiffusion3Pipeline.from_pretrained(FIXTURES / "sd3" / "pipe", text_encoder_3=None, tokenizer_3=None)
    flux = FluxPipeline.from_pretrained(FIXTURES / "flux" / "pipe")
    return {"sd3": StableDiffusion3.from_pipe(sd3), "flux": Flux.from_pipe(flux), "flux_pipe": flux}


def _recorded(case: dict, tensors: dict, pipes: dict) -> list[torch.Tensor]:
    """The case's draws in call order, unpacked for FLUX with diffusers' own unpacking."""
    draws = [tensors[f"{case['name']}.noise.{i:03d}"] for i in range(case["draws"])]
    if case["model"] != "flux":
        return draws
    pipe = pipes["flux_pipe"]
    h, w = tensors[f"{case['name']}.x_src"].shape[2:]
    return [pipe._unpack_latents(n, h * pipe.vae_scale_factor, w * pipe.vae_scale_factor, pipe.vae_scale_factor)
            for n in draws]


@needs_fixtures
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_flowedit_reproduces_flowedits_own_outputs_from_its_draws(case, pipes):
    """float32 on the CPU: agreement to ~1e-5 expected (the adapters read the velocity back from x̂0 and pass the
    flow sample through VP coordinates: a few roundings FlowEdit does not make); 1e-4 asserted."""
    from safetensors.torch import load_file

    tensors = load_file(FIXTURES / "cases.safetensors")
    model = pipes[case["model"]]
    draws = _recorded(case, tensors, pipes)
    assert len(draws) == draws_needed(case["n_max"], case["n_min"], case["n_avg"])
    out = flowedit(tensors[f"{case['name']}.x_src"], model, source_prompt=case["source_prompt"],
                   prompt=case["target_prompt"], negative_prompt=case["negative_prompt"], steps=case["T_steps"],
                   n_max=case["n_max"], n_min=case["n_min"], n_avg=case["n_avg"],
                   source_guidance_scale=case["src_guidance_scale"], guidance_scale=case["tar_guidance_scale"],
                   noise=iter(draws))
    expected = tensors[f"{case['name']}.out"]
    assert (expected - tensors[f"{case['name']}.x_src"]).abs().max() > 1e-2  # the case edits something
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


@needs_fixtures
def test_flowedit_is_batch_invariant_under_guidance(pipes, gen):
    """Two images with a generator each equal each image alone (SD3's classifier-free guidance and FLUX's embedded
    guidance batch their rows; the draws are per image)."""
    for name in ("sd3", "flux"):
        model = pipes[name]
        x = torch.randn(2, 4, 8, 8, generator=gen(7))
        settings = dict(source_prompt="a cat", prompt="a dog", steps=6, n_max=4, n_min=1, n_avg=2,
                        source_guidance_scale=2.0, guidance_scale=5.0)
        both = flowedit(x, model, generator=[gen(1), gen(2)], **settings)
        for i, seed in enumerate((1, 2)):
            alone = flowedit(x[i:i + 1], model, generator=gen(seed), **settings)
            torch.testing.assert_close(both[i:i + 1], alone, rtol=0, atol=1e-5)


def test_equal_conditions_leave_the_input_unchanged(gen):
    """With one model and one condition v_target(z_src + 0) = v_source(z_src): every step moves by exactly zero,
    so FlowEdit returns its input (the edit is driven only by the conditions' difference)."""
    from cyclediff.demo.models import load_demo

    model = load_demo("digits-flow")
    x = torch.rand(2, 1, 8, 8, generator=gen(0)) * 2 - 1
    out = flow_edit(x, model, steps=10, n_max=8, source_condition={"class_labels": [3, 3]},
                    target_condition={"class_labels": [3, 3]}, generator=gen(1))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)
    moved = flow_edit(x, model, steps=10, n_max=8, source_condition={"class_labels": [3, 3]},
                      target_condition={"class_labels": [8, 8]}, generator=gen(1))
    assert (moved - x).abs().max() > 0.05


@pytest.mark.parametrize("settings, message", [
    (dict(steps=5, n_max=6), "n_max .6. is more than its steps"),
    (dict(steps=5, n_max=3, n_min=3), "n_min .3. must be less than n_max"),
    (dict(steps=5, n_max=3, n_avg=0), "n_avg must be an integer ≥ 1"),
    (dict(steps=5, n_max=3, noise=iter([torch.zeros(1, 1, 8, 8)])), "the noise ran out after 1 draws; this "
                                                                      "FlowEdit takes 3"),
    (dict(steps=5, n_max=3, noise=iter([torch.zeros(1, 1, 4, 4)])), "noise draw 1 has shape"),
])
def test_bad_flowedit_settings_are_one_line_errors(settings, message):
    from cyclediff.demo.models import load_demo

    model = load_demo("digits-flow")
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(CycleDiffError, match=message):
        flow_edit(x, model, source_condition={"class_labels": 3}, target_condition={"class_labels": 8}, **settings)


def test_flowedit_on_a_vp_model_is_refused_naming_the_methods_that_apply():
    from cyclediff.demo.models import load_demo

    with pytest.raises(CycleDiffError, match="FlowEdit needs a rectified-flow model .* use method cyclediffusion, "
                                             "edit-friendly, sdedit or ddib"):
        flow_edit(torch.zeros(1, 1, 8, 8), load_demo("digits"), steps=4, n_max=3)


def test_n_avg_is_bounded_in_the_settings_the_cli_and_flowedit_itself():
    """A huge n_avg (hours of network calls) is refused at once, naming the range."""
    from click.testing import CliRunner

    from cyclediff.cli import main
    from cyclediff.demo.models import load_demo
    from cyclediff.settings import EditSettings, TranslateSettings

    for kind in (EditSettings, TranslateSettings):
        with pytest.raises(CycleDiffError, match=r"n_avg must lie in \[1, 64\]; got 100000000"):
            kind(method="flowedit", n_avg=100_000_000)
    assert EditSettings(method="flowedit", n_avg=64).n_avg == 64
    res = CliRunner().invoke(main, ["translate", "x.png", "--source-model", "demo:digits-flow", "--target-model",
                                    "demo:digits-flow", "--method", "flowedit", "--n-avg", "100000000"])
    assert res.exit_code == 2 and "n_avg must lie in [1, 64]" in res.output and "Traceback" not in res.output
    with pytest.raises(CycleDiffError, match=r"n_avg must lie in \[1, 64\]"):
        flow_edit(torch.zeros(1, 1, 8, 8), load_demo("digits-flow"), steps=4, n_max=3, n_avg=65,
                  source_condition={"class_labels": 3}, target_condition={"class_labels": 8})


@pytest.mark.parametrize("steps, strength, n_min, message", [
    (10, 0.05, 0, r"10 × 0.05 rounds to 0 steps; give more steps \(≥ 20 at this strength\) or a larger strength "
                  r"\(≥ 0.1 at 10 steps\)"),
    (10, 0.3, 3, r"n_min \(3\) must be less than the 3 steps FlowEdit runs .*lower n_min, or give more steps"),
])
def test_a_flowedit_with_no_step_to_run_names_steps_times_strength(steps, strength, n_min, message):
    """A tiny strength rounds FlowEdit's n_max to 0: said as steps × strength, with the fix (was "n_max … got 0")."""
    from cyclediff import translate
    from cyclediff.demo.models import load_demo
    from cyclediff.settings import EditSettings

    with pytest.raises(CycleDiffError, match=message):
        EditSettings(method="flowedit", steps=steps, strength=strength, n_min=n_min)
    model = load_demo("digits-flow")
    with pytest.raises(CycleDiffError, match=message):
        translate(torch.zeros(1, 1, 8, 8), model, model, steps=steps, strength=strength,
                  source_condition={"class_labels": 3}, target_condition={"class_labels": 8},
                  method=FlowEdit(n_min=n_min))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_noise_is_refused(bad):
    """NaN noise fed to FlowEdit gave NaN output without a word."""
    from cyclediff.demo.models import load_demo

    noise = [torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), bad)]
    with pytest.raises(CycleDiffError, match="noise draw 2 holds NaN or Inf values"):
        flow_edit(torch.zeros(1, 1, 8, 8), load_demo("digits-flow"), steps=4, n_max=3, noise=iter(noise),
                  source_condition={"class_labels": 3}, target_condition={"class_labels": 8})

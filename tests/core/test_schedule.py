"""Schedules and timestep grids against diffusers' own schedulers."""

from __future__ import annotations

import json
import types

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.pipelines.deprecated.stable_diffusion_variants.pipeline_cycle_diffusion import CycleDiffusionPipeline
from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr as diffusers_rescale

from conftest import ddim_config
from cyclediff import ConfigError, Schedule
from cyclediff.schedule import rescale_zero_terminal_snr, step_pairs

BETAS = [
    {"beta_schedule": "linear"},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "squaredcos_cap_v2"},
    {"trained_betas": torch.linspace(0.001, 0.05, 1000).tolist()},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True},
]


@pytest.mark.parametrize("betas", BETAS, ids=lambda b: b.get("beta_schedule", "trained") + str(len(b)))
def test_alpha_bar_matches_diffusers(betas):
    sched = DDIMScheduler(**betas)
    ours = Schedule.from_config(sched.config)
    assert ours.alpha_bar.dtype == torch.float64
    # diffusers keeps the table in float32: agreement is to float32 rounding of a 1000-term product
    torch.testing.assert_close(ours.alpha_bar.float(), sched.alphas_cumprod, rtol=2e-5, atol=1e-7)


def test_zero_snr_rescale_matches_diffusers():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    torch.testing.assert_close(rescale_zero_terminal_snr(betas), diffusers_rescale(betas), rtol=1e-10, atol=1e-12)
    assert torch.cumprod(1 - rescale_zero_terminal_snr(betas), 0)[-1] == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("steps", [1, 7, 10, 33, 50, 100, 999, 1000])
@pytest.mark.parametrize("cls", [DDIMScheduler, DDPMScheduler])
def test_grid_matches_diffusers_set_timesteps(cls, spacing, offset, steps):
    sched = cls(timestep_spacing=spacing, steps_offset=offset)
    ours = Schedule.from_config(sched.config)
    if spacing == "leading" and offset == 1 and steps == 1000:
        with pytest.raises(ConfigError, match="steps_offset"):
            ours.grid(steps)  # diffusers would index timestep 1000 of a 1000-step table
        return
    sched.set_timesteps(steps)
    assert ours.grid(steps) == sched.timesteps.tolist()


@pytest.mark.parametrize("strength", [1.0, 0.85, 0.5, 0.29, 0.1, 0.03])
@pytest.mark.parametrize("steps", [10, 50, 99, 100])
def test_strength_selects_diffusers_img2img_timesteps(strength, steps):
    sched = DDIMScheduler(**ddim_config(set_alpha_to_one=False, steps_offset=1))
    sched.set_timesteps(steps)
    ours = Schedule.from_config(sched.config)
    if int(steps * strength) == 0:
        with pytest.raises(ConfigError, match="raise steps or strength"):
            ours.timesteps(steps, strength)
        return
    ref, n = CycleDiffusionPipeline.get_timesteps(types.SimpleNamespace(scheduler=sched), steps, strength, "cpu")
    assert ours.timesteps(steps, strength) == ref.tolist()
    assert len(ours.timesteps(steps, strength)) == n


def test_step_pairs_end_after_the_grid():
    assert step_pairs([900, 500, 100]) == [(900, 500), (500, 100), (100, -1)]


def test_final_alpha_bar_follows_the_config():
    assert Schedule.from_config(ddim_config(set_alpha_to_one=True)).final_alpha_bar == 1.0
    s = Schedule.from_config(ddim_config(set_alpha_to_one=False))
    assert s.final_alpha_bar == float(s.alpha_bar[0]) < 1
    assert Schedule.from_config(DDPMScheduler().config).final_alpha_bar == 1.0  # DDPM always ends at ᾱ = 1


def test_from_config_accepts_objects_folders_and_files(tmp_path):
    sched = DDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction")
    sched.save_config(tmp_path)
    for source in (sched, sched.config, dict(sched.config), tmp_path, tmp_path / "scheduler_config.json",
                   str(tmp_path)):
        s = Schedule.from_config(source)
        assert s.prediction_type == "v_prediction"
        assert s.fingerprint() == Schedule.from_config(sched).fingerprint()


def test_fingerprint_tells_schedules_apart():
    a = Schedule.from_config(ddim_config())
    assert a.fingerprint() == Schedule.from_config(ddim_config()).fingerprint()
    assert a.fingerprint() != Schedule.from_config(ddim_config(beta_end=0.021)).fingerprint()
    assert a.fingerprint() != Schedule.from_config(ddim_config(set_alpha_to_one=False)).fingerprint()


@pytest.mark.parametrize(
    "config, message",
    [
        ({"beta_schedule": "sigmoid"}, "beta_schedule 'sigmoid' is not supported"),
        ({"prediction_type": "flow"}, "prediction_type 'flow'"),
        ({"variance_type": "learned"}, "learned_range"),
        ({"timestep_spacing": "karras"}, "timestep_spacing"),
        ({"trained_betas": [0.1, 0.2], "num_train_timesteps": 3}, "trained_betas has 2 values"),
        ({"trained_betas": [0.5, 1.5]}, "ᾱ must lie in"),
    ],
)
def test_bad_configs_are_refused(config, message):
    with pytest.raises(ConfigError, match=message):
        Schedule.from_config({"num_train_timesteps": 2, **config})


def test_bad_config_sources_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no scheduler config"):
        Schedule.from_config(tmp_path)
    (tmp_path / "scheduler_config.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Schedule.from_config(tmp_path)
    with pytest.raises(ConfigError, match="must be a mapping"):
        Schedule.from_config(42)
    (tmp_path / "scheduler_config.json").write_text(json.dumps({"num_train_timesteps": 10}))
    assert Schedule.from_config(tmp_path).num_train_timesteps == 10

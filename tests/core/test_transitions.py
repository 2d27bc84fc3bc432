"""One decoder step equals diffusers' DDIMScheduler.step / DDPMScheduler.step with the same noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from cyclediff import ConfigError, Schedule
from cyclediff.transitions import check_sampler, ddim_std, posterior_mean, predict_x0_eps, transition

PREDICTIONS = ["epsilon", "v_prediction", "sample"]


def _error(ours, ref, dtype):
    """Absolute error for float64; relative to the step's scale for float32."""
    err = (ours - ref).abs().max().item()
    return err if dtype == torch.float64 else err / max(1.0, ref.abs().max().item())


def _inputs(seed: int, channels: int = 3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=dtype)
    out = torch.randn(2, channels, 8, 8, generator=g, dtype=dtype)
    noise = torch.randn(2, 3, 8, 8, generator=g, dtype=dtype)
    return x, out, noise


def _float64_table(sched):
    """diffusers keeps ᾱ as a float32 cumprod (rounding up to ~2e-6 in a step); give it our float64 table's
    precision by re-running its cumprod in float64 on its own betas, so that only the step formulas are compared."""
    sched.alphas_cumprod = torch.cumprod(1 - sched.betas.double(), 0)
    if hasattr(sched, "final_alpha_cumprod") and not sched.config.set_alpha_to_one:
        sched.final_alpha_cumprod = sched.alphas_cumprod[0]
    return sched


# With diffusers' stock float32 table and float32 inputs, steps agree within this relative error (its cumprod
# rounding, amplified by 1/√ᾱ at the noisy end of the cosine schedule).
FLOAT32_TABLE_RTOL = 1e-4


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("eta", [0.1, 0.5, 1.0])
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"set_alpha_to_one": False, "steps_offset": 1, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
         "beta_end": 0.012, "clip_sample": False},
        {"thresholding": True, "sample_max_value": 2.0},
        {"timestep_spacing": "trailing", "beta_schedule": "squaredcos_cap_v2"},
    ],
)
def test_ddim_step_matches_diffusers(prediction_type, eta, extra):
    stock = DDIMScheduler(prediction_type=prediction_type, **extra)
    exact = _float64_table(DDIMScheduler(prediction_type=prediction_type, **extra))
    schedule = Schedule.from_config(stock.config)
    for sched in (stock, exact):
        sched.set_timesteps(25)
    ts = [int(t) for t in stock.timesteps]
    assert ts == schedule.grid(25)
    worst = {torch.float64: 0.0, torch.float32: 0.0}
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        for dtype, sched in ((torch.float64, exact), (torch.float32, stock)):
            x, out, noise = _inputs(i, dtype=dtype)
            ref = sched.step(out, t, x, eta=eta, variance_noise=noise).prev_sample
            step = transition(schedule, out, x, t, s, sampler="ddim", eta=eta)
            ours = step.mean + step.std * noise
            worst[dtype] = max(worst[dtype], _error(ours, ref, dtype))
    assert worst[torch.float64] < 1e-6, worst
    assert worst[torch.float32] < FLOAT32_TABLE_RTOL, worst


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_small_log", "fixed_large", "learned_range"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddpm_step_matches_diffusers(prediction_type, variance_type, spacing):
    """Same noise, same step; except that a step into ᾱ = 1 (the end of a trailing grid) is deterministic here
    whatever the variance type (its posterior variance is 0), where diffusers adds √β noise (fixed-large) or a
    near-zero learned one: there the mean is compared, with diffusers' fixed-small step (the same mean, std 1e-10)."""
    kw = dict(prediction_type=prediction_type, variance_type=variance_type, timestep_spacing=spacing, clip_sample=True)
    stock, exact = DDPMScheduler(**kw), _float64_table(DDPMScheduler(**kw))
    small_kw = {**kw, "variance_type": "fixed_small"}
    small = {torch.float32: DDPMScheduler(**small_kw), torch.float64: _float64_table(DDPMScheduler(**small_kw))}
    schedule = Schedule.from_config(stock.config)
    for sched in (stock, exact, *small.values()):
        sched.set_timesteps(20)
    ts = [int(t) for t in stock.timesteps]
    assert ts == schedule.grid(20)
    channels = 6 if variance_type == "learned_range" else 3
    worst = {torch.float64: 0.0, torch.float32: 0.0}
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        for dtype, sched in ((torch.float64, exact), (torch.float32, stock)):
            x, out, _ = _inputs(i, channels, dtype=dtype)
            if channels == 6:  # the variance half lives in [-1, 1]
                out[:, 3:] = torch.tanh(out[:, 3:])
            seed = 1000 + i
            into_one = s == -1 and t > 0
            if into_one:
                ref = small[dtype].step(out[:, :3], t, x, generator=torch.Generator().manual_seed(seed)).prev_sample
            else:
                ref = sched.step(out, t, x, generator=torch.Generator().manual_seed(seed)).prev_sample
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
            step = transition(schedule, out, x, t, s, sampler="ddpm", eta=1.0)
            assert step.deterministic == (t == 0 or into_one)
            ours = step.mean + step.std * noise
            worst[dtype] = max(worst[dtype], _error(ours, ref, dtype))
    assert worst[torch.float64] < 1e-6, worst
    assert worst[torch.float32] < FLOAT32_TABLE_RTOL, worst


def test_ddpm_posterior_is_ddim_eta_one():
    """The DDIM(η=1) posterior mean and std are the DDPM posterior's (Ho et al. eq. 7)."""
    ab_t, ab_s = 0.3, 0.5
    x_t, x0 = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    beta = 1 - ab_t / ab_s
    mean = (ab_s**0.5 * beta / (1 - ab_t)) * x0 + ((1 - beta) ** 0.5 * (1 - ab_s) / (1 - ab_t)) * x_t
    std = ((1 - ab_s) / (1 - ab_t) * beta) ** 0.5
    assert ddim_std(ab_t, ab_s, 1.0) == pytest.approx(std, rel=1e-12)
    torch.testing.assert_close(posterior_mean(x_t, x0, ab_t, ab_s, std), mean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_prediction_conversions_are_consistent(prediction_type):
    """Each prediction type's (x̂0, ε̂) satisfies x_t = √ᾱ x̂0 + √(1−ᾱ) ε̂."""
    ab = 0.37
    x_t, out = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    x0, eps = predict_x0_eps(out, x_t, ab, prediction_type)
    torch.testing.assert_close(ab**0.5 * x0 + (1 - ab) ** 0.5 * eps, x_t, rtol=0, atol=1e-12)


def test_eta_zero_is_refused_with_an_explanation():
    with pytest.raises(ConfigError, match="deterministic"):
        check_sampler("ddim", 0.0)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        check_sampler("ddim", 1.5)
    with pytest.raises(ConfigError, match="sampler must be one of"):
        check_sampler("euler", 0.5)
    assert check_sampler("ddpm", None) == 1.0

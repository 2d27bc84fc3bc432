"""The one stochastic step for Gaussian paths and rectified-flow grids (cyclediff.flow), checked
against the VP maths, diffusers' FlowMatchEulerDiscreteScheduler and its img2img pipelines, exact reconstruction
and the law of the encoded draws under an exact model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Img2ImgPipeline
from diffusers.utils.torch_utils import randn_tensor

from cyclediff.errors import ConfigError
from cyclediff.flow import flow_grid, image_shift, rectified_flow
from cyclediff.transitions import ddim_std, posterior_mean
from gaussian_paths import (
    encoder_mean,
    flow_step,
    fresh_noise_step,
    posterior_std,
    step_mean,
    variance_preserving,
)

SD3 = {"num_train_timesteps": 1000, "shift": 3.0}
FLUX = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
        "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}


def test_the_general_step_is_ddim_on_variance_preserving_paths():
    g = torch.Generator().manual_seed(0)
    x_t, x0 = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(2))
    for ab_t, ab_s in ((0.3, 0.6), (0.01, 0.2), (0.9, 0.95)):
        t, s = variance_preserving(ab_t), variance_preserving(ab_s)
        assert posterior_std(t, s) == pytest.approx(ddim_std(ab_t, ab_s, 1.0), rel=1e-12)
        for eta in (0.3, 1.0):
            std = eta * posterior_std(t, s)
            torch.testing.assert_close(encoder_mean(x_t, x0, t, s, std),
                                       posterior_mean(x_t, x0, ab_t, ab_s, ddim_std(ab_t, ab_s, eta)),
                                       rtol=0, atol=1e-12)


def test_eta_zero_is_diffusers_euler_step_and_the_step_into_zero_is_deterministic():
    sched = FlowMatchEulerDiscreteScheduler(**SD3)
    sched.set_timesteps(8)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g)
    for k, t in enumerate(sched.timesteps):
        v = torch.randn(2, 4, 8, 8, generator=g)
        sigma_t, sigma_s = float(sched.sigmas[k]), float(sched.sigmas[k + 1])
        ours = flow_step(v, x, sigma_t, sigma_s, 0.0)
        theirs = sched.step(v, t, x).prev_sample
        torch.testing.assert_close(ours.mean, theirs, rtol=0, atol=1e-5)
        x = theirs
    assert flow_step(v, x, 0.2, 0.0, 1.0).std == 0.0


def test_the_fresh_noise_sampler_is_diffusers_stochastic_sampling():
    sched = FlowMatchEulerDiscreteScheduler(**SD3, stochastic_sampling=True)
    sched.set_timesteps(6)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    g_theirs, g_ours, g_v = (torch.Generator().manual_seed(s) for s in (5, 5, 6))
    for k, t in enumerate(sched.timesteps):
        v = torch.randn(2, 4, 8, 8, generator=g_v)
        theirs = sched.step(v, t, x, generator=g_theirs).prev_sample
        noise = randn_tensor(x.shape, generator=g_ours, dtype=x.dtype)
        ours = fresh_noise_step(v, x, float(sched.sigmas[k]), float(sched.sigmas[k + 1]), noise)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
        x = theirs


@pytest.mark.parametrize("config", [SD3, {**SD3, "use_karras_sigmas": True}, {**SD3, "shift_terminal": 0.1},
                                    {**SD3, "use_exponential_sigmas": True}, {**SD3, "use_beta_sigmas": True}, FLUX])
@pytest.mark.parametrize("strength", [0.3, 0.75, 1.0])
def test_grids_are_diffusers_own_cut_as_its_img2img_pipelines_cut_them(config, strength):
    mu = image_shift(config, 1024) if config.get("use_dynamic_shifting") else None
    grid = flow_grid(config, 20, strength, mu=mu)
    sched = FlowMatchEulerDiscreteScheduler.from_config(config)
    sched.set_timesteps(20, mu=mu)
    timesteps, n = StableDiffusion3Img2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=sched), 20, strength,
                                                                  "cpu")
    assert list(grid.timesteps) == [float(t) for t in timesteps] and len(grid.timesteps) == n
    assert grid.sigmas[-1] == 0.0 and len(grid.sigmas) == n + 1
    assert all(a > b for a, b in zip(grid.sigmas, grid.sigmas[1:]))
    if config.get("shift_terminal"):
        assert grid.sigmas[-2] == pytest.approx(config["shift_terminal"], rel=1e-5)


def test_flux_grids_need_the_image_shift_and_it_follows_the_pipeline():
    with pytest.raises(ConfigError, match="pass mu"):
        flow_grid(FLUX, 10)
    assert image_shift(FLUX, 256) == pytest.approx(0.5) and image_shift(FLUX, 4096) == pytest.approx(1.15)
    with pytest.raises(ConfigError, match="strength"):
        flow_grid(SD3, 10, 0.0)


# ---------------------------------------------------------------------------------------------------- encoding
def _encode(x0, velocity, grid, eta, g):
    """The DPM-Encoder on a rectified-flow grid (the reference loop): (x_start, draws, residual flags)."""
    sigma0 = grid.sigmas[0]
    a0, s0 = rectified_flow(sigma0)
    x = a0 * x0 + s0 * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    start, draws, residual = x, [], []
    for t, sigma_t, sigma_s in grid.pairs():
        step = flow_step(velocity(x, sigma_t, t), x, sigma_t, sigma_s, eta)
        if step.std == 0:  # the step into σ = 0 (or η's zero): keep the exact residual
            x_s = x0
            draws.append(x_s - step.mean)
        else:
            z = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
            x_s = encoder_mean(x, x0, rectified_flow(sigma_t), rectified_flow(sigma_s), step.std) + step.std * z
            draws.append((x_s - step.mean) / step.std)
        residual.append(step.std == 0)
        x = step.mean + (draws[-1] if residual[-1] else step.std * draws[-1])
    return start, draws, residual


def _decode(start, draws, residual, velocity, grid, eta):
    x = start
    for (t, sigma_t, sigma_s), e, r in zip(grid.pairs(), draws, residual):
        step = flow_step(velocity(x, sigma_t, t), x, sigma_t, sigma_s, eta)
        x = step.mean + (e if r else step.std * e)
    return x


@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_the_encoding_gives_the_image_back(eta, strength):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(5, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 4, 3, padding=1))

    def velocity(x, sigma, t):  # any function of (x, σ): reconstruction cannot depend on the model being right
        return net(torch.cat([x, torch.full_like(x[:, :1], sigma)], dim=1))

    grid = flow_grid(SD3, 12, strength)
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        start, draws, residual = _encode(x0, velocity, grid, eta, torch.Generator().manual_seed(4))
        back = _decode(start, draws, residual, velocity, grid, eta)
    torch.testing.assert_close(back, x0, rtol=0, atol=1e-5)
    assert residual == [False] * (len(grid.timesteps) - 1) + [True]


def _gaussian_law(model_tau: float, steps: int = 50):
    """Encode N(0, τ² I) data (τ = 0.5) with the exact velocity field of N(0, model_tau² I) data on a ``steps``-step
    grid, η = 1; returns the per-step empirical variance of the draws and its closed form under the exact model,
    Var e = 1 + k² Var(x0 | x_t) / std² (k: the x0 coefficient the step's mean misses)."""
    tau = 0.5

    def velocity(x, sigma, t):
        a, s = rectified_flow(sigma)
        var = a**2 * model_tau**2 + s**2
        return s / var * x - a * model_tau**2 / var * x  # E[ε | x] − E[x0 | x]

    grid = flow_grid({"num_train_timesteps": 1000, "shift": 1.0}, steps)
    x0 = tau * torch.randn(64, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start, draws, residual = _encode(x0, velocity, grid, 1.0, torch.Generator().manual_seed(1))
    predicted = []
    for sigma_t, sigma_s in zip(grid.sigmas[:-2], grid.sigmas[1:-1]):
        (a_t, s_t), (a_s, s_s) = rectified_flow(sigma_t), rectified_flow(sigma_s)
        std = posterior_std((a_t, s_t), (a_s, s_s))
        k = a_s - math.sqrt(max(s_s**2 - std**2, 0)) * a_t / s_t
        var_x0 = tau**2 * s_t**2 / (a_t**2 * tau**2 + s_t**2)
        predicted.append(1 + k**2 * var_x0 / std**2)
    empirical = torch.stack([d.var() for d in draws[:-1]])
    return start, torch.stack(draws[:-1]), empirical, torch.tensor(predicted, dtype=torch.float64)


def test_the_encoded_draws_of_gaussian_data_have_the_predicted_law():
    start, draws, empirical, predicted = _gaussian_law(0.5)
    assert abs(draws.mean().item()) < 0.01 and abs(start.std().item() - 1) < 0.02  # σ_0 = 1: x_start = ε
    ratio = empirical / predicted  # the variance of 16384 draws is within ≈ 1.1% (one σ) of the true one
    assert abs(ratio.mean() - 1) < 0.004 and ((ratio - 1).abs() < 0.06).all()
    assert predicted[-1] > 1.5  # the last steps' discretisation gap is large, and matched


def test_a_wrong_velocity_field_breaks_the_law():
    """Control: the field of data half as wide breaks the law clearly. (The law is a weak detector of small errors
    on fine grids: the mean's error shrinks with the step, so 10–20% off in τ stays within the noise.)"""
    _, _, empirical, predicted = _gaussian_law(0.25)
    assert ((empirical / predicted) - 1).abs().max() > 0.1


def test_step_mean_with_zero_std_is_the_ode_and_with_posterior_std_the_ancestral_step():
    x0, eps = torch.ones(3), torch.zeros(3)
    s = rectified_flow(0.4)
    torch.testing.assert_close(step_mean(x0, eps, s, 0.0), torch.full((3,), 0.6))
    with pytest.raises(ConfigError, match="eta"):
        flow_step(torch.zeros(1), torch.zeros(1), 0.5, 0.2, 1.5)


def test_a_flow_latent_decoded_by_another_family_names_both_families(tmp_path):
    """An SD3 latent decoded by FLUX (and back) said "align timestep_spacing / steps_offset", advice for VP
    schedulers: it names the family that encoded it and this model's."""
    from cyclediff import decode, encode
    from cyclediff.errors import IncompatibleModelError
    from cyclediff.models import Flux, StableDiffusion3, to_model_space
    from tiny_sd import flux_pipeline, photos, sd3_pipeline

    sd3 = StableDiffusion3(sd3_pipeline(tmp_path / "sd3"))
    flux = Flux(flux_pipeline(tmp_path / "flux"), max_sequence_length=16)
    for source, target in ((sd3, flux), (flux, sd3)):
        gen = torch.Generator().manual_seed(0)
        z = encode(to_model_space(source, photos(1), gen), source, steps=6, strength=0.8, prompt="a cat",
                   generator=gen)
        assert z.model_kind == source.kind
        with pytest.raises(IncompatibleModelError, match="encoded by another model family") as err:
            decode(z, target, prompt="a cat")
        assert source.kind in str(err.value) and target.kind in str(err.value)
        assert "timestep_spacing" not in str(err.value)


def test_a_flow_latent_with_no_family_recorded_is_not_told_to_align_timestep_spacing():
    from conftest import gens, images, tiny_unet
    from cyclediff import decode, encode
    from cyclediff.errors import IncompatibleModelError
    from cyclediff.models import FlowPixelDenoiser

    shifted = FlowPixelDenoiser(tiny_unet(), dict(FlowMatchEulerDiscreteScheduler(shift=3.0).config))
    plain = FlowPixelDenoiser(tiny_unet(), dict(FlowMatchEulerDiscreteScheduler(shift=1.0).config))
    z = encode(images(1), shifted, steps=6, strength=0.8, generator=gens(1))
    with pytest.raises(IncompatibleModelError, match="another model family or flow scheduler .shift") as err:
        decode(z, plain)
    assert "timestep_spacing" not in str(err.value)

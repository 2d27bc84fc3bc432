"""The DPM-Encoder and decoder: exact reconstruction, batch invariance, other models, analytic checks."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

from conftest import (
    CONFIGS,
    GaussianDataDenoiser,
    assert_same_draws,
    ddim_config,
    ddpm_config,
    images,
    pixel,
    tiny_unet,
)
from cyclediff import ConfigError, CycleDiffError, IncompatibleModelError, decode, encode, sample_latent
from cyclediff.models import PixelDenoiser
from cyclediff.transitions import ddim_std, posterior_mean

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_decode_of_encode_is_exact(config_name, sampler, prediction_type, dtype, gen):
    config = dict(CONFIGS[config_name], prediction_type=prediction_type)
    den = PixelDenoiser(tiny_unet(dtype=dtype), config)
    x0 = images(2, dtype=dtype)
    z = encode(x0, den, steps=12, strength=0.85, eta=0.3, sampler=sampler, generator=gen(5))
    assert z.eps.shape == (len(z.timesteps), 2, 3, 8, 8) and z.dtype == dtype
    x = decode(z, den)
    assert (x - x0).abs().max().item() < TOL[dtype]


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.05])
def test_full_and_partial_strength_are_exact(strength, gen):
    den = pixel(ddim_config(set_alpha_to_one=False, steps_offset=1))
    x0 = images(3)
    z = encode(x0, den, steps=20, strength=strength, eta=1.0, generator=gen(0))
    assert len(z.timesteps) == int(20 * strength)
    assert (decode(z, den) - x0).abs().max() < 1e-5


def test_learned_range_variance_is_exact_and_uses_the_model_variance(gen):
    den = PixelDenoiser(tiny_unet(out_channels=6, dtype=torch.float64), ddpm_config(variance_type="learned_range"))
    x0 = images(2, dtype=torch.float64)
    z = encode(x0, den, steps=10, sampler="ddpm", generator=gen(1))
    assert (decode(z, den) - x0).abs().max() < 1e-10
    # the same latent under the fixed-small variance decodes elsewhere: the learned std is really used
    fixed = PixelDenoiser(den.unet, ddpm_config(variance_type="fixed_small"))
    assert (decode(z, fixed) - x0).abs().max() > 1e-3


def test_deterministic_last_step_is_kept_as_a_residual(gen):
    """final ᾱ = 1 makes the last DDIM step deterministic: its entry is the exact residual, flagged."""
    den = pixel(ddim_config(set_alpha_to_one=True))
    z = encode(images(1), den, steps=10, eta=0.5, generator=gen(0))
    assert z.residual == (False,) * 9 + (True,)
    den2 = pixel(ddim_config(set_alpha_to_one=False, steps_offset=1))
    assert not any(encode(images(1), den2, steps=10, eta=0.5, generator=gen(0)).residual)


def test_class_conditional_roundtrip_and_other_labels(gen):
    den = pixel(num_classes=5)
    x0 = images(2)
    z = encode(x0, den, steps=10, eta=0.5, generator=[gen(0), gen(1)], class_labels=[1, 3])
    assert z.condition == {"class_labels": [1, 3]}
    assert (decode(z, den) - x0).abs().max() < 1e-5  # the recorded labels are the default
    other = decode(z, den, class_labels=[4, 0])
    assert torch.isfinite(other).all() and (other - x0).abs().max() > 1e-2
    with pytest.raises(IncompatibleModelError, match="class-conditional"):
        encode(x0, den, steps=10, eta=0.5)
    with pytest.raises(IncompatibleModelError, match=r"0\.\.4"):
        encode(x0, den, steps=10, eta=0.5, class_labels=[1, 7])
    with pytest.raises(IncompatibleModelError, match="unconditional"):
        encode(x0, pixel(), steps=10, eta=0.5, class_labels=1)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_batch_invariance(sampler, gen):
    """Item i of a batch equals that item encoded and decoded alone with its own generator."""
    den = pixel(num_classes=4)
    x0, labels = images(3), [0, 2, 3]
    z = encode(x0, den, steps=10, eta=0.7, sampler=sampler, generator=[gen(i) for i in range(3)],
               class_labels=labels)
    x = decode(z, den, class_labels=[1, 1, 1])
    for i in range(3):
        zi = encode(x0[i:i + 1], den, steps=10, eta=0.7, sampler=sampler, generator=gen(i), class_labels=labels[i])
        assert_same_draws(zi, z[i], den)
        torch.testing.assert_close(decode(zi, den, class_labels=1), x[i:i + 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(decode(z[i], den), x0[i:i + 1], rtol=0, atol=1e-5)


def test_seeds_reproduce_and_are_recorded(gen):
    den, x0 = pixel(), images(2)
    a = encode(x0, den, steps=8, eta=0.2, generator=[gen(3), gen(4)])
    b = encode(x0, den, steps=8, eta=0.2, generator=[gen(3), gen(4)])
    assert torch.equal(a.eps, b.eps) and torch.equal(a.x_start, b.x_start)
    assert a.seeds == (3, 4)
    assert not torch.equal(a.eps, encode(x0, den, steps=8, eta=0.2, generator=[gen(3), gen(5)]).eps)
    assert encode(x0, den, steps=8, eta=0.2, generator=gen(0)).seeds == (0, 0)  # seed 0 is a seed


def test_decoding_with_another_model_or_schedule(gen):
    """Same grid, other weights and β schedule: decodes (that is translation); other grids are refused."""
    x0 = images(2)
    source = pixel(ddim_config(), seed=0)
    z = encode(x0, source, steps=10, strength=0.8, eta=0.5, generator=gen(0))
    target = pixel(ddim_config(beta_schedule="squaredcos_cap_v2"), seed=1)
    out = decode(z, target)
    assert torch.isfinite(out).all() and (out - x0).abs().max() > 1e-2
    with pytest.raises(IncompatibleModelError, match="1000-timestep schedule but the model has 500"):
        decode(z, pixel(ddim_config(num_train_timesteps=500)))
    with pytest.raises(IncompatibleModelError, match="steps_offset"):
        decode(z, pixel(ddim_config(steps_offset=1)))
    with pytest.raises(IncompatibleModelError, match="1-channel"):
        decode(z, pixel(channels=1))


def test_bad_inputs_get_clear_errors(gen):
    den = pixel()
    with pytest.raises(ConfigError, match="deterministic"):
        encode(images(1), den, eta=0.0)
    with pytest.raises(IncompatibleModelError, match=r"\[-1, 1\]"):
        encode(images(1) * 127.5 + 127.5, den)
    with pytest.raises(IncompatibleModelError, match=r"\(B, C, H, W\)"):
        encode(images(1)[0], den)
    with pytest.raises(IncompatibleModelError, match="NaN"):
        encode(torch.full((1, 3, 8, 8), float("nan")), den)
    with pytest.raises(IncompatibleModelError, match="multiple of 2"):
        encode(torch.zeros(1, 3, 7, 7), den)
    with pytest.raises(CycleDiffError, match="one per sample"):
        encode(images(2), den, generator=[gen(0)])
    with pytest.raises(ConfigError, match="strength"):
        encode(images(1), den, strength=0.0)
    with pytest.raises(ConfigError, match="raise steps or strength"):
        encode(images(1), den, steps=10, strength=0.05)
    with pytest.raises(ConfigError, match="steps must be"):
        encode(images(1), den, steps=1001)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_perfect_model_recovers_the_exact_noise_draws(sampler, gen):
    """With a perfect model (point-mass data), every encoded ε is the posterior's own Gaussian draw."""
    mu = images(1, dtype=torch.float64)[0] * 0.5
    den = GaussianDataDenoiser(mu, s=0.0)
    z = encode(mu[None], den, steps=25, eta=0.6, sampler=sampler, generator=gen(7))
    g = gen(7)
    noise = [torch.randn((1, *mu.shape), generator=g, dtype=torch.float64) for _ in range(len(z.timesteps))]
    ab = den.schedule.alpha_bar_at(z.timesteps[0])
    torch.testing.assert_close(z.x_start, ab**0.5 * mu[None] + (1 - ab) ** 0.5 * noise[0], rtol=0, atol=1e-12)
    for k in range(len(z.timesteps) - 1):
        torch.testing.assert_close(z.eps[k], noise[k + 1], rtol=0, atol=1e-7)


def _gaussian_data_eps(model_scale: float):
    """Encode 64 samples of N(0, 0.5² I) data with the exact denoiser (times ``model_scale``), DDPM 250 steps.

    Returns the per-step empirical variance of ε and its closed form under the exact model:
    ε_k = c (x0 − x̂0) / σ + n, so Var ε_k = 1 + c² Var(x0 | x_t) / σ², with c the posterior's x0 coefficient.
    """
    shape, s = (1, 16, 16), 0.5

    class Scaled(GaussianDataDenoiser):
        def __call__(self, x_t, t, condition):
            return model_scale * super().__call__(x_t, t, condition)

    den = Scaled(torch.zeros(shape, dtype=torch.float64), s=s)
    x0 = s * torch.randn((64, *shape), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = encode(x0, den, steps=250, sampler="ddpm", generator=torch.Generator().manual_seed(1))
    one = torch.ones((), dtype=torch.float64)
    predicted = []
    for t, s_ in zip(z.timesteps[:-1], z.timesteps[1:]):
        ab_t, ab_s = den.schedule.alpha_bar_at(t), den.schedule.alpha_bar_at(s_)
        std = ddim_std(ab_t, ab_s, 1.0)
        c = float(posterior_mean(0 * one, one, ab_t, ab_s, std))
        var_x0 = s**2 * (1 - ab_t) / (ab_t * s**2 + 1 - ab_t)
        predicted.append(1 + c**2 * var_x0 / std**2)
    return z, z.eps[:-1].var(dim=(1, 2, 3, 4)), torch.tensor(predicted, dtype=torch.float64)


def test_encoded_noise_of_gaussian_data_has_the_predicted_law():
    """Exact model: ε has mean 0 and the closed-form variance per step (≈ 1, above 1 by the step's coarseness)."""
    z, empirical, predicted = _gaussian_data_eps(1.0)
    assert abs(z.eps[:-1].mean().item()) < 0.01
    assert abs(z.x_start.std().item() - 1) < 0.02  # x_T ~ N(0, I) at full strength
    assert predicted.mean() - 1 > 0.01  # the discretisation gap is real and visible at this sample size...
    assert abs(empirical.mean() - predicted.mean()) < 0.004  # ...and matched by the encoder (σ_mean ≈ 7e-4)
    assert ((empirical - predicted).abs() < 0.06).all()  # per step: 16384 draws, σ ≈ 0.012


def test_a_wrong_model_would_be_detected():
    """Control for the test above: a model 10% off in x̂0 breaks the law clearly."""
    _, empirical, predicted = _gaussian_data_eps(1.1)
    assert empirical.mean() - predicted.mean() > 0.05


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_prior_latent_reproduces_diffusers_pipelines(sampler, gen):
    """decode(sample_latent(seed)) is the image diffusers' DDIM / DDPM pipeline samples with that seed."""
    unet = tiny_unet(dtype=torch.float64)
    if sampler == "ddim":
        sched = DDIMScheduler(steps_offset=1, set_alpha_to_one=False)
        ref = DDIMPipeline(unet=unet, scheduler=sched)(generator=gen(3), eta=0.5, num_inference_steps=15,
                                                      output_type="np").images
    else:
        sched = DDPMScheduler(steps_offset=1)
        ref = DDPMPipeline(unet=unet, scheduler=sched)(generator=gen(3), num_inference_steps=15,
                                                      output_type="np").images
    den = PixelDenoiser(unet, sched.config)
    z = sample_latent(den, 1, steps=15, eta=0.5, sampler=sampler, generator=gen(3), dtype=torch.float64)
    ours = (decode(z, den) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert abs(ours - ref).max() < 1e-5
    x = decode(z, den)
    assert (decode(encode(x.clamp(-1, 1), den, steps=15, eta=0.5, sampler=sampler, generator=gen(0)), den)
            - x.clamp(-1, 1)).abs().max() < 1e-10


def test_fused_cycle_equals_encode_then_decode(gen):
    """The one-pass cycle gives what encode followed by decode under the target condition gives."""
    from cyclediff.cycle import cycle

    den = pixel(num_classes=4)
    x0 = images(2)
    out, z = cycle(x0, den, steps=10, strength=0.7, eta=0.4, generator=[gen(0), gen(1)],
                   source_condition={"class_labels": [0, 1]}, target_condition={"class_labels": [2, 3]})
    ref_z = encode(x0, den, steps=10, strength=0.7, eta=0.4, generator=[gen(0), gen(1)], class_labels=[0, 1])
    assert_same_draws(z, ref_z, den)
    torch.testing.assert_close(out, decode(ref_z, den, class_labels=[2, 3]), rtol=0, atol=1e-5)
    same, _ = cycle(x0, den, steps=10, strength=0.7, eta=0.4, generator=[gen(0), gen(1)],
                    source_condition={"class_labels": [0, 1]}, target_condition={"class_labels": [0, 1]})
    assert (same - x0).abs().max() < 1e-5

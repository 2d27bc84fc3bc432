"""Rectified-flow pixel models in the core (FlowSchedule + FlowPixelDenoiser): the core's step in
VP coordinates is the general step in flow coordinates, decode(encode(x)) == x, batch invariance, latent files,
loading, and the applications on top (translate, masks, the CLI)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from diffusers import FlowMatchEulerDiscreteScheduler

from conftest import gens, images, pixel, tiny_unet
from cyclediff import CycleDiffusion, Latent, decode, encode, sample_latent, translate
from cyclediff.cli import main
from cyclediff.errors import IncompatibleModelError
from cyclediff.models import FlowPixelDenoiser, load
from cyclediff.transitions import transition
from gaussian_paths import flow_step

CONFIG = dict(FlowMatchEulerDiscreteScheduler(shift=3.0).config)
EXACT = 1e-5  # float32 reconstruction (the bound; observed ≈ 1e-9)



def flow_model(seed=0, **kw):
    return FlowPixelDenoiser(tiny_unet(seed=seed, **kw), CONFIG)


def test_the_core_step_in_vp_coordinates_is_the_general_flow_step():
    den = flow_model()
    ts = den.schedule.timesteps(8)
    x_rf = images(2)
    with torch.no_grad():
        for t, s in zip(ts, [*ts[1:], -1]):
            sig_t, sig_s = den.schedule.sigma_at(t), den.schedule.sigma_at(s)
            c_t, c_s = den.schedule.scale_at(t), den.schedule.scale_at(s)
            v = den.unet(x_rf, torch.full((2,), float(t))).sample
            x_vp = x_rf / c_t
            out = den(x_vp, t, den.prepare_condition(2))
            for eta in (0.3, 1.0):
                ours = transition(den.schedule, out, x_vp, t, s, sampler="ddim", eta=eta)
                theirs = flow_step(v, x_rf, sig_t, sig_s, eta)
                torch.testing.assert_close(c_s * ours.mean, theirs.mean, rtol=0, atol=1e-5)
                assert c_s * ours.std == pytest.approx(theirs.std, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_the_encoding_of_a_flow_model_gives_the_image_back(eta, strength):
    den, x = flow_model(), images(2)
    z = encode(x, den, steps=10, strength=strength, eta=eta, generator=gens(0, 1))
    assert z.path == "rectified_flow" and z.residual[-1] and not any(z.residual[:-1])
    torch.testing.assert_close(decode(z, den), x, rtol=0, atol=EXACT)


def test_flow_encodings_are_batch_invariant_and_survive_a_file(tmp_path):
    den, x = flow_model(), images(3)
    z = encode(x, den, steps=8, eta=0.5, generator=gens(0, 1, 2))
    one = encode(x[1:2], den, steps=8, eta=0.5, generator=gens(1))
    # a batch of 3 against 1: the UNet sums in another order (ULPs), and late draws divide by small stds
    torch.testing.assert_close(z.eps[:, 1:2], one.eps, rtol=1e-4, atol=1e-4)
    z.save(tmp_path / "z.latent.safetensors")
    back = Latent.load(tmp_path / "z.latent.safetensors")
    assert back.path == "rectified_flow" and back.timesteps == z.timesteps
    assert isinstance(back.timesteps[0], float)
    torch.testing.assert_close(decode(back, den), x, rtol=0, atol=EXACT)
    vp = encode(x, tiny_unet_denoiser(), steps=4, generator=gens(0, 1, 2))
    vp.save(tmp_path / "vp.latent.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "vp.latent.safetensors"), framework="pt") as f:
        assert "path" not in f.metadata()  # VP files keep their layout


def tiny_unet_denoiser():
    from conftest import ddim_config
    from cyclediff.models import PixelDenoiser

    return PixelDenoiser(tiny_unet(), ddim_config())


def test_a_flow_latent_refuses_a_vp_model_and_its_metadata_is_checked(tmp_path):
    from cyclediff.errors import CycleDiffError

    den, x = flow_model(), images(1)
    z = encode(x, den, steps=6, generator=gens(0))
    with pytest.raises(CycleDiffError):
        decode(z, tiny_unet_denoiser())
    with pytest.raises(ValueError, match="path must be"):
        Latent(**{**z.__dict__, "path": "curvy"})


def test_flow_models_load_from_a_folder_translate_sample_and_take_masks(tmp_path):
    tiny_unet(seed=1).save_pretrained(tmp_path / "m")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_config(tmp_path / "m")
    other = load(str(tmp_path / "m"))
    assert isinstance(other, FlowPixelDenoiser) and other.schedule.path == "rectified_flow"
    den, x = flow_model(), (images(2) + 1) / 2
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :4] = 1
    for method in ("cyclediffusion", "sdedit", "ddib"):
        out = translate(x, den, other, steps=8, strength=0.8, generator=gens(0, 1), method=method).images
        assert out.shape == x.shape and torch.isfinite(out).all()
    masked = translate(x, den, other, steps=8, strength=0.8, generator=gens(0, 1),
                       method=CycleDiffusion(mask=mask)).images
    assert torch.equal(masked * (1 - mask), x * (1 - mask))
    z = sample_latent(den, 2, steps=6, generator=gens(3, 4))
    assert torch.isfinite(decode(z, den)).all()


def test_the_cli_encodes_and_decodes_with_a_flow_model(tmp_path):
    from cyclediff._images import load_image, save_image

    tiny_unet(seed=2).save_pretrained(tmp_path / "m")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_config(tmp_path / "m")
    save_image((images(1)[0] + 1) / 2, tmp_path / "x.png")
    runner = CliRunner()
    res = runner.invoke(main, ["encode", str(tmp_path / "x.png"), "--model", str(tmp_path / "m"), "--steps", "10",
                               "-o", str(tmp_path / "x.latent.safetensors"), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["decode", str(tmp_path / "x.latent.safetensors"), "--model", str(tmp_path / "m"),
                               "-o", str(tmp_path / "back.png"), "-q"])
    assert res.exit_code == 0, res.output
    torch.testing.assert_close(load_image(tmp_path / "back.png"), load_image(tmp_path / "x.png"), rtol=0,
                               atol=1 / 255 + 1e-6)


def test_the_fresh_sampler_is_diffusers_stochastic_flow_sampling():
    """decode(sample_latent(sampler="fresh")) with one generator = diffusers' FlowMatchEulerDiscreteScheduler(
    stochastic_sampling=True) loop on the same UNet with that generator (same draws, in the same order)."""
    unet = tiny_unet(seed=3)
    den = FlowPixelDenoiser(unet, CONFIG)
    z = sample_latent(den, 2, steps=7, sampler="fresh", generator=torch.Generator().manual_seed(11))
    ours = decode(z, den)
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0, stochastic_sampling=True)
    sched.set_timesteps(7)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 8, 8, generator=g)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t.expand(2)).sample, t, x, generator=g).prev_sample
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler", ["fresh", "ddpm"])
def test_every_sampler_encodes_exactly_on_a_flow_model(sampler):
    den, x = flow_model(), images(2)
    z = encode(x, den, steps=9, strength=0.7, sampler=sampler, generator=gens(5, 6))
    assert z.sampler == sampler and z.eta == 1.0
    torch.testing.assert_close(decode(z, den), x, rtol=0, atol=EXACT)


def test_a_flow_latent_for_a_vp_model_names_the_two_families():
    z = encode(images(1), flow_model(), steps=4, generator=gens(0))
    with pytest.raises(IncompatibleModelError, match="rectified-flow .* variance-preserving .* of its own family"):
        decode(z, pixel())

"""Translation between models, the SDEdit and DDIB baselines, refinement, and the translate CLI."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from conftest import GaussianDataDenoiser, ddim_config, images, pixel, tiny_unet
from cyclediff import CycleDiffError, CycleDiffusion, IncompatibleModelError, SDEdit, edit, translate
from cyclediff.baselines import ddib, sdedit
from cyclediff.cli import main
from cyclediff.models import PixelDenoiser, StableDiffusion
from tiny_sd import photos, sd_pipeline


def gens(n, base=0):
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


def as01(x):
    return (x + 1) / 2


def test_cyclediffusion_with_source_equal_target_reconstructs_exactly_sdedit_does_not():
    den = pixel(num_classes=3)
    x = as01(images(3))
    kw = dict(strength=0.8, steps=20, generator=gens(3), source_condition=[0, 1, 2], target_condition=[0, 1, 2])
    same = translate(x, den, den, method=CycleDiffusion(eta=0.3), **kw)
    assert (same.images - x).abs().max() < 1e-5 and same.latent is not None
    sd = translate(x, den, den, method=SDEdit(eta=0.3), **kw)
    assert (sd.images - x).abs().max() > 1e-2 and sd.latent is None


def test_ddim_inversion_is_the_probability_flow():
    """Exact denoiser for Gaussian data: DDIM inversion then generation (DDIB with one model) returns the input
    up to the ODE discretisation, which shrinks with the number of steps."""
    den = GaussianDataDenoiser(torch.zeros(1, 8, 8, dtype=torch.float64), s=0.5)
    x0 = 0.5 * torch.randn((16, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = [(ddib(x0, den, steps=n, strength=1.0) - x0).abs().mean().item() for n in (10, 100)]
    assert errors[1] < 0.02 and errors[1] < errors[0] / 5, errors  # first order: 10× the steps, ~10× less


def test_translation_between_models_with_other_betas_and_refinement():
    source = pixel(ddim_config(), seed=0)
    target = pixel(ddim_config(beta_schedule="squaredcos_cap_v2"), seed=1)
    x = as01(images(2))
    kw = dict(strength=0.8, steps=20, generator=gens(2))
    plain = translate(x, source, target, **kw).images
    refined = translate(x, source, target, refine_steps=5, **kw).images
    assert plain.shape == refined.shape == x.shape and (plain - refined).abs().max() > 1e-3
    for method in ("sdedit", "ddib"):
        assert torch.isfinite(translate(x, source, target, method=method, **kw).images).all()
    with pytest.raises(IncompatibleModelError, match="refine_steps"):
        translate(x, source, target, refine_steps=21, **kw)
    with pytest.raises(CycleDiffError, match="method must be one of"):
        translate(x, source, target, method="magic", **kw)


def test_mismatched_models_are_refused(tmp_path):
    x = as01(images(1))
    src = pixel()
    with pytest.raises(IncompatibleModelError, match="steps_offset"):
        translate(x, src, pixel(ddim_config(steps_offset=1)), steps=10)
    with pytest.raises(IncompatibleModelError, match="1-channel"):
        translate(x, src, pixel(channels=1), steps=10)
    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    with pytest.raises(IncompatibleModelError, match="both be pixel models"):
        translate(x, src, sd, steps=10)
    other_vae = StableDiffusion.from_pipe(sd_pipeline(tmp_path, seed=1))
    with pytest.raises(IncompatibleModelError, match="different VAEs"):
        translate(photos(1), sd, other_vae, steps=10, source_condition="a cat", target_condition="a dog")


def test_latent_diffusion_models_sharing_a_vae(tmp_path):
    a = sd_pipeline(tmp_path, seed=0)
    b = sd_pipeline(tmp_path, seed=2)
    b.vae = a.vae
    src, tgt = StableDiffusion.from_pipe(a), StableDiffusion.from_pipe(b)
    x = photos(2)
    out = translate(x, src, tgt, steps=10, strength=0.7, source_condition="a photo", target_condition="a photo",
                    generator=gens(2))
    assert out.images.shape == x.shape and (out.images - x).abs().max() > 1e-2
    alone = translate(x[1:], src, tgt, steps=10, strength=0.7, source_condition="a photo",
                      target_condition="a photo", generator=gens(1, base=1))
    torch.testing.assert_close(alone.images, out.images[1:], rtol=0, atol=1e-5)


def test_one_source_and_one_target_evaluation_per_step():
    source, target = pixel(seed=0), pixel(seed=1)
    calls = {"source": [], "target": []}
    hooks = [m.unet.register_forward_pre_hook(lambda mod, args, name=name: calls[name].append(args[0].shape[0]))
             for m, name in ((source, "source"), (target, "target"))]
    try:
        translate(as01(images(2)), source, target, steps=10, strength=0.5, generator=gens(2))
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"source": [2] * 5, "target": [2] * 5}
    shared = pixel(num_classes=3)
    rows = []
    hook = shared.unet.register_forward_pre_hook(lambda mod, args: rows.append(args[0].shape[0]))
    try:
        translate(as01(images(2)), shared, shared, steps=10, strength=0.5, generator=gens(2),
                  source_condition=0, target_condition=1)
    finally:
        hook.remove()
    assert rows == [4] * 5  # one batched call: source and target rows together


def test_guidance_with_a_null_label():
    den = PixelDenoiser(tiny_unet(num_classes=4), ddim_config(), null_class_label=3)
    x = as01(images(2))
    uncond = translate(x, den, den, steps=10, strength=0.6, generator=gens(2))  # None → the null label
    assert (uncond.images - x).abs().max() < 1e-5
    assert uncond.latent.condition == {"class_labels": None}
    guided = translate(x, den, den, steps=10, strength=0.6, generator=gens(2), source_condition=0,
                       target_condition={"class_labels": 1, "guidance_scale": 3.0})
    assert (guided.images - x).abs().max() > 1e-3
    with pytest.raises(IncompatibleModelError, match="null label"):
        translate(x, pixel(num_classes=3), pixel(num_classes=3), steps=10, source_condition=0,
                  target_condition={"class_labels": 1, "guidance_scale": 2.0})


def test_edit_baselines(tmp_path):
    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    x = photos(1)
    kw = dict(source_prompt="a cat", prompt="a dog", strength=0.6, steps=8, guidance_scale=3.0, generator=gens(1))
    cyc = edit(sd, x, **kw)
    for method in ("sdedit", "ddib"):
        other = edit(sd, x, method=method, **kw)
        assert other.latent is None and (other.images - cyc.images).abs().max() > 1e-3


def test_sdedit_uses_fresh_noise_only():
    den = pixel()
    x0 = images(2)
    a = sdedit(x0, den, steps=10, strength=0.5, generator=gens(2))
    b = sdedit(x0, den, steps=10, strength=0.5, generator=gens(2, base=5))
    assert (a - b).abs().max() > 1e-3


def test_translate_cli(tmp_path):
    import numpy as np
    from diffusers import DDIMScheduler
    from PIL import Image

    for name, seed in (("a", 0), ("b", 1)):
        tiny_unet(seed=seed).save_pretrained(tmp_path / name)
        DDIMScheduler(**ddim_config()).save_config(tmp_path / name)
    arr = (as01(images(1))[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    res = CliRunner().invoke(main, ["translate", str(tmp_path / "x.png"), "--source-model", str(tmp_path / "a"),
                                    "--target-model", str(tmp_path / "b"), "--steps", "10", "--seeds", "0-1",
                                    "--method", "sdedit", "--refine-steps", "2", "--device", "cpu",
                                    "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "x_sdedit_s0.85_r2_seed0.png", "x_sdedit_s0.85_r2_seed1.png"]

"""Plug-and-play guidance: Langevin in the latent space, differentiable decoding, energies, CLI."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from conftest import ddim_config, pixel, tiny_unet
from cyclediff import CycleDiffError, decode, guide, sample_latent
from cyclediff.cli import main
from cyclediff.guidance import (
    ClassifierEnergy,
    ClipEnergy,
    DiffAugment,
    FeatureSimilarityEnergy,
    FunctionEnergy,
    load_energy,
)
from cyclediff.models import PixelDenoiser, StableDiffusion
from tiny_sd import photos, sd_pipeline, tiny_clip


def gens(n, base=0):
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


def brightness(x):
    return -x.mean(dim=(1, 2, 3))


def test_zero_energy_leaves_the_prior_invariant():
    """E = 0: z ← (1 − s/2) z + √s ω, whose stationary law is N(0, 1/(1 − s/4)) per coordinate."""
    den = pixel()
    s = 0.5
    out = guide(den, lambda x: 0 * x.sum(dim=(1, 2, 3)), weight=1.0, langevin_steps=60, step_size=s, steps=5,
                batch_size=4, generator=gens(4))
    z = torch.cat([out.latent.x_start.flatten(), out.latent.eps[~torch.tensor(out.latent.residual)].flatten()])
    expected = 1 / (1 - s / 4)  # 1.143: the unadjusted Langevin bias, visible at this step size
    assert abs(z.mean().item()) < 0.05
    assert abs(z.var().item() - expected) < 0.07, z.var().item()


@pytest.mark.parametrize("checkpoint", [False, True])
def test_gradient_through_decode_matches_finite_differences(checkpoint):
    den = PixelDenoiser(tiny_unet(dtype=torch.float64), ddim_config())
    z = sample_latent(den, 2, steps=4, eta=0.7, generator=gens(2), dtype=torch.float64)
    x_start, eps = z.x_start.clone().requires_grad_(True), z.eps.clone().requires_grad_(True)

    def f(xs, e):
        return (decode(replace(z, x_start=xs, eps=e), den, checkpoint=checkpoint) ** 2).mean()

    g_xs, g_eps = torch.autograd.grad(f(x_start, eps), [x_start, eps])
    g = torch.Generator().manual_seed(3)
    v_xs, v_eps = torch.randn(z.x_start.shape, generator=g, dtype=torch.float64), torch.randn(
        z.eps.shape, generator=g, dtype=torch.float64)
    h = 1e-5
    with torch.no_grad():
        numeric = (f(z.x_start + h * v_xs, z.eps + h * v_eps) - f(z.x_start - h * v_xs, z.eps - h * v_eps)) / (2 * h)
    analytic = (g_xs * v_xs).sum() + (g_eps * v_eps).sum()
    assert abs(numeric.item() - analytic.item()) < 1e-7 * max(1.0, abs(analytic.item()))
    assert g_xs.abs().max() > 0


def test_checkpointing_gives_the_same_gradients_and_grad_steps_truncates():
    den = pixel()
    z = sample_latent(den, 1, steps=6, eta=1.0, generator=gens(1))
    grads = {}
    for name, kw in (("plain", {}), ("checkpoint", {"checkpoint": True}), ("last2", {"grad_steps": 2})):
        eps = z.eps.clone().requires_grad_(True)
        xs = z.x_start.clone().requires_grad_(True)
        decode(replace(z, x_start=xs, eps=eps), den, **kw).sum().backward()
        grads[name] = (xs.grad, eps.grad)
    torch.testing.assert_close(grads["checkpoint"][1], grads["plain"][1], rtol=1e-5, atol=1e-6)
    assert grads["last2"][0] is None or grads["last2"][0].abs().max() == 0  # x_start is before the last 2 steps
    assert grads["last2"][1][:4].abs().max() == 0 and grads["last2"][1][4:].abs().max() > 0


def _saved_bytes(den, steps, checkpoint):
    """Bytes autograd keeps from the forward pass for the backward (what grows with steps without checkpoints)."""
    z = sample_latent(den, 2, steps=steps, eta=1.0, generator=gens(2))
    eps = z.eps.clone().requires_grad_(True)
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = decode(replace(z, eps=eps), den, checkpoint=checkpoint).sum()
    out.backward()
    return total[0]


def test_checkpointing_keeps_memory_flat_in_the_number_of_steps():
    den = pixel(size=16)
    plain = [_saved_bytes(den, n, False) for n in (4, 16)]
    ckpt = [_saved_bytes(den, n, True) for n in (4, 16)]
    assert plain[1] > 3.5 * plain[0]  # activations of every step are kept
    sample_bytes = 2 * 3 * 16 * 16 * 4
    assert ckpt[1] - ckpt[0] <= 12 * 2 * sample_bytes  # at most the step inputs (x_t, ε) of the extra steps
    assert ckpt[1] < plain[0] / 4


def test_guided_run_lowers_the_energy_and_keep_best():
    den = pixel()
    out = guide(den, brightness, weight=200.0, langevin_steps=15, step_size=0.05, steps=5, batch_size=2,
                generator=gens(2))
    assert out.energies.shape == (16, 2)
    assert (out.energies[-1] < out.energies[0] - 0.1).all()
    assert out.images.shape == (2, 3, 8, 8) and 0 <= out.images.min() and out.images.max() <= 1
    best = guide(den, brightness, weight=200.0, langevin_steps=15, step_size=0.05, steps=5, batch_size=2,
                 generator=gens(2), keep_best=True)
    final_energy = brightness(best.images * 2 - 1)
    torch.testing.assert_close(final_energy, best.energies.min(0).values, rtol=1e-4, atol=1e-4)


def test_batch_invariance_and_real_image_start(gen):
    from cyclediff import encode

    den = pixel(num_classes=3)
    kw = dict(weight=20.0, langevin_steps=4, steps=5, condition=[0, 1])
    both = guide(den, brightness, batch_size=2, generator=gens(2), **kw)
    one = guide(den, brightness, batch_size=1, generator=gens(1, base=1), **{**kw, "condition": 1})
    torch.testing.assert_close(one.images, both.images[1:], rtol=0, atol=1e-5)
    x0 = torch.rand(1, 3, 8, 8) * 2 - 1
    z = encode(x0, den, steps=5, strength=0.6, eta=1.0, generator=gen(0), class_labels=2)
    edited = guide(den, brightness, latent=z, weight=20.0, langevin_steps=5, generator=gens(1))
    assert torch.equal(edited.latent.x_start, z.x_start)  # part-way start: x_start is not a N(0, I) draw, kept
    assert edited.energies[-1].item() < edited.energies[0].item()


def test_guidance_with_stable_diffusion(tmp_path):
    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    out = guide(sd, brightness, weight=20.0, langevin_steps=2, steps=4, condition="a cat", batch_size=1,
                generator=gens(1))
    assert out.images.shape == (1, 3, 16, 16) and out.latent.condition["prompt"] == ["a cat"]


def test_clip_energy_on_a_tiny_random_clip(tmp_path):
    energy = ClipEnergy("a photo of a cat", model=tiny_clip(tmp_path), augment_copies=3,
                        generator=torch.Generator().manual_seed(0))
    x = (photos(2) * 2 - 1).requires_grad_(True)
    e = energy(x)
    assert e.shape == (2,) and ((0 <= e) & (e <= 2)).all()
    e.sum().backward()
    assert x.grad.abs().max() > 0
    plain = ClipEnergy("a photo of a cat", model=tiny_clip(tmp_path), augment_copies=1,
                       augment=DiffAugment(color=False, translation=0, resize=(1.0, 1.0), cutout=0))
    assert not torch.allclose(plain(x.detach()), energy(x.detach()))  # the augmentation is really applied
    out = guide(pixel(), energy, weight=5.0, langevin_steps=2, steps=3, batch_size=1, generator=gens(1))
    assert torch.isfinite(out.energies).all()


def test_classifier_feature_and_combined_energies():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    nll = ClassifierEnergy(net, [0, 1, 2])
    logp = torch.log_softmax(net(x), -1)
    torch.testing.assert_close(nll(x), -logp[[0, 1, 2], [0, 1, 2]])
    torch.testing.assert_close(ClassifierEnergy(net, 1, avoid=True)(x), logp[:, 1].exp())
    sim = FeatureSimilarityEnergy(lambda im: im.flatten(1), x[:1])
    assert sim(x[:1]).abs().item() < 1e-6 and (sim(x[1:]) > 0).all()
    combo = 2.0 * nll + sim
    torch.testing.assert_close(combo(x), 2 * nll(x) + sim(x))
    with pytest.raises(CycleDiffError, match="one value per image"):
        FunctionEnergy(lambda im: im.sum())(x)


def test_energy_from_module_function(tmp_path):
    path = tmp_path / "my_energy.py"
    path.write_text("def dark(x):\n    return x.mean(dim=(1, 2, 3))\n")
    energy = load_energy(f"{path}:dark")
    assert energy(torch.zeros(2, 3, 8, 8)).shape == (2,)
    with pytest.raises(CycleDiffError, match="module:function"):
        load_energy("nothing")
    with pytest.raises(CycleDiffError, match="cannot load energy"):
        load_energy(f"{path}:missing")


def test_energy_from_an_installed_module(monkeypatch, tmp_path):
    """module:function of an importable module (not a file path): this branch once raised UnboundLocalError."""
    (tmp_path / "my_pkg_energies.py").write_text("def bright(x):\n    return -x.mean(dim=(1, 2, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    energy = load_energy("my_pkg_energies:bright")
    assert torch.equal(energy(torch.ones(2, 3, 4, 4)), -torch.ones(2))
    with pytest.raises(CycleDiffError, match="No module named"):
        load_energy("no_such_module_here:f")


def test_guide_cli(tmp_path):
    from diffusers import DDIMScheduler

    tiny_unet().save_pretrained(tmp_path / "m")
    DDIMScheduler(**ddim_config()).save_config(tmp_path / "m")
    (tmp_path / "e.py").write_text("def bright(x):\n    return -x.mean(dim=(1, 2, 3))\n")
    res = CliRunner().invoke(main, ["guide", "--model", str(tmp_path / "m"), "--energy", f"{tmp_path / 'e.py'}:bright",
                                    "--weight", "10", "--langevin-steps", "4", "--steps", "3", "--seeds", "0-1",
                                    "--strip-every", "2", "--device", "cpu", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["seed0000.png", "seed0000_chain.png", "seed0001.png", "seed0001_chain.png"]
    res = CliRunner().invoke(main, ["guide", "--model", str(tmp_path / "m"), "--energy", "clip"])
    assert res.exit_code == 2 and "--text" in res.output

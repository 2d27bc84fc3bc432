"""The fast path, checked on CPU: compiled vs eager outputs, channels-last, noise prefetching, no host
synchronisation inside the step loops, the VAE's float16 upcast, and the CLI's --compile.

Tolerance: a compiled (inductor) or channels-last UNet reorders float32 sums, ~1e-6 per call; through a 10-step
fused edit and the VAE the images stay within 1e-4 of the eager float32 path, and the recorded ε within 1e-4 of
their largest magnitude.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

import cyclediff.sampler
from conftest import ddim_config, images, tiny_unet
from cyclediff import CycleDiffError, decode, edit, encode, translate
from cyclediff._noise import NoiseStream, gaussian_like
from cyclediff.cli import main
from cyclediff.models import PixelDenoiser, StableDiffusion
from cyclediff.models._accel import Optimizable
from tiny_sd import photos, sd_pipeline

TOL = 1e-4


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return sd_pipeline(tmp_path_factory.mktemp("sd"))


# ------------------------------------------------------------------------------------------------ noise stream
@pytest.mark.parametrize("budget", [10**9, 1])  # all draws in one chunk / one draw per chunk
def test_prefetched_noise_equals_per_step_draws(monkeypatch, budget):
    """Prefetching draws the same values, in the same order, and leaves every generator in the same state."""
    monkeypatch.setattr("cyclediff._noise._PREFETCH_BYTES", budget)
    like = torch.empty(3, 2, 4, 4)
    for make in (lambda: gens(1, 2, 3), lambda: torch.Generator().manual_seed(5)):
        a, b = make(), make()
        expected = [gaussian_like(like, a) for _ in range(7)]
        stream = NoiseStream(like, b, count=7, prefetch=True)
        got = [stream.next() for _ in range(7)]
        assert all(torch.equal(x, y) for x, y in zip(expected, got))
        after_a = gaussian_like(like, a)
        assert torch.equal(after_a, gaussian_like(like, b))  # no draw taken beyond the announced count
        with pytest.raises(RuntimeError, match="more draws"):
            stream.next()


# ------------------------------------------------------------------------------------------------ no host syncs
class HostSync(AssertionError):
    pass


@contextlib.contextmanager
def no_host_reads_inside_step_loops(monkeypatch):
    """Inside every step loop (the body between two steps of progress_steps), reading a tensor's value on the
    host (.item(), bool(), .tolist(), .cpu(), .numpy(), float()) fails: on an accelerator each would wait for
    the device. Outside the loops (input checks, VAE) it is allowed."""
    state = {"inside": False, "steps": 0}
    original = cyclediff.sampler.progress_steps

    def strict(*args, **kwargs):
        state["inside"] = True
        try:
            for item in original(*args, **kwargs):
                state["steps"] += 1
                yield item
        finally:
            state["inside"] = False

    for name in ("cycle", "sampler", "baselines", "encoder"):  # the modules (some names are also functions)
        monkeypatch.setattr(importlib.import_module(f"cyclediff.{name}"), "progress_steps", strict)

    def guard(name):
        method = getattr(torch.Tensor, name)

        def wrapped(self, *args, **kwargs):
            if state["inside"]:
                raise HostSync(f"Tensor.{name} inside a step loop")
            return method(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)

    for name in ("item", "__bool__", "tolist", "cpu", "numpy", "__float__", "__int__"):
        guard(name)
    yield state


def test_edit_and_translate_loops_never_read_device_values(monkeypatch, pipe):
    sd = StableDiffusion.from_pipe(pipe)
    den = PixelDenoiser(tiny_unet(num_classes=4), ddim_config(), null_class_label=3)
    other = PixelDenoiser(tiny_unet(num_classes=4, seed=1), ddim_config(), null_class_label=3)
    with no_host_reads_inside_step_loops(monkeypatch) as state:
        for method in ("cyclediffusion", "sdedit", "ddib"):
            edit(sd, photos(2, seed=1), source_prompt="a cat", prompt="a dog", steps=5, guidance_scale=3,
                 generator=gens(0, 1), method=method)
            translate((images(2) + 1) / 2, den, other, steps=5, strength=0.8, method=method, generator=gens(0, 1),
                      source_condition={"class_labels": 1},
                      target_condition={"class_labels": 2, "guidance_scale": 2.0})
        latent = encode(images(2), den, steps=5, generator=gens(0, 1), class_labels=1)
        decode(latent, other, class_labels=2)
    assert state["steps"] >= 30  # the guard was really inside the loops (34 steps in all)


def test_the_guard_catches_a_host_read(monkeypatch):
    den = PixelDenoiser(tiny_unet(), ddim_config())
    original = den.predict_batch

    def syncing(branches, t):
        out = original(branches, t)
        float(out[0].abs().max())  # what a careless step would do
        return out

    den.predict_batch = syncing
    with no_host_reads_inside_step_loops(monkeypatch), pytest.raises(HostSync):
        translate((images(1) + 1) / 2, den, den, steps=3, generator=gens(0))


# ------------------------------------------------------------------------------------------------ compiled vs eager
def test_compiled_edit_matches_eager_float32(pipe):
    """torch.compile (inductor, as on a GPU but generating C++) gives the eager float32 edit within 1e-4."""
    sd = StableDiffusion.from_pipe(pipe)
    kw = dict(source_prompt="a cat", prompt="a dog", steps=10, strength=0.8, guidance_scale=3.0)
    eager = edit(sd, photos(1, seed=3), generator=gens(7), **kw)
    sd.optimize(compile=True)
    assert sd.runner.settings == {"compiled": True, "channels_last": False, "cuda_graphs": False}
    try:
        fast = edit(sd, photos(1, seed=3), generator=gens(7), **kw)
        fast_again = edit(sd, photos(1, seed=3), generator=gens(7), **kw)  # the compiled graph reused
    finally:
        sd.optimize(compile=False)
    assert (fast.images - eager.images).abs().max() < TOL
    # ε of late steps is divided by a small σ (|ε| up to ~40 here): compare relative to its size
    assert (fast.latent.eps - eager.latent.eps).abs().max() < TOL * eager.latent.eps.abs().max()
    assert torch.equal(fast.images, fast_again.images)


def test_graph_captured_pixel_paths_and_channels_last_match_eager():
    """translate / encode / decode through a compiled graph (aot_eager: capture without code generation) and
    a channels-last UNet give the eager results; gradients (guidance) still flow, through the eager UNet."""
    src = PixelDenoiser(tiny_unet(num_classes=4), ddim_config(), null_class_label=3)
    tgt = PixelDenoiser(tiny_unet(num_classes=4, seed=1), ddim_config(), null_class_label=3)
    x = (images(2) + 1) / 2
    kw = dict(steps=6, strength=0.9, source_condition={"class_labels": 1},
              target_condition={"class_labels": [2, 0], "guidance_scale": 2.0})
    eager = translate(x, src, tgt, generator=gens(0, 1), **kw).images
    latent = encode(x * 2 - 1, src, steps=6, generator=gens(0, 1), class_labels=1)
    eager_dec = decode(latent, tgt, class_labels=2)
    for settings in (dict(compile=True, backend="aot_eager"), dict(compile=False, channels_last=True)):
        for den in (src, tgt):
            den.optimize(**settings)
        assert (translate(x, src, tgt, generator=gens(0, 1), **kw).images - eager).abs().max() < TOL
        assert (decode(latent, tgt, class_labels=2) - eager_dec).abs().max() < TOL
        z = latent.x_start.clone().requires_grad_(True)
        decode(replace(latent, x_start=z), tgt, class_labels=2).sum().backward()
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for den in (src, tgt):
        den.optimize(compile=False, channels_last=False)
    assert (translate(x, src, tgt, generator=gens(0, 1), **kw).images - eager).abs().max() == 0


def test_bad_backend_is_refused():
    den = PixelDenoiser(tiny_unet(), ddim_config())
    with pytest.raises(CycleDiffError, match="backend must be one of"):
        den.optimize(backend="tensorrt")


# ------------------------------------------------------------------------------------------------ VAE precision
def test_float16_vae_with_force_upcast_runs_in_float32(tmp_path):
    pipe = sd_pipeline(tmp_path).to(torch.float16)
    sd = StableDiffusion.from_pipe(pipe)
    assert sd.vae.config.force_upcast
    latents = sd.codec.encode_images(photos(1) * 2 - 1, sample=False)
    assert sd.codec.runnable_vae().dtype == torch.float32 and sd.unet.dtype == torch.float16
    assert pipe.vae.dtype == torch.float16  # the pipeline's own VAE is left as it was (others may share it)
    assert torch.isfinite(latents).all() and torch.isfinite(sd.codec.decode_latents(latents)).all()

    pipe = sd_pipeline(tmp_path / "bf").to(torch.bfloat16)  # bfloat16 has float32's range: no upcast
    sd = StableDiffusion.from_pipe(pipe)
    sd.codec.encode_images(photos(1) * 2 - 1, sample=False)
    assert sd.codec.runnable_vae() is sd.vae and sd.vae.dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_compile_flag_optimizes_the_model(tmp_path, monkeypatch):
    calls = []
    original = Optimizable.optimize

    def recording(self, **kw):
        calls.append(kw)
        return original(self, **{**kw, "backend": "eager"})  # dynamo capture, no code generation

    monkeypatch.setattr(Optimizable, "optimize", recording)
    res = CliRunner().invoke(main, ["sample", "--model", "demo:digit-3", "--steps", "4", "--seeds", "0",
                                    "--compile", "--out", str(tmp_path / "a"), "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert calls == [{"compile": True}]
    plain = CliRunner().invoke(main, ["sample", "--model", "demo:digit-3", "--steps", "4", "--seeds", "0",
                                      "--out", str(tmp_path / "b"), "--quiet", "--device", "cpu"])
    assert plain.exit_code == 0 and len(calls) == 1
    a, b = (tmp_path / "a").glob("*.png"), (tmp_path / "b").glob("*.png")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]

"""Quantized network weights (``load(..., quantize=)``, ``--quantize``): a tiny SD loaded with optimum-quanto and
torchao (the backends that run on a CPU) through diffusers' own quantization configs; its latent space is exact
(the quantized network is a fixed network); the edit's distance to the unquantized model's is small and reported;
bad choices (bitsandbytes without a CUDA GPU, a backend not installed) are one line."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from cyclediff import CycleDiffError, decode, edit, encode
from cyclediff.cli import main
from cyclediff.models import load, to_model_space
from tiny_sd import photos, sd_pipeline

pytest.importorskip("optimum.quanto")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quant")
    sd_pipeline(tmp / "parts").save_pretrained(tmp / "sd")
    return tmp / "sd"


def quantized_layers(unet) -> int:
    """Linear layers whose weights a backend replaced (quanto's QLinear, torchao's tensor subclasses)."""
    from optimum.quanto.nn import QLinear

    return sum(isinstance(m, QLinear) or (isinstance(m, torch.nn.Linear) and type(m.weight).__name__ not in (
        "Parameter", "Tensor")) for m in unet.modules())


@pytest.mark.parametrize("choice", ["int8", "fp8", "torchao-int8", "torchao-fp8"])
def test_a_quantized_model_encodes_exactly_and_edits_close_to_the_full_one(folder, choice):
    if choice.startswith("torchao"):
        pytest.importorskip("torchao")
    quantized = load(folder, quantize=choice)
    assert quantized_layers(quantized.unet) > 10 and quantized.dtype == torch.float32
    x0 = to_model_space(quantized, photos(2), [torch.Generator().manual_seed(s) for s in (0, 1)])
    z = encode(x0, quantized, steps=6, strength=0.8, prompt="a cat", generator=[torch.Generator().manual_seed(1),
                                                                                torch.Generator().manual_seed(2)])
    assert (decode(z, quantized) - x0).abs().max() < 1e-5  # exact under the quantized network itself
    kw = dict(source_prompt="a cat", prompt="a dog", steps=6, generator=torch.Generator().manual_seed(0))
    ours, full = edit(quantized, photos(1), **kw).images, edit(load(folder), photos(1), **dict(
        kw, generator=torch.Generator().manual_seed(0))).images
    distance = float((ours - full).abs().max())
    print(f"{choice}: max |edit(quantized) - edit(full)| = {distance:.2e}")  # the number the README reports
    assert 0 < distance < 0.05


def test_a_pipeline_the_user_quantized_works_with_from_pipe(folder):
    """A pipeline built with diffusers' own ``PipelineQuantizationConfig`` (torchao int8 here), wrapped as it is."""
    pytest.importorskip("torchao")
    from diffusers import StableDiffusionPipeline, TorchAoConfig
    from diffusers.quantizers import PipelineQuantizationConfig
    from torchao.quantization import Int8WeightOnlyConfig

    from cyclediff.models import from_pipe

    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, quantization_config=(
        PipelineQuantizationConfig(quant_mapping={"unet": TorchAoConfig(Int8WeightOnlyConfig())})))
    model = from_pipe(pipe)
    assert quantized_layers(model.unet) > 10
    x0 = to_model_space(model, photos(1), [torch.Generator().manual_seed(0)])
    z = encode(x0, model, steps=5, prompt="a cat", generator=torch.Generator().manual_seed(1))
    assert (decode(z, model) - x0).abs().max() < 1e-5
    ours = edit(load(folder, quantize="torchao-int8"), photos(1), source_prompt="a cat", prompt="a dog", steps=4,
                generator=torch.Generator().manual_seed(0)).images
    theirs = edit(model, photos(1), source_prompt="a cat", prompt="a dog", steps=4,
                  generator=torch.Generator().manual_seed(0)).images
    assert (ours - theirs).abs().max() < 1e-6  # load(quantize=) builds that very pipeline


def test_the_cli_takes_quantize_and_refuses_it_on_pixel_models(folder, tmp_path):
    from cyclediff._images import save_image

    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(folder), "--quantize", "int8",
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--steps", "4", "--quiet",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    with pytest.raises(CycleDiffError, match="quantized weights are for text-to-image pipelines"):
        load("demo:digits", quantize="int8")
    res = CliRunner().invoke(main, ["sample", "--model", str(folder), "--quantize", "q3", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "q3" in res.output


def test_bitsandbytes_is_refused_in_one_line_without_a_cuda_gpu(folder, monkeypatch):
    """diffusers' bitsandbytes quantizer needs CUDA: on the CPU nf4 is one line naming what runs here instead."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for choice in ("nf4", "bnb-int8"):
        with pytest.raises(CycleDiffError, match=r"runs on a CUDA GPU only; here use int8, int4 or fp8") as err:
            load(folder, quantize=choice, device="cpu")
        assert "\n" not in str(err.value)


def test_a_backend_that_is_not_installed_names_its_extra(folder, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(CycleDiffError, match=r"needs torchao: pip install 'cyclediff\[quantize\]'"):
        load(folder, quantize="torchao-int8")


def test_the_settings_list_every_backend_choice():
    from cyclediff.models.quantize import CHOICES
    from cyclediff.settings import QUANTIZE

    assert set(QUANTIZE) == set(CHOICES)


def test_vae_tiling_tiles_large_images_and_keeps_the_latent_space_exact(folder):
    """diffusers' tiling (tiles of the VAE's sample size, 16 here, blended) and slicing on a 48 × 48 image: the
    VAE's round trip stays close to the untiled one, the code of the latents stays exact; pixel models refuse."""
    tiled, plain = load(folder, vae_tiling=True), load(folder)
    assert tiled.codec.vae.use_tiling and tiled.codec.vae.use_slicing
    x = photos(2, size=48)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    a = tiled.codec.encode_images(x * 2 - 1, gens, sample=False)
    b = plain.codec.encode_images(x * 2 - 1, gens, sample=False)
    assert 0 < float((a - b).abs().max()) < 0.5  # tiles blended at the seams: close, not equal
    z = encode(a, tiled, steps=4, prompt="a cat", generator=torch.Generator().manual_seed(3))
    assert (decode(z, tiled) - a).abs().max() < 1e-5
    with pytest.raises(CycleDiffError, match="VAE tiling is for latent models"):
        load("demo:digits", vae_tiling=True)


def test_diffusers_deprecation_of_its_quanto_integration_is_not_printed(folder, tmp_path):
    """``QuantoConfig`` / ``QuantoQuantizer is deprecated`` were printed on every --quantize int8 run (the first with
    its sentence twice): nothing the user can act on, filtered where cyclediff.models filters the other optional
    backends' notes."""
    import subprocess
    import sys

    from cyclediff._images import save_image

    save_image(photos(1)[0], tmp_path / "cat.png")
    # a process of its own: pytest resets the warning filters a module sets when it is imported under collection
    res = subprocess.run([sys.executable, "-m", "cyclediff", "edit", str(tmp_path / "cat.png"), "--model", str(folder),
                          "--quantize", "int8", "--source-prompt", "a cat", "--prompt", "a dog", "--steps", "2",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert list((tmp_path / "o").glob("*.png"))
    assert "deprecated" not in res.stdout + res.stderr, res.stderr

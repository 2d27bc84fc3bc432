"""Quantized network weights (``load(..., quantize=)``, ``--quantize``): a tiny SD loaded with optimum-quanto int8
through diffusers' own quantization config; its latent space is exact (the quantized network is a fixed network);
the edit's distance to the unquantized model's is small and reported; bad choices are one line."""

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


@pytest.mark.parametrize("choice", ["int8", "fp8"])
def test_a_quantized_model_encodes_exactly_and_edits_close_to_the_full_one(folder, choice):
    from optimum.quanto.nn import QLinear

    quantized = load(folder, quantize=choice)
    assert any(isinstance(m, QLinear) for m in quantized.unet.modules())
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


def test_the_cli_takes_quantize_and_refuses_it_on_pixel_models(folder, tmp_path):
    from cyclediff._io import save_image

    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(folder), "--quantize", "int8",
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--steps", "4", "--quiet",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    with pytest.raises(CycleDiffError, match="quantized weights are for text-to-image pipelines"):
        load("demo:digits", quantize="int8")
    res = CliRunner().invoke(main, ["sample", "--model", str(folder), "--quantize", "nf4", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "nf4" in res.output


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

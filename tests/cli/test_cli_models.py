"""Loading pixel models from diffusers folders, and the command line end to end on a tiny saved model."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler
from PIL import Image

from conftest import ddim_config, ddpm_config, images, tiny_unet
from cyclediff import CycleDiffError, Latent, decode, encode
from cyclediff.cli import main, parse_seeds
from cyclediff.models import PixelDenoiser


@pytest.fixture
def pipeline_dir(tmp_path):
    """A folder as DDPMPipeline.save_pretrained writes it (model_index.json, unet/, scheduler/)."""
    path = tmp_path / "pipe"
    DDPMPipeline(unet=tiny_unet(seed=3), scheduler=DDPMScheduler(**ddpm_config())).save_pretrained(path)
    return path


@pytest.fixture
def unet_dir(tmp_path):
    """A UNet folder with scheduler_config.json beside config.json (the layout of google/ddpm-cat-256)."""
    path = tmp_path / "flat"
    tiny_unet(seed=4, num_classes=3).save_pretrained(path)
    DDIMScheduler(**ddim_config(steps_offset=1)).save_config(path)
    return path


def test_from_pretrained_pipeline_folder(pipeline_dir, gen):
    den = PixelDenoiser.from_pretrained(pipeline_dir)
    assert den.model_id == str(pipeline_dir) and den.sample_shape == (3, 8, 8) and den.num_classes is None
    ref = tiny_unet(seed=3)
    x = images(1)
    torch.testing.assert_close(den.unet(x, 5).sample, ref(x, 5).sample)
    z = encode(x, den, steps=10, eta=0.5, generator=gen(0))
    assert z.model_id == str(pipeline_dir)
    assert (decode(z, den) - x).abs().max() < 1e-5


def test_from_pretrained_flat_unet_folder_with_dtype(unet_dir):
    den = PixelDenoiser.from_pretrained(unet_dir, dtype=torch.float64)
    assert den.num_classes == 3 and den.dtype == torch.float64 and den.schedule.steps_offset == 1


def test_half_precision_model_runs_the_maths_in_the_image_dtype(unet_dir, gen):
    den = PixelDenoiser.from_pretrained(unet_dir, dtype=torch.bfloat16)
    x = images(2)
    z = encode(x, den, steps=8, eta=0.5, generator=gen(0), class_labels=1)
    assert z.dtype == torch.float32
    assert (decode(z, den) - x).abs().max() < 1e-5  # replay is exact whatever the model's precision


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(CycleDiffError, match="could not load a pixel diffusion model"):
        PixelDenoiser.from_pretrained(tmp_path)
    (tmp_path / "model.ckpt").write_bytes(b"x")
    with pytest.raises(CycleDiffError, match="is a file"):
        PixelDenoiser.from_pretrained(tmp_path / "model.ckpt")
    with pytest.raises(CycleDiffError, match="UNet2DModel"):
        PixelDenoiser(torch.nn.Linear(2, 2), ddim_config())


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds("5") == [5]


def _png(path, size=8, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def test_cli_encode_decode_inspect_round_trip(pipeline_dir, tmp_path):
    runner = CliRunner()
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    res = runner.invoke(main, ["encode", str(a), str(bad), str(b), "--model", str(pipeline_dir), "--steps", "10",
                               "--strength", "0.6", "--eta", "0.5", "--device", "cpu", "--out", str(tmp_path / "z")])
    assert res.exit_code == 1, res.output  # one bad image: reported, the others done
    assert "FAILED" in res.output and "broken.png" in res.output
    latents = sorted((tmp_path / "z").glob("*.latent.safetensors"))
    assert [p.name for p in latents] == ["a.latent.safetensors", "b.latent.safetensors"]
    assert Latent.load(latents[1]).seeds == (2,)  # image i uses seed + i

    res = runner.invoke(main, ["decode", *map(str, latents), "--model", str(pipeline_dir), "--device", "cpu",
                               "--out", str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    for name in ("a", "b"):
        original = np.asarray(Image.open(tmp_path / f"{name}.png"), dtype=np.int16)
        decoded = np.asarray(Image.open(tmp_path / "png" / f"{name}.png"), dtype=np.int16)
        assert np.abs(original - decoded).max() <= 1  # exact up to 8-bit rounding

    res = runner.invoke(main, ["inspect", str(latents[0])])
    assert res.exit_code == 0 and json.loads(res.output)["steps"] == 10


def test_cli_sample_matches_the_library(pipeline_dir, tmp_path):
    res = CliRunner().invoke(main, ["sample", "--model", str(pipeline_dir), "--seeds", "0-1", "--steps", "5",
                                    "--eta", "1", "--device", "cpu", "--out", str(tmp_path), "--save-latents"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("seed*.png")) == ["seed0000.png", "seed0001.png"]
    z = Latent.load(tmp_path / "seed0001.latent.safetensors")
    assert z.seeds == (1,)


def test_cli_errors_are_one_line_messages(pipeline_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["encode", str(_png(tmp_path / "a.png")), "--model", str(pipeline_dir), "--eta", "0"])
    assert res.exit_code != 0 and "deterministic" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["decode", "x.latent.safetensors", "--model", str(tmp_path / "nowhere")])
    assert res.exit_code != 0 and "no such file or folder" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["inspect", str(tmp_path / "a.png")])
    assert res.exit_code == 1 and "not a latent file: it looks like a PNG image" in res.output


def test_quickstart_example_runs(tmp_path):
    """The README's runnable example (make demo) works and reconstructs exactly."""
    argv = sys.argv
    sys.argv = ["quickstart.py", str(tmp_path)]
    try:
        ns = runpy.run_path(str(Path(__file__).parents[2] / "examples" / "quickstart.py"))
    finally:
        sys.argv = argv
    assert (ns["x"] - ns["x0"]).abs().max() < 1e-5
    assert (tmp_path / "images.latent.safetensors").exists()

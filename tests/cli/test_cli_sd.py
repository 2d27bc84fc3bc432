"""The command line end to end on a tiny Stable Diffusion pipeline saved to a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cyclediff import Latent, edit
from cyclediff.cli import main
from cyclediff.models import StableDiffusion, load
from tiny_sd import photos, sd_pipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny-sd"
    sd_pipeline(path.parent / "parts").save_pretrained(path)
    return path


@pytest.fixture
def pngs(tmp_path):
    paths = []
    for i in range(3):
        arr = (photos(1, seed=i)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / f"img{i}.png")
        paths.append(tmp_path / f"img{i}.png")
    return paths


def test_load_picks_the_model_kind(model_dir, tmp_path):
    assert isinstance(load(model_dir), StableDiffusion)


def test_edit_through_the_console_entry_point(model_dir, pngs, tmp_path):
    """`python -m cyclediff` (what the `cyclediff` script runs): batches, seeds, naming, JSON, skip, overwrite."""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "edits"
    cmd = [sys.executable, "-m", "cyclediff", "edit", str(pngs[0]), str(bad), str(pngs[1]), "--model",
           str(model_dir), "--source-prompt", "a cat", "--prompt", "a dog", "--steps", "10", "--strength", "0.5",
           "--seeds", "0-1", "--batch-size", "3", "--device", "cpu", "--out", str(out), "--json", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1, res.stderr  # the bad image fails, the rest are done
    summary = json.loads(res.stdout)
    assert (summary["ok"], summary["failed"]) == (4, 2)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"img{i}_a-dog_s0.5_w3_seed{s}.png" for i in (0, 1) for s in (0, 1)]
    assert "bad.png" in res.stderr and "Traceback" not in res.stderr
    # the CLI's output is the API's result for the same seed
    sd = StableDiffusion.from_pretrained(model_dir)
    x = torch.from_numpy(np.asarray(Image.open(pngs[1]), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    api = edit(sd, x, source_prompt="a cat", prompt="a dog", steps=10, strength=0.5,
               generator=torch.Generator().manual_seed(1)).images[0]
    png = np.asarray(Image.open(out / "img1_a-dog_s0.5_w3_seed1.png"), dtype=np.float32) / 255
    assert np.abs(png - api.permute(1, 2, 0).numpy()).max() <= 1 / 255 + 1e-6
    # a second run skips what exists; --overwrite redoes it
    again = subprocess.run(cmd[:5] + cmd[6:], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 4
    forced = subprocess.run(cmd[:5] + cmd[6:] + ["--overwrite"], capture_output=True, text=True, env=env, timeout=300)
    assert forced.returncode == 0 and json.loads(forced.stdout)["ok"] == 4


def test_encode_once_decode_many(model_dir, pngs, tmp_path):
    runner = CliRunner()
    z_path = tmp_path / "cat.latent.safetensors"
    res = runner.invoke(main, ["encode", str(pngs[2]), "--model", str(model_dir), "--prompt", "a cat", "--steps",
                               "10", "--strength", "0.6", "--device", "cpu", "-o", str(z_path), "-q"])
    assert res.exit_code == 0, res.output
    z = Latent.load(z_path)
    assert z.condition["prompt"] == ["a cat"] and z.sample_shape == (4, 8, 8)
    res = runner.invoke(main, ["decode", str(z_path), "--model", str(model_dir), "--device", "cpu",
                               "-o", str(tmp_path / "same.png"), "-q"])
    assert res.exit_code == 0, res.output
    same = np.asarray(Image.open(tmp_path / "same.png"), dtype=np.int16)
    sd = StableDiffusion.from_pretrained(model_dir)
    x = torch.from_numpy(np.asarray(Image.open(pngs[2]), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    latents = sd.codec.encode_images(x * 2 - 1, torch.Generator().manual_seed(0))
    vae_round_trip = sd.codec.decode_latents(latents) / 2 + 0.5
    expected = (vae_round_trip.clamp(0, 1)[0].permute(1, 2, 0) * 255).round().detach().numpy()
    assert np.abs(same - expected).max() <= 1  # the latent gives back the (VAE-encoded) input
    for prompt in ("a dog", "a horse"):
        res = runner.invoke(main, ["decode", str(z_path), "--model", str(model_dir), "--prompt", prompt,
                                   "--guidance-scale", "3", "--device", "cpu", "-o", str(tmp_path / f"{prompt}.png")])
        assert res.exit_code == 0, res.output
    dog = np.asarray(Image.open(tmp_path / "a dog.png"), dtype=np.int16)
    assert np.abs(dog - same).max() > 2


def test_cli_refuses_bad_options_clearly(model_dir, pngs, tmp_path):
    runner = CliRunner()
    base = ["edit", str(pngs[0]), "--model", str(model_dir), "--source-prompt", "a", "--prompt", "b"]
    for extra, message in ((["--strength", "0"], "strength"), (["--steps", "0"], "steps"),
                           (["--eta", "0"], "deterministic"), (["--eta", "1.5"], "eta"),
                           (["--seed", "1", "--seeds", "0-3"], "not both")):
        res = runner.invoke(main, base + extra)
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (extra, res.output)
    res = runner.invoke(main, ["edit", str(pngs[0]), "--model", "someone/not-here", "--source-prompt", "a",
                               "--prompt", "b"])
    assert res.exit_code == 1 and "pass a local folder" in res.output
    res = runner.invoke(main, ["encode", str(pngs[0]), "--model", str(model_dir), "--class-label", "3"])
    assert res.exit_code == 1 and "--prompt" in res.output


def test_help_has_examples():
    res = CliRunner().invoke(main, ["edit", "--help"])
    assert res.exit_code == 0 and "Examples:" in res.output and "--source-guidance-scale" in res.output


def test_float16_on_the_cpu_is_one_warning_of_ours(model_dir, tmp_path):
    """diffusers says "cannot run with cpu device" three times (and transformers asks for torchvision, which cannot
    load beside the pinned torch); the command says once what to do instead, and the model runs."""
    cmd = [sys.executable, "-m", "cyclediff", "sample", "--model", str(model_dir), "--dtype", "float16", "--device",
           "cpu", "--prompt", "a cat", "--steps", "2", "--out", str(tmp_path / "o")]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if "it/s" not in line and line.strip()]
    assert [line for line in lines if "float16" in line] == [
        "warning: float16 on the CPU is slow and less exact (PyTorch computes many float16 CPU ops in float32 and "
        "rounds); use float32 there (the default) and float16 on a GPU"]
    assert not [line for line in lines if "Pipelines loaded" in line or "torchvision" in line or "float32:" in line]


def test_a_latent_records_how_its_model_was_loaded_and_decoding_otherwise_warns(model_dir, pngs, tmp_path):
    """A latent encoded with quantized weights (or a LoRA) recorded neither: decoded with the plain weights it gave
    another image with no word. It records them, and a decode with a model loaded otherwise warns in one line."""
    pytest.importorskip("optimum.quanto")
    z = tmp_path / "z.latent.safetensors"
    common = ["--model", str(model_dir), "--device", "cpu"]
    res = CliRunner().invoke(main, ["encode", str(pngs[0]), *common, "--prompt", "a cat", "--steps", "4",
                                    "--quantize", "int8", "-o", str(z)])
    assert res.exit_code == 0, res.output
    assert Latent.load(z).loading == {"quantize": "int8"}
    res = CliRunner().invoke(main, ["decode", str(z), *common, "--out", str(tmp_path / "plain")])
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if "was encoded with quantize int8" in line]
    assert len(warned) == 1 and "decoded with the plain weights" in warned[0] and "--quantize" in warned[0]
    res = CliRunner().invoke(main, ["decode", str(z), *common, "--quantize", "int8", "--out", str(tmp_path / "q")])
    assert res.exit_code == 0 and "was encoded with" not in res.output
    plain = tmp_path / "p.latent.safetensors"  # encoded plainly: recorded as such, a quantized decode warns
    assert CliRunner().invoke(main, ["encode", str(pngs[0]), *common, "--steps", "4", "-o", str(plain)]).exit_code == 0
    assert Latent.load(plain).loading == {}
    res = CliRunner().invoke(main, ["decode", str(plain), *common, "--quantize", "int8", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0 and "encoded with the plain weights but is decoded with quantize int8" in res.output

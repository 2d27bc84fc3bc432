"""Bad LoRA input is one line before anything is applied: a scale that is not a finite number from -100 to 100
(``nan`` made every output black), a scale that is not a number, an empty path, a file that is not a LoRA (an
image, a pickle with Python objects) and a LoRA of the model's family made for another size."""

from __future__ import annotations

import pytest
import torch

from cyclediff import CycleDiffError
from cyclediff.models import StableDiffusion, load
from cyclediff.models.lora import parse_lora
from tiny_sd import make_lora, sd_pipeline

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora_inputs")
    sd_pipeline(tmp / "parts").save_pretrained(tmp / "sd")
    return tmp / "sd", make_lora(sd_pipeline(tmp / "lparts"), tmp / "style", seed=3)


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf"), 1e30, 101.0])
def test_a_non_finite_or_huge_scale_is_refused_by_load_lora(sd, scale):
    model = load(sd[0])
    with pytest.raises(CycleDiffError, match=r"scale of the LoRA .* a finite number from -100 to 100") as err:
        model.load_lora(sd[1], scale)
    assert "\n" not in str(err.value)
    assert "_loras" not in model.__dict__  # nothing was applied


@pytest.mark.parametrize("tail", ["nan", "inf", "-inf", "1e309", "1e30"])
def test_a_non_finite_or_huge_scale_is_refused_by_every_spec_parser(sd, tail):
    with pytest.raises(CycleDiffError, match="a finite number from -100 to 100"):
        parse_lora(f"{sd[1]}:{tail}")
    with pytest.raises(CycleDiffError, match="a finite number from -100 to 100"):
        load(sd[0], lora=[f"{sd[1]}:{tail}"])
    with pytest.raises(CycleDiffError, match="a finite number from -100 to 100"):
        load(sd[0]).with_lora([f"{sd[1]}:{tail}"])


def test_spec_forms(sd, tmp_path):
    assert parse_lora(f"{sd[1]}:-0.5") == (str(sd[1]), -0.5)
    assert parse_lora(f"{sd[1]}:100") == (str(sd[1]), 100.0)
    assert parse_lora(str(sd[1])) == (str(sd[1]), 1.0)
    colon = tmp_path / "a:b.safetensors"  # a path holding a colon is a path
    colon.write_bytes(sd[1].read_bytes())
    assert parse_lora(str(colon)) == (str(colon), 1.0)
    with pytest.raises(CycleDiffError, match=r"the scale 'abc' of the LoRA .*:abc is not a number"):
        parse_lora(f"{sd[1]}:abc")
    for empty in ("", "  ", ":0.5"):
        with pytest.raises(CycleDiffError, match="the LoRA path is empty"):
            parse_lora(empty)
    with pytest.raises(CycleDiffError, match="the LoRA path is empty"):
        load(sd[0]).load_lora("")


def test_a_stage_prefix_stays_on_the_path_and_job_files_resolve_beside_them(sd, tmp_path, monkeypatch):
    """``low-noise=PATH[:SCALE]`` (Wan 2.2 A14B's second transformer) parses as a path with its prefix; a job
    file's relative LoRA keeps the prefix when made absolute; a file whose name holds ``=`` is a path."""
    from cyclediff.jobs.file import local_lora

    assert parse_lora(f"low-noise={sd[1]}:0.5") == (f"low-noise={sd[1]}", 0.5)
    assert parse_lora(f"low-noise={sd[1]}") == (f"low-noise={sd[1]}", 1.0)
    with pytest.raises(CycleDiffError, match="the LoRA path is empty"):
        parse_lora("low-noise=:0.5")
    (tmp_path / "style.safetensors").write_bytes(sd[1].read_bytes())
    assert local_lora(tmp_path, "low-noise=style.safetensors:0.8") == f"low-noise={tmp_path / 'style.safetensors'}:0.8"
    assert local_lora(tmp_path, "style.safetensors") == f"{tmp_path / 'style.safetensors'}:1"
    (tmp_path / "low-noise=x.safetensors").write_bytes(sd[1].read_bytes())
    monkeypatch.chdir(tmp_path)  # a file named so, here, is that file
    assert parse_lora("low-noise=x.safetensors") == ("low-noise=x.safetensors", 1.0)
    with pytest.raises(CycleDiffError, match="low-noise= is for a model with a second, low-noise transformer"):
        load(sd[0]).load_lora(f"low-noise={sd[1]}")


def test_files_that_are_not_loras_are_one_line(sd, tmp_path):
    import argparse

    from PIL import Image

    model = load(sd[0])
    png = tmp_path / "cat.png"
    Image.new("RGB", (8, 8)).save(png)
    with pytest.raises(CycleDiffError, match=r"cat.png is not a LoRA file \(it looks like a PNG image\); .*"
                                             r"safetensors") as err:
        model.load_lora(png)
    assert "pickle" not in str(err.value)
    objects = tmp_path / "objects.bin"
    torch.save({"unet.down.lora_A.weight": torch.zeros(2), "args": argparse.Namespace(rank=4)}, objects)
    with pytest.raises(CycleDiffError, match=r"objects.bin holds Python objects besides tensors \(argparse.Namespace"
                                             r"\).*\.safetensors") as err:
        model.load_lora(objects)
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)


def test_a_lora_made_for_another_size_is_one_line_naming_what_it_targets(sd, tmp_path, capfd):
    from safetensors.torch import load_file, save_file

    model = StableDiffusion.from_pipe(sd_pipeline(tmp_path / "parts", channels=(32, 64)))
    with pytest.raises(CycleDiffError, match=r"style.* was made for another size or variant of a "
                                             r"Stable Diffusion UNet \(e.g. .*: shape \[4, 16\] in the LoRA, "
                                             r"\[4, 32\] in this model\): give a LoRA made") as err:
        model.load_lora(sd[1])
    assert "\n" not in str(err.value) and "size mismatch for" not in str(err.value)
    # an SD 1.x LoRA (its cross-attention reads CLIP's 768 wide text) on this tiny SD (16 wide) says what it targets
    state = load_file(sd[1])
    wide = {k: torch.randn(4, 768) if "attn2.to_k.lora.down" in k or "attn2.to_v.lora.down" in k else v
            for k, v in state.items()}
    save_file(wide, tmp_path / "sd1.safetensors")
    with pytest.raises(CycleDiffError, match=r"appears to target SD 1.x \(text width 768\)"):
        load(sd[0]).load_lora(tmp_path / "sd1.safetensors")
    assert "unsuccessful" not in capfd.readouterr().err  # diffusers' multi-line log is not printed

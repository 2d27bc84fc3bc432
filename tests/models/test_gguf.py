"""GGUF networks (``--model FILE.gguf --base PIPELINE``): files written here with the ``gguf`` package (Q8_0 where a
row fits its 32-value blocks, F32 elsewhere, as the community's converters do), loaded back through diffusers'
GGUF quantizer; the latent space is exact under the quantized network, the edit close to the full model's; a
GGUF of something else, a base of another architecture or ``--quantize`` on a GGUF are one line each."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cyclediff import CycleDiffError, decode, edit, encode
from cyclediff._images import save_image
from cyclediff.cli import main
from cyclediff.models import load, to_model_space
from tiny_sd import flux_pipeline, photos, sd_pipeline

gguf = pytest.importorskip("gguf")


def write_gguf(state: dict[str, torch.Tensor], path: Path, arch: str) -> int:
    """``state`` as a GGUF file; returns how many tensors were stored as Q8_0."""
    writer = gguf.GGUFWriter(str(path), arch=arch)
    quantized = 0
    for name, tensor in state.items():
        array = tensor.float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantized += 1
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return quantized


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gguf")
    flux_pipeline(tmp / "fparts").save_pretrained(tmp / "flux")
    sd_pipeline(tmp / "sparts").save_pretrained(tmp / "sd")
    out = {"flux": tmp / "flux", "sd": tmp / "sd"}
    for name, net in (("flux", "transformer"), ("sd", "unet")):
        full = load(out[name])
        assert write_gguf(getattr(full.pipe, net).state_dict(), tmp / f"{name}-Q8_0.gguf", name) > 5
        out[f"{name}.gguf"] = tmp / f"{name}-Q8_0.gguf"
    return out


@pytest.mark.parametrize("name", ["flux", "sd"])
def test_a_gguf_network_encodes_exactly_and_edits_close_to_the_full_model(files, name):
    from diffusers.quantizers.gguf.utils import GGUFLinear

    model = load(files[f"{name}.gguf"], base=str(files[name]))
    assert sum(isinstance(m, GGUFLinear) for m in model.network.modules()) > 5
    assert model.model_id == str(files[f"{name}.gguf"])
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    x0 = to_model_space(model, photos(2), gens)
    z = encode(x0, model, steps=5, strength=0.8, prompt="a cat", generator=torch.Generator().manual_seed(4))
    assert (decode(z, model) - x0).abs().max() < 1e-5  # exact under the quantized network itself
    kw = dict(source_prompt="a cat", prompt="a dog", steps=5)
    ours = edit(model, photos(1), generator=torch.Generator().manual_seed(0), **kw).images
    full = edit(load(files[name]), photos(1), generator=torch.Generator().manual_seed(0), **kw).images
    distance = float((ours - full).abs().max())
    print(f"gguf Q8_0 {name}: max |edit(gguf) - edit(full)| = {distance:.2e}")  # the number the README reports
    assert 0 < distance < 0.05


def test_the_cli_edits_with_a_gguf_file_and_its_base(files, tmp_path):
    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(files["flux.gguf"]), "--base",
                                    str(files["flux"]), "--source-prompt", "a cat", "--prompt", "a dog", "--steps",
                                    "3", "--quiet", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "o").glob("*.png"))


def test_bad_gguf_input_is_one_line(files, tmp_path):
    llama = tmp_path / "llama-Q8_0.gguf"
    write_gguf({"token_embd.weight": torch.randn(8, 32), "blk.0.attn_q.weight": torch.randn(32, 32)}, llama, "llama")
    cases = [
        (dict(spec=llama), r"llama-Q8_0.gguf holds a llama model, not a diffusion network cyclediff loads"),
        (dict(spec=files["flux.gguf"], base=str(files["sd"])),
         r"is a FLUX.1 network but the base .* is a Stable Diffusion \(UNet\) pipeline: pass --base"),
        (dict(spec=files["sd.gguf"]), r"a GGUF Stable Diffusion UNet needs the pipeline it belongs to: pass --base"),
        (dict(spec=files["flux.gguf"]), r"defaults to black-forest-labs/FLUX.1-dev, which is not reachable here: pass"),
        (dict(spec=files["flux.gguf"], base=str(files["flux"]), quantize="int8"), r"quantized already \(GGUF\)"),
        (dict(spec=files["flux"], base=str(files["flux"])), r"--base is for single files"),
    ]
    for kwargs, message in cases:
        with pytest.raises(CycleDiffError, match=message) as err:
            load(kwargs.pop("spec"), **kwargs)
        assert "\n" not in str(err.value)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 40)
    with pytest.raises(CycleDiffError, match="broken.gguf is not a readable GGUF file"):
        load(broken, base=str(files["flux"]))


@pytest.mark.parametrize("name", ["flux", "sd3", "sd"])
def test_a_gguf_file_missing_a_tensor_is_one_line(files, tmp_path, name):
    """One tensor dropped (a truncated download): was an IndexError inside diffusers' single_file_utils (FLUX, SD3)
    or its SingleFileComponentError (SD)."""
    from tiny_sd import sd3_pipeline

    if name == "sd3":
        sd3_pipeline(tmp_path / "parts").save_pretrained(tmp_path / "sd3")
        files = {**files, "sd3": tmp_path / "sd3"}
    net = "unet" if name == "sd" else "transformer"
    state = getattr(load(files[name]).pipe, net).state_dict()
    dropped = sorted(state)[len(state) // 2]
    write_gguf({k: v for k, v in state.items() if k != dropped}, tmp_path / f"{name}-cut.gguf", name)
    with pytest.raises(CycleDiffError, match=rf"{name}-cut.gguf is incomplete: it lacks 1 of the {len(state)} "
                                             rf"tensors of .* \({dropped}\)") as err:
        load(tmp_path / f"{name}-cut.gguf", base=str(files[name]))
    assert "\n" not in str(err.value)


def test_a_gguf_file_of_another_size_than_its_base_is_one_line(files, tmp_path):
    sd_pipeline(tmp_path / "parts", channels=(32, 64)).save_pretrained(tmp_path / "wide")
    with pytest.raises(CycleDiffError, match=r"the tensor shapes of sd-Q8_0.gguf do not match the architecture of "
                                             r"--base .*wide \(e.g. .*: \[16, .*\] in the file, \[32, .*\] in the base"
                                             r"\): pass --base of the model") as err:
        load(files["sd.gguf"], base=str(tmp_path / "wide"))
    assert "ignore_mismatched_sizes" not in str(err.value) and "\n" not in str(err.value)


def test_a_base_that_is_not_a_pipeline_of_the_family_is_one_line(files, tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [("demo:digits", r"--base must be a diffusers pipeline folder or hub id of FLUX.1; demo:digits is a "
                             r"demo pixel model"),
             ("/nonexistent/flux", r"no such folder: /nonexistent/flux \(--base: a diffusers pipeline folder or hub "
                                   r"id of FLUX.1\)"),
             (str(files["sd.gguf"]), r"--base must be a diffusers pipeline folder or hub id of FLUX.1, not a file"),
             (str(tmp_path / "empty"), r"--base .*empty is not a diffusers pipeline folder \(no model_index.json\); "
                                       r"give the pipeline folder or hub id of FLUX.1")]
    for base, message in cases:
        with pytest.raises(CycleDiffError, match=message) as err:
            load(files["flux.gguf"], base=base)
        assert "hub id (or it is unreachable" not in str(err.value)

"""Offloading (``--offload model|sequential|group``) and the text encoders on the CPU: the adapters call their
networks directly, so the test checks that the calls go through the hooks diffusers installs — on the CPU, with
the onload device set to the CPU (the hooks then move nothing, and the edit is the unhooked one's) — and that the
hooked networks are the ones that run (each hook class counts the modules it was called for)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from cyclediff import CycleDiffError, decode, edit, encode
from cyclediff.cli import main
from cyclediff.models import load, to_model_space
from cyclediff.models.offload import device_bytes, offload, offload_or_note
from tiny_sd import photos, sd_pipeline

HOOKS = {"model": ("accelerate.hooks", "CpuOffload"), "sequential": ("accelerate.hooks", "AlignDevicesHook"),
         "group": ("diffusers.hooks.group_offloading", "GroupOffloadingHook")}
KW = dict(source_prompt="a cat", prompt="a dog", steps=4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("offload")
    sd_pipeline(tmp / "parts").save_pretrained(tmp / "sd")
    return tmp / "sd"


def counting(monkeypatch, mode: str) -> list[torch.nn.Module]:
    """The modules whose ``mode`` hook ran, in order (the hook's pre_forward, patched to record and go on)."""
    import importlib

    module_name, cls_name = HOOKS[mode]
    cls = getattr(importlib.import_module(module_name), cls_name)
    seen: list[torch.nn.Module] = []
    real = cls.pre_forward

    def pre_forward(self, module, *args, **kwargs):
        seen.append(module)
        return real(self, module, *args, **kwargs)

    monkeypatch.setattr(cls, "pre_forward", pre_forward)
    return seen


# sequential offloading runs on a GPU only: with the CPU as accelerate's execution device its hooks fail after the
# first layer (diffusers' own pipeline fails the same way), so its test here is structural (below)
@pytest.mark.parametrize("mode", ["model", "group"])
def test_every_network_call_goes_through_the_offload_hooks(folder, mode, monkeypatch):
    plain = edit(load(folder), photos(1), generator=torch.Generator().manual_seed(0), **KW).images
    seen = counting(monkeypatch, mode)  # before the hooks are made (diffusers' registry binds their methods)
    model = offload(load(folder), mode, "cpu")
    out = edit(model, photos(1), generator=torch.Generator().manual_seed(0), **KW)
    unet = {id(m) for m in model.unet.modules()}
    vae = {id(m) for m in model.vae.modules()}
    text = {id(m) for m in model.pipe.text_encoder.modules()}
    assert sum(id(m) in unet for m in seen) >= 3  # each UNet call (3 steps: 4 at strength 0.8) hooked
    assert any(id(m) in vae for m in seen) and any(id(m) in text for m in seen)
    # the same computation on the same CPU: equal up to the ULPs of another call order
    assert (out.images - plain).abs().max() < 1e-6
    assert model.device == torch.device("cpu")
    x0 = to_model_space(model, photos(1), [torch.Generator().manual_seed(1)])
    z = encode(x0, model, steps=4, prompt="a cat", generator=torch.Generator().manual_seed(2))
    assert (decode(z, model) - x0).abs().max() < 1e-5


def test_sequential_offloading_keeps_no_weights_where_they_run(folder):
    """Under sequential offloading the weights live on the meta device between calls (their values on the CPU,
    in accelerate's weights map): an adapter that called a network around its hooks could not compute at all."""
    from accelerate.hooks import AlignDevicesHook

    model = offload(load(folder), "sequential", "cpu")
    assert all(p.device.type == "meta" for p in model.unet.parameters())
    hooked = [m for m in model.unet.modules() if isinstance(getattr(m, "_hf_hook", None), AlignDevicesHook)]
    assert len(hooked) > 10
    assert model.device == torch.device("cpu") and model.codec.execution_device == torch.device("cpu")


def test_offload_on_a_cpu_run_is_a_note_and_text_encoders_can_stay_on_the_cpu(folder, tmp_path):
    from cyclediff._images import save_image

    with pytest.warns(UserWarning, match="this run is on the CPU, where they already are: running without"):
        model = load(folder, offload="model", device="cpu")
    assert not hasattr(model.unet, "_hf_hook")
    model = load(folder, text_encoders_on_cpu=True)
    assert model.text_device == torch.device("cpu") and model.pipe.text_encoder.device == torch.device("cpu")
    out = edit(model, photos(1), generator=torch.Generator().manual_seed(0), **KW).images
    plain = edit(load(folder), photos(1), generator=torch.Generator().manual_seed(0), **KW).images
    assert (out - plain).abs().max() < 1e-6
    assert device_bytes(model, "cpu") > 0
    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(folder), "--offload", "group",
                                    "--text-encoders-on-cpu", "--source-prompt", "a cat", "--prompt", "a dog",
                                    "--steps", "3", "--quiet", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "for runs without --offload" in res.output
    with pytest.raises(CycleDiffError, match="offloading is for text-to-image pipelines"):
        offload_or_note(load("demo:digits"), "model", "cuda")
    with pytest.raises(CycleDiffError, match="offload must be one of model, sequential, group"):
        load(folder, offload="disk")

"""A model and its own LoRA variant (``model.with_lora``, ``--target-lora``): translation between them loads the
base weights once and equals translating between two separately loaded models; the base model's own outputs do not
change; LoRAs on SD3 and FLUX load through diffusers and equal diffusers' fused weights."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from cyclediff import CycleDiffError, decode, edit, encode, translate
from cyclediff._images import save_image
from cyclediff.cli import main
from cyclediff.models import from_pipe, load, load_pair, to_model_space
from cyclediff.models.offload import device_bytes
from tiny_sd import flux_pipeline, make_lora, photos, sd3_pipeline, sd_pipeline

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variant")
    sd_pipeline(tmp / "parts").save_pretrained(tmp / "sd")
    return tmp / "sd", make_lora(sd_pipeline(tmp / "parts2"), tmp / "style", seed=3, text=True)


def test_translation_to_the_own_lora_variant_equals_two_separate_models(sd):
    folder, style = sd
    kw = dict(steps=6, strength=0.8, source_condition="a photo of a cat", target_condition="a red cat")
    source, target = load_pair(str(folder), str(folder), target_lora=[f"{style}:0.8"])
    assert target.pipe is source.pipe and target.unet is source.unet  # one set of weights
    one = translate(photos(2), source, target, generator=torch.Generator().manual_seed(1), **kw).images
    two = translate(photos(2), load(folder), load(folder, lora=[f"{style}:0.8"]),
                    generator=torch.Generator().manual_seed(1), **kw).images
    plain = translate(photos(2), source, source, generator=torch.Generator().manual_seed(1), **kw).images
    # the same network calls on the same CPU (the adapters switched between them)
    assert (one - two).abs().max() < 1e-5
    assert (one - plain).abs().max() > 1e-3  # the variant's adapters (network and text encoder) are on
    shared = device_bytes(source, "cpu")
    copies = device_bytes(load(folder), "cpu") + device_bytes(load(folder, lora=[str(style)]), "cpu")
    print(f"LoRA variant: {shared} bytes in one load against {copies} in two ({shared / copies:.2f}×)")
    assert shared < 0.6 * copies


def test_the_base_model_stays_itself_beside_its_variant(sd):
    folder, style = sd
    base = load(folder)
    kw = dict(source_prompt="a cat", prompt="a dog", steps=5)
    before = edit(base, photos(1), generator=torch.Generator().manual_seed(0), **kw).images
    variant = base.with_lora(style, 0.8)
    styled = edit(variant, photos(1), generator=torch.Generator().manual_seed(0), **kw).images
    after = edit(base, photos(1), generator=torch.Generator().manual_seed(0), **kw).images
    alone = edit(load(folder, lora=[f"{style}:0.8"]), photos(1), generator=torch.Generator().manual_seed(0),
                 **kw).images
    assert torch.equal(before, after)  # the adapters are off again for the base's calls
    assert (styled - alone).abs().max() < 1e-5 and (styled - before).abs().max() > 1e-3
    x0 = to_model_space(variant, photos(1), [torch.Generator().manual_seed(2)])
    z = encode(x0, variant, steps=5, prompt="a cat", generator=torch.Generator().manual_seed(3))
    assert (decode(z, base.with_lora(style, 0.8)) - x0).abs().max() < 1e-5


def test_the_cli_translates_to_the_own_style_in_one_load(sd, tmp_path):
    import json

    folder, style = sd
    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["translate", str(tmp_path / "cat.png"), "--source-model", str(folder),
                                    "--target-model", str(folder), "--target-lora", f"{style}:0.8",
                                    "--source-prompt", "a cat", "--target-prompt", "a red cat", "--steps", "4",
                                    "--quiet", "--json", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    from PIL import Image

    out = json.loads(res.output)["results"][0]["output"]
    assert f'"target_lora": ["{style}:0.8"]' in Image.open(out).text["cyclediff"]
    with pytest.raises(CycleDiffError, match="a LoRA needs a text-to-image model"):
        load_pair("demo:digits", "demo:digits", target_lora=[str(style)])


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_lora_on_sd3_and_flux_equals_diffusers_fused_weights(family, tmp_path):
    """Our adapter (peft layers switched on) against diffusers' ``fuse_lora`` of the same file (weights merged):
    one edit within float32 rounding; the latent space stays exact under the adapter."""
    build = {"sd3": sd3_pipeline, "flux": flux_pipeline}[family]
    lora = make_lora(build(tmp_path / "l"), tmp_path / "lora", seed=4, gain=30.0)  # visible through the tiny VAE
    kw = dict(source_prompt="a cat", prompt="a dog", steps=5)
    ours = from_pipe(build(tmp_path / "a")).load_lora(lora, 0.9)
    fused_pipe = build(tmp_path / "b")
    fused_pipe.load_lora_weights(str(lora), adapter_name="x")
    fused_pipe.fuse_lora(lora_scale=0.9, adapter_names=["x"])
    fused_pipe.unload_lora_weights()
    plain = edit(from_pipe(build(tmp_path / "c")), photos(1), generator=torch.Generator().manual_seed(0), **kw).images
    a = edit(ours, photos(1), generator=torch.Generator().manual_seed(0), **kw).images
    b = edit(from_pipe(fused_pipe), photos(1), generator=torch.Generator().manual_seed(0), **kw).images
    assert (a - plain).abs().max() > 1e-3
    assert (a - b).abs().max() < 1e-4  # merged weights round differently from the adapter's separate product
    x0 = to_model_space(ours, photos(1), [torch.Generator().manual_seed(2)])
    z = encode(x0, ours, steps=5, prompt="a cat", generator=torch.Generator().manual_seed(3))
    assert (decode(z, ours) - x0).abs().max() < 1e-5

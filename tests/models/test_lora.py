"""LoRA adapters (``model.load_lora``, ``load(..., lora=)``, ``--lora``): an edit with a LoRA made here (peft) equals
diffusers' ``CycleDiffusionPipeline`` with the same LoRA loaded; the stamp of an output records it; a LoRA of another
family, a legacy pickle, or a LoRA on a pixel model is one line."""

from __future__ import annotations

import pickle

import pytest
import torch
from click.testing import CliRunner
from diffusers import CycleDiffusionPipeline, DDIMScheduler, StableDiffusionPipeline

from cyclediff import CycleDiffError, CycleDiffusion, edit
from cyclediff.cli import main
from cyclediff.models import StableDiffusion, load
from tiny_sd import SD_SCHEDULER, photos, sd_pipeline

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    """A rank-4 LoRA on the tiny UNet's attention projections, random (non-zero) weights, saved as diffusers saves
    one (pytorch_lora_weights.safetensors)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    tmp = tmp_path_factory.mktemp("lora")
    pipe = sd_pipeline(tmp / "base")
    torch.manual_seed(5)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(tmp / "style", unet_lora_layers=state)
    return tmp / "style" / "pytorch_lora_weights.safetensors"


def test_an_edit_with_a_lora_equals_diffusers_cycle_diffusion_with_it(tmp_path, lora_file):
    x = photos(1, seed=3)
    settings = dict(prompt="a dog", source_prompt="a cat", strength=0.8, guidance_scale=3.0, source_guidance_scale=1.0)
    eta = 0.1
    base = sd_pipeline(tmp_path / "ours")
    plain = edit(StableDiffusion.from_pipe(base), x, steps=8, generator=torch.Generator().manual_seed(7),
                 method=CycleDiffusion(eta=eta), **settings).images
    ours = edit(StableDiffusion.from_pipe(base).load_lora(lora_file, 0.7), x, steps=8,
                generator=torch.Generator().manual_seed(7), method=CycleDiffusion(eta=eta), **settings).images
    other = sd_pipeline(tmp_path / "ref")
    ref = CycleDiffusionPipeline(vae=other.vae, text_encoder=other.text_encoder, tokenizer=other.tokenizer,
                                 unet=other.unet, scheduler=DDIMScheduler(**SD_SCHEDULER), safety_checker=None,
                                 feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    ref.load_lora_weights(str(lora_file), adapter_name="style")
    ref.set_adapters(["style"], [0.7])
    expected = ref(image=x, output_type="pt", num_inference_steps=8, generator=torch.Generator().manual_seed(7),
                   eta=eta, **settings).images
    assert (ours - plain).abs().max() > 1e-3  # the adapter changes the edit
    assert (ours - expected).abs().max() < 1e-4


def test_the_cli_takes_lora_and_records_it_with_each_output(tmp_path, lora_file):
    folder = tmp_path / "sd"
    sd_pipeline(tmp_path / "parts").save_pretrained(folder)
    x = photos(1, seed=2)
    from cyclediff._images import load_image, save_image

    save_image(x[0], tmp_path / "cat.png")
    args = ["edit", str(tmp_path / "cat.png"), "--model", str(folder), "--source-prompt", "a cat", "--prompt",
            "a dog", "--steps", "6", "--quiet", "--json"]
    res = CliRunner().invoke(main, [*args, "--lora", f"{lora_file}:0.5", "--out", str(tmp_path / "with")])
    assert res.exit_code == 0, res.output
    out = next((tmp_path / "with").glob("*.png"))
    from PIL import Image

    assert f'"lora": ["{lora_file}:0.5"]' in Image.open(out).text["cyclediff"]
    api = edit(load(folder, lora=[f"{lora_file}:0.5"]), load_image(tmp_path / "cat.png"), source_prompt="a cat",
               prompt="a dog", steps=6, generator=torch.Generator().manual_seed(0)).images
    assert (load_image(out) - api).abs().max() <= 1 / 255 + 1e-6


def test_a_lora_of_another_family_a_pickle_or_on_a_pixel_model_is_one_line(tmp_path, lora_file):
    from safetensors.torch import save_file

    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path / "sd"))
    flux = tmp_path / "flux_lora.safetensors"
    save_file({"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 16)}, flux)
    with pytest.raises(CycleDiffError, match="looks like a LoRA for FLUX; this model is a Stable Diffusion UNet"):
        sd.load_lora(flux)

    class Bomb:
        def __reduce__(self):
            return (print, ("unpickled!",))

    legacy = tmp_path / "old_lora.bin"
    legacy.write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(CycleDiffError, match="legacy pickle"):
        sd.load_lora(legacy)
    with pytest.raises(CycleDiffError, match="a LoRA needs a text-to-image model"):
        load("demo:digits", lora=[str(lora_file)])


def test_a_loaded_lora_is_frozen_like_the_rest_of_the_model(tmp_path, lora_file):
    """peft makes a new adapter trainable; sampling outside no_grad then built autograd graphs through it."""
    model = StableDiffusion.from_pipe(sd_pipeline(tmp_path / "frozen")).load_lora(lora_file, 0.7)
    trainable = [n for n, p in model.pipe.unet.named_parameters() if p.requires_grad]
    assert not trainable, trainable[:3]

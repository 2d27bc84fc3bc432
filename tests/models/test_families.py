"""Model families as records (models/families.py): one table says which adapter takes a pipeline, which family a
checkpoint's or a LoRA's tensor names are for, and each adapter names its family by a class attribute. A LoRA of
generic DiT layers (``transformer_blocks``, which most DiTs have) is not taken for SD3, and rewording an adapter's
display text leaves the LoRA family check on."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from cyclediff import CycleDiffError
from cyclediff.models import FlowPixelDenoiser, Flux, PixelDenoiser, StableDiffusion, StableDiffusion3, from_pipe
from cyclediff.models.families import FAMILIES, family, family_of_keys, family_of_pipeline, lora_match
from cyclediff.models.lora import lora_family
from tiny_sd import flux_pipeline, make_lora, sd_pipeline

FLUX_NET = ["x_embedder.weight", "context_embedder.weight", "transformer_blocks.0.attn.to_q.weight",
            "single_transformer_blocks.0.attn.to_q.weight", "time_text_embed.guidance_embedder.linear_1.weight"]
SD3_NET = ["pos_embed.proj.weight", "context_embedder.weight", "transformer_blocks.0.attn.to_q.weight"]
ORDER = ["chroma", "flux", "sd3", "latent-diffusion", "flow-pixel", "pixel"]


def test_every_adapter_names_its_record_and_the_record_names_it_back():
    for cls in (StableDiffusion, StableDiffusion3, Flux, PixelDenoiser, FlowPixelDenoiser):
        assert family(cls.family).adapter_class() is cls
    names = [f.name for f in FAMILIES]  # other families sit between these; these keep their order of asking
    assert [n for n in names if n in ORDER] == ORDER
    with pytest.raises(CycleDiffError, match=f"unknown model family 'no-such'; the families are {', '.join(names)}$") \
            as err:
        family("no-such")
    assert "\n" not in str(err.value)


def test_pipelines_are_told_by_class_name_then_by_components():
    assert family_of_pipeline("StableDiffusion3Pipeline", {}).name == "sd3"
    assert family_of_pipeline("FluxImg2ImgPipeline", {}).name == "flux"
    sd = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "text_encoder": "CLIPTextModel"}
    assert family_of_pipeline("StableDiffusionXLPipeline", sd).name == "latent-diffusion"
    assert family_of_pipeline("DDPMPipeline", {"unet": "UNet2DModel", "scheduler": "DDPMScheduler"}).name == "pixel"
    flow = {"unet": "UNet2DModel", "scheduler": "FlowMatchEulerDiscreteScheduler"}
    assert family_of_pipeline("DDPMPipeline", flow).name == "flow-pixel"
    assert family_of_pipeline("PixArtAlphaPipeline", {"transformer": "PixArtTransformer2DModel"}) is None


def test_network_keys_generic_dit_layers_are_no_family_of_their_own():
    assert family_of_keys(FLUX_NET).name == "flux"  # FLUX also has SD3's layout: its own keys are asked first
    assert family_of_keys(SD3_NET).name == "sd3"
    assert family_of_keys(["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"]).name == "sd3"
    assert family_of_keys(["double_blocks.0.img_attn.qkv.weight"]).name == "flux"
    assert family_of_keys(["down_blocks.0.resnets.0.conv1.weight", "time_embedding.linear_1.weight"]).name \
        == "latent-diffusion"
    assert family_of_keys(["transformer_blocks.0.attn.to_q.weight", "context_embedder.weight"]) is None


def test_lora_keys_of_generic_dit_layers_are_not_taken_for_sd3():
    generic = ["transformer.transformer_blocks.0.attn.to_q.lora_A.weight",
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight"]
    assert lora_family(generic) is None
    assert lora_family(["lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight"]) == "SD3"
    assert lora_family(["lora_unet_double_blocks_0_img_attn_proj.lora_down.weight"]) == "FLUX"
    found = lora_match(["unet.down_blocks.0.attn.to_q.lora_A.weight", "text_encoder_2.x.lora_A.weight"])
    assert (found[0].name, found[1]) == ("latent-diffusion", "SDXL")


@pytest.fixture(scope="module")
def double_block_lora(tmp_path_factory):
    """A FLUX LoRA on its double-stream blocks only (diffusers' names: ``transformer.transformer_blocks.*``, the
    names SD3's blocks have too), as many published FLUX LoRAs are."""
    tmp = tmp_path_factory.mktemp("flux_lora")
    file = make_lora(flux_pipeline(tmp / "p"), tmp / "lora", seed=3, gain=30.0)
    state = {k: v for k, v in load_file(str(file)).items() if "single_transformer_blocks" not in k}
    assert state and all(k.startswith("transformer.transformer_blocks.") for k in state)
    save_file(state, tmp / "double_blocks.safetensors")
    return tmp / "double_blocks.safetensors"


def _prediction(model):
    torch.manual_seed(0)
    x = torch.randn(1, *model.sample_shape)
    return model(x, 500.0, model.prepare_condition(1, prompt="a cat"))  # halfway along the flow


def test_a_flux_lora_of_its_double_blocks_loads_into_flux(tmp_path, double_block_lora):
    """Was refused: its ``transformer.transformer_blocks`` keys were all taken for SD3 ("looks like a LoRA for
    SD3; this model is FLUX's joint attention")."""
    plain = from_pipe(flux_pipeline(tmp_path / "a"))
    styled = from_pipe(flux_pipeline(tmp_path / "a")).load_lora(double_block_lora, 1.0)
    assert (_prediction(styled) - _prediction(plain)).abs().max() > 1e-4


def test_the_lora_family_check_reads_the_adapter_class_not_its_wording(tmp_path, monkeypatch):
    """The check was keyed by ``model.kind``'s text: a reworded message turned it off silently."""
    flux_lora = tmp_path / "flux_lora.safetensors"
    save_file({"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 16)}, flux_lora)
    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path / "sd"))
    monkeypatch.setattr(StableDiffusion, "kind", "an SD UNet, in other words")
    with pytest.raises(CycleDiffError, match="looks like a LoRA for FLUX; this model is an SD UNet, in other words "
                                             r"\(SDXL / Stable Diffusion\)") as err:
        sd.load_lora(flux_lora)
    assert "\n" not in str(err.value)


def test_a_flow_pixel_pipeline_is_wrapped_as_a_flow_model(tmp_path):
    """from_pipe took every pixel pipeline for a DDPM one (the FlowMatch scheduler was only looked at by
    PixelDenoiser.from_pretrained)."""
    from diffusers import DDPMPipeline, FlowMatchEulerDiscreteScheduler

    from conftest import tiny_unet

    model = from_pipe(DDPMPipeline(unet=tiny_unet(seed=1), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0)))
    assert isinstance(model, FlowPixelDenoiser) and model.schedule.path == "rectified_flow"


def test_the_pixel_adapter_is_chosen_by_the_record_and_a_mismatch_is_one_line(tmp_path):
    """PixelDenoiser no longer names its flow subclass: the scheduler's record picks the adapter; asking the flow
    adapter for a DDPM UNet was a FlowPixelDenoiser over a DDPM config."""
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    from conftest import tiny_unet

    for name, scheduler in (("ddpm", DDPMScheduler()), ("flow", FlowMatchEulerDiscreteScheduler(shift=3.0))):
        tiny_unet(seed=1).save_pretrained(tmp_path / name)
        scheduler.save_config(tmp_path / name)
    assert type(PixelDenoiser.from_pretrained(tmp_path / "flow")) is FlowPixelDenoiser
    assert type(PixelDenoiser.from_pretrained(tmp_path / "ddpm")) is PixelDenoiser
    with pytest.raises(CycleDiffError, match=r"ddpm is a pixel UNet \(its scheduler is DDPMScheduler\), not a "
                                             "FlowPixelDenoiser; load it with cyclediff.models.load") as err:
        FlowPixelDenoiser.from_pretrained(tmp_path / "ddpm")
    assert "\n" not in str(err.value)


def test_a_family_takes_the_loras_of_a_layout_it_shares_and_refuses_another_familys():
    """Chroma's and HunyuanVideo's LoRAs carry FLUX's block names (single_transformer_blocks): they were refused
    as FLUX LoRAs on their own models; an SD3 LoRA is still refused."""
    from pathlib import Path

    from cyclediff.errors import CycleDiffError
    from cyclediff.models.lora import check_lora_family

    class Chroma:
        family, kind = "chroma", "Chroma"

    class Hunyuan:
        family, kind = "hunyuan-video", "HunyuanVideo"

    flux_layout = ["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"]
    for model in (Chroma(), Hunyuan()):
        check_lora_family(Path("style.safetensors"), flux_layout, model)
    with pytest.raises(CycleDiffError, match="looks like a LoRA for SD3"):
        check_lora_family(Path("sd3.safetensors"), ["transformer.joint_blocks.0.x_block.attn.qkv.lora_A.weight"],
                          Chroma())

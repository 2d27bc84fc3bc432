"""Z-Image on a tiny pipeline built offline (a word-level tokenizer with a chat template made with the tokenizers
library, a small Qwen3): a seed gives ``ZImagePipeline``'s own image (no guidance; classifier-free guidance with
and without a negative prompt, where the pipeline's g is our w − 1; its negated output and its 1 − σ time), SDEdit's
path equals ``ZImageImg2ImgPipeline``, exact reconstruction, batch invariance under guidance with prompts of other
lengths in one call, loading (folder, from_pipe, single file) and the CLI."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from test_pipeline_parity import NEGATIVE, PROMPT, SENSITIVE, TOLERANCE, assert_parity, ours, theirs

from conftest import gens
from cyclediff import decode, edit, encode
from cyclediff._noise import gaussian_like
from cyclediff.baselines import ddim_generate
from cyclediff.cli import main
from cyclediff.encoder import start_point
from cyclediff.errors import CycleDiffError
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_images, to_model_space
from cyclediff.models.z_image import ZImage
from tiny_sd import photos
from tiny_z_image import z_image_pipeline

EXACT = 1e-5  # float32 reconstruction bound of the issue
BATCH_ULPS = 1e-5  # a batched transformer call against separate ones: sums in another order
CFG = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}


def pipeline_scale(condition: dict) -> dict:
    """The pipeline's call for our condition: its guidance_scale g is our w − 1 (g = 0: none)."""
    return {**condition, "guidance_scale": condition["guidance_scale"] - 1}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = z_image_pipeline(tmp_path_factory.mktemp("z_image"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def zimage(pipe):
    return ZImage.from_pipe(pipe)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, other, size", [
    ({"guidance_scale": 1.0}, CFG, (16, 16)),
    (CFG, {"guidance_scale": 1.0}, (16, 16)),
    (CFG, {"guidance_scale": 2.0, "negative_prompt": NEGATIVE}, (16, 32)),
    ({"guidance_scale": 4.0}, CFG, (16, 16)),  # the empty negative prompt, as the pipeline's default
], ids=["no-guidance", "cfg-negative", "cfg-negative-16x32", "cfg-empty-negative"])
def test_a_seed_gives_z_images_own_image(zimage, pipe, guidance, other, size):
    assert_parity(zimage, pipe, size=size, pipe_call=pipeline_scale(guidance), other_guidance=other, **guidance)


@pytest.mark.parametrize("strength, guidance", [(0.5, {"guidance_scale": 1.0}), (0.75, CFG), (1.0, CFG)])
def test_sdedits_path_is_z_images_img2img_pipeline(zimage, pipe, strength, guidance):
    """The image's VAE posterior draw, then x_start from q(x_t | x0) at the strength's first step (the pipeline's
    two draws, in its order), then the ODE on the strength-cut grid: ``ZImageImg2ImgPipeline``'s image.
    (``edit(method="sdedit")`` refuses η = 0 and draws fresh noise in every step at η > 0, which this
    deterministic pipeline does not: its path is composed here from the same parts.)"""
    from diffusers import ZImageImg2ImgPipeline

    img2img = ZImageImg2ImgPipeline.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    x = photos(1, seed=1)

    def ours(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        x0 = to_model_space(zimage, x, g)
        timesteps = list(zimage.schedule_for(tuple(x0.shape)).timesteps(4, strength))
        x_start = start_point(x0, zimage.schedule.alpha_bar_at(timesteps[0]), gaussian_like(x0, g))
        cond = zimage.prepare_condition(1, prompt=PROMPT, **guidance)
        return to_images(zimage, ddim_generate(x_start, zimage, cond, timesteps))

    with torch.no_grad():
        reference = img2img(PROMPT, image=x, strength=strength, num_inference_steps=4, height=16, width=16,
                            generator=torch.Generator().manual_seed(5), output_type="pt",
                            **pipeline_scale(guidance)).images
    assert float((ours(5) - reference).abs().max()) <= TOLERANCE
    assert float((ours(6) - reference).abs().max()) > SENSITIVE


def test_a_z_image_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with guidance; the base model stays the base."""
    from tiny_sd import make_lora

    file = make_lora(z_image_pipeline(tmp_path / "donor"), tmp_path / "lora", seed=7, gain=30.0)
    fused = z_image_pipeline(tmp_path / "fused")
    fused.set_progress_bar_config(disable=True)
    fused.load_lora_weights(str(file))
    fused.fuse_lora()
    reference = theirs(fused, **pipeline_scale(CFG))
    base = ZImage.from_pipe(z_image_pipeline(tmp_path / "base"))
    styled = base.with_lora(file)
    with torch.no_grad():  # the LoRA's parameters ask for gradients
        diff = float((ours(styled, **CFG) - reference).abs().max())
        assert diff <= TOLERANCE, diff
        assert float((ours(base, **CFG) - reference).abs().max()) > SENSITIVE


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_z_image_encoding_gives_its_latents_back(zimage, eta, strength):
    x0 = to_model_space(zimage, photos(2), gens(0, 1))
    z = encode(x0, zimage, steps=6, strength=strength, eta=eta, generator=gens(0, 1), prompt="a cat", **CFG)
    assert z.path == "rectified_flow"
    torch.testing.assert_close(decode(z, zimage), x0, rtol=0, atol=EXACT)


def test_z_image_edits_are_batch_invariant_under_guidance(zimage):
    """Prompts of other lengths (source, target, negative) share one transformer call, each row its own length."""
    x = photos(2)
    kw = dict(steps=5, guidance_scale=4.0, source_guidance_scale=2.0)
    both = edit(zimage, x, source_prompt=["a cat", "a photo of the red car"], prompt=["a dog", "a blue car"],
                negative_prompt=["blue", "a horse of the car"], generator=gens(0, 1), **kw).images
    one = edit(zimage, x[1:], source_prompt="a photo of the red car", prompt="a blue car",
               negative_prompt="a horse of the car", generator=gens(1), **kw).images
    torch.testing.assert_close(both[1:], one, rtol=0, atol=BATCH_ULPS)
    plain = edit(zimage, x[1:], source_prompt="a photo of the red car", prompt="a blue car", generator=gens(1),
                 **kw).images
    assert float((plain - one).abs().max()) > SENSITIVE  # the negative prompt reaches the target's rows


def test_z_image_conditions_are_checked_in_one_line(zimage):
    with pytest.raises(CycleDiffError, match="a Z-Image model takes no condition 'cfg_truncation'") as err:
        zimage.prepare_condition(1, prompt="a cat", cfg_truncation=0.5)
    assert "\n" not in str(err.value)
    with pytest.raises(CycleDiffError, match="guidance_scale"):
        zimage.prepare_condition(1, prompt="a cat", guidance_scale=-1.0)


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_z_image(tmp_path, pipe):
    from diffusers import ZImageImg2ImgPipeline

    from cyclediff._images import save_image

    assert isinstance(from_pipe(pipe), ZImage)
    assert isinstance(from_pipe(ZImageImg2ImgPipeline.from_pipe(pipe)), ZImage)
    pipe.save_pretrained(tmp_path / "z")
    model = load(str(tmp_path / "z"))
    assert isinstance(model, ZImage) and model.family == "z-image"
    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(tmp_path / "z"),
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--negative-prompt", "blue",
                                    "--steps", "4", "--guidance-scale", "4", "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("cat_a-dog_*.png"))) == 1


def test_a_z_image_checkpoint_goes_to_its_loader(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    seen = []
    monkeypatch.setattr(ZImage, "from_pretrained", classmethod(lambda c, src, **kw: seen.append(c)))
    save_file({"cap_pad_token": torch.zeros(1), "layers.0.adaLN_modulation.0.weight": torch.zeros(1)},
              str(tmp_path / "z.safetensors"))
    load(str(tmp_path / "z.safetensors"))
    assert seen == [ZImage]

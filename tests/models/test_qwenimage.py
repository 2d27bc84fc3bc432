"""Qwen-Image on a tiny pipeline built offline (tests/tiny_qwenimage.py): a seed gives the pipeline's own image
with and without its true CFG (norm rescale included), SDEdit is its img2img pipeline, exact reconstruction, batch
invariance under guidance with prompts of different lengths, the frame-axis VAE, loading and the CLI."""

from __future__ import annotations

import pytest
import torch
from family_checks import (
    BATCH_ULPS,
    PROMPT,
    SEED,
    SENSITIVE,
    STEPS,
    TOLERANCE,
    assert_cli_edits,
    assert_lora_is_fused,
    assert_reconstructs,
    ours,
    seed,
    theirs,
)

from conftest import gens
from cyclediff import edit
from cyclediff.errors import CycleDiffError
from cyclediff.models import from_pipe, load
from cyclediff.models import qwenimage as qwen_module
from cyclediff.models.codec import to_model_space
from cyclediff.models.qwenimage import QwenImage
from tiny_qwenimage import qwenimage_pipeline
from tiny_sd import photos

NEGATIVE = LONG = "a photo of a dog in the snow"


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return qwenimage_pipeline(tmp_path_factory.mktemp("qwenimage"))


@pytest.fixture(scope="module")
def qwen(pipe):
    return QwenImage.from_pipe(pipe)


def far(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) > SENSITIVE


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("condition, call, size", [
    ({}, {}, (16, 16)),
    ({}, {}, (16, 32)),
    ({"guidance_scale": 4.0, "negative_prompt": NEGATIVE}, {"true_cfg_scale": 4.0, "negative_prompt": NEGATIVE},
     (16, 16)),
    ({"guidance_scale": 4.0, "negative_prompt": NEGATIVE}, {"true_cfg_scale": 4.0, "negative_prompt": NEGATIVE},
     (32, 16)),
    ({"guidance_scale": 2.5}, {"true_cfg_scale": 2.5, "negative_prompt": " "}, (16, 16)),
], ids=["no-guidance", "no-guidance-16x32", "true-cfg", "true-cfg-32x16", "true-cfg-default-negative"])
def test_a_seed_gives_qwen_images_own_image(pipe, qwen, condition, call, size):
    """The pipeline's draw, grid (Qwen-Image's exponential shift with shift_terminal, the image-size μ), packing,
    template-dropped prompt embeddings (prompt and negative of different lengths: padded, masked in one call), true
    CFG with its norm rescale and the per-channel VAE normalisation, in one check."""
    mine, reference = ours(qwen, size=size, **condition), theirs(pipe, size=size, **call)
    assert mine.shape == reference.shape == (1, 3, *size)
    assert float((mine - reference).abs().max()) <= TOLERANCE
    assert far(ours(qwen, SEED + 1, size=size, **condition), reference)
    other = {"guidance_scale": 1.0} if condition else {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}
    assert far(ours(qwen, size=size, **other), reference)


def test_the_norm_rescale_is_what_makes_the_pipelines_image(pipe, qwen, monkeypatch):
    """Plain CFG (no rescale to the conditional velocity's norm) is another image: the check sees the formula."""
    guided = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}
    reference = theirs(pipe, true_cfg_scale=4.0, negative_prompt=NEGATIVE)
    monkeypatch.setattr(qwen_module, "true_cfg", lambda u, c, w: u + w * (c - u))
    assert far(ours(qwen, **guided), reference)


def test_sdedit_at_eta_zero_is_qwen_images_img2img_pipeline(pipe, qwen):
    """SDEdit at η = 0 — its start x_σ = (1 − σ)·x0 + σ·ε drawn after the VAE posterior's draw from the same
    generator, then the sampler's ODE on the strength-cut grid — is QwenImageImg2ImgPipeline."""
    from diffusers import QwenImageImg2ImgPipeline

    from cyclediff import SDEdit, edit

    img2img = QwenImageImg2ImgPipeline(**pipe.components)
    x = photos(1, seed=4)

    def mine(strength, s=SEED, guidance_scale=1.0, **condition):
        return edit(qwen, x, source_prompt=PROMPT, prompt=PROMPT, strength=strength, steps=STEPS,
                    guidance_scale=guidance_scale, method=SDEdit(eta=0), generator=seed(s), **condition).images

    for strength, guided in ((0.6, {}), (0.75, {"guidance_scale": 4.0, "negative_prompt": NEGATIVE})):
        call = {"true_cfg_scale": guided["guidance_scale"], "negative_prompt": NEGATIVE} if guided else {}
        with torch.no_grad():
            reference = img2img(PROMPT, image=x, strength=strength, num_inference_steps=STEPS, height=16, width=16,
                                generator=seed(SEED), output_type="pt", **call).images
        assert float((mine(strength, **guided) - reference).abs().max()) <= TOLERANCE
        assert far(mine(strength, SEED + 1, **guided), reference)


# ---------------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_qwen_image_encoding_gives_its_latents_back(qwen, eta, strength):
    assert_reconstructs(qwen, to_model_space(qwen, photos(2), gens(0, 1)), strength=strength, eta=eta,
                        prompt=["a cat", LONG], guidance_scale=4.0)


def test_qwen_image_edits_are_batch_invariant_under_true_cfg(qwen):
    """Prompts of different lengths in one batch (and source / target branches in one call): item i equals item i
    edited alone with its own generator."""
    x = photos(2)
    kw = dict(steps=5, guidance_scale=4.0, source_guidance_scale=2.0, negative_prompt="bad quality")
    both = edit(qwen, x, source_prompt=["a cat", LONG], prompt=["a dog", "a red car"], generator=gens(0, 1),
                **kw).images
    for i, (src, tgt) in enumerate((("a cat", "a dog"), (LONG, "a red car"))):
        one = edit(qwen, x[i:i + 1], source_prompt=src, prompt=tgt, generator=gens(i), **kw).images
        torch.testing.assert_close(both[i:i + 1], one, rtol=0, atol=BATCH_ULPS)
    plain = edit(qwen, x[:1], source_prompt="a cat", prompt="a dog", generator=gens(0), steps=5,
                 guidance_scale=1.0).images
    assert not torch.equal(both[:1], plain)


# ---------------------------------------------------------------------------------------------------- the parts
def test_the_frame_axis_vae_and_its_per_channel_normalisation_are_the_pipelines(pipe, qwen):
    """Images go in without a frame axis and their latents come out without one; they are the img2img pipeline's
    normalised posterior draw (latents_mean / latents_std per channel)."""
    from diffusers import QwenImageImg2ImgPipeline

    x = photos(1)
    mine = to_model_space(qwen, x, seed(5))
    with torch.no_grad():
        reference = QwenImageImg2ImgPipeline(**pipe.components)._encode_vae_image(
            (x * 2 - 1).unsqueeze(2), seed(5))
    assert mine.shape == (1, 4, 4, 4) and reference.shape == (1, 4, 1, 4, 4)
    torch.testing.assert_close(mine, reference[:, :, 0], rtol=0, atol=1e-6)
    assert qwen.codec.multiple == 8 and qwen.sample_shape == (4, 4, 4)


def test_qwen_image_conditions_refuse_what_they_cannot_mean(qwen, pipe):
    with pytest.raises(CycleDiffError, match="true CFG scale is guidance_scale"):
        qwen.prepare_condition(1, prompt="a dog", true_cfg_scale=4.0)
    with pytest.raises(CycleDiffError, match="takes no condition 'guidance'"):
        qwen.prepare_condition(1, prompt="a dog", guidance=4.0)
    with pytest.raises(CycleDiffError, match="max_sequence_length"):
        QwenImage(pipe, max_sequence_length=2048)
    short = QwenImage(pipe, max_sequence_length=4)
    with pytest.warns(UserWarning, match="reads the first 4"):
        c = short.prepare_condition(1, prompt=LONG)
    assert c.inputs["cond"].shape[1] == 4


def test_from_pipe_load_and_the_cli_take_qwen_image(tmp_path, pipe):
    assert isinstance(from_pipe(pipe), QwenImage)
    pipe.save_pretrained(tmp_path / "qwen")
    model = load(str(tmp_path / "qwen"))
    assert isinstance(model, QwenImage) and model.family == "qwenimage"
    assert_cli_edits(tmp_path, tmp_path / "qwen", photos(1)[0], "--steps", "4", "--guidance-scale", "4")


def test_a_single_qwen_image_transformer_file_loads_with_its_base(tmp_path, pipe, qwen):
    """A transformer file (told as Qwen-Image's by its tensor names) loads into the pipeline of --base; without a
    reachable base it is one error naming the file's family."""
    from safetensors.torch import save_file

    pipe.save_pretrained(tmp_path / "base")
    file = tmp_path / "qwen-transformer.safetensors"
    save_file({k: v.contiguous() for k, v in pipe.transformer.state_dict().items()}, str(file))
    model = load(str(file), base=str(tmp_path / "base"))
    assert isinstance(model, QwenImage) and model.model_id == str(file)
    x = torch.randn(1, 4, 4, 4, generator=seed(0))
    c = qwen.prepare_condition(1, prompt=PROMPT)
    torch.testing.assert_close(model(x, 500.0, model.prepare_condition(1, prompt=PROMPT)), qwen(x, 500.0, c))
    with pytest.raises(CycleDiffError, match="could not load a Qwen-Image transformer model"):
        load(str(file))


def test_a_qwen_image_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed; the base model stays the base."""
    assert_lora_is_fused(qwenimage_pipeline, QwenImage.from_pipe, tmp_path,
                         {"guidance_scale": 4.0, "negative_prompt": NEGATIVE},
                         pipe_call={"true_cfg_scale": 4.0, "negative_prompt": NEGATIVE})

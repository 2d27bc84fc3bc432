"""HunyuanVideo 1.5 on a tiny pipeline built offline (Qwen2.5-VL's language model under the pipeline's chat
template, ByT5 for quoted text, the 4×16× causal VAE, a transformer over 1×1×1 patches, the pipeline's
ClassifierFreeGuidance guider), with 5-D latents through the core: a seed gives ``HunyuanVideo15Pipeline``'s own
clip (with and without guidance, a negative prompt, the guider's rescale, another size), exact reconstruction,
batch invariance, fit_clip, loading, and the one-line refusals (LoRA, single files, guiders it does not follow)."""

from __future__ import annotations

import pytest
import torch
from family_checks import NEGATIVE, SENSITIVE, assert_reconstructs, one_line_error
from video_checks import VideoFamily, assert_cli_edits_clip

from conftest import gens
from cyclediff import edit
from cyclediff.errors import CycleDiffError
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.hunyuan_video15 import HunyuanVideo15
from tiny_hunyuan_video15 import FRAMES, GLYPH_TOKENS, SIZE, TOKENS, hunyuan15_pipeline

PROMPT = 'a red cat holding a sign "cat"'  # the quoted text goes through ByT5 too
# a batched transformer call against separate ones sums in another order: ulps of its output a step; the tiny
# random VAE's decoder moves [0, 1] pixels by ~40× that
BATCH_PIXELS = 5e-5


def guider(pipe, call: dict) -> dict:
    """The pipeline's guidance is its guider's: the call's scale and rescale set it."""
    from diffusers.guiders import ClassifierFreeGuidance

    call = dict(call)
    pipe.guider = ClassifierFreeGuidance(guidance_scale=call.pop("guidance_scale"),
                                         guidance_rescale=call.pop("guidance_rescale", 0.0))
    return call


HY15 = VideoFamily(FRAMES, (SIZE, SIZE), prompt=PROMPT, steps=2, prepare=guider)
clips = HY15.clips


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return hunyuan15_pipeline(tmp_path_factory.mktemp("hunyuan15"))


@pytest.fixture(scope="module")
def model(pipe):
    return HunyuanVideo15(pipe, frames=FRAMES, size=(SIZE, SIZE))


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, other, frames, size", [
    ({"guidance_scale": 1.0}, {"guidance_scale": 6.0}, FRAMES, (SIZE, SIZE)),
    ({"guidance_scale": 6.0}, {"guidance_scale": 3.0}, FRAMES, (SIZE, SIZE)),
    ({"guidance_scale": 4.0, "negative_prompt": NEGATIVE}, {"negative_prompt": "a car"}, FRAMES, (SIZE, SIZE)),
    ({"guidance_scale": 4.0, "guidance_rescale": 0.7}, {"guidance_rescale": 0.0}, FRAMES, (SIZE, SIZE)),
    ({"guidance_scale": 6.0}, {"guidance_scale": 1.0}, 9, (32, 48)),
], ids=["no-guidance", "cfg-6", "cfg-negative", "cfg-rescale", "cfg-9-frames-32x48"])
def test_a_seed_gives_hunyuan_video15s_own_clip(model, pipe, guidance, other, frames, size):
    HY15.assert_parity(model, pipe, other, frames, size, **guidance)


def test_the_prompt_is_read_as_the_pipeline_reads_it(model, pipe):
    """Qwen's states of the prompt after the system prefix, ByT5's of its quoted text (none: zeros, an empty
    mask); the guider's scale and rescale are the defaults, a scale of 1 asks no negative."""
    from diffusers.guiders import ClassifierFreeGuidance

    c = model.prepare_condition(2, prompt=[PROMPT, "a red cat"], guidance_scale=1.0)
    states, mask, glyphs, glyph_mask = c.inputs["cond"]
    assert states.shape == (2, TOKENS, 16) and glyphs.shape == (2, GLYPH_TOKENS, 8)
    assert mask[1].tolist() == [1] * 8 + [0] * (TOKENS - 8)  # a red cat, then the template's end of turn
    assert glyph_mask[0].all() and not glyph_mask[1].any() and not glyphs[1].any()
    assert c.inputs["uncond"] is None and c.record["guidance_scale"] == 1.0
    before, pipe.guider = pipe.guider, ClassifierFreeGuidance(guidance_scale=5.0, guidance_rescale=0.25)
    try:
        c = model.prepare_condition(1, prompt=PROMPT)
    finally:
        pipe.guider = before
    assert (c.record["guidance_scale"], c.record["guidance_rescale"]) == (5.0, 0.25)
    assert c.inputs["uncond"] is not None
    with pytest.raises(CycleDiffError, match=r"guidance_rescale must lie in \[0, 1\]"):
        model.prepare_condition(1, prompt=PROMPT, guidance_rescale=2.0)


def test_guiders_it_does_not_follow_are_refused_in_one_line(tmp_path):
    from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeGuidance

    pipe = hunyuan15_pipeline(tmp_path)
    for guider, words in ((ClassifierFreeGuidance(guidance_scale=6.0, start=0.2), "start=0.2"),
                          (ClassifierFreeGuidance(guidance_scale=6.0, use_original_formulation=True),
                           "use_original_formulation=True"),
                          (AdaptiveProjectedGuidance(guidance_scale=6.0), "AdaptiveProjectedGuidance")):
        pipe.guider = guider
        with pytest.raises(CycleDiffError, match=words) as err:
            HunyuanVideo15(pipe, frames=FRAMES, size=(SIZE, SIZE))
        assert "\n" not in str(err.value) and "ClassifierFreeGuidance(guidance_scale=" in str(err.value)


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_hunyuan_video15_encoding_gives_its_5d_latents_back(model, eta, strength):
    x0 = to_model_space(model, clips(2), None)
    assert x0.shape == (2, 4, 2, 2, 2)
    z = assert_reconstructs(model, x0, strength=strength, eta=eta, steps=4, guidance_scale=4.0,
                            negative_prompt=NEGATIVE)
    assert z.sample_shape == (4, 2, 2, 2)


def test_hunyuan_video15_edits_are_batch_invariant_under_guidance(model):
    """Item i of a batch is item i alone with its own generator (classifier-free guidance at the source's and the
    target's scales, the unconditional rows in the same call)."""
    x = clips(2)
    kw = dict(steps=4, guidance_scale=6.0, source_guidance_scale=2.0)
    both = edit(model, x, source_prompt=["a cat", "a photo of the red car"], prompt=["a dog", 'a sign "car"'],
                generator=gens(0, 1), **kw)
    one = edit(model, x[1:], source_prompt="a photo of the red car", prompt='a sign "car"', generator=gens(1), **kw)
    assert both.images.shape == (2, 3, FRAMES, SIZE, SIZE)
    torch.testing.assert_close(both.images[1:], one.images, rtol=0, atol=BATCH_PIXELS)
    other = edit(model, x[1:], source_prompt="a photo of the red car", prompt="a dog", generator=gens(1), **kw)
    assert float((other.images - one.images).abs().max()) > SENSITIVE  # the target prompt counts


def test_fit_clip_rounds_as_the_pipeline_requires(model, pipe):
    assert model.fit_clip(121, 480, 848) == (121, 480, 848, "")
    f, h, w, note = model.fit_clip(100, 490, 850)
    assert (f, h, w) == (97, 480, 848) and "100 frames cut to 97" in note and "490×850 cut to 480×848" in note
    with pytest.raises(CycleDiffError, match="at least"):
        model.fit_clip(9, 8, 16)
    assert model.frames == FRAMES and model.codec.temporal == 4 and model.codec.multiple == 16
    assert model.sample_shape == (4, 2, 2, 2)
    with torch.no_grad():  # the pipeline's own rounding: (F − 1) // 4 + 1 latent frames, H // 16 latent rows
        made = pipe(PROMPT, num_inference_steps=1, height=40, width=50, num_frames=7, output_type="pt").frames
    assert made.shape[1:] == (model.fit_clip(7, 40, 50)[0], 3, *model.fit_clip(7, 40, 50)[1:3])
    assert HunyuanVideo15(pipe).sample_shape == (4, 31, 2, 2)  # the pipeline's 121 frames at its default size
    with pytest.raises(CycleDiffError, match=r"1 \+ 4·k frames .*fit_clip"):
        to_model_space(model, clips(1, frames=8), None)
    with pytest.raises(CycleDiffError, match="video latents"):
        model.check_sample(torch.zeros(1, 4, 2, 2))


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_and_load_take_hunyuan_video15(tmp_path, pipe):
    assert isinstance(from_pipe(pipe), HunyuanVideo15)
    pipe.save_pretrained(tmp_path / "hunyuan15")
    loaded = load(str(tmp_path / "hunyuan15"))
    assert isinstance(loaded, HunyuanVideo15) and loaded.family == "hunyuan-video-1.5"
    assert loaded.pipe.tokenizer.chat_template == pipe.tokenizer.chat_template


def test_a_single_file_and_a_lora_are_refused_in_one_line(tmp_path, model):
    """diffusers has neither a single-file loader for this transformer nor a LoRA loader for this pipeline; a file
    of its names (diffusers' or Tencent's) is told from HunyuanVideo 1.0's, whose token refiner it shares."""
    from safetensors.torch import save_file

    for keys in (["context_embedder.token_refiner.refiner_blocks.0.norm1.weight", "cond_type_embed.weight"],
                 ["txt_in.individual_token_refiner.blocks.0.norm1.weight", "cond_type_embedding.weight"]):
        save_file({k: torch.zeros(1) for k in keys}, str(tmp_path / "hy15.safetensors"))
        with one_line_error("single HunyuanVideo 1.5 file"):
            load(str(tmp_path / "hy15.safetensors"))
    with one_line_error("HunyuanVideo15Pipeline has no LoRA loader"):
        model.with_lora(tmp_path / "style.safetensors")


def test_the_cli_edits_a_clip_with_a_hunyuan_video15_folder(tmp_path, pipe):
    """6 frames are cut to 5 (said in the status line); the edit is written as an .mp4 of 5 frames at the input's
    frame rate. The saved folder has the pipeline's own text lengths (1000 Qwen tokens, 256 ByT5, 729 image)."""
    pipe.save_pretrained(tmp_path / "hunyuan15")
    assert_cli_edits_clip(tmp_path, tmp_path / "hunyuan15", clips(1, frames=6)[0], FRAMES, "6 frames cut to 5",
                          "--steps", "2", "--guidance-scale", "4")

"""HunyuanVideo on a tiny pipeline built offline (a Llama under the pipeline's own prompt template, CLIP pooled,
HunyuanVideo's causal VAE, a guidance-distilled transformer over 1×2×2 patches), with 5-D latents through the core:
a seed gives ``HunyuanVideoPipeline``'s own clip (its embedded guidance, with and without true classifier-free
guidance), exact reconstruction, batch invariance, the five methods, masks per frame, fit_clip, loading, the CLI."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from family_checks import (
    NEGATIVE,
    PROMPT,
    SENSITIVE,
    assert_lora_is_fused,
    assert_reconstructs,
    load_keys,
    loaders_seen,
)
from safetensors.torch import load_file
from video_checks import VideoFamily, assert_cli_edits_clip, assert_method_edits_clip

from conftest import gens
from cyclediff import CycleDiffusion, edit
from cyclediff.cycle import cycle
from cyclediff.errors import CycleDiffError
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_images, to_model_space
from cyclediff.models.families import lora_match
from cyclediff.models.hunyuan_video import HunyuanVideo
from tiny_hunyuan_video import FRAMES, SIZE, hunyuan_pipeline

TOKENS = 16  # prompts padded to 16 tokens after the template, not 256: the prompt's few tokens then weigh
# a batched transformer call against separate ones sums in another order: an ulp (2.4e-7) of its output a step, on
# the latents (true CFG at 4 scales it up); the tiny random VAE's decoder moves [0, 1] pixels by ~40× that
BATCH_LATENTS, BATCH_PIXELS = 5e-6, 5e-5
TRUE_CFG = {"guidance_scale": 6.0, "true_cfg_scale": 4.0, "negative_prompt": NEGATIVE}


HUNYUAN = VideoFamily(FRAMES, (SIZE, SIZE), call={"max_sequence_length": TOKENS})
clips, ours, theirs = HUNYUAN.clips, HUNYUAN.ours, HUNYUAN.theirs


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = hunyuan_pipeline(tmp_path_factory.mktemp("hunyuan"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def hunyuan(pipe):
    return HunyuanVideo(pipe, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, other, frames, size", [
    ({"guidance_scale": 1.0}, {"guidance_scale": 6.0}, FRAMES, (SIZE, SIZE)),
    ({"guidance_scale": 6.0}, {"guidance_scale": 3.0}, FRAMES, (SIZE, SIZE)),
    (TRUE_CFG, {"true_cfg_scale": 1.5}, FRAMES, (SIZE, SIZE)),
    ({"guidance_scale": 6.0}, {"guidance_scale": 1.0}, 5, (32, 48)),
], ids=["embedded-1", "embedded-6", "true-cfg-negative", "embedded-5-frames-32x48"])
def test_a_seed_gives_hunyuan_videos_own_clip(hunyuan, pipe, guidance, other, frames, size):
    HUNYUAN.assert_parity(hunyuan, pipe, other, frames, size, **guidance)


def test_the_template_is_dropped_and_the_prompt_kept(hunyuan):
    """The pipeline's template is its crop_start (95) tokens under the tiny tokenizer, as under Llama 3's: what the
    transformer reads is the prompt's tokens and the template's end-of-turn, then padding."""
    states, mask = hunyuan.prepare_condition(1, prompt=PROMPT).inputs["cond"]
    assert states.shape == (1, TOKENS, 16) and mask.tolist() == [[1] * 4 + [0] * (TOKENS - 4)]  # a red cat <eot>
    assert hunyuan.prompt_template["crop_start"] == 95
    with pytest.raises(CycleDiffError, match="true_cfg_scale needs a negative_prompt"):
        hunyuan.prepare_condition(1, prompt=PROMPT, true_cfg_scale=3.0)


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_hunyuan_video_encoding_gives_its_5d_latents_back(hunyuan, eta, strength):
    x0 = to_model_space(hunyuan, clips(2), None)
    assert x0.shape == (2, 4, 3, 2, 2)
    z = assert_reconstructs(hunyuan, x0, strength=strength, eta=eta, **TRUE_CFG)
    assert z.sample_shape == (4, 3, 2, 2)


def test_hunyuan_video_edits_are_batch_invariant_under_guidance(hunyuan):
    """Embedded guidance through ``edit`` (the source's and the target's scales), true classifier-free guidance with
    negative prompts through ``cycle``'s conditions: item i of a batch is item i alone with its own generator."""
    x = clips(2)
    kw = dict(steps=5, guidance_scale=6.0, source_guidance_scale=2.0)
    both = edit(hunyuan, x, source_prompt=["a cat", "a photo of the red car"], prompt=["a dog", "a blue car"],
                generator=gens(0, 1), **kw)
    one = edit(hunyuan, x[1:], source_prompt="a photo of the red car", prompt="a blue car", generator=gens(1), **kw)
    assert both.images.shape == (2, 3, FRAMES, SIZE, SIZE)
    torch.testing.assert_close(both.images[1:], one.images, rtol=0, atol=BATCH_PIXELS)
    x0 = to_model_space(hunyuan, x, None)

    def cfg(rows: slice, negative: list[str]) -> torch.Tensor:
        target = {**TRUE_CFG, "prompt": ["a dog", "a blue car"][rows], "negative_prompt": negative}
        return cycle(x0[rows], hunyuan, steps=5, strength=0.8, generator=gens(0, 1)[rows], target_condition=target,
                     source_condition={"prompt": ["a cat", "a red car"][rows], "guidance_scale": 2.0})[0]

    batched, alone = cfg(slice(0, 2), ["blue", "a horse"]), cfg(slice(1, 2), ["a horse"])
    torch.testing.assert_close(batched[1:], alone, rtol=0, atol=BATCH_LATENTS)
    assert float((cfg(slice(1, 2), ["a cat"]) - alone).abs().max()) > SENSITIVE  # the negative prompt counts


@pytest.mark.parametrize("method", ["cyclediffusion", "edit-friendly", "flowedit", "sdedit", "ddib"])
def test_the_five_methods_edit_a_hunyuan_video_clip(hunyuan, method):
    assert_method_edits_clip(hunyuan, clips(1), method, 6.0)


def test_a_mask_per_frame_keeps_the_frames_before_it(hunyuan):
    """A (B, 1, F, H, W) mask pooled in space (8×8 pixels a cell) and in time as the causal VAE groups frames (frame
    0 alone, then 4 a latent frame): the frames before its latent frames are what a mask of zeros gives."""
    x = clips(2)
    kw = dict(source_prompt="a cat", prompt="a dog", steps=5, guidance_scale=6.0)
    nothing = edit(hunyuan, x, method=CycleDiffusion(mask=torch.zeros(2, 1, SIZE, SIZE)), generator=gens(0, 1), **kw)
    assert nothing.mask.shape == (2, 1, FRAMES, SIZE, SIZE)
    assert torch.equal(nothing.images, to_images(hunyuan, to_model_space(hunyuan, x, None))) or torch.equal(
        nothing.images, x)
    pixel = torch.zeros(2, 1, FRAMES, SIZE, SIZE)
    pixel[:, :, 6, 2, 3] = 1  # one pixel of frame 6: latent frame 2 (frames 5–8), cell (0, 0)
    out = edit(hunyuan, x, method=CycleDiffusion(mask=pixel), generator=gens(0, 1), **kw)
    assert out.mask.sum() == 2 * 4 * 8 * 8 and out.mask[:, :, 5:, :8, :8].all()
    assert torch.equal(out.images[:, :, :5], nothing.images[:, :, :5])  # latent frames 0 and 1 unchanged
    assert float((out.images[:, :, 5:] - nothing.images[:, :, 5:]).abs().max()) > SENSITIVE


def test_fit_clip_rounds_as_the_pipeline_requires(hunyuan):
    assert hunyuan.fit_clip(129, 720, 1280) == (129, 720, 1280, "")
    f, h, w, note = hunyuan.fit_clip(100, 490, 850)
    assert (f, h, w) == (97, 480, 848) and "100 frames cut to 97" in note and "490×850 cut to 480×848" in note
    assert hunyuan.fit_clip(4, 16, 16)[0] == 1
    with pytest.raises(CycleDiffError, match="at least"):
        hunyuan.fit_clip(9, 8, 16)
    assert hunyuan.frames == FRAMES and hunyuan.codec.temporal == 4 and hunyuan.sample_shape == (4, 3, 2, 2)
    assert HunyuanVideo.from_pipe(hunyuan.pipe).sample_shape == (4, 33, 90, 160)  # the pipeline's 129 of 720×1280
    with pytest.raises(CycleDiffError, match=r"1 \+ 4·k frames .*fit_clip"):
        to_model_space(hunyuan, clips(1, frames=8), None)
    with pytest.raises(CycleDiffError, match="video latents"):
        hunyuan.check_sample(torch.zeros(1, 4, 2, 2))


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_and_load_take_hunyuan_video(tmp_path, pipe):
    assert isinstance(from_pipe(pipe), HunyuanVideo)
    pipe.save_pretrained(tmp_path / "hunyuan")
    model = load(str(tmp_path / "hunyuan"))
    assert isinstance(model, HunyuanVideo) and model.family == "hunyuan-video"


def test_the_cli_edits_a_clip_with_a_hunyuan_video_folder(tmp_path, pipe):
    """10 frames are cut to HunyuanVideo's 9 (said in the status line); the edit is written as an .mp4 of 9 frames
    at the input's frame rate."""
    pipe.save_pretrained(tmp_path / "hunyuan")
    assert_cli_edits_clip(tmp_path, tmp_path / "hunyuan", clips(1, frames=10)[0], FRAMES, "10 frames cut to 9",
                          "--steps", "4", "--guidance-scale", "6")


def test_a_hunyuan_video_lora_gives_the_pipelines_fused_lora_clip(tmp_path):
    """with_lora(file) (HunyuanVideoLoraLoaderMixin's adapters, on for the variant's calls; its token refiner's
    layers tell it from a FLUX LoRA) equals the pipeline's load_lora_weights + fuse_lora, seed for seed."""
    build = partial(HunyuanVideo, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)
    file = assert_lora_is_fused(hunyuan_pipeline, build, tmp_path, {"guidance_scale": 6.0},
                                mine=partial(ours, s=3), reference=partial(theirs, s=3))
    original = ["diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight"]  # HunyuanVideo's own names
    assert lora_match(original)[0].name == lora_match(load_file(file))[0].name == "hunyuan-video"


def test_a_hunyuan_video_checkpoint_goes_to_its_loader(tmp_path, monkeypatch):
    """HunyuanVideo's files (its own names, diffusers' names) carry FLUX's block names too: its token refiner
    tells them."""
    seen = loaders_seen(monkeypatch, HunyuanVideo)
    for keys in (["double_blocks.0.img_attn_qkv.weight", "txt_in.individual_token_refiner.blocks.0.norm1.weight"],
                 ["single_transformer_blocks.0.attn.to_q.weight",
                  "context_embedder.token_refiner.refiner_blocks.0.norm1.weight"]):
        load_keys(tmp_path / "hunyuan.safetensors", keys)
    assert seen == [HunyuanVideo, HunyuanVideo]

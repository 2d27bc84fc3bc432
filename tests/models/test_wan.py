"""Wan on a tiny pipeline built offline (T5 as tests/tiny_sd.py builds it, Wan's causal VAE, a two-layer 3-D
transformer), with 5-D latents through the core: a seed gives ``WanPipeline``'s own clip (no guidance,
classifier-free guidance with and without a negative prompt, Wan 2.2's two transformers), SDEdit's path equals
``WanVideoToVideoPipeline``, exact reconstruction, batch invariance, the five methods, masks per frame, loading."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch
from family_checks import (
    BATCH_ULPS,
    EXACT,
    NEGATIVE,
    PROMPT,
    SENSITIVE,
    STEPS,
    TOLERANCE,
    assert_batch_invariant_edit,
    assert_lora_is_fused,
    assert_reconstructs,
    gap,
    sdedit_path,
    seed,
)
from video_checks import VideoFamily, assert_cli_edits_clip, assert_method_edits_clip

from conftest import gens
from cyclediff import CycleDiffusion, SDEdit, decode, edit, encode
from cyclediff.cycle import cycle
from cyclediff.errors import CycleDiffError
from cyclediff.latent import Latent
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_images, to_model_space
from cyclediff.models.wan import Wan
from cyclediff.sampler import sample_latent
from tiny_sd import photos
from tiny_wan import FRAMES, SIZE, wan_pipeline

TOKENS = 16  # prompts padded to 16 tokens, not 512: the prompt's few tokens then weigh on the random network
CFG = {"guidance_scale": 5.0, "negative_prompt": NEGATIVE}
WAN = VideoFamily(FRAMES, (SIZE, SIZE), call={"max_sequence_length": TOKENS})
clips, ours, theirs, assert_video_parity = WAN.clips, WAN.ours, WAN.theirs, WAN.assert_parity


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = wan_pipeline(tmp_path_factory.mktemp("wan"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def wan(pipe):
    return Wan(pipe, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, other, frames, size", [
    ({"guidance_scale": 1.0}, CFG, FRAMES, (SIZE, SIZE)),
    (CFG, {"guidance_scale": 1.0}, FRAMES, (SIZE, SIZE)),
    ({"guidance_scale": 5.0}, CFG, FRAMES, (SIZE, SIZE)),  # the pipeline's empty negative prompt
    (CFG, {"guidance_scale": 1.0}, 5, (16, 32)),
], ids=["no-guidance", "cfg-negative", "cfg-empty-negative", "cfg-5-frames-16x32"])
def test_a_seed_gives_wans_own_clip(wan, pipe, guidance, other, frames, size):
    assert_video_parity(wan, pipe, other, frames, size, **guidance)


def test_a_seed_gives_wan_22s_own_clip_with_its_two_transformers(tmp_path):
    """Wan 2.2 A14B: steps above the boundary run the first transformer at guidance_scale, those below the second
    at guidance_scale_2."""
    pipe = wan_pipeline(tmp_path, two_stage=True)
    pipe.set_progress_bar_config(disable=True)
    model = Wan(pipe, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)
    steps = model.schedule.grid(STEPS)
    assert any(model.low_noise(t) for t in steps) and not all(model.low_noise(t) for t in steps)
    two = {**CFG, "guidance_scale_2": 2.0}
    assert_video_parity(model, pipe, {"guidance_scale_2": 5.0}, **two)
    with pytest.raises(CycleDiffError, match="guidance_scale_2 is for Wan 2.2"):
        Wan(wan_pipeline(tmp_path / "one"), frames=FRAMES, size=(SIZE, SIZE)).prepare_condition(1, guidance_scale_2=2)


def test_a_seed_gives_wan_22_ti2vs_own_clip_and_its_clips_come_back(tmp_path):
    """Wan 2.2 TI2V: a VAE that folds 2×2 pixels into its 12 input channels (RGB clips in, 16× in space), 48
    latent channels, the timestep given per patch (``expand_timesteps``)."""
    pipe = wan_pipeline(tmp_path, ti2v=True)
    pipe.set_progress_bar_config(disable=True)
    model = Wan(pipe, frames=FRAMES, size=(32, 32), max_sequence_length=TOKENS)
    assert model.sample_shape == (48, 3, 2, 2) and model.codec.multiple == 32
    assert_video_parity(model, pipe, {"guidance_scale": 1.0}, size=(32, 32), **CFG)
    x = torch.nn.functional.interpolate(clips(1).flatten(1, 2), size=(32, 32)).reshape(1, 3, FRAMES, 32, 32)
    x0 = to_model_space(model, x, None)
    z = encode(x0, model, steps=4, strength=0.5, eta=1.0, generator=gens(0), prompt="a cat", **CFG)
    torch.testing.assert_close(decode(z, model), x0, rtol=0, atol=EXACT)


@pytest.mark.parametrize("steps", [1, 2])
def test_a_seed_gives_wans_own_clip_with_its_unipc_scheduler(pipe, steps):
    """Wan's checkpoints ship UniPC with flow sigmas: its grid (shifted by ``flow_shift``, integer timesteps to the
    transformer) is ours, and at 1 and 2 steps its updates are the core's first-order step (from 3 steps its
    corrector and second-order predictor are not)."""
    from diffusers import UniPCMultistepScheduler, WanPipeline

    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    theirs_pipe = WanPipeline.from_pipe(pipe, scheduler=unipc)
    theirs_pipe.set_progress_bar_config(disable=True)
    model = Wan(theirs_pipe, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)
    unipc.set_timesteps(steps)
    assert [model.network_time(t) for t in model.schedule.grid(steps)] == unipc.timesteps.tolist()
    z = sample_latent(model, 1, steps=steps, eta=0, generator=seed(3), prompt=PROMPT, sample_shape=(16, 3, 2, 2),
                      **CFG)
    with torch.no_grad():
        reference = theirs_pipe(PROMPT, num_inference_steps=steps, height=SIZE, width=SIZE, num_frames=FRAMES,
                                generator=seed(3), output_type="pt", max_sequence_length=TOKENS, **CFG).frames
    assert float((to_images(model, decode(z, model)) - reference.transpose(1, 2)).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("strength, guidance", [(0.5, {"guidance_scale": 1.0}), (0.75, CFG), (1.0, CFG)])
def test_sdedits_path_is_wans_video_to_video_pipeline(wan, pipe, strength, guidance, monkeypatch):
    """The clip's VAE posterior mode (the pipeline's "argmax"), x_start from q(x_t | x0) at the strength's first
    step (its one draw), then the ODE on the strength-cut grid: ``WanVideoToVideoPipeline``'s clip, composed from
    the parts and through ``edit(method=SDEdit(eta=0))``."""
    import diffusers.pipelines.wan.pipeline_wan_video2video as module
    from diffusers import WanVideoToVideoPipeline

    # diffusers' video-to-video module calls ftfy without asking whether it is installed (WanPipeline asks): the
    # text as WanPipeline cleans it without ftfy
    monkeypatch.setattr(module, "ftfy", SimpleNamespace(fix_text=lambda text: text), raising=False)
    v2v = WanVideoToVideoPipeline.from_pipe(pipe)
    v2v.set_progress_bar_config(disable=True)
    x = clips(1, seed=1)

    def mine(s: int) -> torch.Tensor:
        return sdedit_path(wan, x, strength, s, **guidance)

    with torch.no_grad():
        reference = v2v(video=x.transpose(1, 2), prompt=PROMPT, strength=strength, num_inference_steps=STEPS,
                        height=SIZE, width=SIZE, generator=seed(5), output_type="pt", max_sequence_length=TOKENS,
                        **guidance).frames.transpose(1, 2)
    assert float((mine(5) - reference).abs().max()) <= TOLERANCE
    assert float((mine(6) - reference).abs().max()) > SENSITIVE
    edited = edit(wan, x, source_prompt="a cat", prompt=PROMPT, steps=STEPS, strength=strength, generator=seed(5),
                  method=SDEdit(eta=0.0), **guidance).images  # the public API: the same draws, in the same order
    assert float((edited - reference).abs().max()) <= TOLERANCE


def test_a_wan_lora_gives_the_pipelines_fused_lora_clip(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with classifier-free guidance; the base model stays the base."""
    assert_lora_is_fused(wan_pipeline, partial(Wan, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS),
                         tmp_path, CFG, mine=partial(ours, s=3), reference=partial(theirs, s=3))


def test_a_low_noise_lora_goes_into_wan_22s_second_transformer(tmp_path):
    """``low-noise=PATH`` (the --lora form): the LoRA goes into Wan 2.2 A14B's low-noise transformer, and the clip is
    the pipeline's with ``load_lora_weights(load_into_transformer_2=True)`` fused into that transformer; on a model
    without a second transformer the prefix is one line."""
    from tiny_sd import make_lora

    file = make_lora(wan_pipeline(tmp_path / "donor"), tmp_path / "lora", seed=7, gain=30.0)
    fused = wan_pipeline(tmp_path / "fused", two_stage=True)
    fused.set_progress_bar_config(disable=True)
    fused.load_lora_weights(str(file), load_into_transformer_2=True)
    fused.fuse_lora(components=["transformer_2"])
    build = partial(Wan, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)
    base = build(wan_pipeline(tmp_path / "base", two_stage=True))
    styled = base.with_lora([f"low-noise={file}:1"])
    with torch.no_grad():
        expected = theirs(fused, 3, **CFG)
        assert gap(ours(styled, 3, **CFG), expected) <= TOLERANCE
        assert gap(ours(base, 3, **CFG), expected) > SENSITIVE
        assert gap(ours(base.with_lora([str(file)]), 3, **CFG), expected) > SENSITIVE  # a plain path: the first
    with pytest.raises(CycleDiffError, match="low-noise= is for a model with a second, low-noise transformer"):
        build(wan_pipeline(tmp_path / "one")).with_lora([f"low-noise={file}"])


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_wan_encoding_gives_its_5d_latents_back(wan, eta, strength, tmp_path):
    x0 = to_model_space(wan, clips(2), None)
    assert x0.shape == (2, 16, 3, 2, 2)
    z = assert_reconstructs(wan, x0, strength=strength, eta=eta, **CFG)
    assert z.sample_shape == (16, 3, 2, 2)
    if eta == 1.0 and strength == 1.0:  # a latent file of a clip holds its 5-D draws
        z.save(tmp_path / "clip.latent.safetensors")
        torch.testing.assert_close(decode(Latent.load(tmp_path / "clip.latent.safetensors"), wan), x0, rtol=0,
                                   atol=EXACT)


def test_wan_edits_are_batch_invariant_under_guidance(wan):
    assert_batch_invariant_edit(wan, clips(2), negatives=["blue", "a horse"], steps=5, guidance_scale=5.0)


def test_many_targets_translation_and_interpolation_take_clips(wan):
    """One encoding decoded under k prompts equals k edits; a translation of the model to itself is its edit; two
    clips' latents interpolate and decode."""
    from cyclediff import interpolate, translate

    x = clips(1)
    kw = dict(source_prompt="a cat", steps=4, guidance_scale=3.0, source_guidance_scale=1.0)
    many = edit(wan, x, prompt=["a dog", "a red car"], generator=gens(2), **kw)
    assert many.latent.x_start.shape == (1, 16, 3, 2, 2) and many.images.shape == (2, 3, FRAMES, SIZE, SIZE)
    for i, prompt in enumerate(["a dog", "a red car"]):
        one = edit(wan, x, prompt=prompt, generator=gens(2), **kw)
        torch.testing.assert_close(many.images[i:i + 1], one.images, rtol=0, atol=BATCH_ULPS)
    out = translate(x, wan, wan, steps=4, generator=gens(2), source_condition={"prompt": "a cat"},
                    target_condition={"prompt": "a dog", "guidance_scale": 3.0})
    torch.testing.assert_close(out.images, many.images[:1], rtol=0, atol=BATCH_ULPS)
    other = edit(wan, clips(1, seed=3), prompt="a dog", generator=gens(4), **kw).latent
    halfway = interpolate(many.latent, other, 0.5)
    assert to_images(wan, decode(halfway, wan, prompt="a dog")).shape == x.shape


@pytest.mark.parametrize("method", ["cyclediffusion", "edit-friendly", "flowedit", "sdedit", "ddib"])
def test_the_five_methods_edit_a_clip(wan, method):
    assert_method_edits_clip(wan, clips(1), method, 3.0)


def test_a_mask_per_frame_keeps_the_latents_outside_it_and_the_frames_before_it(wan):
    """A (B, 1, F, H, W) mask reaches the latents pooled in space (8×8 pixels a cell) and in time as the causal VAE
    groups frames (frame 0 alone, then 4 a latent frame): outside it the latents are the input's exactly, so the
    frames before the masked latent frames (the VAE is causal) are what a mask of zeros gives (one mask for every
    frame): the VAE's reconstruction of the input, or the input itself where edit keeps its pixels outside a mask."""
    x = clips(2)
    x0 = to_model_space(wan, x, None)
    kw = dict(source_prompt="a cat", prompt="a dog", steps=5, guidance_scale=3.0)
    nothing = edit(wan, x, method=CycleDiffusion(mask=torch.zeros(2, 1, SIZE, SIZE)), generator=gens(0, 1), **kw)
    assert nothing.mask.shape == (2, 1, FRAMES, SIZE, SIZE)
    assert torch.equal(nothing.images, to_images(wan, x0)) or torch.equal(nothing.images, x)
    pixel = torch.zeros(2, 1, FRAMES, SIZE, SIZE)
    pixel[:, :, 6, 2, 3] = 1  # one pixel of frame 6: latent frame 2 (frames 5–8), cell (0, 0)
    out = edit(wan, x, method=CycleDiffusion(mask=pixel), generator=gens(0, 1), **kw)
    assert out.mask.shape == (2, 1, FRAMES, SIZE, SIZE)
    assert out.mask.sum() == 2 * 4 * 8 * 8 and out.mask[:, :, 5:, :8, :8].all()
    assert torch.equal(out.images[:, :, :5], nothing.images[:, :, :5])  # latent frames 0 and 1 unchanged
    keep = torch.zeros(2, 1, 3, 2, 2)
    keep[:, :, 1, 1, 0] = 1  # inside it the latents change (the tiny random VAE decodes them only faintly)
    latents, _ = cycle(x0, wan, steps=5, strength=0.8, generator=gens(0, 1), mask=keep, source_condition={
        "prompt": "a cat"}, target_condition={"prompt": "a dog", "guidance_scale": 3.0})
    assert torch.equal(latents * (1 - keep), x0 * (1 - keep)) and (latents - x0).mul(keep).abs().max() > 1e-3


def test_the_automatic_mask_of_clips_is_one_per_clip_and_frame(wan):
    """The disagreement is scaled per clip (over channels, latent frames and cells) and shown over the clip's frames."""
    out = edit(wan, clips(2), source_prompt=["a cat", "a red car"], prompt=["a dog", "a red car"], steps=5,
               guidance_scale=1.0, generator=gens(0, 1), method=CycleDiffusion(mask="auto", mask_threshold=0.5))
    assert out.mask.shape == (2, 1, FRAMES, SIZE, SIZE) and set(out.mask.unique().tolist()) <= {0.0, 1.0}
    assert out.mask[0].any() and not out.mask[1].any()  # the second clip's prompts agree: nothing may change
    assert all(torch.equal(out.mask[:, :, i], out.mask[:, :, i + 1]) for i in range(1, 4))  # 4 frames a latent


def test_clip_masks_of_the_wrong_shape_are_one_line_errors(wan):
    x = clips(1)
    for mask in (torch.zeros(1, 1, 8, SIZE, SIZE), torch.zeros(1, 1, 9, 8, 8)):
        with pytest.raises(CycleDiffError, match=r"\(B, 1, F, H, W\) or \(B, 1, H, W\)") as err:
            edit(wan, x, source_prompt="a cat", prompt="a dog", steps=4, method=CycleDiffusion(mask=mask))
        assert "\n" not in str(err.value)


def test_clips_the_model_cannot_take_are_one_line_errors(wan):
    with pytest.raises(CycleDiffError, match=r"1 \+ 4·k frames .*fit_clip"):
        to_model_space(wan, clips(1, frames=8), None)
    with pytest.raises(CycleDiffError, match="encodes clips"):
        to_model_space(wan, photos(1), None)
    with pytest.raises(CycleDiffError, match="video latents"):
        wan.check_sample(torch.zeros(1, 16, 2, 2))


def test_fit_clip_rounds_as_the_pipeline_requires(wan):
    assert wan.fit_clip(81, 480, 832) == (81, 480, 832, "")
    f, h, w, note = wan.fit_clip(100, 490, 850)
    assert (f, h, w) == (97, 480, 848) and "100 frames cut to 97" in note and "490×850 cut to 480×848" in note
    assert wan.fit_clip(4, 16, 16)[0] == 1
    with pytest.raises(CycleDiffError, match="at least"):
        wan.fit_clip(9, 8, 16)
    assert wan.frames == FRAMES and wan.codec.temporal == 4 and wan.sample_shape == (16, 3, 2, 2)
    assert Wan.from_pipe(wan.pipe).sample_shape == (16, 21, 60, 104)  # the pipeline's 81 frames of 480×832


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_and_load_take_wan_and_vae_tiling_reaches_its_vae(tmp_path, pipe):
    from diffusers import WanVideoToVideoPipeline

    assert isinstance(from_pipe(pipe), Wan)
    assert isinstance(from_pipe(WanVideoToVideoPipeline.from_pipe(pipe)), Wan)
    pipe.save_pretrained(tmp_path / "wan")
    model = load(str(tmp_path / "wan"))
    assert isinstance(model, Wan) and model.family == "wan"
    tiled = load(str(tmp_path / "wan"), vae_tiling=True)
    assert tiled.codec.vae.use_tiling and tiled.codec.vae.use_slicing


def test_the_cli_edits_a_clip_with_a_wan_folder(tmp_path, pipe):
    """10 frames are cut to Wan's 9 (said in the status line); the edit is written as an .mp4 of 9 frames at the
    input's frame rate."""
    pipe.save_pretrained(tmp_path / "wan")
    assert_cli_edits_clip(tmp_path, tmp_path / "wan", clips(1, frames=10)[0], FRAMES, "10 frames cut to 9", "--steps",
                          "4", "--guidance-scale", "3")


def test_a_wan_checkpoint_goes_to_its_loader(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    seen = []
    monkeypatch.setattr(Wan, "from_pretrained", classmethod(lambda c, src, **kw: seen.append(c)))
    for keys in (["condition_embedder.time_proj.weight", "blocks.0.attn1.to_q.weight"],
                 ["head.modulation", "blocks.0.self_attn.q.weight"]):
        save_file({k: torch.zeros(1) for k in keys}, str(tmp_path / "wan.safetensors"))
        load(str(tmp_path / "wan.safetensors"))
    assert seen == [Wan, Wan]

"""LTX-Video on a tiny pipeline built offline (T5 as tests/tiny_sd.py builds it, LTX's video VAE at its real 32× /
8× compression with per-channel latent statistics, a one-layer transformer, LTX's dynamic-shift scheduler), with
5-D latents through the core: a seed gives ``LTXPipeline``'s own clip (no guidance, classifier-free guidance with and
without a negative prompt, guidance rescale, a timestep-conditioned decoder), exact reconstruction, batch
invariance, the five methods, masks per frame, fit_clip, loading and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_checks import (
    BATCH_ULPS,
    NEGATIVE,
    PROMPT,
    SENSITIVE,
    STEPS,
    TOLERANCE,
    assert_batch_invariant_edit,
    assert_reconstructs,
    loaders_seen,
    one_line_error,
    seed,
)
from video_checks import VideoFamily, assert_cli_edits_clip, assert_method_edits_clip

from conftest import gens
from cyclediff import CycleDiffusion, edit
from cyclediff.cycle import cycle
from cyclediff.errors import CycleDiffError
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.ltx import LTXVideo
from tiny_ltx import FRAMES, SIZE, ltx_pipeline
from tiny_sd import photos

TOKENS = 16  # prompts padded to 16 tokens, not 128: the prompt's few tokens then weigh on the random network
CFG = {"guidance_scale": 3.0, "negative_prompt": NEGATIVE}
# clips of a picture sliding two pixels a frame; the pipeline called with guidance 1 unless asked (its default is 3)
LTX = VideoFamily(FRAMES, (SIZE, SIZE), call={"guidance_scale": 1.0, "max_sequence_length": TOKENS}, slide=2)
clips, ours, theirs, assert_video_parity = LTX.clips, LTX.ours, LTX.theirs, LTX.assert_parity


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = ltx_pipeline(tmp_path_factory.mktemp("ltx"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def ltx(pipe):
    return LTXVideo(pipe, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, other, frames, size", [
    ({"guidance_scale": 1.0}, CFG, FRAMES, (SIZE, SIZE)),
    (CFG, {"guidance_scale": 1.0}, FRAMES, (SIZE, SIZE)),
    ({"guidance_scale": 3.0}, CFG, FRAMES, (SIZE, SIZE)),  # the pipeline's empty negative prompt
    ({**CFG, "guidance_scale": 9.0, "guidance_rescale": 0.7}, {"guidance_rescale": 0.0}, FRAMES, (SIZE, SIZE)),
    (CFG, {"guidance_scale": 1.0}, 17, (64, 32)),  # another μ: 3 latent frames of 2×1 cells
], ids=["no-guidance", "cfg-negative", "cfg-empty-negative", "cfg-rescale", "cfg-17-frames-64x32"])
def test_a_seed_gives_ltxs_own_clip(ltx, pipe, guidance, other, frames, size):
    assert_video_parity(ltx, pipe, other, frames, size, **guidance)


def test_a_seed_gives_ltx_091s_own_clip_with_its_decode_timestep(tmp_path):
    """LTX 0.9.1 on: a timestep-conditioned decoder, given the pipeline's ``decode_timestep`` (the noise the
    pipeline can mix in before decoding is not added here: ``decode_noise_scale=0``)."""
    pipe = ltx_pipeline(tmp_path, timestep_conditioning=True)
    pipe.set_progress_bar_config(disable=True)
    model = LTXVideo(pipe, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS, decode_timestep=0.05)
    call = {"decode_timestep": 0.05, "decode_noise_scale": 0.0}
    assert_video_parity(model, pipe, {"guidance_scale": 1.0}, call=call, **CFG)
    at_zero = theirs(pipe, 3, **CFG, decode_timestep=0.0, decode_noise_scale=0.0)
    assert float((ours(model, 3, **CFG) - at_zero).abs().max()) > SENSITIVE  # the timestep reaches the decoder


def test_a_slicing_timestep_conditioned_vae_decodes_each_clip_with_its_timestep(tmp_path):
    """diffusers' sliced decode pairs the latents' slices with each other, not with the timesteps': the codec
    decodes one clip at a time itself, and a batch decodes as its clips alone."""
    model = LTXVideo(ltx_pipeline(tmp_path, timestep_conditioning=True), frames=FRAMES, size=(SIZE, SIZE),
                     decode_timestep=0.05)
    x0 = to_model_space(model, clips(2), None)
    alone = torch.cat([model.codec.decode(x0[i:i + 1]) for i in range(2)])
    model.codec.vae.enable_slicing()
    torch.testing.assert_close(model.codec.decode(x0), alone, rtol=0, atol=1e-6)


def test_ltxs_grid_is_the_pipelines_for_each_clip_size(ltx, pipe):
    """linspace(1, 1/N, N) shifted by the μ of latent frames × cells, then stretched to shift_terminal."""
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift, retrieve_timesteps

    for shape in ((8, 2, 1, 1), (8, 3, 2, 1), (8, 21, 16, 22)):
        c = pipe.scheduler.config
        mu = calculate_shift(shape[1] * shape[2] * shape[3], c.base_image_seq_len, c.max_image_seq_len,
                             c.base_shift, c.max_shift)
        timesteps, _ = retrieve_timesteps(pipe.scheduler, STEPS, sigmas=np.linspace(1.0, 1 / STEPS, STEPS),
                                          mu=mu)
        torch.testing.assert_close(torch.tensor(ltx.schedule_for(shape).grid(STEPS), dtype=torch.float64),
                                   timesteps.double(),
                                   rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def conditioned(pipe):
    """``LTXConditionPipeline`` over the same parts, with an unshifted scheduler (its steps are then its grid's)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline

    cond = LTXConditionPipeline.from_pipe(pipe, scheduler=FlowMatchEulerDiscreteScheduler())
    cond.set_progress_bar_config(disable=True)
    return cond


def test_a_seed_gives_ltx_condition_pipelines_own_clip(conditioned):
    """Its linear-quadratic grid, given to the scheduler as timesteps, and its scaled video coordinates."""
    model = LTXVideo(conditioned, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)
    assert assert_video_parity(model, conditioned, {"guidance_scale": 1.0}, **CFG) <= TOLERANCE
    assert_video_parity(model, conditioned, CFG, 17, (64, 32), guidance_scale=1.0)


@pytest.mark.parametrize("strength, guidance", [(0.5, {"guidance_scale": 1.0}), (0.75, CFG), (1.0, CFG)])
def test_sdedit_is_ltx_condition_pipelines_denoise_strength(conditioned, strength, guidance):
    """The clip's latents (the VAE posterior's mode) given to ``LTXConditionPipeline`` with ``denoise_strength``:
    its one draw mixes them at the first σ of the int(N × strength) steps it runs, then its ODE — which
    ``edit(method=SDEdit(eta=0))`` gives."""
    from cyclediff import SDEdit

    model = LTXVideo(conditioned, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=TOKENS)
    x = clips(1, seed=1)
    x0 = to_model_space(model, x, None)

    def reference(s: int) -> torch.Tensor:
        with torch.no_grad():
            return conditioned(prompt=PROMPT, latents=x0, denoise_strength=strength, num_inference_steps=STEPS,
                               height=SIZE, width=SIZE, num_frames=FRAMES, generator=seed(s), output_type="pt",
                               max_sequence_length=TOKENS, **{"guidance_scale": 1.0, **guidance}
                               ).frames.transpose(1, 2)

    theirs5 = reference(5)
    edited = edit(model, x, source_prompt="a cat", prompt=PROMPT, steps=STEPS, strength=strength, generator=seed(5),
                  method=SDEdit(eta=0.0), **guidance).images
    assert float((edited - theirs5).abs().max()) <= TOLERANCE
    assert float((edited - reference(6)).abs().max()) > SENSITIVE


def test_ltx_condition_pipelines_shifted_schedulers_are_refused_in_one_line(pipe):
    from diffusers import LTXConditionPipeline

    with one_line_error("unshifted scheduler"):
        LTXVideo(LTXConditionPipeline.from_pipe(pipe), frames=FRAMES, size=(SIZE, SIZE))


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_an_ltx_encoding_gives_its_5d_latents_back(ltx, eta, strength):
    x0 = to_model_space(ltx, clips(2), None)
    assert x0.shape == (2, 8, 2, 1, 1)
    z = assert_reconstructs(ltx, x0, strength=strength, eta=eta, guidance_rescale=0.5, **CFG)
    assert z.sample_shape == (8, 2, 1, 1)


def test_ltx_edits_are_batch_invariant_under_guidance(ltx):
    assert_batch_invariant_edit(ltx, clips(2), negatives=["blue", "a horse"], steps=5, guidance_scale=3.0)


def test_guidance_rescale_is_per_clip_in_a_batch(ltx):
    """The rescale divides by each clip's own velocity std: a clip's cycle in a batch is its cycle alone."""
    x0 = to_model_space(ltx, clips(2), None)
    target = {"guidance_scale": 9.0, "guidance_rescale": 0.7}
    both, _ = cycle(x0, ltx, steps=4, strength=0.8, generator=gens(0, 1), source_condition={
        "prompt": ["a cat", "a red car"]}, target_condition={"prompt": ["a dog", "a blue car"], **target})
    one, _ = cycle(x0[1:], ltx, steps=4, strength=0.8, generator=gens(1), source_condition={"prompt": "a red car"},
                   target_condition={"prompt": "a blue car", **target})
    torch.testing.assert_close(both[1:], one, rtol=0, atol=BATCH_ULPS)
    plain, _ = cycle(x0[1:], ltx, steps=4, strength=0.8, generator=gens(1), source_condition={"prompt": "a red car"},
                     target_condition={"prompt": "a blue car", "guidance_scale": 9.0})
    assert float((plain - one).abs().max()) > 1e-3


@pytest.mark.parametrize("method", ["cyclediffusion", "edit-friendly", "flowedit", "sdedit", "ddib"])
def test_the_five_methods_edit_a_clip(ltx, method):
    assert_method_edits_clip(ltx, clips(1), method, 3.0)


def test_a_mask_per_frame_keeps_the_latents_and_the_pixels_outside_it(ltx):
    """A (B, 1, F, H, W) mask reaches the latents pooled in space (32×32 pixels a cell) and in time as LTX's causal
    encoder groups frames (frame 0 alone, then 8 a latent frame): outside it the latents are the input's exactly
    and edit returns the input's own pixels."""
    size = (64, 32)
    x = clips(2, size=size)
    x0 = to_model_space(ltx, x, None)
    assert x0.shape == (2, 8, 2, 2, 1)
    kw = dict(source_prompt="a cat", prompt="a dog", steps=5, guidance_scale=3.0)
    pixel = torch.zeros(2, 1, FRAMES, *size)
    pixel[:, :, 6, 40, 3] = 1  # one pixel of frame 6: latent frame 1 (frames 1–8), cell (1, 0)
    out = edit(ltx, x, method=CycleDiffusion(mask=pixel), generator=gens(0, 1), **kw)
    assert out.mask.shape == (2, 1, FRAMES, *size)
    assert out.mask.sum() == 2 * 8 * 32 * 32 and out.mask[:, :, 1:, 32:, :].all()
    assert torch.equal(out.images * (1 - out.mask), x * (1 - out.mask))
    assert float((out.images - x).abs().max()) > SENSITIVE  # inside it the clip changes
    keep = torch.zeros(2, 1, 2, 2, 1)
    keep[:, :, 1, 1, 0] = 1
    latents, _ = cycle(x0, ltx, steps=5, strength=0.8, generator=gens(0, 1), mask=keep, source_condition={
        "prompt": "a cat"}, target_condition={"prompt": "a dog", "guidance_scale": 3.0})
    assert torch.equal(latents * (1 - keep), x0 * (1 - keep)) and (latents - x0).mul(keep).abs().max() > 1e-3


def test_clips_the_model_cannot_take_are_one_line_errors(ltx):
    with pytest.raises(CycleDiffError, match=r"1 \+ 8·k frames .*fit_clip"):
        to_model_space(ltx, clips(1, frames=8), None)
    with pytest.raises(CycleDiffError, match="encodes clips"):
        to_model_space(ltx, photos(1, size=SIZE), None)
    with pytest.raises(CycleDiffError, match="multiples of 32"):
        to_model_space(ltx, clips(1, size=(48, 32)), None)
    with pytest.raises(CycleDiffError, match="video latents"):
        ltx.check_sample(torch.zeros(1, 8, 2, 2))
    with pytest.raises(CycleDiffError, match="guidance_rescale must lie in"):
        ltx.prepare_condition(1, prompt="a cat", guidance_scale=3.0, guidance_rescale=2.0)


def test_fit_clip_rounds_as_the_pipeline_requires(ltx):
    assert ltx.fit_clip(161, 512, 704) == (161, 512, 704, "")
    f, h, w, note = ltx.fit_clip(100, 490, 850)
    assert (f, h, w) == (97, 480, 832) and "100 frames cut to 97" in note and "490×850 cut to 480×832" in note
    assert ltx.fit_clip(8, 32, 32)[0] == 1
    with pytest.raises(CycleDiffError, match="at least"):
        ltx.fit_clip(9, 16, 32)
    assert ltx.frames == FRAMES and ltx.codec.temporal == 8 and ltx.codec.factor == 32
    assert ltx.sample_shape == (8, 2, 1, 1)
    assert LTXVideo.from_pipe(ltx.pipe).sample_shape == (8, 21, 16, 22)  # the pipeline's 161 frames of 512×704


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_and_load_take_ltx(tmp_path, pipe, conditioned):
    from diffusers import LTXImageToVideoPipeline

    assert isinstance(from_pipe(pipe), LTXVideo)
    assert isinstance(from_pipe(LTXImageToVideoPipeline.from_pipe(pipe)), LTXVideo)
    assert from_pipe(conditioned).conditioned and not from_pipe(pipe).conditioned
    pipe.save_pretrained(tmp_path / "ltx")
    model = load(str(tmp_path / "ltx"))
    assert isinstance(model, LTXVideo) and model.family == "ltx" and not model.conditioned
    torch.testing.assert_close(model.codec.normalisation.shift, pipe.vae.latents_mean)  # its buffers, saved
    conditioned.save_pretrained(tmp_path / "ltx-condition")  # a folder of LTXConditionPipeline runs as it
    assert load(str(tmp_path / "ltx-condition")).conditioned


def test_the_cli_edits_a_clip_with_an_ltx_folder(tmp_path, pipe):
    """10 frames are cut to LTX's 9 (said in the status line); the edit is written as an .mp4 of 9 frames at the
    input's frame rate."""
    pipe.save_pretrained(tmp_path / "ltx")
    assert_cli_edits_clip(tmp_path, tmp_path / "ltx", clips(1, frames=10)[0], FRAMES, "10 frames cut to 9", "--steps",
                          "4", "--guidance-scale", "3")


def test_an_ltx_checkpoint_goes_to_its_loader(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from tiny_ltx import ltx_transformer

    seen = loaders_seen(monkeypatch, LTXVideo)
    lightricks = ["model.diffusion_model.patchify_proj.weight", "model.diffusion_model.adaln_single.linear.weight"]
    for state in ({k: torch.zeros(1) for k in lightricks}, ltx_transformer().state_dict()):
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "ltx.safetensors"))
        load(str(tmp_path / "ltx.safetensors"))
    assert seen == [LTXVideo, LTXVideo]

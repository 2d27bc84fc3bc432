"""Wan and LTX-Video pipelines of other configurations than tests/tiny_wan.py and tests/tiny_ltx.py build (other
heads × head widths, text widths, VAE widths and latent channels, non-square frames and other frame counts, Wan
2.2 TI2V's VAE with another z_dim, an A14B pair with another boundary, LTX 0.9.5-style VAEs with their other block
types, scaling flags, timestep-conditioned decoder and patch sizes), through the public API only: a seed gives the
pipeline's own clip, decode(encode(x)) = x, pixels outside a mask are the input's in every frame, and the CLI edits
a clip of a saved folder keeping its frame count and frame rate. Every size comes from the configs, none from a
constant in an adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_pipeline_parity import PROMPT, SENSITIVE, STEPS, TOLERANCE

from conftest import gens
from cyclediff import CycleDiffusion, decode, edit, encode
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_images, to_model_space
from cyclediff.sampler import sample_latent
from tiny_sd import photos, t5_tokenizer

EXACT = 1e-5  # float32 reconstruction bound of the issue
CFG = {"guidance_scale": 4.0, "negative_prompt": "a blue dog"}


def t5(tmp: Path, width: int) -> tuple[Any, Any]:
    from transformers import T5Config, T5EncoderModel

    tok = t5_tokenizer(tmp / "t5")
    return tok, T5EncoderModel(T5Config(vocab_size=len(tok), d_model=width, d_kv=8, d_ff=48, num_layers=1,
                                        num_heads=width // 8, decoder_start_token_id=0, pad_token_id=0,
                                        eos_token_id=1)).eval()


def wan_pipe(tmp: Path, *, base_dim: int = 4, z_dim: int = 16, ti2v: bool = False,
             boundary: float | None = None, patch: tuple[int, int, int] = (1, 2, 2)) -> Any:
    """Wan with 3 heads of 8, one layer, text width 24, a VAE ``base_dim`` wide with ``z_dim`` channels (TI2V's
    2×2-patched, 16× VAE with ``ti2v``), ``boundary``: an A14B pair (diffusers' Wan VAE encodes frames in
    groups of 4 whatever its config says: its time compression is 4 here), transformers over ``patch``es."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    tok, text = t5(tmp, 24)
    stats = dict(latents_mean=torch.randn(z_dim).mul(0.3).tolist(), latents_std=torch.rand(z_dim).add(0.5).tolist())
    patched = dict(in_channels=12, out_channels=12, is_residual=True, patch_size=2, scale_factor_spatial=16)
    vae = AutoencoderKLWan(base_dim=base_dim, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], **stats,
                           **(patched if ti2v else {})).eval()

    def transformer() -> Any:
        return WanTransformer3DModel(patch_size=patch, num_attention_heads=3, attention_head_dim=8,
                                     in_channels=z_dim, out_channels=z_dim, text_dim=24, freq_dim=32, ffn_dim=24,
                                     num_layers=1, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                     rope_max_seq_len=32).eval()

    parts = dict(vae=vae, text_encoder=text, tokenizer=tok, transformer=transformer(),
                 scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    if boundary is not None:
        return _quiet(WanPipeline(**parts, transformer_2=transformer(), boundary_ratio=boundary))
    return _quiet(WanPipeline(**parts, expand_timesteps=ti2v))


def ltx_pipe(tmp: Path, *, vae: str = "095", heads: int = 3) -> Any:
    """LTX with a transformer of ``heads`` × 8 (text width 24) over a VAE: ``095`` — 0.9.5's blocks (spatial /
    temporal / spatio-temporal downsamplers, three residual upsamplers of factor 2, a timestep-conditioned
    decoder); ``patch2`` — 2×2 pixel patches and four spatio-temporal halvings (32× in space, 16× in time)."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    tok, text = t5(tmp, 24)
    if vae == "095":
        config = dict(down_block_types=("LTXVideo095DownBlock3D",) * 4, spatio_temporal_scaling=(True,) * 4,
                      downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
                      decoder_spatio_temporal_scaling=(True,) * 3, decoder_inject_noise=(False,) * 4,
                      upsample_residual=(True,) * 3, upsample_factor=(2,) * 3, timestep_conditioning=True,
                      block_out_channels=(8, 8, 16, 16, 32), decoder_block_out_channels=(16, 32, 64),
                      layers_per_block=(1,) * 5, decoder_layers_per_block=(1,) * 4,
                      spatial_compression_ratio=32, temporal_compression_ratio=8, scaling_factor=0.8)
    else:
        config = dict(spatio_temporal_scaling=(True,) * 4, decoder_spatio_temporal_scaling=(True,) * 4,
                      decoder_inject_noise=(False,) * 5, patch_size=2, block_out_channels=(8, 8, 8, 8),
                      decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1,) * 5,
                      decoder_layers_per_block=(1,) * 5)
    autoencoder = AutoencoderKLLTXVideo(latent_channels=12, **config).eval()
    with torch.no_grad():
        autoencoder.latents_mean.copy_(torch.randn(12) * 0.3)
        autoencoder.latents_std.copy_(torch.rand(12) + 0.5)
    transformer = LTXVideoTransformer3DModel(in_channels=12, out_channels=12, num_attention_heads=heads,
                                             attention_head_dim=8, cross_attention_dim=heads * 8, num_layers=2,
                                             caption_channels=24).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(base_image_seq_len=4, max_image_seq_len=64, base_shift=0.5,
                                                max_shift=1.5, shift_terminal=0.05, use_dynamic_shifting=True)
    return _quiet(LTXPipeline(vae=autoencoder, text_encoder=text, tokenizer=tok, transformer=transformer,
                              scheduler=scheduler))


def _quiet(pipe: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    return pipe


def clip(frames: int, size: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """(B, 3, F, H, W) in [0, 1]: a picture sliding two pixels a frame."""
    base = photos(batch, size=max(size), seed=seed)[..., :size[0], :size[1]]
    return torch.stack([torch.roll(base, shifts=2 * i, dims=-1) for i in range(frames)], dim=2)


def ours(model, s: int, frames: int, size: tuple[int, int], **condition) -> torch.Tensor:
    f = (frames - 1) // model.codec.temporal + 1
    h, w = (n // model.codec.factor for n in size)
    z = sample_latent(model, 1, steps=STEPS, eta=0, generator=torch.Generator().manual_seed(s), prompt=PROMPT,
                      sample_shape=(model.sample_shape[0], f, h, w), **condition)
    return to_images(model, decode(z, model))


def theirs(pipe, s: int, frames: int, size: tuple[int, int], **call) -> torch.Tensor:
    with torch.no_grad():
        out = pipe(prompt=PROMPT, num_inference_steps=STEPS, height=size[0], width=size[1], num_frames=frames,
                   generator=torch.Generator().manual_seed(s), output_type="pt", **call).frames
    return out.transpose(1, 2)


def assert_parity(model, pipe, frames: int, size: tuple[int, int], call: dict | None = None, **condition) -> None:
    reference = theirs(pipe, 3, frames, size, **condition, **(call or {}))
    mine = ours(model, 3, frames, size, **condition)
    assert mine.shape == reference.shape == (1, 3, frames, *size)
    diff = float((mine - reference).abs().max())
    assert diff <= TOLERANCE, f"max |ours − pipeline| = {diff:.3g}"
    assert float((ours(model, 4, frames, size, **condition) - reference).abs().max()) > SENSITIVE


def assert_reconstructs(model, x: torch.Tensor) -> None:
    x0 = to_model_space(model, x, None)
    for eta, strength in ((0.1, 0.5), (1.0, 1.0)):
        z = encode(x0, model, steps=3, strength=strength, eta=eta, generator=gens(0), prompt="a cat", **CFG)
        torch.testing.assert_close(decode(z, model), x0, rtol=0, atol=EXACT)


def assert_mask_keeps_pixels(model, x: torch.Tensor) -> None:
    """A mask over a box of the middle frames: every frame's pixels outside the (pooled) mask are the input's."""
    mask = torch.zeros(1, 1, *x.shape[2:])
    mask[:, :, x.shape[2] // 2:, : x.shape[3] // 2, : x.shape[4] // 2] = 1
    out = edit(model, x, source_prompt="a cat", prompt="a dog", steps=STEPS, guidance_scale=3.0, generator=gens(0),
               method=CycleDiffusion(mask=mask))
    assert out.images.shape == x.shape and out.mask.shape == (1, 1, *x.shape[2:])
    assert 0 < float(out.mask.mean()) < 1
    outside = 1 - out.mask
    assert torch.equal(out.images * outside, x * outside)
    assert float((out.images - x).abs().max()) > SENSITIVE  # inside it the clip changes


def assert_cli_keeps_frames_and_fps(pipe, tmp: Path, frames: int, size: tuple[int, int], suffix: str,
                                    fps: float) -> None:
    from click.testing import CliRunner

    from cyclediff._video import read_clip, write_clip
    from cyclediff.cli import main

    pipe.save_pretrained(tmp / "model")
    write_clip(tmp / f"cat{suffix}", clip(frames, size)[0].transpose(0, 1), fps)
    res = CliRunner().invoke(main, ["edit", str(tmp / f"cat{suffix}"), "--model", str(tmp / "model"),
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--steps", "2",
                                    "--guidance-scale", "3", "--out", str(tmp / "out")])
    assert res.exit_code == 0, res.output
    (written,) = (tmp / "out").glob(f"cat_a-dog_*{suffix}")
    out, given = read_clip(written), read_clip(tmp / f"cat{suffix}").fps  # a GIF's delays are centiseconds
    assert out.frames.shape == (frames, 3, *size) and out.fps == pytest.approx(given, rel=1e-3)
    assert given == pytest.approx(fps, rel=0.05)


# ---------------------------------------------------------------------------------------------------- Wan
WAN = {  # name: (builder keywords, frames, (H, W), CLI container)
    "vae4-16x32-5f": (dict(), 5, (16, 32), ".gif"),
    "vae6-z8-32x16-13f": (dict(base_dim=6, z_dim=8), 13, (32, 16), ".mp4"),
    "ti2v-z24-32x64": (dict(ti2v=True, z_dim=24), 5, (32, 64), ".gif"),
    "a14b-ratio-0.6": (dict(boundary=0.6), 9, (16, 32), ".mp4"),
}


@pytest.fixture(scope="module", params=sorted(WAN))
def wan_case(request, tmp_path_factory):
    kw, frames, size, suffix = WAN[request.param]
    pipe = wan_pipe(tmp_path_factory.mktemp("wan"), **kw)
    return request.param, pipe, from_pipe(pipe), frames, size, suffix


def test_a_seed_gives_wans_own_clip_in_other_configurations(wan_case):
    name, pipe, model, frames, size, _ = wan_case
    assert model.sample_shape[0] == pipe.transformer.config.in_channels
    two = {"guidance_scale_2": 2.0} if name.startswith("a14b") else {}
    if two:  # the boundary splits the steps between the two transformers
        low = [model.low_noise(t) for t in model.schedule.grid(STEPS)]
        assert any(low) and not all(low)
    assert_parity(model, pipe, frames, size, **CFG, **two)
    assert_parity(model, pipe, frames, size, guidance_scale=1.0)


def test_wan_in_other_configurations_reconstructs_and_keeps_pixels_outside_a_mask(wan_case):
    _, _, model, frames, size, _ = wan_case
    x = clip(frames, size)
    assert_reconstructs(model, x)
    assert_mask_keeps_pixels(model, x)


def test_the_cli_edits_a_clip_with_wan_folders_of_other_configurations(wan_case, tmp_path):
    _, pipe, _, frames, size, suffix = wan_case
    assert_cli_keeps_frames_and_fps(pipe, tmp_path, frames, size, suffix, 10.0)
    assert isinstance(load(str(tmp_path / "model")), type(from_pipe(pipe)))


# ---------------------------------------------------------------------------------------------------- LTX
LTX = {
    "095-32x64-9f": (dict(vae="095"), 9, (32, 64), ".mp4"),
    "095-heads2-17f": (dict(vae="095", heads=2), 17, (32, 32), ".gif"),
    "patch2-time16-17f-64x32": (dict(vae="patch2"), 17, (64, 32), ".mp4"),
}


@pytest.fixture(scope="module", params=sorted(LTX))
def ltx_case(request, tmp_path_factory):
    kw, frames, size, suffix = LTX[request.param]
    pipe = ltx_pipe(tmp_path_factory.mktemp("ltx"), **kw)
    return request.param, pipe, from_pipe(pipe), frames, size, suffix


def test_a_seed_gives_ltxs_own_clip_in_other_configurations(ltx_case):
    _, pipe, model, frames, size, _ = ltx_case
    call = {"decode_noise_scale": 0.0} if pipe.vae.config.timestep_conditioning else {}
    assert_parity(model, pipe, frames, size, call, **CFG)
    assert_parity(model, pipe, frames, size, call, guidance_scale=1.0)


def test_ltx_in_other_configurations_reconstructs_and_keeps_pixels_outside_a_mask(ltx_case):
    _, _, model, frames, size, _ = ltx_case
    x = clip(frames, size)
    assert_reconstructs(model, x)
    assert_mask_keeps_pixels(model, x)


def test_the_cli_edits_a_clip_with_ltx_folders_of_other_configurations(ltx_case, tmp_path):
    _, pipe, _, frames, size, suffix = ltx_case
    assert_cli_keeps_frames_and_fps(pipe, tmp_path, frames, size, suffix, 12.0)


def test_a_wan_vae_whose_frames_do_not_come_out_as_its_config_says_is_a_one_line_error(tmp_path):
    """diffusers' Wan VAE encodes frames in groups of 4 whatever its ``scale_factor_temporal``: a VAE that halves
    time only once drops frames; the codec says so instead of handing on latents the clip cannot come back from."""
    from diffusers import AutoencoderKLWan, WanPipeline

    from cyclediff.errors import CycleDiffError

    vae = AutoencoderKLWan(base_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, scale_factor_temporal=2,
                           temperal_downsample=[False, False, True]).eval()
    model = from_pipe(WanPipeline.from_pipe(wan_pipe(tmp_path), vae=vae))
    assert model.fit_clip(7, 16, 16)[0] == 7
    with pytest.raises(CycleDiffError, match="latent frames") as err:
        to_model_space(model, clip(7, (16, 16)), None)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------- patches
def patched(name: str, tmp: Path) -> tuple[Any, Any, Any, dict]:
    """(model, pipeline, its VideoFamily, condition) of a transformer over 2-frame patches, or Wan's 1×1×2."""
    from test_hunyuan_video import HUNYUAN, TOKENS
    from test_hunyuan_video15 import HY15
    from video_checks import VideoFamily

    from cyclediff.models.hunyuan_video import HunyuanVideo
    from tiny_hunyuan_video import hunyuan_pipeline, hunyuan_transformer
    from tiny_hunyuan_video15 import hunyuan15_pipeline, hunyuan15_transformer

    if name.startswith("wan"):
        pipe = wan_pipe(tmp, patch=(2, 2, 2) if name == "wan-2x2x2" else (1, 1, 2))
        return from_pipe(pipe), pipe, VideoFamily(5, (16, 32)), CFG
    if name == "hunyuan-t2":
        base = hunyuan_pipeline(tmp)
        pipe = _quiet(type(base).from_pipe(base, transformer=hunyuan_transformer(patch_size_t=2)))
        model = HunyuanVideo(pipe, frames=9, size=(16, 16), max_sequence_length=TOKENS)
        return model, pipe, HUNYUAN, {"guidance_scale": 4.0}
    base = hunyuan15_pipeline(tmp)
    pipe = _quiet(type(base).from_pipe(base, transformer=hunyuan15_transformer(patch_size_t=2)))
    return from_pipe(pipe), pipe, HY15, {"guidance_scale": 4.0}


@pytest.mark.parametrize("name", ["wan-2x2x2", "wan-1x1x2", "hunyuan-t2", "hunyuan15-t2"])
def test_clips_are_fitted_to_the_transformers_temporal_and_oblong_patches(name, tmp_path):
    """A transformer patching 2 latent frames at a time takes 1 + 4k frames with k + 1 even (9 frames are cut to
    5; a clip of 9 is one line naming fit_clip, not a reshape error); Wan's 1×2 patches make both sides multiples
    of 16. The fitted clip is the pipeline's own for a seed, and edits keep its frames."""
    from cyclediff.errors import CycleDiffError

    model, pipe, family, condition = patched(name, tmp_path)
    f, h, w, note = model.fit_clip(9, 40, 40)
    if name == "wan-1x1x2":
        assert (f, h, w) == (9, 32, 32) and "cut to 32×32 (multiples of 16)" in note
    else:
        assert f == 5 and "9 frames cut to 5" in note and "k + 1 a multiple of 2" in note
        with pytest.raises(CycleDiffError, match="temporal patch 2.*fit_clip") as err:
            edit(model, clip(9, family.size), source_prompt="a cat", prompt="a dog", steps=2, generator=gens(0))
        assert "\n" not in str(err.value)
    family.assert_parity(model, pipe, {"guidance_scale": 1.0}, 5, family.size, **condition)
    out = edit(model, clip(5, family.size), source_prompt="a cat", prompt="a dog", steps=2, generator=gens(0))
    assert out.images.shape == (1, 3, 5, *family.size)

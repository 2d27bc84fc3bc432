"""Stable Diffusion editing: parity with diffusers' CycleDiffusionPipeline, batch invariance, evaluation count,
encode-once-edit-many, SDXL, loading, and errors. All on tiny random pipelines built offline."""

from __future__ import annotations

import warnings

import pytest
import torch
from diffusers import CycleDiffusionPipeline, DDIMScheduler

from cyclediff import CycleDiffError, CycleDiffusion, IncompatibleModelError, decode, edit, encode
from cyclediff.models import StableDiffusion
from tiny_sd import SD_SCHEDULER, photos, sd_pipeline, sdxl_pipeline


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return sd_pipeline(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def sd(pipe):
    return StableDiffusion.from_pipe(pipe)


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def reference(pipe, image, **kw):
    ref = CycleDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                 unet=pipe.unet, scheduler=DDIMScheduler(**SD_SCHEDULER), safety_checker=None,
                                 feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    return ref(image=image, output_type="pt", **kw).images


@pytest.mark.parametrize("strength", [0.5, 1.0])
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("scales", [(1, 1), (3, 1), (3, 2)], ids=lambda s: f"w{s[0]}-src{s[1]}")
def test_edit_matches_diffusers_cycle_diffusion(pipe, sd, strength, eta, scales):
    x = photos(1, seed=3)
    settings = dict(prompt="a dog", source_prompt="a cat", strength=strength, eta=eta, num_inference_steps=10,
                    guidance_scale=scales[0], source_guidance_scale=scales[1])
    expected = reference(pipe, x, generator=torch.Generator().manual_seed(7), **settings)
    ours = edit(sd, x, prompt="a dog", source_prompt="a cat", strength=strength, steps=10, guidance_scale=scales[0],
                source_guidance_scale=scales[1], generator=torch.Generator().manual_seed(7),
                method=CycleDiffusion(eta=eta))
    assert ours.images.shape == expected.shape == (1, 3, 16, 16)
    assert (ours.images - x).abs().max() > 1e-2  # an actual change, not a copy of the input
    assert (ours.images - expected).abs().max() < 1e-4


def test_batch_invariance_under_guidance(sd):
    """Item i of a batch of 4 equals that item edited alone with its own seed (guided target, w = 3)."""
    x = photos(4, seed=1)
    prompts, sources = ["a dog", "a red car", "a horse", "a blue car"], ["a cat", "a car", "a photo", "a car"]
    kw = dict(strength=0.7, steps=8, method=CycleDiffusion(eta=0.3), guidance_scale=3.0, source_guidance_scale=1.5)
    batch = edit(sd, x, prompt=prompts, source_prompt=sources, generator=gens(0, 1, 2, 3), **kw)
    for i in range(4):
        alone = edit(sd, x[i:i + 1], prompt=prompts[i], source_prompt=sources[i], generator=gens(i), **kw)
        torch.testing.assert_close(alone.images, batch.images[i:i + 1], rtol=0, atol=1e-5)


def count_unet_rows(sd):
    rows = []
    handle = sd.unet.register_forward_pre_hook(lambda mod, args: rows.append(args[0].shape[0]))
    return rows, handle


@pytest.mark.parametrize("scales, per_image", [((1, 1), 2), ((3, 1), 3), ((3, 2), 4), ((1, 0), 2)])
def test_one_unet_call_per_step_and_no_needless_evaluations(sd, scales, per_image):
    rows, handle = count_unet_rows(sd)
    try:
        edit(sd, photos(2), prompt="a dog", source_prompt="a cat", strength=0.5, steps=10, guidance_scale=scales[0],
             source_guidance_scale=scales[1], generator=gens(0, 1))
    finally:
        handle.remove()
    assert rows == [2 * per_image] * 5  # 5 steps run, one call each, per_image evaluations per image


def test_encode_once_edit_many(sd, tmp_path):
    from cyclediff import Latent

    x = photos(2, seed=5)
    g = gens(0, 1)  # the VAE sample and then the encoder draw from the same generators, as edit does
    lat = sd.codec.encode_images(x * 2 - 1, g)
    z = encode(lat, sd, steps=10, strength=0.6, eta=0.1, prompt="a cat", generator=g)
    z = Latent.load(z.save(tmp_path / "cat.latent.safetensors"))
    assert z.condition == {"prompt": ["a cat", "a cat"], "guidance_scale": 1.0}
    assert (decode(z, sd) - lat).abs().max() < 1e-5  # exact in VAE-latent space
    dog = decode(z, sd, prompt="a dog", guidance_scale=3.0)
    horse = decode(z, sd, prompt="a horse", guidance_scale=3.0)
    assert (dog - lat).abs().max() > 1e-2 and (dog - horse).abs().max() > 1e-3
    # the same edit in one pass (same generators, so the same VAE sample and draws)
    one_pass = edit(sd, x, source_prompt="a cat", prompt="a dog", strength=0.6, steps=10, guidance_scale=3.0,
                    generator=gens(0, 1), method=CycleDiffusion(eta=0.1))
    torch.testing.assert_close(one_pass.images, (sd.codec.decode_latents(dog) / 2 + 0.5).clamp(0, 1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_other_prediction_types_reconstruct(tmp_path, prediction_type):
    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path, prediction_type=prediction_type))
    lat = sd.codec.encode_images(photos(1) * 2 - 1, gens(0))
    z = encode(lat, sd, steps=10, strength=0.8, prompt="a photo", generator=gens(0))
    assert (decode(z, sd) - lat).abs().max() < 1e-5


def test_sdxl_edit_reconstruct_and_batch_invariance(tmp_path):
    sd = StableDiffusion.from_pipe(sdxl_pipeline(tmp_path))
    assert sd.is_xl
    x = photos(2, seed=2)
    lat = sd.codec.encode_images(x * 2 - 1, gens(0, 1))
    z = encode(lat, sd, steps=10, strength=0.7, prompt=["a cat", "a car"], guidance_scale=2.0, generator=gens(0, 1))
    assert (decode(z, sd) - lat).abs().max() < 1e-5
    kw = dict(source_prompt="a cat", prompt="a dog", strength=0.7, steps=8, guidance_scale=3.0)
    batch = edit(sd, x, generator=gens(0, 1), **kw)
    alone = edit(sd, x[1:], generator=gens(1), **kw)
    torch.testing.assert_close(alone.images, batch.images[1:], rtol=0, atol=1e-5)
    assert (batch.images - x).abs().max() > 1e-2


def test_from_pretrained_local_folders(tmp_path, sd):
    sd.pipe.save_pretrained(tmp_path / "sd15")
    loaded = StableDiffusion.from_pretrained(tmp_path / "sd15", dtype=torch.float32)
    assert not loaded.is_xl and loaded.model_id == str(tmp_path / "sd15")
    x = photos(1)
    a = edit(sd, x, source_prompt="a cat", prompt="a dog", strength=0.5, steps=6, generator=gens(0)).images
    b = edit(loaded, x, source_prompt="a cat", prompt="a dog", strength=0.5, steps=6, generator=gens(0)).images
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    sdxl_pipeline(tmp_path / "parts").save_pretrained(tmp_path / "xl")
    assert StableDiffusion.from_pretrained(tmp_path / "xl").is_xl


def test_bfloat16_model_keeps_exact_replay(tmp_path, sd):
    sd.pipe.save_pretrained(tmp_path / "sd15")
    half = StableDiffusion.from_pretrained(tmp_path / "sd15", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    lat = half.codec.encode_images(photos(1) * 2 - 1, gens(0))
    assert lat.dtype == torch.float32
    z = encode(lat, half, steps=6, prompt="a cat", generator=gens(0))
    assert (decode(z, half) - lat).abs().max() < 1e-5


def test_loading_errors(tmp_path):
    with pytest.raises(CycleDiffError, match="no such checkpoint file"):
        StableDiffusion.from_pretrained(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CycleDiffError, match="not a readable checkpoint"):
        StableDiffusion.from_pretrained(tmp_path / "junk.safetensors")
    with pytest.raises(CycleDiffError, match="local path"):
        StableDiffusion.from_pretrained(tmp_path / "not-a-model")
    with pytest.raises(CycleDiffError, match="has no text_encoder"):
        StableDiffusion.from_pipe(type("P", (), {"unet": 1, "vae": 1, "scheduler": 1})())


def test_single_file_is_routed_by_its_keys(tmp_path, monkeypatch):
    """SDXL checkpoints (a second text encoder under conditioner.embedders.1) go to the XL pipeline."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from safetensors.torch import save_file

    called = {}

    def fake(cls):
        def load(source, **kw):
            called["cls"] = cls
            raise OSError("stop here")
        return load

    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file", fake("sd"))
    monkeypatch.setattr(StableDiffusionXLPipeline, "from_single_file", fake("xl"))
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}, tmp_path / "xl.safetensors")
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(1)},
              tmp_path / "sd.safetensors")
    for name in ("xl", "sd"):
        with pytest.raises(CycleDiffError, match="stop here"):
            StableDiffusion.from_pretrained(tmp_path / f"{name}.safetensors")
        assert called["cls"] == name


def test_input_errors(sd):
    with pytest.raises(IncompatibleModelError, match=r"\[0, 1\]"):
        edit(sd, photos(1) * 255, source_prompt="a", prompt="b")
    with pytest.raises(IncompatibleModelError, match="multiples of 4"):
        edit(sd, torch.rand(1, 3, 18, 18), source_prompt="a", prompt="b")
    with pytest.raises(IncompatibleModelError, match="one per image"):
        edit(sd, photos(2), source_prompt=["a", "b", "c"], prompt="b")
    with pytest.raises(CycleDiffError, match="deterministic"):
        edit(sd, photos(1), source_prompt="a", prompt="b", method=CycleDiffusion(eta=0.0))
    with pytest.raises(CycleDiffError, match="strength"):
        edit(sd, photos(1), source_prompt="a", prompt="b", strength=1.5)
    with pytest.raises(IncompatibleModelError, match="VAE latents"):
        encode(photos(1) * 2 - 1, sd, prompt="a")


def test_long_prompts_are_truncated_with_a_warning(sd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        edit(sd, photos(1), source_prompt="a cat", prompt=" ".join(["dog"] * 30), strength=0.3, steps=4,
             generator=gens(0))
    assert any("tokens" in str(w.message) for w in caught)


def test_latent_from_another_model_is_refused(sd, tmp_path):
    other = StableDiffusion.from_pipe(sd_pipeline(tmp_path, channels=(16, 32)))
    other.pipe.scheduler = DDIMScheduler(**{**SD_SCHEDULER, "steps_offset": 0})
    other.schedule = type(sd.schedule).from_config(other.pipe.scheduler.config)
    z = encode(sd.codec.encode_images(photos(1) * 2 - 1, gens(0)), sd, steps=10, prompt="a cat", generator=gens(0))
    with pytest.raises(IncompatibleModelError, match="steps_offset"):
        decode(z, other)

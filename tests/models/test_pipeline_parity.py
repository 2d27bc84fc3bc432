"""A seed gives the family's own image: ``sample_latent`` (η = 0, the ODE) decoded through the model's codec equals
the family's diffusers pipeline called with the same generator, steps, size and guidance, within 1e-4 on [0, 1]
images. One check fixes the initial noise's shape and draw order, the grid, the timestep scaling, the packing and
the guidance formula; every new family calls it (a pipeline builder in tests/tiny_sd.py, one parametrised test;
the check itself is tests/models/family_checks.py's).

Each case also checks that the tiny random model can fail it: another seed, and another guidance scale, change the
image by far more than the tolerance (the parity itself holds to about 1e-6).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from family_checks import NEGATIVE, PROMPT, SEED, SENSITIVE, STEPS, TOLERANCE, assert_parity, ours, seed, theirs

from cyclediff.encoder import encode
from cyclediff.errors import CycleDiffError
from cyclediff.latent import Latent
from cyclediff.models import Flux, StableDiffusion, StableDiffusion3
from cyclediff.models.codec import to_images
from cyclediff.sampler import decode, sample_latent
from tiny_sd import flux_pipeline, sd3_pipeline, sd_pipeline


# ---------------------------------------------------------------------------------------------------- fixtures
def brighter(pipe):
    """The shared builders scale the random VAE decoder's output by 0.05 so it never saturates; 10× that keeps the
    images within (0.15, 0.8) and makes the guidance's effect on them 10× larger than the tolerance's scale."""
    with torch.no_grad():
        pipe.vae.decoder.conv_out.weight.mul_(10)
    return pipe


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    pipe = brighter(sd_pipeline(tmp_path_factory.mktemp("sd")))
    return StableDiffusion.from_pipe(pipe), pipe


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    pipe = brighter(sd3_pipeline(tmp_path_factory.mktemp("sd3")))
    return StableDiffusion3.from_pipe(pipe), pipe


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    pipe = brighter(flux_pipeline(tmp_path_factory.mktemp("flux")))
    return Flux.from_pipe(pipe), pipe


# ---------------------------------------------------------------------------------------------------- the check
CFG = {"guidance_scale": 7.5, "negative_prompt": NEGATIVE}


@pytest.mark.parametrize("guidance, other", [
    ({"guidance_scale": 1.0}, CFG),
    (CFG, {"guidance_scale": 1.0}),
], ids=["no-guidance", "cfg-negative"])
def test_a_seed_gives_stable_diffusions_own_image(sd, guidance, other):
    model, pipe = sd
    assert_parity(model, pipe, pipe_call={**guidance, "eta": 0.0}, other_guidance=other, **guidance)


def test_a_seed_gives_stable_diffusions_own_image_with_ddim_noise(sd):
    """η > 0: the per-step draws come from the generator in the pipeline's order (after x_T, one per step)."""
    model, pipe = sd
    mine = ours(model, eta=0.5, guidance_scale=1.0)
    assert float((mine - theirs(pipe, eta=0.5, guidance_scale=1.0)).abs().max()) <= TOLERANCE
    assert float((mine - theirs(pipe, eta=0.0, guidance_scale=1.0)).abs().max()) > SENSITIVE


@pytest.mark.parametrize("guidance, size", [
    ({"guidance_scale": 1.0}, (16, 16)),
    ({"guidance_scale": 4.0, "negative_prompt": NEGATIVE}, (16, 16)),
    ({"guidance_scale": 4.0, "negative_prompt": NEGATIVE}, (16, 32)),
], ids=["no-guidance", "cfg-negative", "cfg-negative-16x32"])
def test_a_seed_gives_sd3s_own_image(sd3, guidance, size):
    model, pipe = sd3
    other = {"guidance_scale": 2.0, "negative_prompt": NEGATIVE}
    assert_parity(model, pipe, size=size, other_guidance=other, **guidance)


@pytest.mark.parametrize("guidance, size", [
    ({"guidance_scale": 3.5}, (16, 16)),
    ({"guidance_scale": 3.5}, (16, 32)),
    ({"guidance_scale": 3.5, "negative_prompt": NEGATIVE, "true_cfg_scale": 4.0}, (16, 16)),
], ids=["embedded", "embedded-16x32", "embedded-true-cfg"])
def test_a_seed_gives_fluxs_own_image(flux, guidance, size):
    model, pipe = flux
    other = {"true_cfg_scale": 1.0} if "true_cfg_scale" in guidance else {"guidance_scale": 7.0}
    assert_parity(model, pipe, size=size, pipe_call={**guidance, "max_sequence_length": model.max_sequence_length},
                  other_guidance=other, **guidance)


def test_a_seed_gives_flux_schnells_own_image_without_guidance(tmp_path):
    pipe = brighter(flux_pipeline(tmp_path, guidance_embeds=False))
    model = Flux.from_pipe(pipe)
    assert_parity(model, pipe, pipe_call={"max_sequence_length": model.max_sequence_length})


def test_flux_noise_drawn_in_the_packed_order_is_another_image(flux):
    """The check sees the draw order: x_T drawn as packed tokens (B, h·w/4, 4·C), then unpacked, is not the
    pipeline's image (it draws (B, C, h, w), then packs)."""
    model, pipe = flux
    z = sample_latent(model, 1, steps=STEPS, eta=0.0, generator=seed(SEED), prompt=PROMPT)
    b, c, h, w = z.x_start.shape
    packed = torch.randn(b, (h // 2) * (w // 2), c * 4, generator=seed(SEED))
    unpacked = packed.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
    wrong = to_images(model, decode(dataclasses.replace(z, x_start=unpacked), model))
    reference = theirs(pipe, max_sequence_length=model.max_sequence_length)
    assert float((to_images(model, decode(z, model)) - reference).abs().max()) <= TOLERANCE
    assert float((wrong - reference).abs().max()) > SENSITIVE


# ---------------------------------------------------------------------------------------------------- η = 0 latents
def test_an_eta_zero_latent_is_all_zero_residuals_and_saves_loads_and_decodes(sd3, tmp_path):
    model, _ = sd3
    z = sample_latent(model, 2, steps=STEPS, eta=0, generator=[seed(1), seed(2)], prompt=PROMPT)
    assert z.eta == 0 and all(z.residual) and not z.eps.any()
    loaded = Latent.load(z.save(tmp_path / "ode.latent.safetensors"))
    assert loaded.eta == 0 and loaded.residual == z.residual
    assert torch.equal(decode(loaded, model), decode(z, model))
    assert torch.equal(loaded[1].x_start, sample_latent(model, 1, steps=STEPS, eta=0, generator=seed(2)).x_start)


def test_eta_zero_stays_refused_where_it_means_nothing(sd3):
    model, _ = sd3
    with pytest.raises(CycleDiffError, match="eta = 0 is deterministic DDIM"):
        encode(torch.randn(1, 4, 8, 8), model, steps=STEPS, eta=0, prompt=PROMPT)
    z = sample_latent(model, 1, steps=STEPS, eta=0.5, generator=seed(1), prompt=PROMPT)
    with pytest.raises(ValueError, match="eta must be a number in"):  # η = 0 with Gaussian draws in the steps
        dataclasses.replace(z, eta=0.0)
    with pytest.raises(ValueError, match="eta must be a number in"):  # the ODE is DDIM's
        dataclasses.replace(sample_latent(model, 1, steps=STEPS, eta=0), sampler="ddpm")


@pytest.mark.parametrize("guidance", [{"guidance_scale": 1.0}, CFG], ids=["no-guidance", "cfg-negative"])
def test_sdedit_at_eta_zero_is_the_img2img_pipelines_image(sd, guidance):
    """``edit(method=SDEdit(eta=0))``: the VAE posterior's draw, one marginal draw at the strength's first step
    from the same generator, then the ODE on the cut grid — StableDiffusionImg2ImgPipeline's image (η = 0 is the
    ODE for SDEdit, as for sampling; the encoders refuse it)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    from cyclediff import CycleDiffusion, SDEdit, edit
    from tiny_sd import photos

    model, pipe = sd
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    x = photos(1, seed=5)
    for strength in (0.5, 0.75):
        with torch.no_grad():
            reference = img2img(PROMPT, image=x, strength=strength, num_inference_steps=STEPS, eta=0.0,
                                generator=seed(SEED), output_type="pt", **guidance).images
        mine = edit(model, x, source_prompt=PROMPT, prompt=PROMPT, strength=strength, steps=STEPS,
                    method=SDEdit(eta=0), generator=seed(SEED), **guidance).images
        assert float((mine - reference).abs().max()) <= TOLERANCE
        other = edit(model, x, source_prompt=PROMPT, prompt=PROMPT, strength=strength, steps=STEPS,
                     method=SDEdit(eta=0), generator=seed(SEED + 1), **guidance).images
        assert float((other - reference).abs().max()) > SENSITIVE
    with pytest.raises(CycleDiffError, match="eta = 0 is deterministic DDIM"):
        CycleDiffusion(eta=0)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_sdedit_at_eta_zero_is_the_flow_img2img_pipelines_image(request, family):
    """SD3's and FLUX's img2img pipelines: the VAE's draw, σ·ε + (1 − σ)·x0 at the cut grid's first level, the Euler
    ODE — SDEdit at η = 0 through the public API. FLUX's pipeline is told our T5 length (its default pads to 512
    tokens, which without an attention mask changes the text the transformer sees)."""
    from diffusers import FluxImg2ImgPipeline, StableDiffusion3Img2ImgPipeline

    from cyclediff import SDEdit, edit
    from tiny_sd import photos

    model, pipe = request.getfixturevalue(family)
    kind = StableDiffusion3Img2ImgPipeline if family == "sd3" else FluxImg2ImgPipeline
    img2img = kind(**pipe.components)
    x = photos(1, seed=5)
    guidance = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE} if family == "sd3" else {"guidance_scale": 3.5}
    length = {} if family == "sd3" else {"max_sequence_length": model.max_sequence_length}
    for strength in (0.5, 0.75):
        with torch.no_grad():
            reference = img2img(PROMPT, image=x, strength=strength, num_inference_steps=STEPS, height=16, width=16,
                                generator=seed(SEED), output_type="pt", **guidance, **length).images
        mine = edit(model, x, source_prompt=PROMPT, prompt=PROMPT, strength=strength, steps=STEPS,
                    method=SDEdit(eta=0), generator=seed(SEED), **guidance).images
        assert float((mine - reference).abs().max()) <= TOLERANCE, (family, strength)

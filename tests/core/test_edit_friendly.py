"""The edit-friendly encoder (``encode(..., encoder="edit-friendly")``): its draws and x_T equal diffusers'
LEDITS++ inversion (``LEditsPPPipelineStableDiffusion.invert``: ``zs`` and ``init_latents``) on a tiny pipeline,
at source guidance 1 and above; its latent decodes back exactly on every model family; an edit with it is the
cycle of its encoding; the latent says which encoder made it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CONFIGS, assert_same_draws, images, pixel
from cyclediff import Latent, decode, encode
from cyclediff.cycle import cycle
from cyclediff.models import Flux, StableDiffusion, StableDiffusion3, to_model_space
from tiny_sd import SD_SCHEDULER, flux_pipeline, photos, sd3_pipeline, sd_pipeline, sdxl_pipeline

ENCODER = "edit-friendly"


def _pil(x01: torch.Tensor) -> Image.Image:
    return Image.fromarray((x01.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


# diffusers' invert unpacks encode_prompt's (edit embeddings, negative embeddings) as (uncond, text), so its guided
# prediction is ε(source) + w·(ε("") − ε(source)): the condition that says so here is prompt "", negative_prompt
# source. With an empty source prompt both rows are ε(""): the unguided inversion (guidance 1), which its invert
# cannot be asked for directly (source_guidance_scale ≤ 1 leaves the embedding it reads as None).
LEDITS_CASES = {"guidance 1": ("", 3.5, {"prompt": ""}),
                "guided": ("a photo of a cat", 3.5, {"prompt": "", "negative_prompt": "a photo of a cat",
                                                     "guidance_scale": 3.5})}


@pytest.mark.parametrize("case", sorted(LEDITS_CASES))
def test_the_draws_and_x_T_equal_ledits_pp_invert(tmp_path, case):
    """Same x0 (the LEDITS++ pipeline's own VAE encoding), same generator: its noise is drawn least noisy first,
    as ours; DDIM at η = 1 on its grid (leading spacing, the last N of N·(1 + skip) steps). float32 on the CPU,
    its two UNet calls against our one batched call: the draws agree to ~5e-6, the last two to ~5e-5 (a draw is a
    residual divided by the step's std, and the last two stds are the grid's smallest); 1e-4 asserted."""
    from diffusers import DDIMScheduler, LEditsPPPipelineStableDiffusion

    class IntegerDDIM(DDIMScheduler):
        """invert asks add_noise for torch.Tensor([t]) (float), which DDIM's indexing refuses in this diffusers:
        the same timesteps as integers, nothing else changed."""

        def add_noise(self, original_samples, noise, timesteps):
            return super().add_noise(original_samples, noise, timesteps.long())

    source_prompt, scale, condition = LEDITS_CASES[case]
    sd = sd_pipeline(tmp_path)
    ledits = LEditsPPPipelineStableDiffusion(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                                             unet=sd.unet, scheduler=IntegerDDIM(**SD_SCHEDULER),
                                             safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    ledits.set_progress_bar_config(disable=True)
    image = _pil(photos(1, size=32, seed=4)[0])  # LEDITS++ takes sides that are multiples of 32
    n, skip = 10, 0.2
    ledits.invert(image=image, source_prompt=source_prompt, source_guidance_scale=scale, num_inversion_steps=n,
                  skip=skip, generator=torch.Generator().manual_seed(3))
    x0, _ = ledits.encode_image(image, dtype=torch.float32)
    steps = int(n * (1 + skip))
    latent = encode(x0, StableDiffusion.from_pipe(sd), steps=steps, strength=n / steps, eta=1.0, sampler="ddim",
                    encoder=ENCODER, generator=torch.Generator().manual_seed(3), condition=condition)
    assert list(latent.timesteps) == [int(t) for t in ledits.inversion_steps]
    torch.testing.assert_close(latent.x_start, ledits.init_latents, rtol=0, atol=1e-4)
    torch.testing.assert_close(latent.eps, ledits.zs, rtol=0, atol=1e-4)
    assert latent.encoder == ENCODER


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_pixel_models_decode_an_edit_friendly_latent_exactly(config_name, sampler, gen):
    den = pixel(dict(CONFIGS[config_name]))
    x0 = images(2)
    z = encode(x0, den, steps=12, strength=0.85, eta=0.3, sampler=sampler, encoder=ENCODER, generator=gen(5))
    assert z.encoder == ENCODER and (decode(z, den) - x0).abs().max() < 1e-5


def _family(name: str, tmp_path):
    if name == "sd":
        return StableDiffusion.from_pipe(sd_pipeline(tmp_path)), {"prompt": "a cat", "guidance_scale": 2.0}
    if name == "sdxl":
        return StableDiffusion.from_pipe(sdxl_pipeline(tmp_path)), {"prompt": "a cat", "guidance_scale": 2.0}
    if name == "sd3":
        return StableDiffusion3(sd3_pipeline(tmp_path)), {"prompt": "a cat", "guidance_scale": 2.0}
    if name == "flux":
        return Flux(flux_pipeline(tmp_path), max_sequence_length=16), {"prompt": "a cat", "guidance_scale": 3.5}
    from cyclediff.demo.models import load_demo

    return load_demo("digits-flow"), {"class_labels": [3, 5]}


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux", "flow-pixel"])
def test_every_model_family_decodes_an_edit_friendly_latent_exactly(family, tmp_path):
    """≤ 1e-5 in float32, as for CycleDiffusion's latents (the decoder spends the recorded draws the same way)."""
    model, condition = _family(family, tmp_path)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    x0 = to_model_space(model, photos(2), gens) if family != "flow-pixel" else images(2, channels=1) * 0.9
    z = encode(x0, model, steps=8, strength=0.75, eta=0.5, encoder=ENCODER, generator=gens, condition=condition)
    assert (decode(z, model) - x0).abs().max() < 1e-5


def test_x_T_is_the_last_draw_and_every_x_t_an_independent_marginal(gen):
    """The edit-friendly encoder draws x_t ~ q(x_t | x0) least noisy first: its x_start is the K-th draw of the
    generator, and each step lands on its own draw (not on a posterior of the previous step)."""
    from cyclediff.encoder import start_point

    den = pixel(dict(CONFIGS[sorted(CONFIGS)[0]]))
    x0 = images(1)
    z = encode(x0, den, steps=6, strength=1.0, eta=1.0, encoder=ENCODER, generator=gen(9))
    g = gen(9)
    draws = [torch.randn(x0.shape, generator=g) for _ in z.timesteps]
    ab = den.schedule.alpha_bar_at
    torch.testing.assert_close(z.x_start, start_point(x0, ab(z.timesteps[0]), draws[-1]), rtol=0, atol=1e-6)
    posterior = encode(x0, den, steps=6, strength=1.0, eta=1.0, generator=gen(9))
    assert (posterior.eps - z.eps).abs().max() > 0.1  # the other encoder's draws are other draws


def test_an_edit_friendly_edit_is_the_decoding_of_its_encoding(gen):
    den = pixel(dict(CONFIGS[sorted(CONFIGS)[0]]), num_classes=3)
    x0 = images(2)
    out, latent = cycle(x0, den, steps=10, strength=0.8, eta=0.5, generator=gen(2), encoder=ENCODER,
                        source_condition={"class_labels": [0, 1]}, target_condition={"class_labels": [2, 2]})
    again = encode(x0, den, steps=10, strength=0.8, eta=0.5, generator=gen(2), encoder=ENCODER, class_labels=[0, 1])
    # the cycle evaluates source and target in one batched call, encode the source alone: the same draws up to the
    # ULPs a batch size can move a kernel's sums by on another CPU (compared where they land: std·ε)
    assert_same_draws(latent, again, den)
    torch.testing.assert_close(out, decode(again, den, class_labels=[2, 2]), rtol=0, atol=1e-5)


def test_the_latent_file_records_its_encoder(tmp_path, gen):
    den = pixel(dict(CONFIGS[sorted(CONFIGS)[0]]))
    z = encode(images(1), den, steps=4, encoder=ENCODER, generator=gen(0))
    assert Latent.load(z.save(tmp_path / "z.latent.safetensors")).encoder == ENCODER
    assert encode(images(1), den, steps=4, generator=gen(0)).encoder == "cyclediffusion"

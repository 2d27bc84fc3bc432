"""Everything already there works on each family: the five methods, a painted mask, many targets from one encoding
and translation to a LoRA-free copy of the same family, through the public API on each tiny pipeline (each family's
own file checks its parity with its pipeline; this one checks that nothing of the rest of the package assumes a
family). A new family adds its builder to FAMILIES."""

from __future__ import annotations

import pytest
import torch

import tiny_chroma
import tiny_cogview4
import tiny_flux2
import tiny_hidream
import tiny_longcat_image
import tiny_lumina2
import tiny_qwenimage
import tiny_sana
import tiny_sd
import tiny_z_image
from cyclediff import CycleDiffusion, edit, translate
from cyclediff.models import from_pipe
from cyclediff.models.codec import to_model_space
from cyclediff.options import METHODS

FAMILIES = {
    "sd": tiny_sd.sd_pipeline, "sd3": tiny_sd.sd3_pipeline, "flux": tiny_sd.flux_pipeline,
    "flux2-klein": tiny_flux2.klein_pipeline, "flux2-dev": tiny_flux2.dev_pipeline,
    "chroma": tiny_chroma.chroma_pipeline,
    "qwenimage": tiny_qwenimage.qwenimage_pipeline, "z-image": tiny_z_image.z_image_pipeline,
    "lumina2": tiny_lumina2.lumina2_pipeline, "cogview4": tiny_cogview4.cogview4_pipeline,
    "sana": tiny_sana.sana_pipeline, "longcat-image": tiny_longcat_image.longcat_image_pipeline,
    "hidream": tiny_hidream.hidream_pipeline,
}
STEPS, HEAD = 4, {"source_prompt": "a cat", "prompt": "a dog", "steps": 4, "strength": 0.75, "guidance_scale": 2.0}


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(scope="module", params=list(FAMILIES))
def model(request, tmp_path_factory):
    return from_pipe(FAMILIES[request.param](tmp_path_factory.mktemp(request.param)))


def _photos(model, batch: int = 1) -> torch.Tensor:
    size = 32 if model.codec.multiple > 8 else 16
    return tiny_sd.photos(batch, size=size, seed=7)


def test_the_five_methods_edit(model):
    x = _photos(model)
    for name in METHODS:
        if name == "flowedit" and model.schedule.path != "rectified_flow":
            continue
        out = edit(model, x, method=name, generator=gens(0), **HEAD)
        assert out.images.shape == x.shape and torch.isfinite(out.images).all(), name
        assert (out.latent is not None) == (name in ("cyclediffusion", "edit-friendly")), name


def test_a_mask_keeps_the_latents_outside_it_exactly_and_the_edit_inside(model):
    """Outside a binary mask the output's latents are the input's, exactly (the decoded pixels then differ only
    through the VAE decoder's receptive field); inside, the edit."""
    from cyclediff import cycle

    x0 = to_model_space(model, _photos(model), gens(1))
    mask = torch.zeros(1, 1, *x0.shape[-2:])
    mask[..., : x0.shape[-2] // 2, :] = 1
    out, _ = cycle(x0, model, steps=STEPS, strength=0.75, generator=gens(1), mask=mask,
                   source_condition={"prompt": "a cat"}, target_condition={"prompt": "a dog", "guidance_scale": 2.0})
    assert torch.equal(out * (1 - mask), x0 * (1 - mask))
    assert (out - x0).mul(mask).abs().max() > 1e-4
    shown = edit(model, _photos(model), method=CycleDiffusion(mask="auto"), generator=gens(1), **HEAD).mask
    assert shown is not None and set(shown.unique().tolist()) <= {0.0, 1.0}


def test_many_targets_from_one_encoding_equal_separate_edits(model):
    x = _photos(model)
    head = {k: v for k, v in HEAD.items() if k != "prompt"}
    many = edit(model, x, prompt=["a dog", "a red car"], generator=gens(2), **head)
    assert many.latent.x_start.shape[0] == 1  # one encoding
    for i, prompt in enumerate(["a dog", "a red car"]):
        one = edit(model, x, prompt=prompt, generator=gens(2), **head)
        torch.testing.assert_close(many.images[i:i + 1], one.images, rtol=0, atol=1e-4)


def test_translation_between_two_models_of_the_family_decodes_the_source_latent(model):
    """A model to itself under two conditions is its edit: translate and edit agree on the same draws."""
    x = _photos(model)
    conditions = {"source_condition": {"prompt": "a cat", "guidance_scale": 1.0},
                  "target_condition": {"prompt": "a dog", "guidance_scale": 2.0}}
    out = translate(x, model, model, steps=STEPS, strength=0.75, generator=gens(3), **conditions)
    same = edit(model, x, generator=gens(3), source_guidance_scale=1.0, **HEAD)
    torch.testing.assert_close(out.images, same.images, rtol=0, atol=1e-5)

"""FLUX.1 on a tiny pipeline built offline (CLIP + a Unigram T5 tokenizer made with the tokenizers
library): the pipeline's own grid, exact reconstruction, batch invariance with embedded guidance and true CFG,
the applications, loading and the CLI."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from conftest import gens
from cyclediff import CycleDiffusion, decode, edit, encode, sample_latent
from cyclediff.cli import main
from cyclediff.errors import CycleDiffError
from cyclediff.models import Flux, from_pipe, load
from cyclediff.models.codec import to_model_space
from tiny_sd import flux_pipeline, photos

EXACT = 1e-5  # float32 reconstruction bound of the issue (observed ≈ 3e-8)
BATCH_ULPS = 1e-5  # a batched transformer call against separate ones: sums in another order



@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return flux_pipeline(tmp_path_factory.mktemp("flux"))


@pytest.fixture(scope="module")
def flux(pipe):
    return Flux(pipe, max_sequence_length=16)


def test_the_grid_is_the_flux_pipelines_for_the_image_size(pipe, flux):
    seen = []

    def record(p, i, t, kwargs):
        seen.append(float(t))
        return kwargs

    pipe(["a cat"], num_inference_steps=6, height=16, width=16, output_type="latent", max_sequence_length=16,
         callback_on_step_end=record)
    assert flux.schedule_for((1, 4, 8, 8)).timesteps(6) == pytest.approx(seen, abs=1e-4)  # 16×16 images: 16 tokens
    assert flux.schedule_for((1, 4, 16, 16)).timesteps(6)[1] > seen[1]  # 32×32 images: 64 tokens, a larger shift


def test_the_grid_is_asked_for_not_left_behind_by_a_check(flux):
    small = flux.schedule_for((1, 4, 8, 8)).timesteps(6)
    flux.check_sample(torch.zeros(1, 4, 16, 16))
    flux.schedule_for((1, 4, 16, 16))
    assert flux.schedule_for((1, 4, 8, 8)).timesteps(6) == small  # no hidden state between two sizes


@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_flux_encoding_gives_its_latents_back(flux, eta, strength):
    x0 = to_model_space(flux, photos(2), gens(0, 1))
    z = encode(x0, flux, steps=8, strength=strength, eta=eta, generator=gens(0, 1), prompt="a cat",
               guidance_scale=3.5)
    assert z.path == "rectified_flow"
    torch.testing.assert_close(decode(z, flux), x0, rtol=0, atol=EXACT)


@pytest.mark.parametrize("true_cfg", [1.0, 2.5])
def test_flux_edits_are_batch_invariant_with_embedded_guidance_and_true_cfg(flux, true_cfg):
    x = photos(2)
    edit_kw = dict(steps=5, guidance_scale=4.0, source_guidance_scale=2.0)
    if true_cfg == 1.0:
        both = edit(flux, x, source_prompt=["a cat", "a car"], prompt=["a dog", "a red car"], generator=gens(0, 1),
                    **edit_kw).images
        one = edit(flux, x[1:], source_prompt="a car", prompt="a red car", generator=gens(1), **edit_kw).images
        torch.testing.assert_close(both[1:], one, rtol=0, atol=BATCH_ULPS)
        return
    from cyclediff import translate

    target = {"prompt": ["a dog", "a horse"], "negative_prompt": "blue", "true_cfg_scale": true_cfg}
    both = translate(x, flux, flux, steps=5, generator=gens(0, 1), source_condition={"prompt": "a cat"},
                     target_condition=target).images
    one = translate(x[:1], flux, flux, steps=5, generator=gens(0), source_condition={"prompt": "a cat"},
                    target_condition={**target, "prompt": "a dog"}).images
    torch.testing.assert_close(both[:1], one, rtol=0, atol=BATCH_ULPS)
    plain = translate(x[:1], flux, flux, steps=5, generator=gens(0), source_condition={"prompt": "a cat"},
                      target_condition={"prompt": "a dog"}).images
    assert not torch.equal(one, plain)
    with pytest.raises(CycleDiffError, match="negative_prompt"):
        flux.prepare_condition(1, prompt="a dog", true_cfg_scale=2.0)


def test_flux_masks_many_targets_sampling_and_clear_refusals(flux):
    x = photos(1, seed=2)
    many = edit(flux, x, source_prompt="a cat", prompt=["a dog", "a horse"], steps=5, generator=gens(0))
    one = edit(flux, x, source_prompt="a cat", prompt="a horse", steps=5, generator=gens(0))
    torch.testing.assert_close(many.images[1:], one.images, rtol=0, atol=BATCH_ULPS)
    auto = edit(flux, x, source_prompt="a cat", prompt="a dog", steps=5, generator=gens(0),
                method=CycleDiffusion(mask="auto"))
    assert auto.mask.shape == (1, 1, 16, 16)
    z = sample_latent(flux, 1, steps=4, generator=gens(3), prompt="a cat")
    assert torch.isfinite(decode(z, flux)).all()
    with pytest.raises(CycleDiffError, match="FLUX's joint attention"):
        edit(flux, x, source_prompt="a cat", prompt="a dog", steps=4, generator=gens(0),
             method=CycleDiffusion(attention="refine"))


def test_from_pipe_load_and_the_cli_take_flux(tmp_path, pipe):
    from cyclediff._images import save_image

    assert isinstance(from_pipe(pipe), Flux)
    pipe.save_pretrained(tmp_path / "flux")
    model = load(str(tmp_path / "flux"))
    assert isinstance(model, Flux)
    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(tmp_path / "flux"),
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--steps", "4",
                                    "--guidance-scale", "3.5", "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("cat_a-dog_*.png"))) == 1


def test_single_checkpoint_files_are_told_apart_by_their_keys(tmp_path, monkeypatch):
    """A FLUX (double_blocks) or SD3 (joint_blocks) checkpoint goes to its adapter's single-file loader; offline,
    with no configs to fetch, that is one clear error naming the file."""
    from safetensors.torch import save_file

    from cyclediff.models import StableDiffusion3

    seen = []
    for cls in (Flux, StableDiffusion3):
        monkeypatch.setattr(cls, "from_pretrained", classmethod(lambda c, src, **kw: seen.append((c, src))))
    for name, key in (("flux.safetensors", "double_blocks.0.img_attn.qkv.weight"),
                      ("sd3.safetensors", "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight")):
        save_file({key: torch.zeros(1)}, str(tmp_path / name))
        load(str(tmp_path / name))
    assert [c.__name__ for c, _ in seen] == ["Flux", "StableDiffusion3"]
    monkeypatch.undo()
    with pytest.raises(CycleDiffError, match="could not load a FLUX model"):
        load(str(tmp_path / "flux.safetensors"))


def test_guidance_steers_a_flow_model_like_any_other():
    """guide() differentiates through the flow model's decoder: the digits classifier's −log p(8) as the energy
    steers the null-label flow model to 8s (judged by the independent SVC), as the demo does for the DDPM."""
    import numpy as np

    from cyclediff import guide
    from cyclediff.demo.data import classify
    from cyclediff.demo.guidance import digit_classifier
    from cyclediff.guidance import ClassifierEnergy
    from cyclediff.models import load as load_model

    model = load_model("demo:digits-flow")
    result = guide(model, ClassifierEnergy(digit_classifier(), 8), weight=10.0, langevin_steps=30, step_size=0.1,
                   steps=10, batch_size=12, generator=gens(*range(12)))
    # Langevin chains are noisy: most (not every) chain ends far below where it started (11 of 12 here), and most
    # read as 8s (10 of 12 here; unguided, about one in ten would)
    assert torch.isfinite(result.images).all() and (result.energies[-1] < 0.5 * result.energies[0]).sum() >= 9
    assert np.mean(classify(result.images * 2 - 1) == 8) >= 8 / 12


def test_schnell_like_models_without_a_guidance_embedding_encode_exactly(tmp_path):
    """FLUX.1-schnell has no guidance input (guidance_embeds False) and runs few steps."""
    schnell = Flux(flux_pipeline(tmp_path, guidance_embeds=False), max_sequence_length=16)
    x0 = to_model_space(schnell, photos(1), gens(0))
    z = encode(x0, schnell, steps=4, eta=1.0, generator=gens(0), prompt="a cat")
    torch.testing.assert_close(decode(z, schnell), x0, rtol=0, atol=EXACT)

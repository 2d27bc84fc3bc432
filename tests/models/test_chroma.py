"""Chroma on a tiny pipeline built offline (a Unigram T5 tokenizer made with the tokenizers library): a seed gives
``ChromaPipeline``'s own image (no guidance; classifier-free guidance with and without a negative prompt, over the
T5 attention mask), SDEdit's path equals ``ChromaImg2ImgPipeline``, exact reconstruction, batch invariance under
guidance, loading (folder, from_pipe, single file) and the CLI."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from test_pipeline_parity import NEGATIVE, PROMPT, SENSITIVE, TOLERANCE, assert_parity, ours, theirs

from conftest import gens
from cyclediff import decode, edit, encode
from cyclediff._noise import gaussian_like
from cyclediff.baselines import ddim_generate
from cyclediff.cli import main
from cyclediff.encoder import start_point
from cyclediff.errors import CycleDiffError
from cyclediff.models import Flux, from_pipe, load
from cyclediff.models.chroma import Chroma
from cyclediff.models.codec import to_images, to_model_space
from tiny_chroma import chroma_pipeline
from tiny_sd import photos

EXACT = 1e-5  # float32 reconstruction bound of the issue
BATCH_ULPS = 1e-5  # a batched transformer call against separate ones: sums in another order
CFG = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return chroma_pipeline(tmp_path_factory.mktemp("chroma"))


@pytest.fixture(scope="module")
def chroma(pipe):
    return Chroma.from_pipe(pipe)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, other, size", [
    ({"guidance_scale": 1.0}, CFG, (16, 16)),
    (CFG, {"guidance_scale": 1.0}, (16, 16)),
    (CFG, {"guidance_scale": 2.0, "negative_prompt": NEGATIVE}, (16, 32)),
    ({"guidance_scale": 4.0}, CFG, (16, 16)),  # the empty negative prompt, as the pipeline's default
], ids=["no-guidance", "cfg-negative", "cfg-negative-16x32", "cfg-empty-negative"])
def test_a_seed_gives_chromas_own_image(chroma, pipe, guidance, other, size):
    assert_parity(chroma, pipe, size=size, pipe_call={**guidance, "max_sequence_length": chroma.max_sequence_length},
                  other_guidance=other, **guidance)


def test_the_t5_attention_mask_is_the_pipelines(chroma, pipe, monkeypatch):
    """The prompt's tokens and one padding token attend: without the mask the image is another one."""
    from test_pipeline_parity import ours, theirs

    reference = theirs(pipe, max_sequence_length=chroma.max_sequence_length, guidance_scale=1.0)
    forward = chroma.runner.module.forward

    def unmasked(x, timesteps, return_dict=False, attention_mask=None, **kwargs):
        return forward(x, timesteps, return_dict=return_dict, **kwargs)

    monkeypatch.setattr(chroma.runner.module, "forward", unmasked)
    assert float((ours(chroma, guidance_scale=1.0) - reference).abs().max()) > SENSITIVE
    monkeypatch.undo()
    assert float((ours(chroma, guidance_scale=1.0) - reference).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("strength, guidance", [(0.5, {"guidance_scale": 1.0}), (0.75, CFG), (1.0, CFG)])
def test_sdedits_path_is_chromas_img2img_pipeline(chroma, pipe, strength, guidance):
    """The image's VAE posterior draw, then x_start drawn from q(x_t | x0) at the strength's first step (the
    pipeline's two draws, in its order), then the ODE on the strength-cut grid: ``ChromaImg2ImgPipeline``'s image.
    (``edit(method="sdedit")`` refuses η = 0 and draws fresh noise in every step at η > 0, which this
    deterministic pipeline does not: its path is composed here from the same parts.)"""
    from diffusers import ChromaImg2ImgPipeline

    img2img = ChromaImg2ImgPipeline.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    x = photos(1, seed=1)

    def ours(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        x0 = to_model_space(chroma, x, g)
        timesteps = list(chroma.schedule_for(tuple(x0.shape)).timesteps(4, strength))
        x_start = start_point(x0, chroma.schedule.alpha_bar_at(timesteps[0]), gaussian_like(x0, g))
        cond = chroma.prepare_condition(1, prompt=PROMPT, **guidance)
        return to_images(chroma, ddim_generate(x_start, chroma, cond, timesteps))

    with torch.no_grad():
        reference = img2img(PROMPT, image=x, strength=strength, num_inference_steps=4, height=16, width=16,
                            generator=torch.Generator().manual_seed(5), output_type="pt",
                            max_sequence_length=chroma.max_sequence_length, **guidance).images
    assert float((ours(5) - reference).abs().max()) <= TOLERANCE
    assert float((ours(6) - reference).abs().max()) > SENSITIVE


def test_a_chroma_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with guidance; the base model stays the base."""
    from tiny_sd import make_lora

    file = make_lora(chroma_pipeline(tmp_path / "donor"), tmp_path / "lora", seed=7, gain=30.0)
    fused = chroma_pipeline(tmp_path / "fused")
    fused.set_progress_bar_config(disable=True)
    fused.load_lora_weights(str(file))
    fused.fuse_lora()
    base = Chroma.from_pipe(chroma_pipeline(tmp_path / "base"))
    reference = theirs(fused, **CFG, max_sequence_length=base.max_sequence_length)
    styled = base.with_lora(file)
    with torch.no_grad():  # the LoRA's parameters ask for gradients
        diff = float((ours(styled, **CFG) - reference).abs().max())
        assert diff <= TOLERANCE, diff
        assert float((ours(base, **CFG) - reference).abs().max()) > SENSITIVE


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_chroma_encoding_gives_its_latents_back(chroma, eta, strength):
    x0 = to_model_space(chroma, photos(2), gens(0, 1))
    z = encode(x0, chroma, steps=6, strength=strength, eta=eta, generator=gens(0, 1), prompt="a cat", **CFG)
    assert z.path == "rectified_flow"
    torch.testing.assert_close(decode(z, chroma), x0, rtol=0, atol=EXACT)


def test_chroma_edits_are_batch_invariant_under_guidance(chroma):
    x = photos(2)
    kw = dict(steps=5, guidance_scale=4.0, source_guidance_scale=2.0)
    both = edit(chroma, x, source_prompt=["a cat", "a car"], prompt=["a dog", "a red car"],
                negative_prompt=["blue", "a horse"], generator=gens(0, 1), **kw).images
    one = edit(chroma, x[1:], source_prompt="a car", prompt="a red car", negative_prompt="a horse", generator=gens(1),
               **kw).images
    torch.testing.assert_close(both[1:], one, rtol=0, atol=BATCH_ULPS)
    plain = edit(chroma, x[1:], source_prompt="a car", prompt="a red car", generator=gens(1), **kw).images
    assert float((plain - one).abs().max()) > SENSITIVE  # the negative prompt reaches the target's rows


def test_chroma_conditions_are_checked_in_one_line(chroma):
    with pytest.raises(CycleDiffError, match="a Chroma model takes no condition 'true_cfg_scale'") as err:
        chroma.prepare_condition(1, prompt="a cat", true_cfg_scale=2.0)
    assert "\n" not in str(err.value)
    with pytest.raises(CycleDiffError, match="negative_prompt must be a string or a list of 2"):
        chroma.prepare_condition(2, prompt="a cat", negative_prompt=["a", "b", "c"], guidance_scale=3.0)


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_chroma(tmp_path, pipe):
    from diffusers import ChromaImg2ImgPipeline

    from cyclediff._images import save_image

    assert isinstance(from_pipe(pipe), Chroma)
    assert isinstance(from_pipe(ChromaImg2ImgPipeline.from_pipe(pipe)), Chroma)
    pipe.save_pretrained(tmp_path / "chroma")
    model = load(str(tmp_path / "chroma"))
    assert isinstance(model, Chroma) and model.family == "chroma"
    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(tmp_path / "chroma"),
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--negative-prompt", "blue",
                                    "--steps", "4", "--guidance-scale", "4", "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("cat_a-dog_*.png"))) == 1


def test_a_chroma_checkpoint_is_told_from_a_flux_one(tmp_path, monkeypatch):
    """A Chroma network has FLUX's blocks and its own modulation approximator (``distilled_guidance_layer``): its
    single file goes to Chroma's loader, a FLUX file still to FLUX's."""
    from safetensors.torch import save_file

    seen = []
    for cls in (Chroma, Flux):
        monkeypatch.setattr(cls, "from_pretrained", classmethod(lambda c, src, **kw: seen.append(c)))
    blocks = {"double_blocks.0.img_attn.qkv.weight": torch.zeros(1), "single_blocks.0.linear1.weight": torch.zeros(1)}
    save_file({**blocks, "distilled_guidance_layer.in_proj.bias": torch.zeros(1)}, str(tmp_path / "chroma.safetensors"))
    save_file(blocks, str(tmp_path / "flux.safetensors"))
    load(str(tmp_path / "chroma.safetensors"))
    load(str(tmp_path / "flux.safetensors"))
    assert [c.__name__ for c in seen] == ["Chroma", "Flux"]

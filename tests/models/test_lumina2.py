"""Lumina 2 on a tiny pipeline built offline (a word-level Gemma-style tokenizer made with the tokenizers library, a
small Gemma2, an 8× VAE): a seed gives ``Lumina2Pipeline``'s own image (no guidance; classifier-free guidance with
its norm rescale on and off, with and without a negative prompt, with another system prompt; its negated output
and its 1 − σ time), exact reconstruction, batch invariance under guidance, loading (folder, from_pipe, single
file) and the CLI. diffusers has no Lumina 2 img2img pipeline to hold SDEdit against."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from family_checks import (
    NEGATIVE,
    assert_batch_invariant_edit,
    assert_cli_edits,
    assert_lora_is_fused,
    assert_parity,
    assert_reconstructs,
    load_keys,
    loaders_seen,
    one_line_error,
    ours,
    theirs,
)

from conftest import gens
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_model_space
from cyclediff.models.lumina2 import Lumina2
from tiny_lumina2 import lumina2_pipeline
from tiny_sd import photos

CFG = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}
SIZE = (32, 32)  # the pipeline takes the VAE's factor to be 8, and 2×2 patches: sides multiples of 16


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = lumina2_pipeline(tmp_path_factory.mktemp("lumina2"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def lumina(pipe):
    return Lumina2.from_pipe(pipe)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.interpolate(photos(n, seed=seed), size=SIZE, mode="bilinear")


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, other, size", [
    ({"guidance_scale": 1.0}, CFG, SIZE),
    (CFG, {"guidance_scale": 1.0}, SIZE),
    (CFG, {**CFG, "cfg_normalization": False}, SIZE),
    ({**CFG, "cfg_normalization": False}, {"guidance_scale": 2.0, "negative_prompt": NEGATIVE}, SIZE),
    ({"guidance_scale": 4.0}, CFG, (32, 64)),  # the empty negative prompt, as the pipeline's default
    ({**CFG, "system_prompt": "a photo of the car"}, {"system_prompt": None}, SIZE),  # None: the pipeline's
], ids=["no-guidance", "cfg-normalised", "cfg-normalised-vs-plain", "cfg-plain", "cfg-empty-negative-32x64",
        "system-prompt"])
def test_a_seed_gives_luminas_own_image(lumina, pipe, guidance, other, size):
    assert_parity(lumina, pipe, size=size, other_guidance=other, **guidance)


def test_a_lumina2_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, with guidance; the base model stays the base."""
    assert_lora_is_fused(lumina2_pipeline, Lumina2.from_pipe, tmp_path, CFG, mine=partial(ours, size=SIZE),
                         reference=partial(theirs, size=SIZE))


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_lumina_encoding_gives_its_latents_back(lumina, eta, strength):
    assert_reconstructs(lumina, to_model_space(lumina, images(2), gens(0, 1)), strength=strength, eta=eta, **CFG)


def test_lumina_edits_are_batch_invariant_under_guidance(lumina):
    """Source, target and negative rows of two images share one transformer call, each with its own mask."""
    assert_batch_invariant_edit(lumina, images(2), negatives=["blue", "a horse of the car"], steps=5,
                                guidance_scale=4.0)


def test_lumina_conditions_are_checked_in_one_line(lumina):
    with one_line_error("cfg_trunc_ratio .* not supported"):
        lumina.prepare_condition(1, prompt="a cat", guidance_scale=4.0, cfg_trunc_ratio=0.5)
    with one_line_error("a Lumina 2 model takes no condition 'true_cfg_scale'"):
        lumina.prepare_condition(1, prompt="a cat", true_cfg_scale=4.0)
    with one_line_error("cfg_normalization must be true or false"):
        lumina.prepare_condition(1, prompt="a cat", cfg_normalization="yes")
    with one_line_error("guidance_scale"):
        lumina.prepare_condition(1, prompt="a cat", guidance_scale=-1.0)


def test_a_lumina_condition_record_rebuilds_it(lumina):
    cond = lumina.prepare_condition(1, prompt="a cat", system_prompt="a photo", cfg_normalization=False, **CFG)
    again = lumina.prepare_condition(1, **cond.record)
    assert again.record == cond.record and again.inputs["normalise"] is False
    torch.testing.assert_close(again.inputs["cond"], cond.inputs["cond"], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_lumina(tmp_path, pipe):
    assert isinstance(from_pipe(pipe), Lumina2)
    pipe.save_pretrained(tmp_path / "l2")
    model = load(str(tmp_path / "l2"))
    assert isinstance(model, Lumina2) and model.family == "lumina2"
    assert_cli_edits(tmp_path, tmp_path / "l2", images(1)[0], "--negative-prompt", "blue", "--steps", "4",
                     "--guidance-scale", "4")


@pytest.mark.parametrize("key", ["cap_embedder.0.weight", "time_caption_embed.caption_embedder.0.weight"])
def test_a_lumina_checkpoint_goes_to_its_loader(tmp_path, monkeypatch, key):
    seen = loaders_seen(monkeypatch, Lumina2)
    load_keys(tmp_path / "l2.safetensors", [key, "context_refiner.0.attention.qkv.weight"])
    assert seen == [Lumina2]


def test_a_lumina_transformer_file_loads_into_its_base_pipeline(tmp_path, pipe):
    """A single transformer file in diffusers' names, the rest of the pipeline from config= a local folder."""
    from safetensors.torch import save_file

    pipe.save_pretrained(tmp_path / "base")
    save_file(pipe.transformer.state_dict(), str(tmp_path / "t.safetensors"))
    model = Lumina2.from_pretrained(tmp_path / "t.safetensors", config=str(tmp_path / "base"))
    for name, weight in pipe.transformer.state_dict().items():
        torch.testing.assert_close(model.transformer.state_dict()[name], weight, rtol=0, atol=0)

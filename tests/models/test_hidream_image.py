"""HiDream-I1 on a tiny pipeline built offline (two CLIPs, T5, a Llama built from a config, tokenizers made with the
tokenizers library, a mixture-of-experts transformer): a seed gives ``HiDreamImagePipeline``'s own image with Dev /
Fast's flow-matching Euler scheduler (any steps, square and non-square) and with Full's UniPC where it takes
first-order steps (1 and 2 steps), without and with classifier-free guidance (a negative prompt, or the pipeline's
""); a scale of 1 or below is no guidance, as the pipeline has it; exact reconstruction, batch invariance under
guidance, loading and the CLI. HiDream has no img2img pipeline in diffusers, so there is no SDEdit check."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from test_pipeline_parity import NEGATIVE, PROMPT, SENSITIVE, TOLERANCE

from conftest import gens
from cyclediff import decode, edit, encode
from cyclediff.cli import main
from cyclediff.errors import CycleDiffError
from cyclediff.flow import UniPCFlowSchedule
from cyclediff.models import from_pipe, load
from cyclediff.models.codec import to_images, to_model_space
from cyclediff.models.families import family_of_keys, lora_match
from cyclediff.models.hidream_image import HiDreamImage, hidream_schedule
from cyclediff.sampler import sample_latent
from tiny_hidream import SIZE, hidream_pipeline, unipc
from tiny_sd import photos

EXACT = 1e-5  # float32 reconstruction bound of the issue
BATCH_ULPS = 1e-5  # a batched transformer call against separate ones: sums in another order
CFG = {"guidance_scale": 4.0, "negative_prompt": NEGATIVE}


def seed(s: int) -> torch.Generator:
    return torch.Generator().manual_seed(s)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = hidream_pipeline(tmp_path_factory.mktemp("hidream"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def hidream(pipe):
    return HiDreamImage.from_pipe(pipe)


def ours(model, s: int, steps: int, size=(SIZE, SIZE), **condition) -> torch.Tensor:
    h, w = (n // model.codec.factor for n in size)
    z = sample_latent(model, 1, steps=steps, eta=0, generator=seed(s), prompt=PROMPT, sample_shape=(4, h, w),
                      **condition)
    return to_images(model, decode(z, model))


def theirs(pipe, s: int, steps: int, size=(SIZE, SIZE), **call) -> torch.Tensor:
    with torch.no_grad():
        return pipe(PROMPT, num_inference_steps=steps, height=size[0], width=size[1], generator=seed(s),
                    output_type="pt", **call).images


# ---------------------------------------------------------------------------------------------------- the grid
@pytest.mark.parametrize("shift", [1.0, 3.0, 6.0])
def test_the_grid_is_hidream_fulls_unipc(shift):
    """Every step count's levels are UniPC's flow σ and the network's timesteps its int64 timesteps."""
    scheduler = unipc(shift)
    schedule = hidream_schedule(scheduler.config, 0.5)
    assert isinstance(schedule, UniPCFlowSchedule)
    for steps in (1, 2, 3, 7, 50):
        scheduler.set_timesteps(steps)
        grid = schedule.grid(steps)
        assert [int(t) for t in grid] == scheduler.timesteps.tolist()
        sigmas = torch.tensor([schedule.sigma_at(t) for t in grid] + [0.0], dtype=torch.float64)
        torch.testing.assert_close(sigmas, scheduler.sigmas.double(), rtol=0, atol=1e-7)


def test_other_schedulers_are_refused_in_one_line():
    from diffusers import DDIMScheduler, UniPCMultistepScheduler

    with pytest.raises(CycleDiffError, match="HiDream needs a rectified-flow scheduler") as err:
        hidream_schedule(DDIMScheduler().config, 0.5)
    assert "\n" not in str(err.value)
    karras = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, use_karras_sigmas=True)
    with pytest.raises(CycleDiffError, match="use_karras_sigmas.*not HiDream-I1-Full's") as err:
        hidream_schedule(karras.config, 0.5)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("guidance, call, other", [
    ({}, {"guidance_scale": 0.0}, CFG),  # Dev's and Fast's cards: 0.0
    (CFG, CFG, {"guidance_scale": 2.0, "negative_prompt": NEGATIVE}),
    ({"guidance_scale": 4.0}, {"guidance_scale": 4.0}, CFG),  # the pipeline's negative prompt: ""
], ids=["no-guidance", "cfg-negative", "cfg-empty-negative"])
def test_a_seed_gives_hidreams_own_image_with_dev_and_fasts_euler_scheduler(hidream, pipe, guidance, call, other):
    reference = theirs(pipe, 3, 4, **call)
    assert float((ours(hidream, 3, 4, **guidance) - reference).abs().max()) <= TOLERANCE
    assert float((ours(hidream, 4, 4, **guidance) - reference).abs().max()) > SENSITIVE
    assert float((ours(hidream, 3, 4, **other) - reference).abs().max()) > SENSITIVE


def test_a_seed_gives_hidreams_own_non_square_image(hidream, pipe):
    """Non-square latents: the transformer pads them to its max_seq tokens with a mask (8×32 has the pipeline's
    default area, which it keeps)."""
    reference = theirs(pipe, 3, 3, size=(8, 32), **CFG)
    assert reference.shape == (1, 3, 8, 32)
    assert float((ours(hidream, 3, 3, size=(8, 32), **CFG) - reference).abs().max()) <= TOLERANCE
    assert float((ours(hidream, 4, 3, size=(8, 32), **CFG) - reference).abs().max()) > SENSITIVE


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("guidance, call", [({}, {"guidance_scale": 1.0}), (CFG, CFG)], ids=["no-guidance", "cfg"])
def test_a_seed_gives_hidream_fulls_own_image_where_unipc_is_first_order(tmp_path, steps, guidance, call):
    """Full's UniPC: its grid starts at σ₀ = 1 − 1e-6 and gives the network integer timesteps; at 1 and 2 steps its
    updates are the core's first-order step (the corrector at the second step moves a sample whose x̂0 the final
    step to σ = 0 no longer reads)."""
    full = hidream_pipeline(tmp_path, scheduler=unipc(3.0))
    full.set_progress_bar_config(disable=True)
    model = HiDreamImage.from_pipe(full)
    assert isinstance(model.schedule, UniPCFlowSchedule)
    reference = theirs(full, 3, steps, **call)
    assert float((ours(model, 3, steps, **guidance) - reference).abs().max()) <= TOLERANCE
    assert float((ours(model, 4, steps, **guidance) - reference).abs().max()) > SENSITIVE


def test_a_guidance_scale_of_one_or_below_is_no_guidance_as_in_the_pipeline(hidream, pipe):
    """The pipeline guides only above 1: 0.5 is the conditional output alone (not an extrapolation), the record
    keeps what was asked."""
    half = hidream.prepare_condition(1, prompt=PROMPT, negative_prompt=NEGATIVE, guidance_scale=0.5)
    assert half.inputs["scale"] == 1 and half.inputs["uncond"] is None and half.record["guidance_scale"] == 0.5
    reference = theirs(pipe, 3, 2, guidance_scale=0.5, negative_prompt=NEGATIVE)
    assert float((ours(hidream, 3, 2, guidance_scale=0.5, negative_prompt=NEGATIVE) - reference).abs().max()) \
        <= TOLERANCE


# ---------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_a_hidream_encoding_gives_its_latents_back(hidream, eta, strength):
    x0 = to_model_space(hidream, photos(2, size=SIZE), gens(0, 1))
    z = encode(x0, hidream, steps=6, strength=strength, eta=eta, generator=gens(0, 1), prompt="a cat", **CFG)
    assert z.path == "rectified_flow"
    torch.testing.assert_close(decode(z, hidream), x0, rtol=0, atol=EXACT)


def test_hidream_edits_are_batch_invariant_under_guidance(hidream):
    x = photos(2, size=SIZE)
    kw = dict(steps=4, guidance_scale=4.0, source_guidance_scale=2.0)
    both = edit(hidream, x, source_prompt=["a cat", "a photo of the red car"], prompt=["a dog", "a blue car"],
                negative_prompt=["blue", "a horse"], generator=gens(0, 1), **kw).images
    one = edit(hidream, x[1:], source_prompt="a photo of the red car", prompt="a blue car", negative_prompt="a horse",
               generator=gens(1), **kw).images
    torch.testing.assert_close(both[1:], one, rtol=0, atol=BATCH_ULPS)
    plain = edit(hidream, x[1:], source_prompt="a photo of the red car", prompt="a blue car", generator=gens(1),
                 **kw).images
    assert float((plain - one).abs().max()) > SENSITIVE  # the negative prompt reaches the target's rows


def test_hidream_conditions_and_samples_are_checked_in_one_line(hidream):
    with pytest.raises(CycleDiffError, match="a HiDream-I1 model takes no condition 'true_cfg_scale'") as err:
        hidream.prepare_condition(1, prompt="a cat", true_cfg_scale=2.0)
    assert "\n" not in str(err.value)
    hidream.check_sample(torch.zeros(1, 4, 4, 32))  # 32 patches: within the tiny transformer's 64
    with pytest.raises(CycleDiffError, match="at most 64 2×2 patches; got 8×36") as err:
        hidream.check_sample(torch.zeros(1, 4, 8, 36))
    assert "\n" not in str(err.value)


def test_a_hidream_lora_gives_the_pipelines_fused_lora_image(tmp_path):
    """with_lora(file) (HiDreamImageLoraLoaderMixin's adapters, on for the variant's calls) equals the pipeline's
    load_lora_weights + fuse_lora of the same file, seed for seed; the base model stays the base."""
    from tiny_sd import make_lora

    file = make_lora(hidream_pipeline(tmp_path / "donor"), tmp_path / "lora", seed=7, gain=30.0)
    fused = hidream_pipeline(tmp_path / "fused")
    fused.set_progress_bar_config(disable=True)
    fused.load_lora_weights(str(file))
    fused.fuse_lora()
    reference = theirs(fused, 3, 3, **CFG)
    base = HiDreamImage.from_pipe(hidream_pipeline(tmp_path / "base"))
    styled = base.with_lora(file)
    with torch.no_grad():  # the LoRA's parameters ask for gradients
        assert float((ours(styled, 3, 3, **CFG) - reference).abs().max()) <= TOLERANCE
        assert float((ours(base, 3, 3, **CFG) - reference).abs().max()) > SENSITIVE


# ---------------------------------------------------------------------------------------------------- loading
def test_from_pipe_load_and_the_cli_take_hidream(tmp_path, pipe):
    import cyclediff.models
    from cyclediff._images import save_image

    assert cyclediff.models.HiDreamImage is HiDreamImage  # named by the package, imported when first named
    assert isinstance(from_pipe(pipe), HiDreamImage)
    pipe.save_pretrained(tmp_path / "hidream")
    model = load(str(tmp_path / "hidream"))
    assert isinstance(model, HiDreamImage) and model.family == "hidream"
    save_image(photos(1, size=SIZE)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(tmp_path / "hidream"),
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--negative-prompt", "blue",
                                    "--steps", "4", "--guidance-scale", "4", "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("cat_a-dog_*.png"))) == 1


def test_a_hidream_folder_without_its_llama_names_the_fix_in_one_line(tmp_path, pipe):
    """The HiDream-ai repositories hold no Llama: it comes from Llama-3.1-8B-Instruct, or one line says how."""
    from diffusers import HiDreamImagePipeline

    HiDreamImagePipeline(**{**pipe.components, "text_encoder_4": None, "tokenizer_4": None}).save_pretrained(
        tmp_path / "no-llama")
    with pytest.raises(CycleDiffError, match="needs Llama-3.1-8B-Instruct .*tokenizer_4 / text_encoder_4") as err:
        load(str(tmp_path / "no-llama"))
    assert "\n" not in str(err.value)


def test_hidream_files_and_loras_are_told_by_their_blocks(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    keys = ["double_stream_blocks.0.block.adaLN_modulation.1.bias", "single_stream_blocks.0.block.ff_i.gate.weight",
            "caption_projection.0.linear.weight"]
    assert family_of_keys(keys).name == "hidream"
    assert lora_match(["transformer.single_stream_blocks.0.block.attn1.to_q.lora_A.weight"])[0].name == "hidream"
    seen = []
    monkeypatch.setattr(HiDreamImage, "from_pretrained", classmethod(lambda c, src, **kw: seen.append(c)))
    save_file({k: torch.zeros(1) for k in keys}, str(tmp_path / "hidream.safetensors"))
    load(str(tmp_path / "hidream.safetensors"))
    assert seen == [HiDreamImage]

"""The checks every model family's tests run, written once: a seed gives the family's own image (``assert_parity``),
exact reconstruction (``assert_reconstructs``), batch invariance of edits under guidance
(``assert_batch_invariant_edit``), SDEdit's path composed from the core's parts against an img2img pipeline
(``assert_img2img_path``), a LoRA equal to the pipeline's ``fuse_lora`` (``assert_lora_is_fused``), one-line
refusals (``one_line_error``), the CLI editing with a saved folder (``assert_cli_edits``) and single files going
to their family's loader (``loaders_seen``). Each family's test file calls them with its model, pipeline builder
and condition; every check also asserts that the tiny random model could fail it (another seed, the base model, or
no negative prompt moves the output by more than ``SENSITIVE``)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from conftest import gens
from cyclediff import decode, edit, encode
from cyclediff.errors import CycleDiffError
from cyclediff.models.codec import to_images, to_model_space
from cyclediff.sampler import sample_latent

TOLERANCE = 1e-4  # on [0, 1] images, float32
SENSITIVE = 20 * TOLERANCE  # what another seed or guidance scale must change, at least (seeds: ~0.4, guidance: 4e-3+)
EXACT = 1e-5  # float32 reconstruction bound of the issue
BATCH_ULPS = 1e-5  # a batched transformer call against separate ones: sums in another order
PROMPT, NEGATIVE, STEPS, SEED = "a red cat", "a blue dog", 4, 3
SOURCES, TARGETS = ("a cat", "a photo of the red car"), ("a dog", "a blue car")  # a batch's prompts, of two lengths


def seed(s: int) -> torch.Generator:
    return torch.Generator().manual_seed(s)


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference of two images (or clips)."""
    return float((a - b).abs().max())


# ---------------------------------------------------------------------------------------------------- parity
def ours(model, s: int = SEED, size=(16, 16), eta: float = 0.0, steps: int = STEPS, **condition) -> torch.Tensor:
    """Our image for seed s: a prior latent decoded by the sampler, then through the model's codec."""
    h, w = (n // model.codec.factor for n in size)
    z = sample_latent(model, 1, steps=steps, eta=eta, generator=seed(s), prompt=PROMPT,
                      sample_shape=(model.sample_shape[0], h, w), **condition)
    return to_images(model, decode(z, model))


def theirs(pipe, s: int = SEED, size=(16, 16), steps: int = STEPS, **call) -> torch.Tensor:
    """The family's own pipeline's image for seed s (images in [0, 1])."""
    with torch.no_grad():
        return pipe(prompt=PROMPT, num_inference_steps=steps, height=size[0], width=size[1], generator=seed(s),
                    output_type="pt", **call).images


def assert_parity(model, pipe, *, size=(16, 16), pipe_call=None, other_guidance=None, reference=theirs,
                  **condition) -> float:
    """Ours equals the pipeline's image (``reference(pipe, size=, **call)``, the shared ``theirs`` unless given);
    another seed (and another guidance, when given) is far from it."""
    mine = ours(model, size=size, **condition)
    reference = reference(pipe, size=size, **(pipe_call if pipe_call is not None else condition))
    assert mine.shape == reference.shape == (1, 3, *size)
    diff = gap(mine, reference)
    assert diff <= TOLERANCE, f"max |ours − pipeline| = {diff:.3g}"
    assert gap(ours(model, SEED + 1, size=size, **condition), reference) > SENSITIVE
    if other_guidance is not None:
        assert gap(ours(model, size=size, **{**condition, **other_guidance}), reference) > SENSITIVE
    return diff


def guidance_cases(cfg: dict):
    """The parity cases of a family with classifier-free guidance and a negative prompt (``cfg``): none, ``cfg``
    (against none), ``cfg`` at 16×32 (against another scale), and ``cfg``'s scale with the pipeline's default
    negative prompt, the empty one."""
    return pytest.mark.parametrize("guidance, other, size", [
        ({"guidance_scale": 1.0}, cfg, (16, 16)),
        (cfg, {"guidance_scale": 1.0}, (16, 16)),
        (cfg, {"guidance_scale": 2.0, "negative_prompt": NEGATIVE}, (16, 32)),
        ({"guidance_scale": cfg["guidance_scale"]}, cfg, (16, 16)),
    ], ids=["no-guidance", "cfg-negative", "cfg-negative-16x32", "cfg-empty-negative"])


def assert_lora_is_fused(build_pipeline, build_model, tmp_path, condition: dict, *, pipe_call=None, mine=ours,
                         reference=theirs):
    """with_lora(file) (adapters switched on for the variant's calls) equals the pipeline's load_lora_weights +
    fuse_lora of the same file, seed for seed, under ``condition`` (the pipeline called with ``pipe_call`` when its
    names differ); the base model stays the base. ``mine(model, **condition)`` / ``reference(pipe, **call)`` give
    the family's image or clip (the shared image ones unless given). Returns the LoRA file."""
    from tiny_sd import make_lora

    file = make_lora(build_pipeline(tmp_path / "donor"), tmp_path / "lora", seed=7, gain=30.0)
    fused = build_pipeline(tmp_path / "fused")
    fused.set_progress_bar_config(disable=True)
    fused.load_lora_weights(str(file))
    fused.fuse_lora()
    expected = reference(fused, **(pipe_call if pipe_call is not None else condition))
    base = build_model(build_pipeline(tmp_path / "base"))
    styled = base.with_lora(file)
    with torch.no_grad():  # the LoRA's parameters ask for gradients
        diff = gap(mine(styled, **condition), expected)
        assert diff <= TOLERANCE, diff
        assert gap(mine(base, **condition), expected) > SENSITIVE
    return file


# ---------------------------------------------------------------------------------------------------- the core
def assert_reconstructs(model, x0: torch.Tensor, *, strength: float, eta: float, steps: int = 6,
                        prompt="a cat", **condition):
    """Decoding an encoding of two images (or clips) in model space gives them back within ``EXACT``."""
    z = encode(x0, model, steps=steps, strength=strength, eta=eta, generator=gens(0, 1), prompt=prompt, **condition)
    assert z.path == "rectified_flow"
    torch.testing.assert_close(decode(z, model), x0, rtol=0, atol=EXACT)
    return z


def assert_batch_invariant_edit(model, x: torch.Tensor, *, sources=SOURCES, targets=TARGETS, negatives=None,
                                without=None, moves: float | None = SENSITIVE, atol: float = BATCH_ULPS,
                                source_guidance_scale: float = 2.0, **kw) -> torch.Tensor:
    """Two items edited in one call (``kw``: the steps and guidance; the source's guidance 2 unless given): the
    second equals it edited alone with its own generator, within ``atol``.
    Then the second edited without its negative prompt (and with ``without``'s settings) must move by more than
    ``moves``: the negative prompt (or the guidance) reaches the target's rows."""
    kw["source_guidance_scale"] = source_guidance_scale
    negative = {"negative_prompt": list(negatives)} if negatives else {}
    both = edit(model, x, source_prompt=list(sources), prompt=list(targets), generator=gens(0, 1), **negative,
                **kw).images
    negative = {"negative_prompt": negatives[1]} if negatives else {}
    one = edit(model, x[1:], source_prompt=sources[1], prompt=targets[1], generator=gens(1), **negative, **kw).images
    assert both.shape == x.shape
    torch.testing.assert_close(both[1:], one, rtol=0, atol=atol)
    if moves is not None:
        plain = edit(model, x[1:], source_prompt=sources[1], prompt=targets[1], generator=gens(1),
                     **{**kw, **(without or {})}).images
        assert gap(plain, one) > moves
    return both


def sdedit_path(model, x: torch.Tensor, strength: float, s: int, steps: int = STEPS, **condition) -> torch.Tensor:
    """SDEdit at η = 0 composed from the core's parts: the VAE posterior's draw, x_start from q(x_t | x0) at the
    strength's first step (the img2img pipelines' two draws, in their order), then the ODE on the cut grid.
    (``edit(method="sdedit")`` refuses η = 0 and draws fresh noise in every step at η > 0, which these
    deterministic pipelines do not.)"""
    from cyclediff._noise import gaussian_like
    from cyclediff.baselines import ddim_generate
    from cyclediff.encoder import start_point

    g = seed(s)
    x0 = to_model_space(model, x, g)
    timesteps = list(model.schedule_for(tuple(x0.shape)).timesteps(steps, strength))
    x_start = start_point(x0, model.schedule.alpha_bar_at(timesteps[0]), gaussian_like(x0, g))
    cond = model.prepare_condition(1, prompt=PROMPT, **condition)
    return to_images(model, ddim_generate(x_start, model, cond, timesteps))


def img2img(pipe, x: torch.Tensor, strength: float, s: int = 5, size=(16, 16), **call) -> torch.Tensor:
    """An img2img pipeline's image of x for seed s (images in [0, 1])."""
    with torch.no_grad():
        return pipe(prompt=PROMPT, image=x, strength=strength, num_inference_steps=STEPS, height=size[0],
                    width=size[1], generator=seed(s), output_type="pt", **call).images


def assert_img2img_path(model, reference: torch.Tensor, x: torch.Tensor, strength: float, **condition) -> None:
    """The composed SDEdit path for seed 5 is the pipeline's ``reference``; seed 6 is far from it."""
    assert gap(sdedit_path(model, x, strength, 5, **condition), reference) <= TOLERANCE
    assert gap(sdedit_path(model, x, strength, 6, **condition), reference) > SENSITIVE


@contextmanager
def one_line_error(match: str):
    """The block raises a CycleDiffError matching ``match``, in one line."""
    with pytest.raises(CycleDiffError, match=match) as err:
        yield err
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------- loading
def assert_cli_edits(tmp_path, folder, picture: torch.Tensor, *options: str) -> None:
    """``cyclediff edit cat.png --model FOLDER`` (a cat to a dog, with ``options``) writes one edited image."""
    from click.testing import CliRunner

    from cyclediff._images import save_image
    from cyclediff.cli import main

    save_image(picture, tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(folder), "--source-prompt",
                                    "a cat", "--prompt", "a dog", *options, "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("cat_a-dog_*.png"))) == 1


def loaders_seen(monkeypatch, *families) -> list:
    """The family classes whose ``from_pretrained`` a load reaches, in order (their loaders replaced by a note)."""
    seen: list = []
    for cls in families:
        monkeypatch.setattr(cls, "from_pretrained", classmethod(lambda c, src, **kw: seen.append(c)))
    return seen


def load_keys(path, keys) -> None:
    """Write a single file holding ``keys`` (zeros) at path and load it."""
    from safetensors.torch import save_file

    from cyclediff.models import load

    save_file({k: torch.zeros(1) for k in keys}, str(path))
    load(str(path))

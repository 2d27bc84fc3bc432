"""Stable Diffusion 3 (rectified flow, MMDiT, two CLIP encoders, no T5) on a tiny pipeline
built offline: exact reconstruction, batch invariance under CFG, the applications, loading and the CLI."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from conftest import gens
from cyclediff import CycleDiffusion, decode, edit, encode, translate
from cyclediff.cli import main
from cyclediff.errors import CycleDiffError
from cyclediff.models import StableDiffusion, StableDiffusion3, from_pipe, load
from cyclediff.models.codec import to_model_space
from tiny_sd import photos, sd3_pipeline, sd_pipeline

EXACT = 1e-5  # float32 reconstruction bound of the issue (observed ≈ 1e-10)
BATCH_ULPS = 1e-5  # a batched transformer call against separate ones: sums in another order



@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return sd3_pipeline(tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def sd3(pipe):
    return StableDiffusion3(pipe)


@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_decoding_an_sd3_encoding_gives_its_latents_back(sd3, eta, strength):
    x0 = to_model_space(sd3, photos(2), gens(0, 1))
    z = encode(x0, sd3, steps=8, strength=strength, eta=eta, generator=gens(0, 1), prompt="a cat",
               guidance_scale=2.0)
    assert z.path == "rectified_flow" and z.x_start.shape[1] == 4
    torch.testing.assert_close(decode(z, sd3), x0, rtol=0, atol=EXACT)


def test_sd3_edits_are_batch_invariant_under_separate_guidance_scales(sd3):
    x = photos(2)
    kw = dict(source_prompt=["a cat", "a car"], prompt=["a dog", "a red car"], steps=6, guidance_scale=3.0,
              source_guidance_scale=1.5, negative_prompt="blue")
    both = edit(sd3, x, generator=gens(0, 1), **kw).images
    for i in range(2):
        one = edit(sd3, x[i:i + 1], generator=gens(i), **{**kw, "source_prompt": kw["source_prompt"][i],
                                                          "prompt": kw["prompt"][i]}).images
        torch.testing.assert_close(both[i:i + 1], one, rtol=0, atol=BATCH_ULPS)
    assert not torch.equal(both, edit(sd3, x, generator=gens(0, 1), **{**kw, "guidance_scale": 1.0}).images)


def test_sd3_takes_masks_many_targets_and_the_baselines(sd3):
    x = photos(1, seed=5)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :] = 1
    masked = edit(sd3, x, source_prompt="a cat", prompt="a dog", steps=6, generator=gens(0),
                  method=CycleDiffusion(mask=mask))
    free = edit(sd3, x, source_prompt="a cat", prompt="a dog", steps=6, generator=gens(0),
                method=CycleDiffusion(mask=torch.zeros_like(mask)))
    assert masked.images.shape == free.images.shape == (1, 3, 16, 16)
    many = edit(sd3, x, source_prompt="a cat", prompt=["a dog", "a horse"], steps=6, generator=gens(0))
    one = edit(sd3, x, source_prompt="a cat", prompt="a horse", steps=6, generator=gens(0))
    torch.testing.assert_close(many.images[1:], one.images, rtol=0, atol=BATCH_ULPS)
    for method in ("sdedit", "ddib"):
        out = translate(x, sd3, sd3, method=method, steps=6, generator=gens(0), source_condition="a cat",
                        target_condition="a dog").images
        assert torch.isfinite(out).all()
    with pytest.raises(CycleDiffError, match="SD3's joint attention"):
        edit(sd3, x, source_prompt="a cat", prompt="a dog", steps=4, generator=gens(0),
             method=CycleDiffusion(attention="refine"))


def test_from_pipe_and_load_pick_the_sd3_adapter(tmp_path, pipe):
    assert isinstance(from_pipe(pipe), StableDiffusion3)
    assert type(from_pipe(sd_pipeline(tmp_path / "sd"))) is StableDiffusion
    pipe.save_pretrained(tmp_path / "folder")
    loaded = load(str(tmp_path / "folder"))
    assert isinstance(loaded, StableDiffusion3) and loaded.schedule.path == "rectified_flow"
    with pytest.raises(CycleDiffError, match="diffusers pipeline"):
        from_pipe(object())


def test_the_cli_edits_with_an_sd3_folder(tmp_path, pipe):
    from cyclediff._images import save_image

    pipe.save_pretrained(tmp_path / "sd3")
    save_image(photos(1)[0], tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.png"), "--model", str(tmp_path / "sd3"),
                                    "--source-prompt", "a cat", "--prompt", "a dog", "--steps", "4", "--out",
                                    str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("cat_a-dog_*.png"))) == 1


def test_the_fast_path_compiles_the_transformer(sd3):
    """optimize(compile=True) wraps the MMDiT like a UNet (aot_eager: the graph capture without code generation,
    quick on a CPU); the result equals the eager one."""
    x = photos(1)
    eager = edit(sd3, x, source_prompt="a cat", prompt="a dog", steps=3, generator=gens(0)).images
    sd3.optimize(compile=True, backend="aot_eager")
    try:
        compiled = edit(sd3, x, source_prompt="a cat", prompt="a dog", steps=3, generator=gens(0)).images
        assert sd3.runner.settings["compiled"]
    finally:
        sd3.optimize(compile=False)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)

"""Masks (given and automatic), many targets from one encoding, interpolation between latents, and their
command-line options. Each test would fail if the feature were wrong."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from conftest import gens, images, pixel
from cyclediff import CycleDiffusion, cycle, decode, edit, encode, interpolate, options_of, translate
from cyclediff._images import load_image, save_image
from cyclediff.cli import main
from cyclediff.errors import CycleDiffError
from cyclediff.interpolation import slerp
from cyclediff.models import StableDiffusion
from cyclediff.models.codec import to_images, to_model_space
from tiny_sd import photos, sd_pipeline

BATCH_ULPS = 1e-5  # one batched UNet call against separate calls: float sums in another order, a few ULPs



@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return StableDiffusion.from_pipe(sd_pipeline(tmp_path_factory.mktemp("sd")))


def _square(batch, size, lo, hi):
    m = torch.zeros(batch, 1, size, size)
    m[..., lo:hi, lo:hi] = 1
    return m


CLASSES = {"source_condition": {"class_labels": [0, 1]}, "target_condition": {"class_labels": [2, 2]}}


# ---------------------------------------------------------------------------------------------------- masks
def test_outside_a_binary_mask_a_pixel_model_returns_the_input_exactly():
    den, x = pixel(num_classes=3), (images(2) + 1) / 2
    mask = _square(2, 8, 2, 6)
    out = translate(x, den, den, steps=6, strength=0.8, generator=gens(0, 1), **CLASSES,
                    method=CycleDiffusion(mask=mask))
    free = translate(x, den, den, steps=6, strength=0.8, generator=gens(0, 1), **CLASSES).images
    assert torch.equal(out.images * (1 - mask), x * (1 - mask))  # exact: the source trajectory ends at x0
    assert (out.images - x).mul(mask).abs().max() > 0.05  # and inside it is the edit
    assert not torch.equal(out.images, free)
    assert torch.equal(out.mask, mask)


def test_a_soft_mask_blends_and_a_full_mask_changes_nothing_of_the_edit():
    den, x = pixel(num_classes=3), (images(2) + 1) / 2
    free = translate(x, den, den, steps=6, strength=0.8, generator=gens(0, 1), **CLASSES).images
    full = translate(x, den, den, steps=6, strength=0.8, generator=gens(0, 1), **CLASSES,
                     method=CycleDiffusion(mask=torch.ones(2, 1, 8, 8)))
    assert torch.equal(full.images, free)  # mask 1 everywhere: 1·x + 0·source is x exactly
    half = translate(x, den, den, steps=6, strength=0.8, generator=gens(0, 1), **CLASSES,
                     method=CycleDiffusion(mask=torch.full((2, 1, 8, 8), 0.5))).images
    assert not torch.equal(half, free) and not torch.equal(half, x)


def test_a_latent_model_keeps_the_latents_outside_the_mask_and_the_input_pixels(sd):
    """Outside the mask: the latents exactly (the core), and the input's own pixels in the decoded output (the VAE
    decoder would move them by its reconstruction error and its receptive field)."""
    x = photos(2)
    x0 = to_model_space(sd, x, gens(0, 1))
    mask = _square(2, 8, 0, 4)  # latent cells
    cond = {"source_condition": {"prompt": "a cat"}, "target_condition": {"prompt": "a dog", "guidance_scale": 3.0}}
    out, _ = cycle(x0, sd, steps=6, strength=0.8, generator=gens(0, 1), mask=mask, **cond)
    assert torch.equal(out * (1 - mask), x0 * (1 - mask)) and (out - x0).mul(mask).abs().max() > 1e-3
    nothing = edit(sd, x, source_prompt="a cat", prompt="a dog", steps=6, generator=gens(0, 1),
                   method=CycleDiffusion(mask=torch.zeros(2, 1, 16, 16)))
    assert torch.equal(nothing.images, x)  # nothing may change: the input itself
    vae = to_images(sd, to_model_space(sd, x, gens(0, 1)))
    assert (vae - x).abs().max() > 1e-3  # what the decoder alone would have given back
    # an image-size mask reaches the latents by max-pooling: a masked pixel frees its whole latent cell
    pixel_mask = torch.zeros(2, 1, 16, 16)
    pixel_mask[..., 5, 5] = 1
    one = edit(sd, x, source_prompt="a cat", prompt="a dog", steps=6, generator=gens(0, 1),
               method=CycleDiffusion(mask=pixel_mask))
    assert one.mask.sum() == 2 * 4 and one.mask[0, 0, 4:6, 4:6].all()
    outside = 1 - one.mask
    assert torch.equal(one.images * outside, x * outside) and (one.images - x).mul(one.mask).abs().max() > 1e-3


def test_bad_masks_and_masks_with_baselines_are_one_line_errors():
    den, x = pixel(num_classes=3), (images(2) + 1) / 2
    for mask, message in ((torch.ones(2, 1, 4, 4), "must be"), (torch.full((2, 1, 8, 8), 2.0), r"\[0, 1\]"),
                          ("everywhere", "'auto'"), (torch.ones(2, 1, 8, 8), "cyclediffusion")):
        method = "sdedit" if message == "cyclediffusion" else "cyclediffusion"
        with pytest.raises(CycleDiffError, match=message):
            translate(x, den, den, steps=4, generator=gens(0, 1), **CLASSES, method=options_of(method, mask=mask))


def test_the_automatic_mask_is_where_the_conditions_disagree_and_leaves_the_draws_alone():
    den, x = pixel(num_classes=3), (images(2) + 1) / 2
    auto = translate(x, den, den, steps=6, strength=0.8, generator=gens(0, 1), **CLASSES,
                     method=CycleDiffusion(mask="auto"))
    assert set(auto.mask.unique().tolist()) <= {0.0, 1.0} and 0 < auto.mask.mean() < 1
    again = translate(x, den, den, steps=6, strength=0.8, generator=gens(0, 1), **CLASSES,
                      method=CycleDiffusion(mask=auto.mask))
    assert torch.equal(auto.images, again.images)  # the mask's draws came from copies of the generators
    same = translate(x, den, den, steps=6, strength=0.8, generator=gens(0, 1),
                     source_condition={"class_labels": [1, 1]}, target_condition={"class_labels": [1, 1]},
                     method=CycleDiffusion(mask="auto"))
    assert same.mask.sum() == 0 and torch.equal(same.images, x)  # no disagreement: nothing may change


# ---------------------------------------------------------------------------------------------------- many targets
@pytest.mark.parametrize("method", ["cyclediffusion", "sdedit"])
def test_many_targets_from_one_encoding_equal_separate_edits(sd, method):
    x, prompts = photos(1, seed=4), ["a dog", "a red car", "a horse"]
    many = edit(sd, x, source_prompt="a cat", prompt=prompts, steps=6, generator=gens(3), method=method,
                guidance_scale=2.0)
    assert many.images.shape == (3, 3, 16, 16)
    for i, prompt in enumerate(prompts):
        one = edit(sd, x, source_prompt="a cat", prompt=prompt, steps=6, generator=gens(3), method=method,
                   guidance_scale=2.0)
        torch.testing.assert_close(many.images[i], one.images[0], rtol=0, atol=BATCH_ULPS)
    if method == "cyclediffusion":
        assert many.latent.x_start.shape[0] == 1  # one encoding, shared


@pytest.mark.parametrize("method", ["cyclediffusion", "sdedit"])
def test_many_target_labels_of_a_class_edit_equal_separate_edits(method):
    """A class edit of one image to k labels (``prompt=[1, 2]``): result i is the edit to label i alone."""
    den, x = pixel(num_classes=3), (images(1) + 1) / 2
    many = edit(den, x, source_prompt=0, prompt=[1, 2], steps=6, generator=gens(3), method=method,
                guidance_scale=1.0)
    assert many.images.shape == (2, 3, 8, 8)
    for i, label in enumerate([1, 2]):
        one = edit(den, x, source_prompt=0, prompt=label, steps=6, generator=gens(3), method=method,
                   guidance_scale=1.0)
        torch.testing.assert_close(many.images[i:i + 1], one.images, rtol=0, atol=BATCH_ULPS)
    assert method != "cyclediffusion" or many.latent.x_start.shape[0] == 1  # one encoding, shared


def test_many_targets_with_an_automatic_mask_each_get_their_own(sd):
    """Target i's mask and edit are those of editing with target i alone: the mask's noised input is drawn once per
    input and shared by its targets (not drawn again from the same generator for each)."""
    prompts = ["a dog", "a blue car", "a red horse"]
    many = edit(sd, photos(1, seed=4), source_prompt="a cat", prompt=prompts, steps=6,
                generator=gens(3), method=CycleDiffusion(mask="auto", mask_threshold=0.3))
    assert many.mask.shape == (3, 1, 16, 16) and many.images.shape == (3, 3, 16, 16)
    for i, prompt in enumerate(prompts):
        one = edit(sd, photos(1, seed=4), source_prompt="a cat", prompt=prompt, steps=6, generator=gens(3),
                   method=CycleDiffusion(mask="auto", mask_threshold=0.3))
        assert torch.equal(many.mask[i:i + 1], one.mask)
        torch.testing.assert_close(many.images[i:i + 1], one.images, rtol=0, atol=BATCH_ULPS)


# ---------------------------------------------------------------------------------------------------- interpolation
def test_interpolation_is_exact_at_its_ends_and_spherical_between():
    den = pixel(num_classes=3)
    za = encode(images(2), den, steps=6, generator=gens(0, 1), class_labels=[1, 2])
    zb = encode(images(2, seed=5), den, steps=6, generator=gens(2, 3), class_labels=[1, 2])
    assert torch.equal(interpolate(za, zb, 0).eps, za.eps) and torch.equal(interpolate(za, zb, 1).x_start, zb.x_start)
    assert torch.equal(decode(interpolate(za, zb, 1), den), decode(zb, den))
    mid = interpolate(za, zb, 0.5)
    gaussian = [k for k, r in enumerate(za.residual) if not r]
    assert gaussian
    for k in gaussian:  # halfway on the great circle: (a + b) / (2 cos(θ/2)), longer than the chord's midpoint
        a, b = za.eps[k].flatten(1).double(), zb.eps[k].flatten(1).double()
        theta = torch.arccos((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)))
        want = (a + b) / (2 * torch.cos(theta / 2))[:, None]
        torch.testing.assert_close(mid.eps[k].flatten(1).double(), want, rtol=1e-5, atol=1e-6)
        assert (want.norm(dim=1) > ((a + b) / 2).norm(dim=1) * 1.2).all()
    torch.testing.assert_close(mid.x_start, (za.x_start + zb.x_start) / 2)  # linear
    a = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(slerp(a, a, 0.3), a)  # parallel: no division by sin 0
    assert torch.isfinite(decode(mid, den)).all() and mid.condition == za.condition


def test_interpolating_latents_of_different_classes_keeps_each_ends_condition():
    """The ends of a path between a 3 and an 8 decode to the 3 and the 8 (not to class-less blobs); every point
    between decodes under one end's condition, never under none."""
    den = pixel(num_classes=3)
    za = encode(images(1), den, steps=6, generator=gens(0), class_labels=1)
    zb = encode(images(1, seed=5), den, steps=6, generator=gens(2), class_labels=2)
    for w, z in ((0, za), (1, zb)):
        ends = interpolate(za, zb, w)
        assert ends.condition == z.condition
        torch.testing.assert_close(decode(ends, den), decode(z, den), rtol=0, atol=0)
    assert interpolate(za, zb, 0.25).condition == za.condition and interpolate(za, zb, 0.75).condition == zb.condition
    near_b = interpolate(za, zb, 0.75)
    assert (decode(near_b, den) - decode(near_b, den, class_labels=1)).abs().max() > 1e-3  # the condition matters


def test_interpolating_latents_of_different_grids_is_refused():
    den = pixel(num_classes=3)
    za = encode(images(1), den, steps=6, generator=gens(0), class_labels=[1])
    zb = encode(images(1), den, steps=8, generator=gens(0), class_labels=[1])
    with pytest.raises(CycleDiffError, match="not on the same grid"):
        interpolate(za, zb, 0.5)
    with pytest.raises(CycleDiffError, match="finite"):
        interpolate(za, za, float("nan"))


# ---------------------------------------------------------------------------------------------------- the CLI
def test_cli_masks_and_interpolation_strips(tmp_path):
    runner = CliRunner()
    digit = tmp_path / "three.png"
    save_image(load_image_from_demo(), digit)
    mask = tmp_path / "mask.png"
    save_image(_square(1, 8, 0, 4)[0], mask)
    res = runner.invoke(main, ["translate", str(digit), "--source-model", "demo:digits", "--target-model",
                               "demo:digits", "--source-class", "3", "--target-class", "8", "--steps", "10",
                               "--mask", str(mask), "--out", str(tmp_path / "t"), "-q"])
    assert res.exit_code == 0, res.output
    out = load_image(next((tmp_path / "t").glob("three_*.png")), channels=1)
    keep = 1 - _square(1, 8, 0, 4)
    assert torch.equal(out * keep, load_image(digit, channels=1) * keep)
    res = runner.invoke(main, ["translate", str(digit), "--source-model", "demo:digits", "--target-model",
                               "demo:digits", "--source-class", "3", "--target-class", "8", "--steps", "10",
                               "--mask", "auto", "--out", str(tmp_path / "a"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "a").glob("*_mask.png"))) == 1
    latents = []
    for seed in (0, 1):
        path = tmp_path / f"z{seed}.latent.safetensors"
        res = runner.invoke(main, ["encode", str(digit), "--model", "demo:digits", "--class-label", "3", "--steps",
                                   "10", "--seed", str(seed), "-o", str(path), "-q"])
        assert res.exit_code == 0, res.output
        latents.append(str(path))
    res = runner.invoke(main, ["decode", *latents, "--model", "demo:digits", "--weights", "0,0.5,1", "--out",
                               str(tmp_path / "d"), "-q"])
    assert res.exit_code == 0, res.output
    strip = load_image(tmp_path / "d" / "z0_to_z1.png", channels=1)
    assert strip.shape[-2:] == (8, 24)
    torch.testing.assert_close(strip[..., :8], load_image(digit, channels=1), rtol=0, atol=1 / 255 + 1e-6)
    res = runner.invoke(main, ["decode", latents[0], "--model", "demo:digits", "--weights", "0,1", "-q"])
    assert res.exit_code != 0 and "two latents" in res.output


def load_image_from_demo() -> torch.Tensor:
    from cyclediff.demo.data import split

    _, _, x, y = split()
    return (x[(y == 3).nonzero()[0, 0]] + 1) / 2


# ---------------------------------------------------------------------------------------------------- attention
CAT_DOG = {"source_condition": {"prompt": "a cat"}, "target_condition": {"prompt": "a dog", "guidance_scale": 3.0}}


def test_refinement_aligns_tokens_and_new_words_keep_their_own_maps():
    from cyclediff.models.attention import token_map

    # [start, a, cat, end] → [start, a, red, cat, end]: "red" is new; the padding follows the end tokens
    assert token_map([0, 5, 7, 1], [0, 5, 9, 7, 1], 8) == [0, 1, -1, 2, 3, 4, 5, 6]


def test_the_target_pass_takes_the_source_maps_for_the_steps_asked_and_only_those(sd):
    x0 = to_model_space(sd, photos(1), gens(0))
    grid = sd.schedule.timesteps(8, 0.8)
    edit_ = {"mode": "replace", "cross_steps": 0.5, "self_steps": 0.25}
    with sd.attention_edit(edit_, ["a cat"], ["a dog"], grid, trace=True) as control:
        cycle(x0, sd, steps=8, strength=0.8, generator=gens(0), **CAT_DOG)
    cross = {t["step"] for t in control.trace if t["cross"]}
    selfs = {t["step"] for t in control.trace if not t["cross"]}
    assert cross == set(range(round(0.5 * len(grid)))) and selfs == set(range(round(0.25 * len(grid))))
    for t in control.trace:  # replaced where the target's own maps differed (cross always: other words)
        assert torch.equal(t["target"], t["source"]) and (not t["cross"] or not torch.equal(t["own"], t["source"]))
    assert any(not torch.equal(t["own"], t["source"]) for t in control.trace if not t["cross"])
    assert sd.attention_control is None and not any(
        type(p).__name__ == "ControlledProcessor" for p in sd.unet.attn_processors.values())  # restored


def test_an_idle_control_changes_nothing_and_a_real_one_changes_the_edit(sd):
    x = photos(1)
    plain = edit(sd, x, source_prompt="a cat", prompt="a dog", steps=6, generator=gens(0)).images
    idle = edit(sd, x, source_prompt="a cat", prompt="a dog", steps=6, generator=gens(0),
                method=CycleDiffusion(attention={"mode": "replace", "cross_steps": 0})).images
    torch.testing.assert_close(idle, plain, rtol=0, atol=BATCH_ULPS)  # explicit attention against SDPA
    swapped = edit(sd, x, source_prompt="a cat", prompt="a dog", steps=6, generator=gens(0),
                   method=CycleDiffusion(attention="replace")).images
    assert (swapped - plain).abs().max() > 1e-4


def test_reweighting_scales_the_words_attention_by_its_factor(sd):
    x0 = to_model_space(sd, photos(1), gens(0))
    grid = sd.schedule.timesteps(6, 0.8)
    cond = {"source_condition": {"prompt": "a cat"}, "target_condition": {"prompt": "a red cat"}}
    with sd.attention_edit({"weights": {"red": 2.5}}, ["a cat"], ["a red cat"], grid, trace=True) as control:
        cycle(x0, sd, steps=6, strength=0.8, generator=gens(0), **cond)
    late = [t for t in control.trace if t["cross"] and t["step"] >= round(0.8 * len(grid))]
    assert late
    for t in late:  # after the swap steps: the target's own map, "red" (token 2) × 2.5, the rest untouched
        torch.testing.assert_close(t["target"][..., 2], 2.5 * t["own"][..., 2])
        torch.testing.assert_close(t["target"][..., 3:], t["own"][..., 3:])


def test_many_targets_with_attention_control_equal_separate_controlled_edits(sd):
    x, prompts = photos(1, seed=2), ["a dog", "a car"]
    many = edit(sd, x, source_prompt="a cat", prompt=prompts, steps=6, generator=gens(1),
                method=CycleDiffusion(attention="replace"))
    for i, prompt in enumerate(prompts):
        one = edit(sd, x, source_prompt="a cat", prompt=prompt, steps=6, generator=gens(1),
                   method=CycleDiffusion(attention="replace"))
        torch.testing.assert_close(many.images[i], one.images[0], rtol=0, atol=BATCH_ULPS)


def test_attention_control_says_when_it_leaves_the_compiled_path(sd):
    x = photos(1)
    eager = edit(sd, x, source_prompt="a cat", prompt="a dog", steps=4, generator=gens(0),
                 method=CycleDiffusion(attention="refine")).images
    sd.optimize(compile=True)
    try:
        with pytest.warns(UserWarning, match="runs the UNet eagerly"):
            again = edit(sd, x, source_prompt="a cat", prompt="a dog", steps=4, generator=gens(0),
                         method=CycleDiffusion(attention="refine")).images
    finally:
        sd.optimize(compile=False)
    assert torch.equal(again, eager)


def test_attention_mistakes_are_one_line_errors(sd):
    x = photos(1)
    for prompt, attention, message in (("a red dog", "replace", "use refine"),
                                       ("a dog", {"weights": {"horse": 2}}, "not in the target"),
                                       ("a dog", "swap", "replace .word swap. or refine")):
        with pytest.raises(CycleDiffError, match=message):
            edit(sd, x, source_prompt="a cat", prompt=prompt, steps=4, generator=gens(0),
                 method=CycleDiffusion(attention=attention))
    with pytest.raises(CycleDiffError, match="attention is CycleDiffusion's; method sdedit does not use it"):
        options_of("sdedit", attention="refine")
    with pytest.raises(CycleDiffError, match="text-conditioned UNet"):
        from cyclediff.api.edit import _attention

        _attention(pixel(num_classes=3), "refine", "a", "b", 1, [1])


def test_cli_edit_with_attention_control(tmp_path, sd):
    from cyclediff.jobs.file import load_job

    folder = tmp_path / "sd"
    sd.pipe.save_pretrained(folder)
    image = tmp_path / "cat.png"
    save_image(photos(1)[0], image)
    res = CliRunner().invoke(main, ["edit", str(image), "--model", str(folder), "--source-prompt", "a cat",
                                    "--prompt", "a red cat", "--attention", "refine", "--reweight", "red=2",
                                    "--self-attention-steps", "0.2", "--steps", "4", "--out", str(tmp_path / "o"),
                                    "-q"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "o").glob("cat_*.png"))) == 1
    res = CliRunner().invoke(main, ["edit", str(image), "--model", str(folder), "--source-prompt", "a cat",
                                    "--prompt", "a dog", "--reweight", "dog", "-q"])
    assert res.exit_code != 0 and "--attention" in res.output
    job = tmp_path / "job.toml"
    job.write_text('task = "edit"\ninputs = ["cat.png"]\n[settings]\nmodel = "sd"\nsource_prompt = "a cat"\n'
                   'prompt = "a dog"\nattention = "sideways"\n')
    with pytest.raises(CycleDiffError, match="attention mode"):
        load_job(job)


def test_the_evaluation_harness_takes_attention_control(tmp_path, sd):
    import json

    from cyclediff.jobs.evaluate import EditSpec, evaluate_edit
    from cyclediff.metrics import ClipScorer
    from tiny_sd import tiny_clip

    save_image(photos(1)[0], tmp_path / "cat.png")
    scorer = ClipScorer(tiny_clip(tmp_path))
    rows = {}
    for attention in (None, "replace"):
        spec_path = tmp_path / f"spec-{attention}.json"
        spec_path.write_text(json.dumps({"items": [{"image": "cat.png", "source": "a cat", "target": "a dog"}],
                                         "settings": {"steps": 4, "attention": attention}}))
        out = tmp_path / f"eval-{attention}"
        rows[attention] = evaluate_edit(EditSpec.load(spec_path), out, model=sd, scorer=scorer, progress=False)
        assert rows[attention][0]["items"] == 1
    a, b = (load_image(next((tmp_path / f"eval-{k}" / "images").glob("*.png"))) for k in (None, "replace"))
    assert (a - b).abs().max() > 1e-4  # the harness did run the controlled edit


def test_a_mask_that_is_not_a_tensor_is_one_clear_error():
    with pytest.raises(CycleDiffError, match="mask must be a .* tensor, a mask image or 'auto'; got list"):
        translate((images(1) + 1) / 2, pixel(), pixel(), steps=2, method=CycleDiffusion(mask=[[1.0]]))

"""DDIB on every prediction / variance kind, deterministic steps into ᾱ = 1 decided in
one place, one default per setting, guide's batch from its generators, refusal of bad API input, latent files
validated field by field with a checksum."""

from __future__ import annotations

import inspect

import pytest
import torch
from diffusers import DDIMInverseScheduler
from test_latent_file import _rewrite as rewrite

from conftest import ddim_config, ddpm_config, images, pixel
from cyclediff import CycleDiffError, Latent, decode, edit, encode, translate
from cyclediff.errors import LatentFileError
from cyclediff.guidance import guide
from cyclediff.options import OPTIONS
from cyclediff.schedule import Schedule
from cyclediff.settings import EDIT, GUIDE, TRANSLATE
from cyclediff.transitions import ddim_inversion_step, is_deterministic, transition


def gens(n, base=0):
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


def as01(x):
    return (x + 1) / 2


KINDS = {  # (scheduler config, UNet output channels for 3-channel images)
    "learned-range": (ddpm_config(variance_type="learned_range"), 6),
    "v-prediction": (ddim_config(prediction_type="v_prediction"), 3),
    "x0-prediction": (ddim_config(prediction_type="sample", set_alpha_to_one=False), 3),
    "x0-prediction-final-1": (ddim_config(prediction_type="sample"), 3),
}


# ---------------------------------------------------------------------------------------------------- item 2
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["cyclediffusion", "sdedit", "ddib"])
def test_every_method_runs_on_every_prediction_and_variance_kind(kind, method):
    config, out_channels = KINDS[kind]
    den = pixel(config, out_channels=out_channels)
    x = as01(images(2))
    out = translate(x, den, den, method=method, strength=0.6, steps=10, generator=gens(2)).images
    assert out.shape == x.shape and torch.isfinite(out).all()
    if method == "cyclediffusion":  # source = target: exact whatever the kind
        assert (out - x).abs().max() < 1e-5


@pytest.mark.parametrize("clip_sample", [False, True])
def test_inversion_step_matches_diffusers_ddim_inverse_scheduler(clip_sample):
    """Parity with DDIMInverseScheduler.step for the same ε-prediction (SD-style grid, final ᾱ = ᾱ_0)."""
    cfg = ddim_config(set_alpha_to_one=False, clip_sample=clip_sample, steps_offset=1)
    schedule = Schedule.from_config(cfg)
    inverse = DDIMInverseScheduler(**{k: v for k, v in cfg.items() if k != "steps_offset"}, steps_offset=1)
    inverse.alphas_cumprod = schedule.alpha_bar.clone()  # float64 table on both sides (see test_transitions)
    inverse.initial_alpha_cumprod = torch.tensor(schedule.final_alpha_bar, dtype=torch.float64)
    inverse.set_timesteps(10)
    ts = schedule.timesteps(10)
    g = torch.Generator().manual_seed(0)
    for t in ts[::-1][:4]:  # the lowest levels, the first one from the clean end
        k = ts.index(t)
        s = ts[k + 1] if k + 1 < len(ts) else -1
        x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
        out = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
        ref = inverse.step(out, t, x).prev_sample
        torch.testing.assert_close(ddim_inversion_step(schedule, out, x, s, t), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_inversion_reads_every_parameterisation_as_the_same_noise(prediction_type):
    """An ε-model and a v- or x0-model that predict the same ε̂ at (x_s, t) invert alike (and a learned-variance
    half is ignored)."""
    eps_schedule = Schedule.from_config(ddim_config())
    other = Schedule.from_config(ddim_config(prediction_type=prediction_type))
    g = torch.Generator().manual_seed(0)
    x, eps = (torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    t, s = 500, 400
    a, b = other.alpha_bar_at(t) ** 0.5, (1 - other.alpha_bar_at(t)) ** 0.5
    x0 = (x - b * eps) / a  # what the other model predicts when it reads x as a sample at level t
    out = a * eps - b * x0 if prediction_type == "v_prediction" else x0
    ours = ddim_inversion_step(other, out, x, s, t)
    torch.testing.assert_close(ours, ddim_inversion_step(eps_schedule, eps, x, s, t), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------- item 3
@pytest.mark.parametrize("variance_type", ["learned_range", "fixed_large", "fixed_small"])
@pytest.mark.parametrize("spacing", [dict(timestep_spacing="trailing"), dict(steps_offset=1)])
def test_a_step_into_alpha_bar_one_is_a_flagged_residual(variance_type, spacing):
    cfg = ddpm_config(variance_type=variance_type, **spacing)
    den = pixel(cfg, out_channels=6 if variance_type == "learned_range" else 3)
    x0 = images(2)
    z = encode(x0, den, steps=10, strength=1.0, sampler="ddpm", generator=gens(2))
    assert z.timesteps[-1] > 0  # the grid ends above t = 0: its last step goes into ᾱ = 1
    assert z.residual == (False,) * 9 + (True,)
    # the other entries are the encoder's draws: a random test model puts them at O(1)-O(100), never the 1e7-1e9
    # that a near-zero learned std gave the last step
    assert z.eps[:-1].abs().max() < 1e3
    assert (decode(z, den) - x0).abs().max() < 1e-5
    schedule = den.schedule
    step = transition(schedule, torch.zeros(2, 6 if variance_type == "learned_range" else 3, 8, 8), x0,
                      z.timesteps[-1], -1, sampler="ddpm", eta=1.0)
    assert step.deterministic and is_deterministic(schedule, z.timesteps[-1], -1, sampler="ddpm", eta=1.0)


# ---------------------------------------------------------------------------------------------------- item 4
def test_each_default_is_defined_once():
    from click.testing import CliRunner  # noqa: F401 - the CLI's options are read from its params

    from cyclediff.cli import main
    from cyclediff.settings import TASKS

    def api(fn, name):
        return inspect.signature(fn).parameters[name].default

    def cli(command, name):
        return next(p.default for p in main.commands[command].params if p.name == name)

    for name in ("strength", "steps", "refine_steps", "method"):
        assert (api(translate, name) == getattr(TASKS["translate"](), name) == cli("translate", name)
                == getattr(TRANSLATE, name))
    for name in ("strength", "steps", "guidance_scale", "source_guidance_scale", "method"):
        assert api(edit, name) == getattr(TASKS["edit"](), name) == cli("edit", name) == getattr(EDIT, name)
    for task in ("edit", "translate"):  # a method's own knobs: its options type's default, written there once
        for name, method in (("eta", "cyclediffusion"), ("mask_threshold", "edit-friendly"), ("n_avg", "flowedit"),
                             ("n_min", "flowedit")):
            assert cli(task, name) == getattr(TASKS[task](), name) == getattr(OPTIONS[method](), name)
    for name in ("weight", "langevin_steps", "step_size", "steps", "eta"):
        assert api(guide, name) == getattr(TASKS["guide"](), name) == cli("guide", name) == getattr(GUIDE, name)


# ---------------------------------------------------------------------------------------------------- item 5
def test_guide_takes_its_batch_size_from_a_list_of_generators():
    den = pixel(num_classes=3)
    result = guide(den, lambda x: x.mean(dim=(1, 2, 3)), weight=1.0, langevin_steps=1, steps=4,
                   condition=1, generator=gens(5))
    assert result.images.shape[0] == 5
    with pytest.raises(CycleDiffError, match="batch_size=3 but 5 generators"):
        guide(den, lambda x: x.mean(dim=(1, 2, 3)), langevin_steps=1, steps=4, condition=1, generator=gens(5),
              batch_size=3)
    with pytest.raises(CycleDiffError, match="batch_size must be a positive integer"):
        guide(den, lambda x: x.mean(dim=(1, 2, 3)), langevin_steps=1, steps=4, condition=1, batch_size=0)


# ---------------------------------------------------------------------------------------------------- item 6: API
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_non_finite_or_negative_guidance_scales_are_refused(bad, tmp_path):
    from cyclediff.models import StableDiffusion
    from tiny_sd import photos, sd_pipeline

    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    with pytest.raises(CycleDiffError, match="guidance_scale"):
        edit(sd, photos(1), source_prompt="a cat", prompt="a dog", steps=4, guidance_scale=bad)
    den = pixel(num_classes=3)
    with pytest.raises(CycleDiffError, match="guidance_scale"):
        translate(as01(images(1)), den, den, steps=4, source_condition=1,
                  target_condition={"class_labels": 1, "guidance_scale": bad})


def test_bad_api_input_gets_one_clear_error():
    den = pixel(num_classes=3)
    x = as01(images(2))
    cases = [
        (lambda: translate(x[:0], den, den, steps=4), "empty batch"),
        (lambda: translate(torch.empty(2, 3, 8, 8, device="meta"), den, den, steps=4), "meta tensor"),
        (lambda: encode(images(2), den, steps=4, class_labels="cat"), "class_labels must be an integer"),
        (lambda: encode(images(2), den, steps=4, prompt="a cat"), "takes no condition 'prompt'"),
        (lambda: encode(images(2), den, steps=4, stregth=0.5), "takes no condition 'stregth'"),
        (lambda: guide(den, lambda v: v.mean(dim=(1, 2, 3)), steps=4, batch_size=0), "positive integer"),
        (lambda: guide(den, lambda v: v.mean(dim=(1, 2, 3)), steps=4, weight=float("nan")), "weight"),
    ]
    for call, message in cases:
        with pytest.raises(CycleDiffError, match=message):
            call()


def test_a_prompt_for_a_text_model_must_be_text(tmp_path):
    from cyclediff.models import StableDiffusion
    from tiny_sd import photos, sd_pipeline

    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    with pytest.raises(CycleDiffError, match="class labels need a class-conditional model.*as texts"):
        edit(sd, photos(1), source_prompt="a cat", prompt=5, steps=4)


# ---------------------------------------------------------------------------------------------------- item 6: latents
@pytest.fixture
def latent_file(tmp_path):
    den = pixel(num_classes=3)
    z = encode(images(2), den, steps=6, strength=0.5, generator=gens(2), class_labels=[0, 1])
    return z.save(tmp_path / "z.latent.safetensors"), den


@pytest.mark.parametrize("update, message", [
    ({"eta": 0}, "eta must be a number in"),
    ({"eta": 5}, "eta must be a number in"),
    ({"eta": "abc"}, "eta must be a number in"),
    ({"condition": "notadict"}, "condition must be a JSON object"),
    ({"residual": [True, True, True]}, "only the last step"),
    ({"residual": ["yes", False, False]}, "residual must be a list"),
    ({"sampler": "euler"}, "sampler must be one of"),
    ({"steps": -5}, "steps must be a positive integer"),
    ({"strength": 7}, "strength must be a number"),
    ({"seeds": [2**70, 1]}, "seeds must be integers"),
    ({"steps": 8}, "steps stored"),
    ({"variance_type": "huge"}, "variance_type must be one of"),
])
def test_every_latent_metadata_field_is_validated(latent_file, update, message):
    path, _ = latent_file
    rewrite(path, meta_update=update)
    with pytest.raises(LatentFileError, match=message):
        Latent.load(path)


def test_latent_metadata_that_is_not_an_object_is_refused(latent_file):
    path, _ = latent_file
    rewrite(path, raw_meta="[1, 2, 3]")
    with pytest.raises(LatentFileError, match="must be a JSON object"):
        Latent.load(path)


def test_flipped_tensor_bytes_are_detected_by_the_checksum(latent_file):
    path, den = latent_file
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # a bit of the last eps value
    path.write_bytes(bytes(data))
    with pytest.raises(LatentFileError, match="checksum"):
        Latent.load(path)


def test_a_conditioned_latent_decoded_by_an_unconditional_model_says_what_it_left_out(tmp_path):
    """A class (or prompt) latent on an unconditional model (the translation digits → digit-8): decoded without
    the recorded condition, with a warning naming it; a conditional model of another kind still refuses it."""
    den = pixel()
    z = encode(images(1), den, steps=4, generator=gens(1))
    fields = {f: getattr(z, f) for f in z.__dataclass_fields__}
    for record in ({"prompt": ["a cat"]}, {"class_labels": [3]}):
        with pytest.warns(UserWarning, match=f"records {next(iter(record))}, which this model does not take"):
            out = decode(Latent(**{**fields, "condition": record}), den)
        torch.testing.assert_close(out, decode(z, den), rtol=0, atol=0)
    with pytest.raises(CycleDiffError, match="takes no condition 'prompt'"):
        decode(Latent(**{**fields, "condition": {"prompt": ["a cat"]}}), pixel(num_classes=3))

"""The family of methods behind one switch (:mod:`cyclediff.api.methods`): the edit-friendly encoder and FlowEdit
wherever a method is chosen — the Python API, the command line, job files — each the same as its own function,
and a method that does not apply to a model refused in one line naming those that do."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from conftest import assert_same_draws
from cyclediff import CycleDiffError, EditFriendly, FlowEdit, Latent, decode, edit, encode, options_of, translate
from cyclediff.baselines import flowedit
from cyclediff.cli import main
from cyclediff.demo.models import load_demo
from cyclediff.models import StableDiffusion, StableDiffusion3, to_images, to_model_space
from tiny_sd import photos, sd3_pipeline, sd_pipeline


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_edit_with_flowedit_is_flowedits_own_function(tmp_path):
    """edit(method="flowedit") on SD3: the images' latents, FlowEdit over the last int(steps · strength) steps with
    the negative prompt on both rows (as FlowEdit has it), decoded: equal to baselines.flowedit on those latents."""
    sd3 = StableDiffusion3(sd3_pipeline(tmp_path))
    x = photos(2, seed=1)
    settings = dict(steps=10, strength=0.7, guidance_scale=5.0, source_guidance_scale=2.0, negative_prompt="blue")
    out = edit(sd3, x, source_prompt="a cat", prompt="a dog", generator=_gens(3, 4), **settings,
               method=FlowEdit(n_avg=2, n_min=1)).images
    gens = _gens(3, 4)
    x0 = to_model_space(sd3, x, gens)  # the edit draws the VAE sample from the generators first, then FlowEdit's
    z = flowedit(x0, sd3, source_prompt="a cat", prompt="a dog", negative_prompt="blue", steps=10, n_max=7, n_min=1,
                 n_avg=2, source_guidance_scale=2.0, guidance_scale=5.0, generator=gens)
    torch.testing.assert_close(out, to_images(sd3, z), rtol=0, atol=1e-5)


def test_edit_friendly_edits_take_masks_and_many_targets(tmp_path):
    """Its source trajectory ends at the input as CycleDiffusion's does: outside a binary mask a pixel model returns
    the input exactly; and k targets from one encoding (one shared source pass) equal k edits."""
    den = load_demo("digits")
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    out = translate(x, den, den, steps=8, strength=0.8, generator=_gens(0, 1),
                    source_condition={"class_labels": [3, 3]}, target_condition={"class_labels": [8, 8]},
                    method=EditFriendly(mask=mask)).images
    assert torch.equal(out * (1 - mask), x * (1 - mask)) and (out - x).mul(mask).abs().max() > 0.05
    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    kw = dict(source_prompt="a cat", steps=8, strength=0.8, method="edit-friendly")
    many = edit(sd, photos(1, seed=2), prompt=["a dog", "a red car"], generator=_gens(1), **kw).images
    one = edit(sd, photos(1, seed=2), prompt="a red car", generator=_gens(1), **kw).images
    torch.testing.assert_close(many[1:], one, rtol=0, atol=1e-5)


def test_translate_with_the_new_methods_between_classes_of_the_flow_model():
    model = load_demo("digits-flow")
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for method in ("edit-friendly", "flowedit"):
        out = translate(x, model, model, steps=10, strength=0.8, method=method, generator=_gens(0, 1),
                        source_condition={"class_labels": [3, 3]},
                        target_condition={"class_labels": [8, 8]}).images
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_flowedit_on_a_ddpm_model_names_the_methods_that_apply():
    res = CliRunner().invoke(main, ["translate", "--source-model", "demo:digits", "--target-model", "demo:digits",
                                    "--source-class", "3", "--target-class", "8", "--method", "flowedit",
                                    "--steps", "4", _digit_png()])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "FlowEdit needs a rectified-flow model" in res.output and "edit-friendly, sdedit or ddib" in res.output


_PNG: list = []


def _digit_png() -> str:
    import tempfile

    from cyclediff._images import save_image
    from cyclediff.demo.data import split

    if not _PNG:
        _, _, x, y = split()
        path = tempfile.mkdtemp() + "/three.png"
        save_image((x[(y == 3).nonzero()[0, 0]] + 1) / 2, path)
        _PNG.append(path)
    return _PNG[0]


def test_the_cli_encodes_with_the_edit_friendly_encoder_and_decodes_exactly(tmp_path):
    out = tmp_path / "z.latent.safetensors"
    res = CliRunner().invoke(main, ["encode", _digit_png(), "--model", "demo:digits", "--class-label", "3",
                                    "--encoder", "edit-friendly", "--steps", "10", "-o", str(out)])
    assert res.exit_code == 0, res.output
    latent = Latent.load(out)
    assert latent.encoder == "edit-friendly"
    from cyclediff._images import load_image

    x0 = load_image(_digit_png(), channels=1) * 2 - 1
    assert (decode(latent, load_demo("digits")) - x0).abs().max() < 1e-5
    again = encode(x0, load_demo("digits"), steps=10, encoder="edit-friendly", class_labels=3,
                   generator=torch.Generator().manual_seed(0))
    assert_same_draws(latent, again, load_demo("digits"))


def test_cli_translate_takes_flowedits_knobs_and_a_job_compares_the_family(tmp_path):
    res = CliRunner().invoke(main, ["translate", _digit_png(), "--source-model", "demo:digits-flow",
                                    "--target-model", "demo:digits-flow", "--source-class", "3", "--target-class",
                                    "8", "--method", "flowedit", "--n-avg", "2", "--n-min", "1", "--steps", "6",
                                    "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert any("flowedit" in p.name for p in (tmp_path / "o").iterdir())
    job = tmp_path / "family.toml"
    job.write_text(f"""task = "translate"
inputs = ["{_digit_png()}"]
out = "{tmp_path / 'job'}"
[settings]
source_model = "demo:digits-flow"
target_model = "demo:digits-flow"
source_class = 3
target_class = 8
steps = 6
method = ["cyclediffusion", "edit-friendly", "flowedit"]
""")
    res = CliRunner().invoke(main, ["run", str(job), "--quiet"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (tmp_path / "job" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["settings"]["method"] for r in records) == ["cyclediffusion", "edit-friendly", "flowedit"]
    assert all(r["status"] == "ok" for r in records)


def test_bad_flowedit_counts_from_settings_are_one_line():
    with pytest.raises(CycleDiffError, match="n_avg must"):
        translate(torch.zeros(1, 1, 8, 8), load_demo("digits-flow"), load_demo("digits-flow"), steps=4,
                  source_condition={"class_labels": 3}, target_condition={"class_labels": 8},
                  method=FlowEdit(n_avg=0))


@pytest.mark.parametrize("knobs, says", [(dict(n_min=2), "n_min is FlowEdit's; method cyclediffusion does not use "
                                                         "it: drop n_min or use method flowedit"),
                                         (dict(n_avg=3, n_min=1), "n_avg and n_min are FlowEdit's")])
def test_flowedit_knobs_given_to_another_method_are_refused(knobs, says):
    """--n-min with another method was ignored without a word: refused in the API, the settings and the CLI."""
    from cyclediff.settings import EditSettings, TranslateSettings

    with pytest.raises(CycleDiffError, match=says):
        options_of("cyclediffusion", **knobs)
    model = load_demo("digits-flow")
    with pytest.raises(CycleDiffError, match=r"n_\w+= is a method's option: pass method=FlowEdit\(n_"):
        edit(model, torch.zeros(1, 1, 8, 8), source_prompt=3, prompt=8, steps=4, **knobs)  # the old spelling
    for kind in (EditSettings, TranslateSettings):
        with pytest.raises(CycleDiffError, match=says):
            kind(**knobs)
        assert kind(method="flowedit", **knobs).n_min == knobs["n_min"]
    args = [f"--{k.replace('_', '-')}={v}" for k, v in knobs.items()]
    res = CliRunner().invoke(main, ["translate", _digit_png(), "--source-model", "demo:digits-flow",
                                    "--target-model", "demo:digits-flow", "--source-class", "3", "--target-class",
                                    "8", "--method", "sdedit", *args])
    assert res.exit_code != 0 and "FlowEdit's; method sdedit" in res.output and "Traceback" not in res.output


def test_a_method_sweep_keeps_flowedits_knobs_for_flowedit_alone(tmp_path):
    from cyclediff.jobs.file import load_job

    job = tmp_path / "sweep.toml"
    job.write_text(f"""task = "translate"
inputs = ["{_digit_png()}"]
[settings]
source_model = "demo:digits-flow"
target_model = "demo:digits-flow"
steps = 6
n_avg = 2
n_min = 1
method = ["cyclediffusion", "flowedit"]
""")
    units = load_job(job).units()
    assert [(u.settings.method, u.settings.n_avg, u.settings.n_min) for u in units] == [
        ("cyclediffusion", 1, 0), ("flowedit", 2, 1)]

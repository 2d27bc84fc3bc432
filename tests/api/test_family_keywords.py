"""A family's own condition keywords (Wan 2.2's ``guidance_scale_2``, LTX-Video's ``guidance_rescale`` …) through
``edit``: a prompt given as a dict of them reaches its side's condition and only it; bad ones are one line each."""

from __future__ import annotations

import pytest
import torch

from conftest import gens
from cyclediff import FlowEdit, edit, translate
from cyclediff.errors import CycleDiffError
from cyclediff.models.conditions import parse_condition
from cyclediff.models.wan import Wan
from cyclediff.settings import EditSettings, TranslateSettings
from tiny_wan import FRAMES, SIZE, wan_pipeline

EDIT = {"steps": 8, "strength": 0.75, "guidance_scale": 5.0, "source_guidance_scale": 1.0}


@pytest.fixture(scope="module")
def wan22(tmp_path_factory):
    """Wan 2.2 A14B-shaped: a second, low-noise transformer below the boundary, guided by ``guidance_scale_2``."""
    pipe = wan_pipeline(tmp_path_factory.mktemp("wan22"), two_stage=True)
    with torch.no_grad():  # larger text embeddings: the prompt and its guidance visibly move the tiny network
        pipe.text_encoder.shared.weight.mul_(30)
    return Wan(pipe, frames=FRAMES, size=(SIZE, SIZE), max_sequence_length=16)


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return torch.rand(1, 3, FRAMES, SIZE, SIZE)


def test_a_prompt_dict_gives_its_keywords_to_the_target_condition_alone(wan22, clip):
    """The edit with ``guidance_scale_2`` in the target's dict is the translation whose target condition holds it
    (the source's condition without it), and moves the result (the low-noise steps run at another scale)."""
    steps = wan22.schedule.grid(EDIT["steps"])
    assert any(wan22.low_noise(t) for t in steps[-6:])  # the edit's steps reach the second transformer
    ours = edit(wan22, clip, source_prompt="a cat", prompt={"prompt": "a red dog", "guidance_scale_2": 1.0},
                generator=gens(0), **EDIT)
    plain = edit(wan22, clip, source_prompt="a cat", prompt="a red dog", generator=gens(0), **EDIT)
    by_conditions = translate(clip, wan22, wan22, steps=EDIT["steps"], strength=EDIT["strength"], generator=gens(0),
                              source_condition={"prompt": "a cat", "guidance_scale": 1.0},
                              target_condition={"prompt": "a red dog", "guidance_scale": 5.0, "guidance_scale_2": 1.0})
    torch.testing.assert_close(ours.images, by_conditions.images, rtol=0, atol=1e-5)
    assert (ours.images - plain.images).abs().max() > 1e-3  # the keyword reached the sampler
    assert ours.latent.condition.get("guidance_scale_2") is None  # the source's record: its family's defaults


def test_a_source_dict_reaches_the_source_condition(wan22, clip):
    given = {"prompt": "a cat", "guidance_scale_2": 3.0}
    ours = edit(wan22, clip, source_prompt=given, prompt="a red dog", generator=gens(1), **EDIT)
    assert ours.latent.condition["guidance_scale_2"] == 3.0
    plain = edit(wan22, clip, source_prompt="a cat", prompt="a red dog", generator=gens(1), **EDIT)
    assert (ours.latent.eps - plain.latent.eps).abs().max() > 1e-3  # another source velocity, other draws


def test_each_target_of_a_baseline_gets_the_keywords(wan22, clip):
    """FlowEdit keeps no source pass: several targets are one edit each, each with the dict's keywords."""
    many = edit(wan22, clip, source_prompt="a cat", prompt={"prompt": ["a red dog", "a fox"], "guidance_scale_2": 1.0},
                method=FlowEdit(), generator=gens(2), **EDIT)
    one = edit(wan22, clip, source_prompt="a cat", prompt={"prompt": "a fox", "guidance_scale_2": 1.0},
               method=FlowEdit(), generator=gens(2), **EDIT)
    plain = edit(wan22, clip, source_prompt="a cat", prompt="a fox", method=FlowEdit(), generator=gens(2), **EDIT)
    torch.testing.assert_close(many.images[1:], one.images, rtol=0, atol=1e-5)
    assert (one.images - plain.images).abs().max() > 1e-3


@pytest.mark.parametrize("prompt, message", [
    ({"prompt": "a dog", "guidance_rescale": 0.7}, r"takes no condition keyword 'guidance_rescale' "
                                                   r"\(--target-condition\); its own are guidance_scale_2"),
    ({"prompt": "a dog", "guidance_scale": 2.0}, r"guidance_scale has its own option: give guidance_scale "
                                                 r"\(--guidance-scale\)"),
    ({"guidance_scale_2": 2.0}, "needs its text under 'prompt'"),
])
def test_bad_keywords_are_one_line(wan22, clip, prompt, message):
    with pytest.raises(CycleDiffError, match=message) as err:
        edit(wan22, clip, source_prompt="a cat", prompt=prompt, steps=2)
    assert "\n" not in str(err.value)


def test_a_pixel_model_has_no_family_keywords():
    from conftest import pixel

    with pytest.raises(CycleDiffError, match="it has none beyond the prompt and the guidance scale"):
        edit(pixel(num_classes=3), torch.rand(1, 3, 8, 8), source_prompt={"prompt": "x", "eta": 1}, prompt="y")


def test_parse_condition_reads_json_values_and_refuses_what_is_not_key_value():
    given = parse_condition(["guidance_scale_2=3", "cfg_normalization=false", "guidance_rescale=0.7",
                             "system_prompt=You are an artist, precise"])
    assert given == {"guidance_scale_2": 3, "cfg_normalization": False, "guidance_rescale": 0.7,
                     "system_prompt": "You are an artist, precise"}
    assert parse_condition("guidance_scale_2=3\ntrue_cfg_scale=4\n") == {"guidance_scale_2": 3, "true_cfg_scale": 4}
    for bad in ("guidance_scale_2", "=3", "two words=1"):
        with pytest.raises(CycleDiffError, match="give a condition keyword as KEY=VALUE"):
            parse_condition([bad])


def test_settings_carry_the_keywords_and_old_records_stay_as_they_were():
    plain = EditSettings(model="m", source_prompt="a", prompt="b")
    assert "condition" not in plain.record() and "source_condition" not in plain.record()  # outputs made before
    given = plain.replace(condition={"guidance_scale_2": 2.0}, source_condition={"guidance_scale_2": 1.0})
    assert given.record()["condition"] == {"guidance_scale_2": 2.0}
    keywords = given.api(source_prompt="a", prompt="b")
    assert keywords["prompt"] == {"prompt": "b", "guidance_scale_2": 2.0}
    assert keywords["source_prompt"] == {"prompt": "a", "guidance_scale_2": 1.0}
    assert "target_condition" not in TranslateSettings(source_model="m", target_model="m").record()
    with pytest.raises(CycleDiffError, match="condition is a table of condition keywords"):
        EditSettings.from_mapping({"model": "m", "condition": "guidance_scale_2=2"})

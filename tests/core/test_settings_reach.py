"""Every setting reaches the Python API: each field of a task's settings either shows in the keywords its ``api()``
gives the task's function (directly or inside the method's options), or is marked as the front ends' own. A
renamed keyword or a new field nobody passes fails here instead of being dropped without a word."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from cyclediff import edit, encode, guide, sample_latent, translate
from cyclediff.options import Options
from cyclediff.settings import EditSettings, EncodeSettings, GuideSettings, SampleSettings, TranslateSettings

# a value other than the default for each field a test may set (a method that takes the knob where one is needed)
OTHER = {"strength": 0.55, "steps": 7, "eta": 0.35, "guidance_scale": 4.5, "source_guidance_scale": 2.5,
         "refine_steps": 2, "n_avg": 3, "n_min": 1, "mask_threshold": 0.3, "attention": "replace",
         "negative_prompt": "blurry", "prompt": "a dog", "source_prompt": "a cat", "weight": 7.0,
         "langevin_steps": 9, "step_size": 0.2, "keep_best": True, "grad_steps": 2, "sampler": "ddpm",
         "encoder": "edit-friendly", "condition": {"class_labels": 3}, "method": "sdedit",
         "source_condition": {"guidance_scale_2": 2.0}}
NEEDS = {"n_avg": "flowedit", "n_min": "flowedit", "attention": "cyclediffusion", "mask_threshold": "cyclediffusion",
         "eta": "cyclediffusion"}
TASKS = [(EditSettings, edit), (TranslateSettings, translate), (GuideSettings, guide),
         (EncodeSettings, encode), (SampleSettings, sample_latent)]


def _values(arguments: dict) -> dict:
    """The keywords, with a method's options opened into its knobs."""
    out = dict(arguments)
    for value in arguments.values():
        if isinstance(value, Options):
            out.update({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
            out["method"] = value.name
    return out


@pytest.mark.parametrize("cls, fn", TASKS, ids=[c.__name__ for c, _ in TASKS])
def test_every_setting_reaches_the_api_or_is_the_front_ends(cls, fn):
    base = cls(**({"method": NEEDS.get("eta")} if "method" in cls.names() else {}))
    takes = set(inspect.signature(fn).parameters)
    for name in cls.names():
        if name in cls.front_end or name == "mask":  # the mask file: read by the front end, given to api()
            continue
        assert name in OTHER, f"give the test a non-default value for {cls.__name__}.{name}"
        changes = {name: OTHER[name]}
        if "method" in cls.names() and name != "method":
            changes["method"] = NEEDS.get(name, "cyclediffusion")
        changed = base.replace(**changes)
        given, value = _values(changed.api()), getattr(changed, name)
        if cls is EditSettings and name in ("condition", "source_condition"):  # ride with the prompts, as dicts
            key = "prompt" if name == "condition" else "source_prompt"
            prompts = {"source_prompt": "a cat", "prompt": "a dog"}
            reached = changed.replace(**prompts).api()[key] == {"prompt": prompts[key], **value}
        elif name == "condition":  # the condition's keywords are the function's own
            reached = all(given.get(k) == v for k, v in value.items())
        elif name == "attention":
            reached = given[name].mode == "replace"
        else:
            reached = given.get(name) == value
        assert reached, f"{cls.__name__}.{name} does not reach {fn.__name__}"
        assert set(changed.api()) <= takes | {"class_labels", "prompt"}, f"{fn.__name__} has no such keyword"


def test_the_api_keywords_of_edit_are_its_parameters():
    """The settings' api() names only parameters edit has: a renamed parameter fails here."""
    arguments = EditSettings(source_prompt="a", prompt="b").api(generator=None, progress=False)
    assert set(arguments) <= set(inspect.signature(edit).parameters)

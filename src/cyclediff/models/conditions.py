"""One way to say what a model is conditioned on: the keywords of its ``prepare_condition`` (``class_labels`` for
class-conditional pixel models; ``prompt`` and ``negative_prompt`` for text models; ``guidance_scale`` for both),
built from what users give by one builder."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import IncompatibleModelError

#: the condition keywords every front end has its own option for; the rest of a model's ``condition_keys`` are its
#: family's own (Wan 2.2's ``guidance_scale_2``, LTX-Video's ``guidance_rescale``, FLUX's ``true_cfg_scale`` …)
SHARED_KEYS = ("prompt", "negative_prompt", "class_labels", "guidance_scale")


def as_condition(value: Any) -> dict[str, Any]:
    """A condition from what users pass: None, a dict of keywords, a prompt (or one per image), or class label(s)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str) or (isinstance(value, (list, tuple)) and value and isinstance(value[0], str)):
        return {"prompt": value}
    return {"class_labels": value}


def merge_condition(condition: Any, keywords: dict[str, Any]) -> dict[str, Any]:
    """The one convention of the API: ``condition=`` (anything :func:`as_condition` takes) plus keywords
    (``class_labels=``, ``prompt=`` …), the keywords winning."""
    return {**as_condition(condition), **keywords}


def condition_for(model: Any, *, prompt: Any = None, negative_prompt: Any = None, class_labels: Any = None,
                  guidance_scale: Any = None, side: str | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The condition keywords ``model`` takes, from the options a user gave (None: not given); options the model
    cannot use are refused with one message naming what it takes, by the options of the command: ``side``
    "source" / "target" for the two sides of an edit or a translation (``--source-class``, ``--target-prompt``).
    ``extra``: the family's own keywords (:func:`family_condition`), added as given.
    """
    own = family_condition(model, extra, side=side)
    keys = model.condition_keys
    given = {"prompt": prompt, "negative_prompt": negative_prompt, "class_labels": class_labels,
             "guidance_scale": guidance_scale}
    cannot = [k for k, v in given.items() if v is not None and k not in keys]
    if cannot:
        kind = "a text-conditioned model" if "prompt" in keys else "a pixel model without a text encoder"
        raise IncompatibleModelError(
            f"this is {kind}: drop {' / '.join(_named(k, side) for k in cannot)}; it takes "
            f"{', '.join(_named(k, side) for k in keys)}"
        )
    return {**{k: v for k, v in given.items() if v is not None}, **own}


def family_condition(model: Any, extra: Mapping[str, Any] | None, *, side: str | None = None) -> dict[str, Any]:
    """``extra`` checked against ``model``'s own condition keywords (beyond :data:`SHARED_KEYS`): a shared one is
    refused naming its own option, a keyword the family does not take naming those it does."""
    extra = dict(extra or {})
    shared = [k for k in extra if k in SHARED_KEYS]
    if shared:
        raise IncompatibleModelError(f"{shared[0]} has its own option: give {_named(shared[0], side)}, not "
                                     f"{_extra_flag(side)} {shared[0]}=…")
    own = [k for k in model.condition_keys if k not in SHARED_KEYS]
    unknown = [k for k in extra if k not in own]
    if unknown:
        takes = f"its own are {', '.join(own)}" if own else "it has none beyond the prompt and the guidance scale"
        raise IncompatibleModelError(f"{getattr(model, 'kind', 'this model')} takes no condition keyword "
                                     f"{unknown[0]!r} ({_extra_flag(side)}); {takes}")
    return extra


def parse_condition(items: Iterable[str] | str | None) -> dict[str, Any]:
    """``KEY=VALUE`` items (the command line's ``--condition``, a web form's field: one per line) as condition
    keywords; a value is read as JSON where it is one (``3``, ``0.7``, ``true``) and as text otherwise."""
    if isinstance(items, str):
        items = items.splitlines()
    parsed: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.strip().partition("=")
        if not item.strip():
            continue
        if not sep or not key.strip().isidentifier():
            raise IncompatibleModelError(f"give a condition keyword as KEY=VALUE, e.g. guidance_scale_2=3; "
                                         f"got {item.strip()!r}")
        try:
            parsed[key.strip()] = json.loads(value.strip())
        except ValueError:
            parsed[key.strip()] = value.strip()
    return parsed


def _extra_flag(side: str | None) -> str:
    """The command line's option for a family's own keywords on ``side`` (edit takes ``--condition`` too)."""
    return f"--{side}-condition" if side else "--condition"


def _named(key: str, side: str | None = None) -> str:
    """A condition keyword with the command line's option for it: ``prompt (--prompt)``, on one side of an edit
    or a translation ``class_labels (--source-class)``."""
    flags = {"class_labels": f"--{side}-class" if side else "--class-label",
             "prompt": f"--{side}-prompt" if side else "--prompt"}
    if side == "source" and key == "guidance_scale":
        flags[key] = "--source-guidance-scale"
    return f"{key} ({flags.get(key, '--' + key.replace('_', '-'))})"

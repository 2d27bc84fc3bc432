"""One way to say what a model is conditioned on: the keywords of its ``prepare_condition`` (``class_labels`` for
class-conditional pixel models; ``prompt`` and ``negative_prompt`` for text models; ``guidance_scale`` for both),
built from what users give by one builder."""

from __future__ import annotations

from typing import Any

from ..errors import IncompatibleModelError


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
                  guidance_scale: Any = None, side: str | None = None) -> dict[str, Any]:
    """The condition keywords ``model`` takes, from the options a user gave (None: not given); options the model
    cannot use are refused with one message naming what it takes, by the options of the command: ``side``
    "source" / "target" for the two sides of an edit or a translation (``--source-class``, ``--target-prompt``).
    """
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
    return {k: v for k, v in given.items() if v is not None}


def _named(key: str, side: str | None = None) -> str:
    """A condition keyword with the command line's option for it: ``prompt (--prompt)``, on one side of an edit
    or a translation ``class_labels (--source-class)``."""
    flags = {"class_labels": f"--{side}-class" if side else "--class-label",
             "prompt": f"--{side}-prompt" if side else "--prompt"}
    if side == "source" and key == "guidance_scale":
        flags[key] = "--source-guidance-scale"
    return f"{key} ({flags.get(key, '--' + key.replace('_', '-'))})"

"""The page shows a method's knobs only with the methods that take them: η goes when DDIB or FlowEdit is chosen
(the service leaves out the value the form still sends)."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from cyclediff.web import Studio  # noqa: E402
from cyclediff.web.app import _eta_shown, build_app  # noqa: E402


def test_eta_is_shown_only_for_the_methods_that_take_it(tmp_path):
    assert [_eta_shown(m)["visible"] for m in ("cyclediffusion", "edit-friendly", "sdedit", "flowedit", "ddib")] == [
        True, True, True, False, False]
    app = build_app(Studio(["demo:digits"], workdir=tmp_path))
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in app.config["components"]}
    radios = {c["id"] for c in app.config["components"] if c["type"] == "radio"}
    shown = [ids[t] for d in app.config["dependencies"] for t in d["outputs"]
             if any(trigger[1] == "change" and trigger[0] in radios for trigger in d["targets"])]
    assert {"edit-eta", "translate-eta"} <= set(shown)
    app.close()


def test_the_edit_forms_later_fields_are_the_last_api_parameters(tmp_path):
    """The "Strengths to compare" box and then the target's own condition keywords reach /edit last (so API calls
    that leave them out still mean one strength and the family's defaults)."""
    app = build_app(Studio(["demo:digits"], workdir=tmp_path))
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in app.config["components"]}
    (edit,) = [d for d in app.config["dependencies"] if d.get("api_name") == "edit"]
    assert [ids[i] for i in edit["inputs"][-2:]] == ["edit-strengths", "edit-own"]
    assert ids[edit["inputs"][4]] == "edit-strength"
    app.close()

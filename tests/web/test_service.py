"""The web service's default model list comes from the shipped demo weights (``models.demo_names``), not from the
demo's training code: serving the demo never imports the trainer."""

from __future__ import annotations

import subprocess
import sys


def test_serving_lists_the_shipped_demos_without_importing_the_trainer():
    code = ("import sys, cyclediff.web.service as s; from cyclediff.models import demo_names; "
            "print(sorted(n.removeprefix('demo:') for n in s.DEMO_MODELS) == demo_names(), s.DEMO_MODELS[0], "
            "'cyclediff.demo.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "demo:digits", "False"]  # every shipped demo; the page's examples use the first

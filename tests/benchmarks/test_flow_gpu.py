"""benchmarks/flow_gpu.py: the 2026 families' presets read their text at the transformer's width (meta builds, no
weights), and the floor's rows are the ones ``cyclediff.methods.evaluations`` counts for each family's guidance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from cyclediff.schedule import Grid

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "flow_gpu.py"


@pytest.fixture(scope="module")
def flow_gpu():
    if str(SCRIPT.parent) not in sys.path:  # its siblings (gpu_edit.py, flow_families.py), as when run as a script
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("flow_gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (the text width each transformer reads, from the text encoder's config: FLUX.2 stacks three hidden states)
WIDTH = {"qwenimage": lambda t, n: (t.config.text_config.hidden_size, n.config.joint_attention_dim),
         "flux2": lambda t, n: (3 * t.config.text_config.hidden_size, n.config.joint_attention_dim),
         "chroma": lambda t, n: (t.config.d_model, n.config.joint_attention_dim),
         "z-image": lambda t, n: (t.config.hidden_size, n.config.cap_feat_dim)}


@pytest.mark.parametrize("name", ["qwen-image", "flux2-dev", "chroma", "z-image"])
def test_the_full_size_presets_read_their_text_at_the_transformers_width(flow_gpu, name, tmp_path):
    preset = flow_gpu.PRESETS[name]
    with torch.device("meta"):
        pipe = flow_gpu.family_pipeline(preset["kind"], tmp_path, preset["family_size"])
    text_width, network_width = WIDTH[preset["kind"]](pipe.text_encoder, pipe.transformer)
    assert text_width == network_width
    billions = sum(p.numel() for p in pipe.transformer.parameters()) / 1e9
    assert billions > 6 and sum(p.numel() for p in pipe.text_encoder.parameters()) / 1e9 < 1  # stand-in encoders


@pytest.mark.parametrize(("name", "rows"), [("small-qwen-image", 3), ("small-flux2-dev", 2), ("small-chroma", 3),
                                            ("small-z-image", 3), ("sd3-medium", 3), ("flux-dev", 2)])
def test_the_floor_has_the_rows_the_edit_evaluates(flow_gpu, name, rows):
    grid = Grid(steps=28, strength=0.8, full=tuple(range(28, 0, -1)), run=tuple(range(23, 0, -1)))
    assert flow_gpu.rows_per_step(flow_gpu.PRESETS[name], grid) == rows  # embedded guidance takes no extra row

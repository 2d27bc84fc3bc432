"""benchmarks/memory.py: its presets are the published architectures (parameter counts built on the meta device,
against the counts the model cards state) and its CPU smoke run measures every column."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory.py"


@pytest.fixture(scope="module")
def memory():
    if str(SCRIPT.parent) not in sys.path:  # its sibling benchmarks/flow_families.py, as when run as a script
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("memory_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# billions of parameters of the network and of the largest text encoder, from the model cards (SD 1.5: 0.86 B
# UNet; SDXL: 2.6 B UNet, CLIP-G 0.69 B; SD3.5 medium 2.5 B, large 8.1 B MMDiT; FLUX.1 dev 12 B; T5-XXL's encoder
# 4.7 B; Qwen-Image's 20 B MMDiT with Qwen2.5-VL-7B, 8.29 B; FLUX.2 [dev] 32 B with Mistral-Small-3.1, 24 B;
# Chroma 8.9 B with T5-XXL; Z-Image 6 B with Qwen3-4B, 4.0 B), within 4 % (the cards round: Z-Image builds 6.15 B,
# Mistral-Small 23.3 B)
CARDS = {"sd15": (0.86, 0.123), "sdxl": (2.57, 0.695), "sd35-medium": (2.5, 4.76), "sd35-large": (8.1, 4.76),
         "flux-dev": (11.9, 4.76), "qwen-image": (20.0, 8.29), "flux2-dev": (32.0, 24.0), "chroma": (8.9, 4.76),
         "z-image": (6.0, 4.0)}


@pytest.mark.parametrize("name", list(CARDS))
def test_the_presets_have_the_published_sizes(memory, name, tmp_path):
    with torch.device("meta"):
        pipe = memory.build(memory.PRESETS[name], tmp_path)
    network = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    texts = [getattr(pipe, n) for n in ("text_encoder", "text_encoder_2", "text_encoder_3")
             if getattr(pipe, n, None) is not None]
    # SD3's position embedding table is a buffer (384² × 1536 values in the medium): counted as the cards count it
    billions = sum(p.numel() for p in [*network.parameters(), *network.buffers()]) / 1e9
    largest = max(sum(p.numel() for p in t.parameters()) for t in texts) / 1e9
    net_card, text_card = CARDS[name]
    assert abs(billions / net_card - 1) < 0.04, billions
    assert abs(largest / text_card - 1) < 0.04, largest


def test_the_cpu_smoke_run_measures_memory_and_time(memory, capsys):
    rows = memory.main(["--presets", "cpu-sd", "--quantize", "none,int8", "--offload", "none,model", "--steps", "2"])
    assert [(r["quantize"], r["offload"]) for r in rows] == [("none", "none"), ("int8", "none")]  # no GPU: no offload
    assert all(r["seconds_per_edit"] > 0 for r in rows)
    assert rows[1]["peak_mib"] < rows[0]["peak_mib"]  # int8 weights take less room
    assert "| cpu-sd | 16² | int8 | none |" in capsys.readouterr().out


# video (benchmarks/video_families.py): transformer, text encoder and VAE, billions. Wan2.1's "1.3B" and "14B" name
# checkpoints of 1.42 B and 14.3 B (their bf16 safetensors), UMT5-XXL's encoder 5.68 B, Wan-VAE 127 M (the Wan
# report); LTX-Video 2B with T5-XXL's encoder; HunyuanVideo 13B with llava-llama-3-8b's LlamaModel (Llama-3-8B's
# 8.03 B less its 0.53 B output head), its VAE 0.25 B
VIDEO_CARDS = {"wan-1.3b": (1.42, 5.68, 0.127), "wan-14b": (14.3, 5.68, 0.127), "ltx-video": (2.0, 4.76, None),
               "hunyuan-video": (13.0, 7.50, None)}


def _billions(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e9


@pytest.mark.parametrize("name", list(VIDEO_CARDS))
def test_the_video_presets_have_the_published_sizes(memory, name, tmp_path):
    with torch.device("meta"):
        pipe = memory.build(memory.PRESETS[name], tmp_path)
    for module, card in zip((pipe.transformer, pipe.text_encoder, pipe.vae), VIDEO_CARDS[name]):
        if card is not None:
            assert abs(_billions(module) / card - 1) < 0.04, (type(module).__name__, _billions(module))


def test_a_480p_wan_edit_is_estimated_from_the_meta_build(memory, tmp_path):
    with torch.device("meta"):
        small, large = (memory.build(memory.PRESETS[n], tmp_path / n) for n in ("wan-1.3b", "wan-14b"))
    full = memory.video_edit_memory(small)
    assert full["weights_gib"]["transformer"] == pytest.approx(_billions(small.transformer) * 2e9 / 2**30)
    parts = sum(full["weights_gib"].values()) + full["clip_gib"]
    assert full["total_gib"] == pytest.approx(parts + max(full["transformer_activations_gib"],
                                                          full["vae_activations_gib"]))
    on_cpu = memory.video_edit_memory(small, text_on_cpu=True)
    assert full["total_gib"] - on_cpu["total_gib"] == pytest.approx(full["weights_gib"]["text_encoder"])
    tiled = memory.video_edit_memory(small, vae_tiling=True)
    assert tiled["vae_activations_gib"] < full["vae_activations_gib"] / 5  # 256² tiles of 832 × 480
    assert memory.video_edit_memory(small, rows=4)["transformer_activations_gib"] == pytest.approx(
        2 * full["transformer_activations_gib"])
    assert full["fits_24gb"] and not memory.video_edit_memory(large)["fits_24gb"]  # 14B: transformer 26.6 GiB

"""The shipped demo models and `cyclediff demo`: loading, accuracy of the class-conditional model, training
determinism, and the demo run end to end (small settings)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cyclediff.cli import main
from cyclediff.demo.data import NULL_LABEL, classify, split
from cyclediff.demo.train import train_unet
from cyclediff.models import load
from cyclediff.sampler import decode, sample_latent


def test_shipped_models_load_by_spec():
    digits = load("demo:digits")
    assert digits.null_class_label == NULL_LABEL and digits.sample_shape == (1, 8, 8)
    assert digits.num_classes == 11 and digits.model_id == "demo:digits"
    for name in ("demo:digit-3", "demo:digit-8"):
        den = load(name)
        assert den.num_classes is None and den.model_id == name


def test_class_conditional_samples_are_the_requested_digits():
    """A fresh CPU run: samples of every class, judged by an SVC trained on the real digits, ≥ 90% right."""
    den = load("demo:digits")
    labels = torch.arange(10).repeat_interleave(10)
    gens = [torch.Generator().manual_seed(1000 + i) for i in range(len(labels))]
    with torch.no_grad():
        x = decode(sample_latent(den, len(labels), steps=50, eta=1.0, class_labels=labels, guidance_scale=2.0,
                                 generator=gens), den)
    accuracy = float(np.mean(classify(x) == labels.numpy()))
    assert accuracy >= 0.9, accuracy
    # unconditional use (the null label) spreads over the classes
    with torch.no_grad():
        free = decode(sample_latent(den, 100, steps=50, eta=1.0, generator=gens), den)
    assert len(set(classify(free).tolist())) >= 6


def test_training_is_deterministic_for_a_seed():
    x, y, _, _ = split()
    a = train_unet(x[:64], y[:64], iters=3, seed=0, batch_size=8)
    b = train_unet(x[:64], y[:64], iters=3, seed=0, batch_size=8)
    c = train_unet(x[:64], y[:64], iters=3, seed=1, batch_size=8)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, r) for p, r in zip(a.state_dict().values(), c.state_dict().values()))


def test_demo_train_command_writes_loadable_models(tmp_path):
    res = CliRunner().invoke(main, ["demo", "train", "--out", str(tmp_path), "--iters", "2"])
    assert res.exit_code == 0, res.output
    for name in ("digits", "digit-3", "digit-8"):
        assert (tmp_path / name / "diffusion_pytorch_model.safetensors").is_file()
        assert (tmp_path / name / "cyclediff.json").is_file()
    from cyclediff.demo.models import load_demo
    from cyclediff.models import FlowPixelDenoiser

    assert isinstance(load_demo("digits-flow", root=tmp_path), FlowPixelDenoiser)  # the fourth: a rectified flow

def test_demo_runs_end_to_end(tmp_path):
    (tmp_path / "demo.md").write_text("a previous demo's table")  # a previous demo's folder is rewritten
    res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    # progress: the first line says how long, what --quick does and the threads; then one line per stage
    first = res.output.splitlines()[0]
    assert "--quick" in first and "minute" in first and "thread" in first, first
    stages = re.findall(r"\[(\d)/7\] ([^\n\r]*)", res.output)  # the bars share stderr, with \r
    assert [int(i) for i, _ in stages] == list(range(1, 8)), res.output
    stages = [line for _, line in stages]
    assert any("translation 3 → 8" in line for line in stages) and any("guidance" in line for line in stages)
    results = json.loads((tmp_path / "demo.json").read_text())
    vp = {"cyclediffusion", "sdedit", "ddib", "edit-friendly"}  # FlowEdit needs a flow model
    assert set(results["translation"]) == set(results["class_edit"]) == vp
    assert {"accuracy_guided", "accuracy_unguided"} <= set(results["guidance"])
    for task in ("translation", "class_edit"):
        for r in results[task].values():
            assert 0 <= r["target_accuracy"] <= 1 and -1 <= r["ssim"] <= 1 and np.isfinite(r["kid"])
        # the point of the method: the latent keeps the input's shape far better than fresh noise does
        assert results[task]["cyclediffusion"]["ssim"] > results[task]["sdedit"]["ssim"] + 0.1
    assert (tmp_path / "demo.png").stat().st_size > 0 and "| method |" in (tmp_path / "demo.md").read_text()
    flow = results["class_edit_flow"]  # the rectified-flow model's row: its latent keeps the shape too
    assert set(flow) == vp | {"flowedit"}
    assert flow["cyclediffusion"]["ssim"] > flow["sdedit"]["ssim"] + 0.1
    # evaluations per edit, counted at the UNet: two a step (source and target) for the encoders and FlowEdit at
    # n_avg 1, one for SDEdit, two for DDIB (invert up, generate down); the quick demo's grid has int(steps·0.8)
    steps = int(results["settings"]["steps"] * results["settings"]["strength"])
    assert {m: r["evaluations_per_edit"] for m, r in flow.items()} == {
        "cyclediffusion": 2 * steps, "edit-friendly": 2 * steps, "flowedit": 2 * steps, "sdedit": steps,
        "ddib": 2 * steps}
    assert "(rectified flow)" in (tmp_path / "demo.md").read_text()
    # the video rows: 3 → 8 clips by the three methods at equal steps, per-frame accuracy and trajectory distance
    video = results["video"]
    assert set(video["methods"]) == {"cyclediffusion", "flowedit", "sdedit"}
    assert video["steps"] == results["settings"]["steps"]
    for r in video["methods"].values():
        assert 0 <= r["frame_accuracy"] <= 1 and 0 <= r["trajectory_distance"] < video["size"][0]
    # at the video rows' own strength and guidance (above 1: the target's guided and unguided calls each step)
    assert video["strength"] == results["settings"]["video_strength"] and video["guidance_scale"] > 1
    vsteps = int(results["settings"]["steps"] * video["strength"])
    assert {m: r["evaluations_per_edit"] for m, r in video["methods"].items()} == {
        "cyclediffusion": 3 * vsteps, "flowedit": 3 * vsteps, "sdedit": 2 * vsteps}
    assert video["inputs"]["frame_accuracy_as_source"] >= 0.9 and any("clip edits 3 → 8" in s for s in stages)
    assert "trajectory distance (px)" in (tmp_path / "demo.md").read_text()
    assert (tmp_path / "demo-video.png").stat().st_size > 0


def test_the_flow_demo_model_samples_the_requested_digits():
    """demo:digits-flow (rectified flow, velocity prediction) behind the same protocols: class-conditional
    samples at guidance 2 read as the requested class by the SVC ≥ 90% of the time."""
    from cyclediff.models import FlowPixelDenoiser

    model = load("demo:digits-flow")
    assert isinstance(model, FlowPixelDenoiser) and model.null_class_label == 10
    labels = torch.arange(10).repeat_interleave(5)
    z = sample_latent(model, len(labels), steps=30, generator=[torch.Generator().manual_seed(i) for i in range(50)],
                      class_labels=labels, guidance_scale=2.0)
    assert np.mean(classify(decode(z, model)) == labels.numpy()) >= 0.9


def test_classifier_guidance_reaches_the_requested_digits():
    """Guiding the null-label (unconditional) model with a small MLP's −log p(class): the SVC, which the energy
    never saw, reads the requested class in ≥ 90% of samples; unguided samples spread over the classes."""
    from cyclediff.demo.guidance import guided_digits

    result = guided_digits(load("demo:digits"), per_class=3)
    assert result["accuracy_guided"] >= 0.9, result
    assert result["accuracy_unguided"] <= 0.3 and sum(c > 0 for c in result["unguided_class_histogram"]) >= 6
    assert result["energy_last"] < result["energy_first"]


def test_demo_refuses_a_folder_with_other_files(tmp_path):
    """--out holding files the demo did not write: one line before any work; --overwrite lets it through, and a
    folder holding only a previous demo's files is rewritten."""
    from cyclediff.demo.run import check_demo_out
    from cyclediff.errors import CycleDiffError

    (tmp_path / "notes.txt").write_text("mine")
    res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--overwrite" in res.output and "notes.txt" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "demo.json").exists()
    assert check_demo_out(tmp_path, overwrite=True) == tmp_path
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "demo.json").write_text("{}")
    assert check_demo_out(tmp_path) == tmp_path
    (tmp_path / "sub").mkdir()
    with pytest.raises(CycleDiffError, match="sub"):
        check_demo_out(tmp_path)


def test_demo_threads_one_on_small_machines(monkeypatch):
    """One thread on a 1–2 core machine unless OMP_NUM_THREADS or --threads says otherwise; the reason is said."""
    from cyclediff.cli.demo import _threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr("os.cpu_count", lambda: 2)
        assert "1 thread (2 CPU cores" in _threads(None) and torch.get_num_threads() == 1
        assert "2 threads (--threads)" == _threads(2) and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert "OMP_NUM_THREADS" in _threads(None) and torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr("os.cpu_count", lambda: 16)
        assert "16 CPU cores" in _threads(None) and torch.get_num_threads() == 2  # torch's own choice kept
    finally:
        torch.set_num_threads(before)

"""``cyclediff bench pie-bench`` end to end on a tiny PIE-format set (made here) with a tiny Stable Diffusion and
tiny scoring models: the official folder layout, results.csv, the summary table, a missing image reported while
the rest is scored, a second run that edits nothing; the evaluation counts against a counted run."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from cyclediff import CycleDiffError, edit
from cyclediff.bench import load_pie
from cyclediff.bench.run import PIE_EDIT, PieBenchRun, evaluations, grid_of
from cyclediff.cli import main
from cyclediff.models import StableDiffusion, load
from cyclediff.settings import EditSettings
from pie_fixtures import pie_folder, pie_sd, tiny_clip_folder, tiny_dino, tiny_squeezenet_weights
from tiny_sd import photos, sd_pipeline


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pie")
    return {"tmp": tmp, "data": pie_folder(tmp, count=3, missing=True), "model": pie_sd(tmp), "dino": tiny_dino(tmp),
            "clip": tiny_clip_folder(tmp), "lpips": tiny_squeezenet_weights(tmp)}


def _bench(setup, out, *extra):
    return CliRunner().invoke(main, ["bench", "pie-bench", str(setup["data"]), "--model", str(setup["model"]),
                                     "--method", "cyclediffusion,sdedit", "--steps", "4", "--strength", "0.5",
                                     "--guidance-scale", "2", "--out", str(out), "--dino", str(setup["dino"]),
                                     "--clip", str(setup["clip"]), "--lpips-weights", str(setup["lpips"]),
                                     "--device", "cpu", "--quiet", *extra])


def test_pie_bench_runs_end_to_end_scores_officially_and_resumes(setup):
    out = setup["tmp"] / "out"
    res = _bench(setup, out)
    assert res.exit_code == 1, res.output  # the item without its image fails; the three others are scored
    assert "failed 999999999999" in res.output and "gone.jpg is missing" in res.output
    for method in ("cyclediffusion", "sdedit"):
        for rel in ("0_category/000.jpg", "1_category/001.jpg", "9_category/002.jpg"):
            assert (out / method / "annotation_images" / rel).is_file()  # the layout the official script reads
    rows = list(csv.DictReader((out / "results.csv").open()))
    scored = [r for r in rows if not r["error"]]
    assert len(scored) == 6 and {r["method"] for r in scored} == {"cyclediffusion", "sdedit"}
    for r in scored:
        assert float(r["psnr_unedit_part"]) > 5 and float(r["lpips_unedit_part"]) >= 0
        assert float(r["mse_unedit_part"]) < 1
        assert -1 <= float(r["ssim_unedit_part"]) <= 1 and float(r["structure_distance"]) >= 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_method"]["cyclediffusion"]["images"] == 3
    assert summary["by_method"]["sdedit"]["evaluations_per_edit"] == 2 * 2  # 2 steps, target guidance 2: 2 rows
    table = (out / "summary.md").read_text()
    assert "| method | images | structure_distance ×10^3 | psnr_unedit_part |" in table
    assert "| cyclediffusion | 3 |" in table
    job = (out / "job.toml").read_text()
    assert 'method = ["cyclediffusion", "sdedit"]' in job and 'inputs = "items.jsonl"' in job
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert items[0]["source_prompt"] == "a cat sitting on a mat"  # brackets stripped, as the official scripts do
    images = sorted((out / "edits" / "images").iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in images}
    again = _bench(setup, out)
    assert again.exit_code == 1 and {p: p.stat().st_mtime_ns for p in images} == stamps  # nothing edited again
    assert (out / "summary.md").read_text() == table


def test_the_split_types_and_limit_choose_items_and_bad_folders_are_one_line(setup, tmp_path):
    data = setup["data"]
    assert [i.type_id for i in load_pie(data)] == ["0", "1", "9", "0"]
    assert [i.type_id for i in load_pie(data, split="620")] == ["0", "1", "0"]
    assert [i.key for i in load_pie(data, types="1")] == ["000000000001"]
    assert len(load_pie(data, limit=2)) == 2
    with pytest.raises(CycleDiffError, match="no mapping_file.json"):
        load_pie(tmp_path)
    bad = pie_folder(tmp_path / "bad", count=2)
    table = json.loads((bad / "mapping_file.json").read_text())
    table["000000000000"]["editing_type_id"] = "12"
    (bad / "mapping_file.json").write_text(json.dumps(table))
    with pytest.raises(CycleDiffError, match="item 000000000000: unknown editing_type_id '12'"):
        load_pie(bad)
    table["000000000000"].update(editing_type_id="0", mask=[262000, 500])
    (bad / "mapping_file.json").write_text(json.dumps(table))
    with pytest.raises(CycleDiffError, match="item 000000000000: the run .start 262000, length 500. runs past"):
        load_pie(bad)


@pytest.mark.parametrize("method", ["cyclediffusion", "edit-friendly", "sdedit", "ddib"])
def test_the_evaluations_per_edit_are_those_a_counted_edit_makes(setup, method):
    sd = StableDiffusion.from_pipe(sd_pipeline(setup["tmp"] / "count"))
    rows = [0]
    sd.unet.register_forward_hook(lambda m, a, k, o: rows.__setitem__(0, rows[0] + len(a[0] if a else k["sample"])),
                                  with_kwargs=True)
    edit(sd, photos(1), source_prompt="a cat", prompt="a dog", steps=6, strength=0.5, guidance_scale=2.0,
         source_guidance_scale=1.0, method=method)
    bench = PieBenchRun(data=setup["data"], out=setup["tmp"], methods=[method],
                        edit=EditSettings(model="m", steps=6, strength=0.5, guidance_scale=2.0,
                                          source_guidance_scale=1.0))
    assert rows[0] == evaluations(bench, method, grid_of(sd, bench))


@pytest.mark.parametrize(("name", "steps_run"), [("demo:digits-flow", 17), ("demo:digits", 16)])
def test_the_evaluations_per_edit_count_the_grid_of_the_model_that_ran(tmp_path, name, steps_run):
    """50 × 0.33 is not whole: a flow model's cut (the flow-matching img2img rule) runs 17 steps, a
    variance-preserving model's 16; the count is the one a counted edit on that model makes."""
    model = load(name)
    rows = [0]
    model.unet.register_forward_hook(lambda m, a, k, o: rows.__setitem__(0, rows[0] + len(a[0] if a else k["sample"])),
                                     with_kwargs=True)
    bench = PieBenchRun(data=tmp_path, out=tmp_path, methods=["sdedit", "cyclediffusion"],
                        edit=EditSettings(steps=50, strength=0.33, guidance_scale=1.0))
    grid = grid_of(model, bench)
    assert evaluations(bench, "sdedit", grid) == steps_run  # one row a step: no guidance
    assert evaluations(bench, "cyclediffusion", grid) == 2 * steps_run  # the source pass and the target's
    edit(model, torch.rand(1, model.codec.channels, *model.codec.image_size), source_prompt=3, prompt=8, steps=50,
         strength=0.33, guidance_scale=1.0, method="sdedit", generator=torch.Generator().manual_seed(0))
    assert rows[0] == steps_run


def test_best_of_n_keeps_the_seed_of_the_largest_directional_clip(setup):
    out = setup["tmp"] / "best"
    res = _bench(setup, out, "--limit", "1", "--seeds", "0-1", "--best-of", "--rank-clip", str(setup["clip"]))
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (out / "edits" / "manifest.jsonl").read_text().splitlines()]
    for method in ("cyclediffusion", "sdedit"):
        mine = [r for r in records if r["method"] == method]
        assert len(mine) == 2
        best = max(mine, key=lambda r: r["metrics"]["directional_clip"])
        exported = out / method / "annotation_images" / "0_category" / "000.jpg"
        assert exported.read_bytes() == (out / "edits" / best["output"]).read_bytes()
    assert "(best of the seeds by directional CLIP)" in (out / "summary.md").read_text()


def test_the_loading_options_reach_the_job_with_absolute_paths(tmp_path, monkeypatch):
    """--lora / --base / --quantize are written into OUT/job.toml (paths made absolute: the job lives in OUT);
    what is not set is left out, so a plain run's job file stays as it was."""
    from cyclediff.cli.bench import _absolute

    monkeypatch.chdir(tmp_path)
    (tmp_path / "style.safetensors").write_bytes(b"")
    (tmp_path / "base").mkdir()
    out = _absolute({"lora": ("style.safetensors:0.5", "org/hub-lora"), "quantize": "int8", "offload": None,
                     "vae_tiling": False, "base": "base", "text_encoders_on_cpu": False})
    assert out == {"lora": [f"{tmp_path / 'style.safetensors'}:0.5", "org/hub-lora"], "quantize": "int8",
                   "base": str(tmp_path / "base")}


def test_the_command_line_builds_edit_settings_and_the_job_file_records_them(setup, tmp_path, monkeypatch):
    """The run *is* edit settings plus its own axes: PIE-Bench's defaults (50 steps, guidance 7.5) where none is
    given, every edit option given reaching the settings, and OUT/job.toml carrying what differs from an edit's
    defaults (a knob of no method run left out by the sweep)."""
    import tomllib

    import cyclediff.bench.run as bench_run

    made = []

    def stop(bench):
        made.append(bench)
        raise CycleDiffError("stopped before editing")

    monkeypatch.setattr(bench_run, "prepare", stop)
    res = CliRunner().invoke(main, ["bench", "pie-bench", str(setup["data"]), "--model", "demo:digits", "--method",
                                    "cyclediffusion,sdedit", "--eta", "0.5", "--source-guidance-scale", "1.5",
                                    "--n-avg", "2", "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert "stopped before editing" in res.output
    bench = made[0]
    assert bench.edit == EditSettings(model="demo:digits", steps=PIE_EDIT.steps, guidance_scale=PIE_EDIT.guidance_scale,
                                      eta=0.5, source_guidance_scale=1.5, n_avg=2, method=None)
    monkeypatch.undo()
    bench_run.prepare(bench)
    job = tomllib.loads((tmp_path / "o" / "job.toml").read_text())
    assert job["settings"] == {"model": "demo:digits", "method": ["cyclediffusion", "sdedit"], "steps": 50,
                               "guidance_scale": 7.5, "eta": 0.5, "source_guidance_scale": 1.5, "n_avg": 2}
    assert bench.settings("sdedit").n_avg == EditSettings().n_avg  # the sweep's methods run their own knobs
    one = EditSettings(model="m", method="sdedit")
    with pytest.raises(CycleDiffError, match="n_avg is FlowEdit's"):
        one.replace(n_avg=2)  # one method: a knob it does not take is refused, as in a job file

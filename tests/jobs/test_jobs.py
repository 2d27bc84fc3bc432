"""Dataset jobs (``cyclediff run``): job files, deterministic sharding, two CPU processes through accelerate
(gloo) giving the 1-process images byte for byte, resume after a kill, bad items recorded while the job goes on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cyclediff import CycleDiffError
from cyclediff._images import save_image
from cyclediff.cli import main
from cyclediff.demo.data import split
from cyclediff.jobs.run import finished_keys, load_job, run_job

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """Eight held-out 3s as 8×8 PNGs."""
    folder = tmp_path_factory.mktemp("digits") / "threes"
    _, _, x, y = split()
    for i, img in enumerate(x[y == 3][:8]):
        save_image((img + 1) / 2, folder / f"three{i}.png")
    return folder


def write_job(folder: Path, name: str, inputs: str, out: str, *, steps: int = 10, extra: str = "",
              settings: str = "") -> Path:
    text = f"""task = "translate"
inputs = "{inputs}"
out = "{out}"
seeds = "0-1"
batch_size = 3
{extra}
[settings]
source_model = "demo:digit-3"
target_model = "demo:digit-8"
strength = 0.8
steps = {steps}
{settings}
"""
    path = folder / name
    path.write_text(text)
    return path


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.int16)


def assert_same_output(path_a: Path, path_b: Path, metrics_a: dict, metrics_b: dict) -> None:
    """Two runs of one unit in processes with different thread counts: their float images differ by ULPs, which
    can flip the rounding of a pixel to 8 bits, so pixels agree within one level. Metrics are computed in float64
    from the written image and rounded to 5 decimals: with identical files they agree to that last digit; with a
    flipped pixel in an 8x8 digit PSNR moves by < 0.01 dB and SSIM by < 1e-3."""
    a, b = pixels(path_a), pixels(path_b)
    assert np.abs(a - b).max() <= 1
    assert metrics_a.keys() == metrics_b.keys()
    for name in metrics_a:
        tol = 2e-5 if np.array_equal(a, b) else 1e-2
        assert metrics_a[name] == pytest.approx(metrics_b[name], abs=tol), name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(job: Path, processes: int) -> subprocess.Popen:
    """``accelerate launch --multi_gpu --num_processes N -m cyclediff run JOB`` on CPU (gloo), in a new session
    so that a test can kill every process of the job at once."""
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "cyclediff", "run", str(job), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, cwd=job.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


# ---------------------------------------------------------------------------------------------------- job files
def test_job_files_in_toml_json_yaml_read_the_same(tmp_path, digits):
    toml = write_job(digits.parent, "same.toml", "threes/", "o")
    job = load_job(toml)
    as_dict = {"task": "translate", "inputs": "threes/*.png", "out": "o", "seeds": [0, 1], "batch_size": 3,
               "settings": {"source_model": "demo:digit-3", "target_model": "demo:digit-8", "strength": 0.8,
                            "steps": 10}}
    (digits.parent / "same.json").write_text(json.dumps(as_dict))
    import yaml

    (digits.parent / "same.yaml").write_text(yaml.safe_dump(as_dict))
    for other in (load_job(digits.parent / "same.json"), load_job(digits.parent / "same.yaml")):
        assert [u.key for u in other.units()] == [u.key for u in job.units()]
        assert other.settings == job.settings and other.out == job.out
    assert len(job.units()) == 16 and job.units()[1].key == "three0/seed1"
    # batches: fixed by the job alone, 3 units each, the last one shorter
    assert [len(b) for b in job.batches()] == [3, 3, 3, 3, 3, 1]


@pytest.mark.parametrize("text, message", [
    ('task = "paint"\ninputs = "threes/"', "task must be one of"),
    ('task = "translate"\ninputs = "threes/"\n[settings]\nsource_model = "demo:digit-3"', "needs settings"),
    ('task = "translate"\ninputs = "threes/"\nbatchsize = 2', "unknown keys"),
    ('task = "translate"\ninputs = "threes/"\n[settings]\nstrenght = 0.5', "has no settings"),
    ('task = "translate"\ninputs = "nowhere/*.png"\n[settings]\nsource_model = "a"\ntarget_model = "b"',
     "matches no files"),
    ('task = "translate"\ninputs = "threes/"\nseeds = "0-"\n[settings]\nsource_model = "a"\ntarget_model = "b"',
     "seeds must be"),
    ('task = "translate"\ninputs = "threes/"\nbatch_size = 0\n[settings]\nsource_model = "a"\ntarget_model = "b"',
     "batch_size"),
    ("task = [", "not a valid TOML"),
])
def test_bad_job_files_are_one_clear_error(digits, text, message):
    path = digits.parent / "bad.toml"
    path.write_text(text)
    with pytest.raises(CycleDiffError, match=message):
        load_job(path)
    res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code != 0 and message.split()[0] in res.output and "Traceback" not in res.output


def test_manifest_items_with_per_item_settings_and_seeds(tmp_path, digits):
    lines = [{"input": str(digits / "three0.png"), "id": "a", "target_class": 8, "seeds": [5]},
             {"input": str(digits / "three1.png"), "id": "b", "target_class": 0, "seeds": "1-2"},
             {"input": str(digits / "three2.png"), "id": "c", "target_class": 99}]  # an invalid label
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    (tmp_path / "job.toml").write_text("""task = "translate"
inputs = "items.jsonl"
seeds = [0]
batch_size = 4
[settings]
source_model = "demo:digits"
target_model = "demo:digits"
source_class = 3
steps = 8
""")
    job = load_job(tmp_path / "job.toml")
    assert [u.key for u in job.units()] == ["a/seed5", "b/seed1", "b/seed2", "c/seed0"]
    report = run_job(job, progress=False)
    # the batch fails as a whole on c's label; each unit is retried alone, and only c fails
    records = {r["key"]: r for r in manifest(job.out)}
    assert report.ok == 3 and report.failed == 1
    assert records["c/seed0"]["status"] == "failed" and "class labels must lie in" in records["c/seed0"]["error"]
    assert records["a/seed5"]["settings"]["target_class"] == 8 and records["a/seed5"]["seed"] == 5
    assert (job.out / records["b/seed2"]["output"]).is_file()


# ---------------------------------------------------------------------------------------------------- processes
def test_two_accelerate_processes_give_the_one_process_images(digits):
    one = write_job(digits.parent, "one.toml", "threes/", "one")
    two = write_job(digits.parent, "two.toml", "threes/", "two")
    res = CliRunner().invoke(main, ["run", str(one), "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    proc = launch(two, 2)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    a, b = manifest(digits.parent / "one"), manifest(digits.parent / "two")
    assert [r["key"] for r in a] == [r["key"] for r in b] and len(a) == 16  # one line per unit, job order
    assert {r["rank"] for r in b} == {0, 1}  # both ranks worked
    for ra, rb in zip(a, b):
        image_a, image_b = digits.parent / "one" / ra["output"], digits.parent / "two" / rb["output"]
        assert_same_output(image_a, image_b, ra["metrics"], rb["metrics"])
    assert not list((digits.parent / "two").glob("manifest.rank-*"))  # merged by rank 0
    summary = json.loads((digits.parent / "two" / "summary.json").read_text())
    assert summary["ok"] == 16 and summary["failed"] == 0 and "ssim" in summary["mean_metrics"]


def test_killed_job_resumes_without_duplicates_or_losses(digits):
    job_path = write_job(digits.parent, "killed.toml", "threes/", "killed", steps=100)
    reference_path = write_job(digits.parent, "clean.toml", "threes/", "clean", steps=100)
    proc = launch(job_path, 2)
    out = digits.parent / "killed"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and (not out.exists() or len(finished_keys(out)) < 4):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {}
    for part in out.glob("manifest.rank-*.jsonl"):
        for line in part.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line the kill tore: the job ignores it too
                continue
            before[rec["key"]] = rec
    assert 4 <= len(before) < 16, "the kill should land mid-way"
    assert not (out / "manifest.jsonl").exists()

    proc = launch(job_path, 2)  # the same command again
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    after = manifest(out)
    keys = [r["key"] for r in after]
    assert len(keys) == len(set(keys)) == 16  # nothing lost, nothing twice
    for key, rec in before.items():  # finished units were not redone: their records are the first run's
        match = next(r for r in after if r["key"] == key)
        assert match["time"] == rec["time"]
    assert len(list((out / "images").glob("*.png"))) == 16

    res = CliRunner().invoke(main, ["run", str(reference_path), "--quiet"])  # uninterrupted, one process
    assert res.exit_code == 0, res.output
    resumed = {r["key"]: r for r in after}
    for rec in manifest(digits.parent / "clean"):
        other = resumed[rec["key"]]
        assert_same_output(digits.parent / "clean" / rec["output"], out / other["output"], rec["metrics"],
                           other["metrics"])


def test_a_corrupt_image_fails_alone_and_the_exit_status_says_so(tmp_path, digits):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in sorted(digits.glob("*.png"))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "three1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    job = write_job(tmp_path, "job.toml", "mixed/", "out")
    res = CliRunner().invoke(main, ["run", str(job), "--quiet", "--json"])
    assert res.exit_code == 1
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["ok"] == 4 and summary["failed"] == 2
    assert {f["key"] for f in summary["failures"]} == {"three1/seed0", "three1/seed1"}
    records = manifest(tmp_path / "out")
    assert len(records) == 6 and all(r["error"] is None for r in records if r["status"] == "ok")
    # fixing the image and running again redoes only the failed units
    (folder / "three1.png").write_bytes((digits / "three1.png").read_bytes())
    times = {r["key"]: r["time"] for r in records}
    res = CliRunner().invoke(main, ["run", str(job), "--quiet"])
    assert res.exit_code == 0, res.output
    again = {r["key"]: r for r in manifest(tmp_path / "out")}
    assert all(r["status"] == "ok" for r in again.values()) and len(again) == 6
    changed = {k for k, r in again.items() if r["time"] != times[k]}
    assert changed == {"three1/seed0", "three1/seed1"}


# ---------------------------------------------------------------------------------------------------- other tasks
def test_edit_job_on_a_saved_stable_diffusion_folder(tmp_path):
    import numpy as np
    from PIL import Image

    from tiny_sd import photos, sd_pipeline

    sd_pipeline(tmp_path / "parts").save_pretrained(tmp_path / "tiny-sd")
    (tmp_path / "photos").mkdir()
    for i in range(3):
        arr = (photos(1, seed=i)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / "photos" / f"p{i}.png")
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(x) for x in [
        {"input": "photos/p0.png", "source_prompt": "a cat", "prompt": "a dog"},
        {"input": "photos/p1.png", "source_prompt": "a car", "prompt": "a red car"},
        {"input": "photos/p2.png", "source_prompt": "a horse", "prompt": "a blue car", "seeds": [3]}]))
    from tiny_sd import tiny_clip

    clip, tok = tiny_clip(tmp_path)
    clip.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    (tmp_path / "edit.toml").write_text("""task = "edit"
inputs = "items.jsonl"
batch_size = 2
[settings]
model = "tiny-sd"
steps = 6
guidance_scale = 3.0
clip_model = "clip"
""")
    res = CliRunner().invoke(main, ["run", str(tmp_path / "edit.toml"), "--quiet"])
    assert res.exit_code == 0, res.output
    records = manifest(tmp_path / "edit-out")
    assert [r["key"] for r in records] == ["p0/seed0", "p1/seed0", "p2/seed3"]
    assert records[1]["settings"]["prompt"] == "a red car"
    assert {"psnr", "ssim", "clip_score", "directional_clip"} <= set(records[1]["metrics"])
    # the job's image equals edit() on that image alone with its seed (batch invariance, PNG-rounded)
    import torch

    from cyclediff import edit
    from cyclediff._images import load_image
    from cyclediff.models import load

    model = load(tmp_path / "tiny-sd")
    alone = edit(model, load_image(tmp_path / "photos" / "p1.png", channels=3), source_prompt="a car",
                 prompt="a red car", steps=6, generator=[torch.Generator().manual_seed(0)]).images
    saved = load_image(tmp_path / "edit-out" / records[1]["output"], channels=3)
    assert (saved - alone).abs().max() <= 1 / 255 + 1e-6


def test_guide_job_records_energies_and_a_failing_energy_fails_its_items(tmp_path):
    (tmp_path / "energies.py").write_text(
        "def dark(x):\n    return x.mean(dim=(1, 2, 3))\n\n"
        "def broken(x):\n    raise ValueError('this energy cannot score images')\n")
    (tmp_path / "items.jsonl").write_text('{"id": "three", "class_label": 3}\n{"id": "eight", "class_label": 8}\n')
    for name, energy in (("good", "energies.py:dark"), ("bad", "energies.py:broken")):
        (tmp_path / f"{name}.toml").write_text(f"""task = "guide"
inputs = "items.jsonl"
seeds = "0-1"
batch_size = 4
[settings]
model = "demo:digits"
energy = "{energy}"
weight = 5.0
langevin_steps = 3
steps = 4
""")
    res = CliRunner().invoke(main, ["run", str(tmp_path / "good.toml"), "--quiet"])
    assert res.exit_code == 0, res.output
    records = manifest(tmp_path / "good-out")
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert all({"energy_start", "energy_end"} <= set(r["metrics"]) for r in records)
    assert records[2]["settings"]["class_label"] == 8
    res = CliRunner().invoke(main, ["run", str(tmp_path / "bad.toml"), "--quiet"])
    assert res.exit_code == 1
    records = manifest(tmp_path / "bad-out")
    assert len(records) == 4 and all(r["status"] == "failed" and "cannot score" in r["error"] for r in records)


def test_a_method_comparison_with_fid_against_reference_images(tmp_path, digits):
    """method = [...] runs every item × method × seed; the summary compares the methods, FID / KID included."""
    _, _, x, y = split()
    for i, img in enumerate(x[y == 8][:6]):
        save_image((img + 1) / 2, tmp_path / "eights" / f"eight{i}.png")
    job_path = write_job(digits.parent, "compare.toml", "threes/", str(tmp_path / "cmp"), steps=8,
                         extra=f'reference = "{tmp_path / "eights"}"\nfeatures = "pixels"',
                         settings='method = ["cyclediffusion", "sdedit"]')
    job = load_job(job_path)
    assert len(job.units()) == 32 and job.units()[2].key == "three0/sdedit/seed0"
    assert all(len({u.method for u in b}) == 1 for b in job.batches())  # a batch runs one method
    report = run_job(job, progress=False)
    assert report.ok == 32
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    for method in ("cyclediffusion", "sdedit"):
        row = summary["by_method"][method]
        assert row["ok"] == 16 and {"psnr", "ssim", "fid", "kid", "kid_std"} <= set(row)
    # the paper's finding on these models: CycleDiffusion keeps more of the input than SDEdit
    assert summary["by_method"]["cyclediffusion"]["ssim"] > summary["by_method"]["sdedit"]["ssim"]
    assert (tmp_path / "cmp" / "images" / "three3_sdedit_seed1.png").is_file()


def test_a_torn_manifest_line_does_not_swallow_the_next_record(tmp_path):
    from cyclediff.jobs.evaluate import Records

    path = tmp_path / "part.jsonl"
    path.write_text('{"key": "a", "status": "ok"}\n{"key": "b", "sta')  # killed in the middle of a write
    Records(path).add_many([{"key": "c", "status": "failed"}])
    keys = []
    for line in path.read_text().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except json.JSONDecodeError:
            pass
    assert keys == ["a", "c"]


def test_a_job_whose_settings_changed_computes_again(tmp_path, digits):
    """Steps 4 → 8 on the same out folder: every unit is computed again under the new settings (its record and
    image replaced), never reported done with the old images."""
    job = load_job(write_job(digits.parent, "change.toml", "threes/three[0].png", str(tmp_path / "o"), steps=4))
    assert run_job(job, progress=False).ok == 2
    before = {r["key"]: pixels(tmp_path / "o" / r["output"]) for r in manifest(tmp_path / "o")}
    job = load_job(write_job(digits.parent, "change.toml", "threes/three[0].png", str(tmp_path / "o"), steps=8))
    assert finished_keys(tmp_path / "o", {u.key: {**u.settings.record(), "dtype": "float32", "size": None,
                                                  "fit": "crop"} for u in job.units()}) == set()
    report = run_job(job, progress=False)
    records = manifest(tmp_path / "o")
    assert report.ok == 2 and {r["settings"]["steps"] for r in records} == {8}
    assert any(not np.array_equal(before[r["key"]], pixels(tmp_path / "o" / r["output"])) for r in records)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["settings"]["steps"] == 8 and summary["ok"] == 2
    assert run_job(job, progress=False).ok == 2  # and now they are done: nothing is computed a third time


def test_a_recursive_glob_over_the_job_folder_never_takes_the_jobs_outputs(tmp_path, digits):
    """``inputs = "**/*.png"`` with ``out`` inside that folder: a second run sees the same two inputs, not the
    first run's outputs as new items."""
    work = tmp_path / "w"
    work.mkdir()
    for name in ("three0.png", "three1.png"):
        (work / name).write_bytes((digits / name).read_bytes())
    path = write_job(work, "glob.toml", "**/*.png", "out", steps=3)
    assert len(load_job(path).items) == 2
    assert run_job(load_job(path), progress=False).ok == 4
    again = load_job(path)
    assert sorted(it.id for it in again.items) == ["three0", "three1"]
    assert run_job(again, progress=False).ok == 4  # the same units, already done


def test_inputs_naming_one_image_is_a_job_of_that_image(tmp_path, digits):
    """inputs = one existing image said "no such folder"."""
    job = load_job(write_job(tmp_path, "one.toml", str(digits / "three0.png"), str(tmp_path / "out"), steps=4))
    assert [(it.id, it.input) for it in job.items] == [("three0", digits / "three0.png")]
    report = run_job(job, progress=False)
    assert report.ok == 2 and report.failed == 0  # two seeds
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CycleDiffError, match="is a file but not an image"):
        load_job(write_job(tmp_path, "txt.toml", str(tmp_path / "notes.txt"), str(tmp_path / "o2")))


def test_an_edit_job_refuses_target_lora_and_names_lora_under_settings_as_job_level(tmp_path, digits):
    """target_lora in an edit job was recorded in every manifest line but never applied; lora under [settings]
    was "unknown"."""
    def edit_job(top: str, settings: str = "") -> Path:
        path = tmp_path / "edit.toml"
        path.write_text(f'task = "edit"\ninputs = "{digits}"\n{top}\n[settings]\nmodel = "demo:digits"\n'
                        f'source_prompt = "a 3"\nprompt = "an 8"\n{settings}\n')
        return path

    with pytest.raises(CycleDiffError, match="target_lora .* is for translate jobs; an edit job has one model: put "
                                             "the adapters under lora"):
        load_job(edit_job('target_lora = ["style.safetensors:0.8"]'))
    with pytest.raises(CycleDiffError, match=r"lora is a job-level key: write it at the top of the job file, above "
                                             r"\[settings\]"):
        load_job(edit_job("", 'lora = ["style.safetensors"]'))
    with pytest.raises(CycleDiffError, match="quantize, target_lora are job-level keys: write them at the top"):
        load_job(write_job(tmp_path, "t.toml", str(digits), str(tmp_path / "o"),
                           settings='quantize = "int8"\ntarget_lora = ["s.safetensors"]'))

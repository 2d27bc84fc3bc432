"""No lost or stale outputs, nothing but regular files replaced, files
readable by others, bad options and job files refused up front in one line, one failing item never stopping the
others, job folders locked, metrics recorded from the written image."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import ddim_config, tiny_unet
from cyclediff import Latent, encode
from cyclediff._images import load_image, save_image
from cyclediff._paths import safe_id, unique_names
from cyclediff.batch.outputs import place, recorded
from cyclediff.cli import main
from cyclediff.demo.data import split
from cyclediff.errors import CycleDiffError
from cyclediff.jobs.run import FolderLock, load_job, run_job
from cyclediff.metrics import psnr, ssim
from cyclediff.models import PixelDenoiser


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def summary_of(res) -> dict:
    """The --json summary in a CliRunner's output (stderr lines may follow it)."""
    return json.JSONDecoder().raw_decode(res.output[res.output.index("{"):])[0]


@pytest.fixture(scope="module")
def threes(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("threes")
    _, _, x, y = split()
    paths = []
    for i, img in enumerate(x[y == 3][:3]):
        paths.append(save_image((img + 1) / 2, folder / f"three{i}.png"))
    return paths


@pytest.fixture
def flat_model(tmp_path) -> Path:
    path = tmp_path / "flat"
    tiny_unet(seed=4, num_classes=3).save_pretrained(path)
    from diffusers import DDIMScheduler

    DDIMScheduler(**ddim_config()).save_config(path)
    return path


TRANSLATE = ["translate", "--source-model", "demo:digits", "--target-model", "demo:digits", "--source-class", "3",
             "--steps", "6", "--quiet"]


# ---------------------------------------------------------------------------------------------------- lost work
def test_same_names_in_two_folders_get_two_outputs_and_a_repeat_is_computed_once(threes, tmp_path):
    for d in ("c1", "c2"):
        (tmp_path / d).mkdir()
    (tmp_path / "c1" / "cat.png").write_bytes(threes[0].read_bytes())
    (tmp_path / "c2" / "cat.png").write_bytes(threes[1].read_bytes())
    out = tmp_path / "out"
    res = cli(*TRANSLATE, "--target-class", "8", tmp_path / "c1" / "cat.png", tmp_path / "c2" / "cat.png",
              tmp_path / "c1" / "cat.png", "--out", out, "--json")
    assert res.exit_code == 0, res.output
    summary = summary_of(res)
    assert summary["ok"] == 2  # the repeat of c1/cat.png is one item
    names = sorted(p.name for p in out.iterdir())
    assert names == ["c1__cat_cyclediffusion_s0.85_seed0.png", "c2__cat_cyclediffusion_s0.85_seed0.png"]
    assert (out / names[0]).read_bytes() != (out / names[1]).read_bytes()
    assert unique_names([Path("a/cat.png"), Path("a/cat.jpg")]) == ["cat-png", "cat-jpg"]


def test_other_settings_never_reuse_a_stale_output(threes, tmp_path):
    out = tmp_path / "out"
    first = cli(*TRANSLATE, "--target-class", "8", threes[0], "--out", out)
    assert first.exit_code == 0, first.output
    again = cli(*TRANSLATE, "--target-class", "8", threes[0], "--out", out, "--json")
    assert summary_of(again)["skipped"] == 1  # same settings: skipped
    other = cli(*TRANSLATE, "--target-class", "5", threes[0], "--out", out, "--json")
    result = summary_of(other)
    assert result["ok"] == 1 and result["skipped"] == 0
    files = sorted(out.iterdir())
    assert len(files) == 2  # the 3 → 8 image is kept, the 3 → 5 image has a name of its own
    assert {recorded(f)["target_class"] for f in files} == {8, 5}


def test_prompts_that_slug_alike_get_different_files(tmp_path):
    base = tmp_path / "cat_a-dog_s0.8_seed0.png"
    first, done = place(base, {"prompt": "a dog!"}, overwrite=False)
    assert first == base and not done
    save_image(torch.zeros(3, 4, 4), base, text={"cyclediff": json.dumps({"prompt": "a dog!"})})
    assert place(base, {"prompt": "a dog!"}, overwrite=False) == (base, True)
    second, done = place(base, {"prompt": "A DOG?"}, overwrite=False)
    assert second != base and not done


def test_ids_that_clean_up_alike_stay_distinct():
    ids = [safe_id(x) for x in ("a/b", "a b", "a-b")]
    assert len(set(ids)) == 3 and ids[2] == "a-b"


def test_device_files_are_never_replaced(threes, tmp_path, flat_model):
    den = PixelDenoiser.from_pretrained(flat_model)
    z = encode(torch.zeros(1, 3, 8, 8), den, steps=4, class_labels=1, generator=torch.Generator().manual_seed(0))
    latent = z.save(tmp_path / "z.latent.safetensors")
    for device in ("/dev/null", "/dev/full"):
        res = cli("decode", latent, "--model", flat_model, "-o", device, "--overwrite", "--quiet")
        assert res.exit_code != 0 and "not a regular file" in res.output
        assert stat.S_ISCHR(os.stat(device).st_mode)


def test_outputs_are_readable_as_the_umask_says(threes, tmp_path):
    old = os.umask(0o022)
    try:
        res = cli(*TRANSLATE, "--target-class", "8", threes[0], "--out", tmp_path / "out")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    (png,) = (tmp_path / "out").iterdir()
    assert stat.S_IMODE(png.stat().st_mode) == 0o644


# ---------------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("args, message", [
    (["--seeds", str(2**63)], "2^63"),
    (["--device", "meta"], "cpu, cuda or mps"),
    (["--device", "nonsense"], "unknown device"),
    (["--size", "0"], "size must be"),
    (["--size", "abc"], "size must be"),
])
def test_bad_options_are_refused_before_any_model_loads(threes, tmp_path, args, message):
    res = cli("translate", "--source-model", "/nonexistent/model", "--target-model", "/nonexistent/model",
              threes[0], "--out", tmp_path / "out", *args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert "nonexistent" not in res.output  # no model was looked for


def test_a_size_over_max_pixels_after_resizing_is_refused(threes, tmp_path):
    res = cli(*TRANSLATE, "--target-class", "8", threes[0], "--size", "30000", "--out", tmp_path / "out")
    assert res.exit_code == 1 and "after resizing" in res.output


def test_outputs_under_a_file_or_onto_a_folder_are_refused_up_front(threes, tmp_path, flat_model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        res = cli(*TRANSLATE, "--target-class", "8", threes[0], "--out", out)
        assert res.exit_code == 1 and "is a file" in res.output
    folder = tmp_path / "folder"
    folder.mkdir()
    res = cli("encode", threes[0], "--model", flat_model, "--class-label", "1", "-o", folder, "--steps", "4")
    assert res.exit_code == 1 and "is a folder" in res.output


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (a folder that takes no files)")
def test_an_out_folder_that_takes_no_files_is_refused_before_any_work(threes):
    """/proc takes no new folders even for root (permission bits would not stop root): refused in one line before
    the model is loaded, not after every image was computed."""
    res = cli(*TRANSLATE, "--target-class", "8", threes[0], "--out", "/proc/cyclediff-out")
    assert res.exit_code == 1 and "cannot write to --out /proc/cyclediff-out" in res.output
    assert res.output.count("\n") == 1 and "Traceback" not in res.output  # the one line, nothing computed


def test_model_paths_that_do_not_exist_or_are_broken_get_clear_errors(tmp_path, flat_model, threes):
    res = cli("sample", "--model", tmp_path / "nonexistent" / "dir", "--out", tmp_path / "o")
    assert res.exit_code == 1 and "no such file or folder" in res.output
    (flat_model / "config.json").write_text("{broken")
    res = cli("sample", "--model", flat_model, "--out", tmp_path / "o")
    assert res.exit_code == 1 and "not valid JSON" in res.output and "Traceback" not in res.output


def test_legacy_pickle_checkpoints_are_refused_and_never_run(tmp_path):
    import pickle

    class Bomb:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(pickle.dumps({"state_dict": Bomb()}))
    res = cli("sample", "--model", ckpt, "--out", tmp_path / "o")
    assert res.exit_code == 1 and "legacy pickle" in res.output
    assert not (tmp_path / "pwned").exists()


def test_one_bad_latent_does_not_stop_a_multi_file_decode(tmp_path, flat_model):
    den = PixelDenoiser.from_pretrained(flat_model)
    z = encode(torch.zeros(1, 3, 8, 8), den, steps=4, class_labels=1, generator=torch.Generator().manual_seed(0))
    fields = {f: getattr(z, f) for f in z.__dataclass_fields__}
    bad = Latent(**{**fields, "condition": {"prompt": ["a cat"]}}).save(tmp_path / "bad.latent.safetensors")
    good = z.save(tmp_path / "good.latent.safetensors")
    res = cli("decode", bad, good, "--model", flat_model, "--out", tmp_path / "png", "--json")
    assert res.exit_code == 1 and "Traceback" not in res.output
    summary = summary_of(res)
    assert (summary["ok"], summary["failed"]) == (1, 1)
    assert "takes no condition 'prompt'" in summary["results"][0]["error"]
    assert (tmp_path / "png" / "good.png").is_file()


def test_quiet_prints_nothing_but_failures(tmp_path, flat_model):
    den = PixelDenoiser.from_pretrained(flat_model)
    z = encode(torch.zeros(1, 3, 8, 8), den, steps=4, class_labels=1, generator=torch.Generator().manual_seed(0))
    other = Latent(**{**{f: getattr(z, f) for f in z.__dataclass_fields__}, "model_id": "another/model"})
    path = other.save(tmp_path / "z.latent.safetensors")  # decoding it with this model warns (translation)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "cyclediff", "decode", str(path), "--model", str(flat_model),
                          "--out", str(tmp_path / "png"), "--quiet"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stderr


def test_a_very_long_prompt_is_reported_once_and_short(tmp_path):
    from tiny_sd import photos, sd_pipeline

    path = tmp_path / "sd"
    sd_pipeline(tmp_path / "parts").save_pretrained(path)
    img = tmp_path / "img.png"
    save_image(photos(1)[0], img)
    prompt = "a dog " * 1700  # 10,200 characters
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "cyclediff", "edit", str(img), "--model", str(path),
                          "--source-prompt", "a cat", "--prompt", prompt, "--steps", "2", "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("tokens") == 1 and len(res.stderr) < 2000, res.stderr


def test_16_bit_rgb_pngs_keep_their_precision(tmp_path):
    import png

    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(5, 7, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    with open(path, "wb") as f:
        png.Writer(7, 5, greyscale=False, bitdepth=16).write(f, values.reshape(5, -1).tolist())
    x = load_image(path)
    assert x.shape == (1, 3, 5, 7)
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), values / 65535, atol=1e-6)  # float32 of k/65535


# ---------------------------------------------------------------------------------------------------- jobs
def job_file(folder: Path, body: str, settings: str = "") -> Path:
    path = folder / "job.toml"
    steps = "" if "steps" in settings else "steps = 6\n"
    path.write_text(f'task = "translate"\n{body}\n[settings]\nsource_model = "demo:digit-3"\n'
                    f'target_model = "demo:digit-8"\n{steps}{settings}\n')
    return path


@pytest.mark.parametrize("body, settings, message", [
    ('inputs = "in/"', "steps = -5", "steps must lie in"),
    ('inputs = "in/"', 'steps = "ten"', "steps must be an integer"),
    ('inputs = "in/"', "strength = 7", "strength must lie in"),
    ('inputs = "in/"', "eta = 0", "eta = 0 is deterministic"),
    ('inputs = "in/"\nseeds = [-1]', "", "seeds must be integers from 0"),
    ('inputs = "in/"\nmax_pixels = "lots"', "", "max_pixels must be a positive integer"),
    ('inputs = "in/"\nfeatures = "bogus"\nreference = "in/"', "", "features must be inception, pixels"),
    ('inputs = "in/"\nreference = "in/"', "", "torch-fidelity"),
    ('inputs = "in/"\nsize = "abc"', "", "size must be"),
    ('inputs = "in/"\ndevice = "meta"', "", "device must be auto, cpu or cuda"),
])
def test_job_settings_are_checked_before_any_unit_runs(tmp_path, threes, body, settings, message):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(threes[0].read_bytes())
    with pytest.raises(CycleDiffError, match=message):
        load_job(job_file(tmp_path, body, settings))


@pytest.mark.parametrize("features, message", [("bogus", "features must be inception, pixels"),
                                               ("inception", "torch-fidelity")])
def test_evaluate_translate_refuses_unusable_features_before_any_work(tmp_path, threes, features, message):
    res = cli("evaluate", "translate", "--source-model", "/nonexistent/a", "--target-model", "/nonexistent/b",
              "--images", threes[0].parent, "--reference", threes[0].parent, "--features", features,
              "--out", tmp_path / "e")
    assert res.exit_code == 1 and message in res.output and "nonexistent" not in res.output


def test_a_job_folder_with_cat_png_and_cat_jpg_has_two_items(tmp_path, threes):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cat.png").write_bytes(threes[0].read_bytes())
    Image.open(threes[1]).convert("RGB").save(tmp_path / "in" / "cat.jpg")
    job = load_job(job_file(tmp_path, 'inputs = "in/"'))
    assert sorted(item.id for item in job.items) == ["cat-jpg", "cat-png"]


def test_manifest_ids_that_clean_up_alike_do_not_clash(tmp_path, threes):
    lines = [{"id": ident, "input": str(threes[0])} for ident in ("a/b", "a b", "a-b")]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    job = load_job(job_file(tmp_path, 'inputs = "items.jsonl"'))
    assert len({item.id for item in job.items}) == 3


def test_a_second_run_on_a_locked_job_folder_refuses(tmp_path, threes):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(threes[0].read_bytes())
    job = load_job(job_file(tmp_path, 'inputs = "in/"\nout = "out"'))
    job.out.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"f = open({str(job.out / '.cyclediff-run.lock')!r}, 'a+')\n"
                               "fcntl.flock(f, fcntl.LOCK_EX); f.write('pid test'); f.flush()\n"
                               "print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = cli("run", job.source, "--quiet")
        assert res.exit_code == 1 and "another cyclediff run" in res.output
        assert not (job.out / "manifest.jsonl").exists()  # nothing was computed
    finally:
        holder.kill()
        holder.wait()
    lock = FolderLock(job.out / ".cyclediff-run.lock")  # the kernel dropped the dead holder's lock
    assert lock.acquire() is None
    lock.release()


def test_job_metrics_are_computed_from_the_written_image(tmp_path, threes):
    (tmp_path / "in").mkdir()
    for p in threes:
        (tmp_path / "in" / p.name).write_bytes(p.read_bytes())
    job = load_job(job_file(tmp_path, 'inputs = "in/"\nout = "out"\nbatch_size = 2'))
    run_job(job, progress=False)
    for line in (job.out / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        written = load_image(job.out / rec["output"], channels=1)
        given = load_image(rec["input"], channels=1)
        # float64 metrics of the 8-bit file, rounded to 5 decimals as recorded
        assert rec["metrics"]["psnr"] == pytest.approx(float(psnr(written, given)), abs=6e-6)
        assert rec["metrics"]["ssim"] == pytest.approx(float(ssim(written, given)), abs=6e-6)


def test_seed_ranges_are_counted_before_they_are_expanded(tmp_path):
    """0-99999999 in the CLI, a job file or the web app's box is one line, not a list of 10^8 seeds: checked in a
    process whose address space is capped at 3 GiB, so that a regression fails with a MemoryError instead of
    exhausting the machine."""
    script = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from click.testing import CliRunner
from cyclediff import CycleDiffError
from cyclediff.cli import main
from cyclediff.jobs.file import parse_seed_list
from cyclediff.web.service import seeds_of
out = {str(tmp_path)!r}
res = CliRunner().invoke(main, ["sample", "--model", "demo:digits", "--seeds", "0-99999999", "--out", out])
print("cli", res.exit_code, res.output.strip().splitlines()[-1])
for name, call in (("job", lambda: parse_seed_list("0-99999999")), ("web", lambda: seeds_of("0-99999999")),
                   ("count", lambda: seeds_of("7", 10**12))):
    try:
        call()
        print(name, "accepted")
    except CycleDiffError as err:
        print(name, err)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "MemoryError" not in done.stderr, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert lines["cli"].startswith("2 ") and "at most 10000 seeds" in lines["cli"]
    assert "at most 10000 seeds" in lines["job"]
    assert "at most 64 seeds" in lines["web"] and "at most 64 seeds" in lines["count"]


def test_convert_refuses_a_folder_that_holds_something(tmp_path):
    model = tmp_path / "sd"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    res = CliRunner().invoke(main, ["convert", "guided-diffusion", str(tmp_path / "m.pt"), "--flags", "{}", "--out",
                                    str(model)])
    assert res.exit_code == 2 and "not empty" in res.output and "--overwrite" in res.output
    assert (model / "model_index.json").read_text() == '{"_class_name": "StableDiffusionPipeline"}'


def test_a_picture_as_model_or_a_folder_as_image_is_called_what_it_is(tmp_path):
    save_image(torch.rand(3, 8, 8), tmp_path / "cat.png")
    res = CliRunner().invoke(main, ["sample", "--model", str(tmp_path / "cat.png"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "not a model checkpoint" in res.output and "pickle" not in res.output
    (tmp_path / "photos").mkdir()
    res = CliRunner().invoke(main, ["translate", str(tmp_path / "photos"), "--source-model", "demo:digit-3",
                                    "--target-model", "demo:digit-8", "--steps", "2", "--out", str(tmp_path / "t")])
    assert res.exit_code == 1 and "is a folder, not an image" in res.output


# ---------------------------------------------------------------------------------------------- class edits, one way
def _three_png(tmp_path):
    _, _, x, y = split()
    save_image(((x[(y == 3).nonzero()[0, 0]] + 1) / 2), tmp_path / "three.png")
    return tmp_path / "three.png"


def test_edit_makes_class_edits_on_a_class_model_as_the_api_and_the_web_do(tmp_path):
    from cyclediff import edit, translate
    from cyclediff.demo.models import load_demo

    three = _three_png(tmp_path)
    res = CliRunner().invoke(main, ["edit", str(three), "--model", "demo:digits", "--source-class", "3",
                                    "--target-class", "8", "--guidance-scale", "1", "--steps", "8",
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    (written,) = sorted((tmp_path / "out").glob("*.png"))
    model, x = load_demo("digits"), load_image(three, channels=1)
    api = edit(model, x, source_prompt=3, prompt=8, guidance_scale=1.0, steps=8,
               generator=torch.Generator().manual_seed(0))
    same = translate(x, model, model, source_condition=3, target_condition={"class_labels": 8, "guidance_scale": 1.0},
                     steps=8, strength=api.latent.strength, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(api.images, same.images)
    torch.testing.assert_close(load_image(written, channels=1), api.images, rtol=0, atol=1 / 255 + 1e-6)
    two = CliRunner().invoke(main, ["edit", str(three), "--model", "demo:digits", "--source-class", "3",
                                    "--target-class", "8", "--steps", "2", "--seeds", "0-1", "--out", str(tmp_path)])
    assert two.exit_code == 0 and "edit:" in two.output and "translate:" not in two.output  # its items' bar


@pytest.mark.parametrize("args, says", [
    (["--source-prompt", "a three", "--prompt", "an eight"], "drop prompt (--source-prompt)"),
    (["--source-class", "3"], "--target-class"),
])
def test_a_class_edit_names_the_options_of_the_command(tmp_path, args, says):
    res = CliRunner().invoke(main, ["edit", str(_three_png(tmp_path)), "--model", "demo:digits", "--steps", "4",
                                    "--out", str(tmp_path / "out"), *args])
    assert res.exit_code != 0 and says in res.output and "Traceback" not in res.output, res.output


def test_translate_names_its_own_options_for_a_condition_the_model_cannot_take(tmp_path):
    res = CliRunner().invoke(main, ["translate", str(_three_png(tmp_path)), "--source-model", "demo:digits",
                                    "--target-model", "demo:digits", "--source-prompt", "a three",
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and "--source-prompt" in res.output and "--source-class" in res.output, res.output
    assert "(--prompt)" not in res.output and "--class-label" not in res.output


def test_a_class_latent_decodes_on_an_unconditional_model_with_a_note(tmp_path):
    z = tmp_path / "z.latent.safetensors"
    res = CliRunner().invoke(main, ["encode", str(_three_png(tmp_path)), "--model", "demo:digits",
                                    "--class-label", "3", "--steps", "8", "-o", str(z)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["decode", str(z), "--model", "demo:digit-8", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "class_labels" in res.output and "does not take" in res.output
    assert list((tmp_path / "d").glob("*.png"))


# ---------------------------------------------------------------------------------------------- inspect
def test_inspect_prints_a_short_summary_and_the_tensors_on_request(tmp_path, threes):
    """An 8×8 latent of 100 steps printed 170 lines (every timestep and residual flag on its own): a summary of
    one line per field, the steps' lists and the tensors with --values."""
    out = tmp_path / "z.latent.safetensors"
    assert cli("encode", threes[0], "--model", "demo:digits", "--class-label", "3", "-o", out).exit_code == 0
    res = cli("inspect", out)
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert len(res.output.splitlines()) < 30
    assert shown["steps"] == 100 and shown["shape"] == [1, 1, 8, 8] and shown["condition"] == {"class_labels": [3]}
    assert shown["model_id"] == "demo:digits" and shown["grid"].endswith("(100 of 100 steps)")
    assert "timesteps" not in shown and "x_start" not in shown
    full = json.loads(cli("inspect", out, "--values").output)
    assert len(full["timesteps"]) == 100 and torch.equal(torch.tensor(full["eps"]), Latent.load(out).eps)


def test_inspect_of_an_image_says_it_is_not_a_latent_file(tmp_path, threes):
    res = cli("inspect", threes[0])
    assert res.exit_code == 1 and "is not a latent file: it looks like a PNG image" in res.output
    assert "header too large" not in res.output

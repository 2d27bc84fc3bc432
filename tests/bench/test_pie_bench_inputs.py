"""``cyclediff bench pie-bench`` with one method (the default), keys the job layer renames, malformed PIE-Bench
data (each bad item reported while the others run; nothing written outside --out or over an input) and scoring
inputs refused in one line before any edit runs."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from cyclediff.cli import main
from pie_fixtures import pie_folder, pie_sd, tiny_clip_folder, tiny_dino, tiny_squeezenet_weights


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pie-inputs")
    return {"tmp": tmp, "model": pie_sd(tmp), "dino": tiny_dino(tmp), "clip": tiny_clip_folder(tmp),
            "lpips": tiny_squeezenet_weights(tmp)}


def _bench(setup, data, out, *extra):
    options = {k: v for k, v in {"--dino": setup["dino"], "--clip": setup["clip"],
                                 "--lpips-weights": setup["lpips"]}.items() if k not in extra}
    return CliRunner().invoke(main, ["bench", "pie-bench", str(data), "--model", str(setup["model"]), "--steps", "2",
                                     "--strength", "0.5", "--guidance-scale", "2", "--out", str(out), "--device",
                                     "cpu", "--quiet", *[str(v) for kv in options.items() for v in kv], *extra])


def _mapping(data):
    return json.loads((data / "mapping_file.json").read_text())


def _one_line_error(res, text):
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert text in res.output and "Traceback" not in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output


def test_one_method_runs_scores_keys_with_spaces_and_counts_the_images_there(setup):
    data = pie_folder(setup["tmp"] / "one", count=2)
    table = _mapping(data)
    table["a b"] = table.pop("000000000000")  # the job layer renames this key ('a-b-…')
    (data / "mapping_file.json").write_text(json.dumps(table))
    out = setup["tmp"] / "one-out"
    res = _bench(setup, data, out)  # no --method: cyclediffusion alone
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["key"] for r in rows) == ["000000000001", "a b"] and not any(r["error"] for r in rows)
    assert all(r["method"] == "cyclediffusion" and float(r["psnr_unedit_part"]) > 5 for r in rows)
    assert (out / "cyclediffusion" / "annotation_images" / "0_category" / "000.jpg").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and summary["by_method"]["cyclediffusion"]["images"] == 2
    assert (out / "summary.md").read_text().startswith("PIE-Bench (2 images), ")  # not "700 images"
    again = _bench(setup, data, out, "--score-only", "--method", "cyclediffusion,cyclediffusion")
    assert again.exit_code == 0, again.output  # the method named twice is one method
    assert list(csv.DictReader((out / "results.csv").open())) == rows
    # a link in OUT that leads into the data folder: the edit is not written through it
    shutil.rmtree(out / "cyclediffusion" / "annotation_images" / "0_category")
    os.symlink(data / "annotation_images" / "0_category", out / "cyclediffusion" / "annotation_images" / "0_category")
    photo = (data / "annotation_images" / "0_category" / "000.jpg").read_bytes()
    linked = _bench(setup, data, out, "--score-only")
    assert linked.exit_code == 1 and "failed a b cyclediffusion:" in linked.output and "a link" in linked.output
    assert (data / "annotation_images" / "0_category" / "000.jpg").read_bytes() == photo


def test_malformed_items_are_reported_and_the_rest_is_edited_without_writing_outside_out(setup):
    tmp = setup["tmp"] / "bad"
    data = pie_folder(tmp, count=2)
    table = _mapping(data)
    good = table["000000000000"]
    photo = data / "annotation_images" / good["image_path"]
    before = photo.read_bytes()
    (data / "annotation_images" / "passwd.jpg").symlink_to("/etc/passwd")
    (data / "annotation_images" / "text.jpg").write_text("not an image")
    for key, path in {"000000000001": str(photo.resolve()), "up": "../../../x.jpg", "twice": good["image_path"],
                      "nul": "0_category/\0.jpg", "passwd": "/etc/passwd", "link": "passwd.jpg",
                      "text": "text.jpg"}.items():
        table[key] = {**good, "image_path": path}
    (data / "mapping_file.json").write_text(json.dumps(table))
    out = tmp / "out"
    res = _bench(setup, data, out)
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    for key, why in {"000000000001": "is not a path inside annotation_images/", "up": "leads out with ..",
                     "twice": "is item 000000000000's too", "nul": "image_path must be a file name",
                     "passwd": "is not a path inside", "link": "is a link to outside annotation_images/",
                     "text": "text.jpg is not an image"}.items():
        assert f"failed {key} " in res.output and why in res.output, key
    assert photo.read_bytes() == before  # the input photo is not overwritten by its edit
    assert not (tmp / "x.jpg").exists() and not (tmp.parent / "x.jpg").exists()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["key"] for r in rows if not r["error"]] == ["000000000000"]
    assert float(rows[-1]["psnr_unedit_part"]) < 100  # the edit against the photo, not against itself (inf)
    assert json.loads((out / "summary.json").read_text())["images"] == 8
    (data / "mapping_file.json").write_text(json.dumps(list(table.values())))
    _one_line_error(_bench(setup, data, tmp / "out2"), "the file must be a JSON object of items")


def test_scoring_inputs_and_foreign_outputs_are_refused_before_any_edit(setup, tmp_path):
    data = pie_folder(tmp_path, count=1)
    empty = tmp_path / "empty"
    _one_line_error(_bench(setup, data, empty, "--score-only"), "holds no PIE-Bench edits to score")
    assert not empty.exists()
    png = tmp_path / "weights.png"
    shutil.copyfile(data / "annotation_images" / "9_category" / "000.jpg", png)
    out = tmp_path / "out"
    _one_line_error(_bench(setup, data, out, "--lpips-weights", str(png)), "not a torch state dict")
    _one_line_error(_bench(setup, data, out, "--clip", str(png)), "cannot load the CLIP model")
    assert not (out / "edits").exists()  # refused before the edits started
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "results.csv").write_text("name,score\nx,1\n")
    _one_line_error(_bench(setup, data, foreign), "results.csv was not written by cyclediff bench pie-bench")
    assert (foreign / "results.csv").read_text() == "name,score\nx,1\n" and not (foreign / "edits").exists()
    inside = tmp_path / "over"
    shutil.copytree(data, inside / "cyclediffusion")  # the data folder is where OUT/cyclediffusion/ would be
    _one_line_error(_bench(setup, inside / "cyclediffusion", inside), "would write the cyclediffusion edits over")

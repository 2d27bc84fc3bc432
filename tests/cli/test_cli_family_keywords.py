"""``--condition KEY=VALUE`` / ``--source-condition`` / ``--target-condition``: a family's own condition keywords
from the command line and job files, recorded with each output; a keyword the model does not take is one line
before any work."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cyclediff._video import read_clip, read_record, write_clip
from cyclediff.cli import main
from tiny_wan import wan_pipeline

EDIT = ["--source-prompt", "a cat", "--prompt", "a red dog", "--guidance-scale", "5", "--steps", "8",
        "--strength", "0.75"]


def cli(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def wan22(tmp_path_factory):
    """A tiny Wan 2.2 A14B-shaped folder (its second transformer runs the low-noise steps at guidance_scale_2)."""
    folder = tmp_path_factory.mktemp("wan22")
    pipe = wan_pipeline(folder / "build", two_stage=True)
    with torch.no_grad():  # larger text embeddings: the guidance visibly moves the tiny network
        pipe.text_encoder.shared.weight.mul_(30)
    pipe.save_pretrained(folder / "model")
    return folder / "model"


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    torch.manual_seed(0)
    return write_clip(tmp_path_factory.mktemp("clips") / "walk.gif", torch.rand(9, 3, 16, 16), 8)


def test_edit_takes_the_targets_family_keyword_and_records_it(tmp_path, wan22, walk):
    given = cli("edit", walk, "--model", wan22, *EDIT, "--condition", "guidance_scale_2=1", "--out", tmp_path / "a")
    plain = cli("edit", walk, "--model", wan22, *EDIT, "--out", tmp_path / "b")
    assert given.exit_code == 0 and plain.exit_code == 0, given.output + plain.output
    (made,), (other,) = (tmp_path / "a").iterdir(), (tmp_path / "b").iterdir()
    assert json.loads(read_record(made))["condition"] == {"guidance_scale_2": 1}
    assert "condition" not in json.loads(read_record(other))  # outputs without one keep their records
    moved = (read_clip(made).frames - read_clip(other).frames).abs().max()
    assert moved > 2 / 255  # the low-noise steps ran at scale 1, not 5: more than the GIF's rounding


def test_translate_takes_each_sides_keywords(tmp_path, wan22, walk):
    res = cli("translate", walk, "--source-model", wan22, "--target-model", wan22, "--source-prompt", "a cat",
              "--target-prompt", "a red dog", "--guidance-scale", "5", "--steps", "4", "--strength", "0.5",
              "--target-condition", "guidance_scale_2=2", "--source-condition", "guidance_scale_2=1",
              "--out", tmp_path)
    assert res.exit_code == 0, res.output
    (made,) = tmp_path.iterdir()
    record = json.loads(read_record(made))
    assert record["target_condition"] == {"guidance_scale_2": 2} and record["source_condition"] == {
        "guidance_scale_2": 1}


def test_wan_21_has_no_second_stage_to_guide(tmp_path, wan, walk):
    res = cli("edit", walk, "--model", wan, *EDIT, "--condition", "guidance_scale_2=3", "--out", tmp_path)
    assert res.exit_code != 0 and "takes no condition keyword 'guidance_scale_2' (--target-condition); it has none " \
                                  "beyond the prompt and the guidance scale" in res.output
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize("option, message", [
    (["--condition", "guidance_rescale=0.7"],
     "takes no condition keyword 'guidance_rescale' (--target-condition); its own are guidance_scale_2"),
    (["--source-condition", "guidance_scale=2"],
     "guidance_scale has its own option: give guidance_scale (--source-guidance-scale)"),
    (["--condition", "guidance_scale_2"], "give a condition keyword as KEY=VALUE"),
])
def test_a_keyword_the_model_does_not_take_is_one_line_before_any_work(tmp_path, wan22, walk, option, message):
    res = cli("edit", walk, "--model", wan22, *EDIT, *option, "--out", tmp_path)
    assert res.exit_code != 0 and message in res.output
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    assert "Traceback" not in res.output


def test_a_job_file_sets_the_keywords(tmp_path, wan22, walk):
    job = tmp_path / "job.toml"
    job.write_text(f'task = "edit"\ninputs = "{walk}"\nout = "out"\n[settings]\nmodel = "{wan22}"\n'
                   'source_prompt = "a cat"\nprompt = "a red dog"\nsteps = 4\nstrength = 0.5\n'
                   'guidance_scale = 5.0\ncondition = {guidance_scale_2 = 1.0}\n')
    res = cli("run", job, "--quiet")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"]
    assert records[0]["settings"]["condition"] == {"guidance_scale_2": 1.0}

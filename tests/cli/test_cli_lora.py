"""``--lora PATH:SCALE`` / ``--target-lora`` on every front end (edit, translate, serve, a job's ``lora`` key): a
scale that is not a finite number from -100 to 100 (``nan`` made every output black, exit 0), one that is not a
number (was "no such LoRA") and an empty path are one line, before any model loads."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cyclediff._images import save_image
from cyclediff.cli import main
from tiny_sd import photos

RANGE = "a finite number from -100 to 100"


@pytest.fixture(scope="module")
def style(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_lora")
    save_image(photos(1)[0], tmp / "cat.png")
    lora = tmp / "style.safetensors"
    lora.write_bytes(b"never read: the scale is refused first")
    return tmp, lora


def _one_line(res, message: str) -> None:
    assert res.exit_code != 0, res.output
    assert message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output, res.output


@pytest.mark.parametrize("tail, message", [("nan", RANGE), ("inf", RANGE), ("1e309", RANGE), ("1e30", RANGE),
                                           ("-101", RANGE), ("abc", "the scale 'abc' of the LoRA"),
                                           (None, "the LoRA path is empty")])
def test_edit_and_translate_refuse_a_bad_lora_spec(style, tail, message):
    tmp, lora = style
    spec = "" if tail is None else f"{lora}:{tail}"
    edit = ["edit", str(tmp / "cat.png"), "--model", "no/such-model", "--source-prompt", "a cat", "--prompt", "a dog",
            "--quiet", "--out", str(tmp / "o"), "--lora", spec]
    _one_line(CliRunner().invoke(main, edit), message)
    translate = ["translate", str(tmp / "cat.png"), "--source-model", "no/such-model", "--target-model",
                 "no/such-model", "--source-prompt", "a cat", "--target-prompt", "a dog", "--quiet", "--out",
                 str(tmp / "t"), "--target-lora", spec]
    _one_line(CliRunner().invoke(main, translate), message)
    assert not (tmp / "o").exists() and not (tmp / "t").exists()


def test_serve_refuses_a_nan_lora_before_it_starts(style, monkeypatch):
    import cyclediff.web.app as app

    tmp, lora = style
    monkeypatch.setattr(app, "launch", lambda *a, **kw: pytest.fail("served with a NaN LoRA scale"))
    res = CliRunner().invoke(main, ["serve", "--model", "no/such-model", "--lora", f"{lora}:nan", "--port", "0"])
    _one_line(res, RANGE)


def test_a_job_with_a_nan_lora_is_refused(style):
    tmp, lora = style
    job = tmp / "job.toml"
    job.write_text(f'task = "edit"\ninputs = "cat.png"\nlora = ["{lora.name}:nan"]\n[settings]\n'
                   'model = "no/such-model"\nsource_prompt = "a cat"\nprompt = "a dog"\n')
    res = CliRunner().invoke(main, ["run", str(job), "--quiet"])
    _one_line(res, RANGE)

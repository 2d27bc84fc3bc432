"""A job file's top level is the run options (every one of them, derived, not a hand-kept copy) and its device
follows the command line's one rule."""

from __future__ import annotations

import click
import pytest

from cyclediff import CycleDiffError
from cyclediff._images import save_image
from cyclediff.cli.options import resolve_device
from cyclediff.jobs.file import TOP_LEVEL, load_job
from cyclediff.jobs.run import distributed
from cyclediff.settings import RunOptions
from tiny_sd import photos


def _job(tmp_path, top: str = "") -> object:
    (tmp_path / "in").mkdir(exist_ok=True)
    save_image(photos(1)[0], tmp_path / "in" / "cat.png")
    (tmp_path / "job.toml").write_text(f'task = "edit"\ninputs = "in/"\n{top}\n[settings]\nmodel = "demo:digits"\n')
    return load_job(tmp_path / "job.toml")


def test_every_run_option_is_a_job_key(tmp_path):
    assert set(RunOptions.names()) <= TOP_LEVEL
    job = _job(tmp_path, "max_seeds = 3\nfit = \"resize\"")  # max_seeds was missing from the hand-kept copy
    assert job.run.max_seeds == 3 and job.run.fit == "resize"
    with pytest.raises(CycleDiffError, match="max_seeds must be"):
        _job(tmp_path, "max_seeds = 0")


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:1", "mps", "meta", "nonsense", "cuda:x"])
def test_a_device_the_command_line_takes_a_job_takes_and_the_other_way_round(tmp_path, name):
    try:
        resolve_device(name)
        cli = None
    except click.BadParameter as err:
        cli = str(err)
    try:
        job = _job(tmp_path, f"device = {name!r}".replace("'", '"'))
        distributed(job.run.device)
        ran = None
    except CycleDiffError as err:
        ran = str(err)
    assert (cli is None) == (ran is None), (cli, ran)
    if cli is not None:
        assert cli.splitlines()[0] in ran  # the same one-line reason


@pytest.mark.parametrize("name", ["cuda:1", "mps"])
def test_a_job_file_names_devices_as_the_command_line_does(tmp_path, name):
    """Whether the device is here is asked when the job runs (a job file may be written elsewhere); its name is
    checked when it loads, by the command line's rule: cuda:N and mps are devices."""
    assert _job(tmp_path, f'device = "{name}"').run.device == name
    with pytest.raises(CycleDiffError, match="runs on cpu, cuda or mps, not meta"):
        _job(tmp_path, 'device = "meta"')


def test_an_unknown_method_in_a_sweep_is_one_line(tmp_path):
    (tmp_path / "in").mkdir()
    save_image(photos(1)[0], tmp_path / "in" / "cat.png")
    (tmp_path / "job.toml").write_text('task = "edit"\ninputs = "in/"\n[settings]\nmodel = "demo:digits"\n'
                                       'method = ["cyclediffusion", "bogus"]\n')
    with pytest.raises(CycleDiffError, match="method must be one of .*got 'bogus'"):
        load_job(tmp_path / "job.toml")

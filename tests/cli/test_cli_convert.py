"""``cyclediff convert guided-diffusion --overwrite`` into a folder that holds another model replaces it whole (it
merged: an SD folder kept its vae/, text_encoder/, …), atomically: a conversion that fails leaves the old folder as
it was, and no temporary folder is left beside it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cyclediff.cli import main
from cyclediff.models import PixelDenoiser, load
from tiny_sd import sd_pipeline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "guided_diffusion" / "adm_afhq_like"


def test_overwrite_replaces_an_sd_folder_whole_and_atomically(tmp_path):
    out = tmp_path / "models" / "afhq"
    sd_pipeline(tmp_path / "parts").save_pretrained(out)
    before = sorted(p.name for p in out.iterdir())
    args = ["convert", "guided-diffusion", str(FIXTURES / "model.pt"), "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--flags", '{"image_size": 7}', "--overwrite"])  # flags that fail
    assert res.exit_code != 0
    assert sorted(p.name for p in out.iterdir()) == before  # the old model untouched
    assert [p.name for p in out.parent.iterdir()] == ["afhq"]
    res = CliRunner().invoke(main, [*args, "--flags", str(FIXTURES / "flags.json")])
    assert res.exit_code != 0 and "--overwrite" in res.output
    res = CliRunner().invoke(main, [*args, "--flags", str(FIXTURES / "flags.json"), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["model_index.json", "scheduler", "unet"]
    assert [p.name for p in out.parent.iterdir()] == ["afhq"]  # no temporary folder left beside it
    assert isinstance(load(out), PixelDenoiser)

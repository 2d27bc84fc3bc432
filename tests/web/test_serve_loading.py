"""``cyclediff serve --model … --quantize … --offload … --lora …``: the served model is loaded with every loading
option (the launch itself replaced: the page is tested in test_serve_page.py)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cyclediff.cli import main
from tiny_sd import make_lora, sd_pipeline

pytest.importorskip("optimum.quanto")
pytest.importorskip("peft")


def test_serve_loads_its_models_quantized_offloaded_and_with_a_lora(tmp_path, monkeypatch):
    import cyclediff.web.app as app

    sd_pipeline(tmp_path / "parts").save_pretrained(tmp_path / "sd")
    lora = make_lora(sd_pipeline(tmp_path / "lparts"), tmp_path / "style", seed=1)
    served = {}
    monkeypatch.setattr(app, "build_app", lambda studio: None)
    monkeypatch.setattr(app, "launch", lambda built, studio, **kw: served.update(studio=studio, **kw))
    res = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "sd"), "--quantize", "int8", "--offload",
                                    "model", "--lora", f"{lora}:0.6", "--device", "cpu", "--port", "0"])
    assert res.exit_code == 0, res.output
    studio = served["studio"]
    assert studio.loading["quantize"] == "int8" and studio.loading["offload"] == "model"
    model = studio.model(str(tmp_path / "sd"))
    from optimum.quanto.nn import QLinear

    assert any(isinstance(m, QLinear) for m in model.unet.modules())
    assert model.__dict__["_loras"] == {"lora0": 0.6}
    # what the served model made records it and how it was loaded (it was "model": null, no LoRA, no quantize)
    import json

    from PIL import Image

    from cyclediff._images import save_image
    from cyclediff.batch.outputs import PNG_KEY
    from tiny_sd import photos

    save_image(photos(1, seed=3)[0], tmp_path / "photo.png")
    events = studio.edit(str(tmp_path / "photo.png"), str(tmp_path / "sd"), "a cat", "a dog", strength=0.5, steps=2,
                         eta=0.1, guidance_scale=1.0)
    (result,) = [value for kind, value in events if kind == "done"][0]
    with Image.open(result.output) as img:
        record = json.loads(img.text[PNG_KEY])
    assert record["model"] == str(tmp_path / "sd") and record["task"] == "edit"
    assert record["quantize"] == "int8" and record["offload"] == "model" and record["lora"] == [f"{lora}:0.6"]
    res = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "sd"), "--quantize", "nf4", "--device", "cpu"])
    assert res.exit_code == 1 and "runs on a CUDA GPU only" in res.output and "Traceback" not in res.output

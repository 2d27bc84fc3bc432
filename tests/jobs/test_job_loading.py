"""A job file's loading options (``quantize``, ``target_lora``, ``lora``, ``base``, ``offload``): adapter files
beside the job are found from anywhere, the models load as the CLI loads them, every output records them."""

from __future__ import annotations

import json

import pytest
import torch

from cyclediff import translate
from cyclediff._images import load_image, save_image
from cyclediff.jobs.run import load_job, run_job
from cyclediff.models import load_pair
from tiny_sd import make_lora, photos, sd_pipeline

pytest.importorskip("peft")
pytest.importorskip("optimum.quanto")


def test_a_translate_job_to_the_own_lora_variant_with_quantized_weights(tmp_path):
    sd_pipeline(tmp_path / "parts").save_pretrained(tmp_path / "sd")
    style = make_lora(sd_pipeline(tmp_path / "lparts"), tmp_path / "style", seed=2)
    (tmp_path / "in").mkdir()
    save_image(photos(1)[0], tmp_path / "in" / "cat.png")
    (tmp_path / "job.toml").write_text("""task = "translate"
inputs = "in/"
quantize = "int8"
target_lora = ["style/pytorch_lora_weights.safetensors:0.8"]
[settings]
source_model = "sd"
target_model = "sd"
source_prompt = "a cat"
target_prompt = "a red cat"
steps = 4
""")
    job = load_job(tmp_path / "job.toml")
    assert job.run.target_lora == (f"{style}:0.8",) and job.run.quantize == "int8"
    report = run_job(job, progress=False)
    assert report.ok == 1 and report.failed == 0
    record = json.loads((job.out / "manifest.jsonl").read_text().splitlines()[0])
    out = load_image(job.out / record["output"])
    source, target = load_pair(str(tmp_path / "sd"), str(tmp_path / "sd"), quantize="int8",
                               target_lora=[f"{style}:0.8"])
    api = translate(load_image(tmp_path / "in" / "cat.png"), source, target, steps=4,
                    source_condition="a cat", target_condition="a red cat",
                    generator=torch.Generator().manual_seed(record["seed"])).images
    assert (out - api).abs().max() <= 1 / 255 + 1e-6  # the job's PNG is the API's image, rounded to 8 bits
    assert f"{style}:0.8" in json.dumps(record)

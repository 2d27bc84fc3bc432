"""Metrics against independent implementations, and both evaluation benchmarks end to end (with resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import linalg
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import ddim_config, images, tiny_unet
from cyclediff import CycleDiffError
from cyclediff.cli import main
from cyclediff.jobs.evaluate import EditSpec, evaluate_edit, evaluate_translate
from cyclediff.metrics import ClipScorer, clip_score, directional_clip, fid, kid, pixel_features, psnr, ssim
from cyclediff.models import PixelDenoiser, StableDiffusion, StableDiffusion3
from tiny_sd import photos, sd3_pipeline, sd_pipeline, tiny_clip


def _pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    real = torch.from_numpy(skdata.astronaut()[::8, ::8].astype(np.float32) / 255).permute(2, 0, 1)[None]
    noisy = (real + 0.05 * torch.randn(real.shape, generator=g)).clamp(0, 1)
    return [(x, y), (real, noisy)]


@pytest.mark.parametrize("case", [0, 1], ids=["random", "astronaut"])
def test_psnr_and_ssim_match_scikit_image(case):
    x, y = _pairs()[case]
    ours_p, ours_s = psnr(y, x), ssim(y, x)
    for i in range(len(x)):
        a, b = x[i].permute(1, 2, 0).double().numpy(), y[i].permute(1, 2, 0).double().numpy()
        assert ours_p[i].item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-3)
        ref = structural_similarity(a, b, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert ours_s[i].item() == pytest.approx(ref, abs=5e-3)


def test_clip_scores_match_the_cosine_formulas(tmp_path):
    model, tok = tiny_clip(tmp_path)
    scorer = ClipScorer((model, tok))
    src, out = photos(2, size=40, seed=1), photos(2, size=40, seed=2)
    texts_s, texts_t = ["a cat", "a car"], ["a dog", "a red car"]
    img_s, img_o = scorer.image_embeddings(src).numpy(), scorer.image_embeddings(out).numpy()
    txt_s, txt_t = scorer.text_embeddings(texts_s).numpy(), scorer.text_embeddings(texts_t).numpy()

    def cos(a, b):
        return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

    np.testing.assert_allclose(clip_score(out, texts_t, scorer).numpy(), cos(img_o, txt_t), atol=1e-5)
    np.testing.assert_allclose(directional_clip(src, out, texts_s, texts_t, scorer).numpy(),
                               cos(img_o - img_s, txt_t - txt_s), atol=1e-5)
    # preprocessing: shorter side to 32, centre crop, CLIP normalisation
    assert scorer.preprocess(torch.rand(1, 3, 40, 64)).shape == (1, 3, 32, 32)


def test_fid_and_kid_match_numpy_on_the_same_features():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(40, 3, 2, 2, generator=g), torch.rand(30, 3, 2, 2, generator=g) ** 2
    feats = pixel_features(2)
    fa, fb = feats(a).double().numpy(), feats(b).double().numpy()
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    cov_a, cov_b = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    ref_fid = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    assert fid(a, b, features=feats) == pytest.approx(ref_fid, rel=1e-3)

    n, d = 30, fa.shape[1]
    x, y = fa[:n], fb[:n]  # one subset of all n on both sides: KID is then the unbiased MMD² exactly

    def k(u, v):
        return (u @ v.T / d + 1) ** 3

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    ref_kid = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
               - 2 * kxy.mean())
    ours, _ = kid(b[:n], a[:n], features=feats, subsets=1, subset_size=n)
    assert ours == pytest.approx(ref_kid, rel=1e-3, abs=1e-6)


def _write_png(path, x01):
    from PIL import Image

    arr = (x01.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(path)


def test_evaluate_edit_end_to_end_with_resume(tmp_path):
    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    scorer = ClipScorer(tiny_clip(tmp_path))
    for i in range(2):
        _write_png(tmp_path / f"im{i}.png", photos(1, seed=i)[0])
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps([  # the paper's layout
        {"encode_text": "a cat", "decode_text": "a dog", "img_path": "im0.png"},
        {"encode_text": "a car", "decode_text": "a red car", "img_path": "im1.png"},
        {"encode_text": "a car", "decode_text": "a horse", "img_path": "missing.png"},
    ]))
    spec = EditSpec.load(spec_path)
    spec.seeds, spec.methods, spec.guidance_scales = [0, 1], ["cyclediffusion", "sdedit"], [1.0, 3.0]
    spec.base = spec.base.replace(steps=6)
    out = tmp_path / "eval"
    rows = evaluate_edit(spec, out, model=sd, scorer=scorer, progress=False)
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 2 * 2 * 2 and sum(r["status"] == "failed" for r in lines) == 8  # missing image: failed
    assert {r["selection"] for r in rows} == {"single sample", "best of 4 by directional CLIP"}
    best = next(r for r in rows if r["method"] == "cyclediffusion" and r["selection"].startswith("best"))
    single = next(r for r in rows if r["method"] == "cyclediffusion" and r["selection"] == "single sample")
    assert best["directional_clip"] >= single["directional_clip"] and best["items"] == single["items"] == 2
    # a killed run: drop the last ok record and its image; the re-run redoes only that one
    ok = [r for r in lines if r["status"] == "ok"]
    keep = [json.dumps(r) for r in lines if r["key"] != ok[-1]["key"]]
    (out / "results.jsonl").write_text("\n".join(keep) + "\n" + '{"torn line')
    (tmp_path / "eval" / "images" / f"{ok[-1]['key']}.png").unlink()
    done = []
    evaluate_edit(spec, out, model=sd, scorer=scorer, progress=False, on_record=done.append)
    assert [r["key"] for r in done if r["status"] == "ok"] == [ok[-1]["key"]]
    assert "| method | selection |" in (out / "summary.md").read_text() and (out / "summary.csv").is_file()


def _spec(tmp_path, settings, name="spec.json"):
    _write_png(tmp_path / "cat.png", photos(1, seed=0)[0])
    (tmp_path / name).write_text(json.dumps({"items": [{"image": "cat.png", "source": "a cat", "target": "a dog"}],
                                             "settings": settings}))
    return EditSpec.load(tmp_path / name)


def _records(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_an_edit_spec_is_edit_settings_flowedit_runs_with_its_knobs(tmp_path):
    """The spec's settings are edit settings plus its axes: FlowEdit's n_avg reaches FlowEdit (two draws a step:
    twice the network rows) and is recorded; in a sweep the other method runs with its own knobs."""
    sd3 = StableDiffusion3(sd3_pipeline(tmp_path))
    rows = [0]
    sd3.transformer.register_forward_hook(
        lambda m, a, k, o: rows.__setitem__(0, rows[0] + len(a[0] if a else k["hidden_states"])), with_kwargs=True)
    scorer = ClipScorer(tiny_clip(tmp_path))
    spec = _spec(tmp_path, {"methods": ["flowedit", "sdedit"], "n_avg": 2, "steps": 4, "strengths": [0.5],
                            "guidance_scales": [3.0]})
    assert spec.base.n_avg == 2 and spec.base.steps == 4
    evaluate_edit(spec, tmp_path / "eval", model=sd3, scorer=scorer, progress=False)
    flowedit, sdedit = _records(tmp_path / "eval")
    assert flowedit["status"] == sdedit["status"] == "ok"
    assert flowedit["settings"]["n_avg"] == 2 and sdedit["settings"]["n_avg"] == 1
    # FlowEdit: 2 steps × 2 draws × (source 1 row + target 2 rows); SDEdit: 2 steps × 2 target rows
    assert rows[0] == 2 * 2 * 3 + 2 * 2
    with pytest.raises(CycleDiffError, match="spec.json: .*n_min .* must be less than"):
        _spec(tmp_path, {"methods": ["flowedit"], "n_min": 5, "steps": 4, "strengths": [0.5]})
    with pytest.raises(CycleDiffError, match="give strengths"):
        _spec(tmp_path, {"strength": 0.5})


def test_an_edit_spec_takes_a_mask(tmp_path):
    """A mask image beside the spec (white = may change) reaches every edit of the spec; it is recorded."""
    from PIL import Image

    sd = StableDiffusion.from_pipe(sd_pipeline(tmp_path))
    scorer = ClipScorer(tiny_clip(tmp_path))
    mask = np.zeros((16, 16), np.uint8)
    mask[:, :8] = 255
    Image.fromarray(mask).save(tmp_path / "left.png")
    outputs = {}
    for name, extra in (("plain", {}), ("masked", {"mask": "left.png"})):
        spec = _spec(tmp_path, {"methods": ["cyclediffusion"], "steps": 4, **extra}, name=f"{name}.json")
        evaluate_edit(spec, tmp_path / name, model=sd, scorer=scorer, progress=False)
        (record,) = _records(tmp_path / name)
        assert record["status"] == "ok", record["error"]
        outputs[name] = record
    assert outputs["masked"]["settings"]["mask"] == str(tmp_path / "left.png")
    assert outputs["masked"]["metrics"]["psnr"] != outputs["plain"]["metrics"]["psnr"]  # the mask took effect
    with pytest.raises(CycleDiffError, match="masks work with methods"):
        _spec(tmp_path, {"methods": ["sdedit"], "mask": "left.png"})


def test_evaluate_translate_end_to_end_with_resume(tmp_path):
    source = PixelDenoiser(tiny_unet(seed=0), ddim_config())
    target = PixelDenoiser(tiny_unet(seed=1), ddim_config())
    (tmp_path / "in").mkdir()
    (tmp_path / "ref").mkdir()
    for i in range(3):
        _write_png(tmp_path / "in" / f"a{i}.png", (images(1, seed=i)[0] + 1) / 2)
    for i in range(4):
        _write_png(tmp_path / "ref" / f"b{i}.png", (images(1, seed=10 + i)[0] + 1) / 2)
    kw = dict(methods=["cyclediffusion", "sdedit"], steps=8, features=pixel_features(8), progress=False)
    rows = evaluate_translate(source, target, tmp_path / "in", tmp_path / "ref", tmp_path / "out", **kw)
    assert [r["method"] for r in rows] == ["cyclediffusion", "sdedit"]
    assert all(r["images"] == 3 and np.isfinite(r["fid"]) and np.isfinite(r["kid"]) for r in rows)
    n = len((tmp_path / "out" / "results.jsonl").read_text().splitlines())
    evaluate_translate(source, target, tmp_path / "in", tmp_path / "ref", tmp_path / "out", **kw)
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == n  # nothing redone


def test_evaluate_cli(tmp_path):
    from diffusers import DDIMScheduler

    for name, seed in (("a", 0), ("b", 1)):
        tiny_unet(seed=seed).save_pretrained(tmp_path / name)
        DDIMScheduler(**ddim_config()).save_config(tmp_path / name)
    (tmp_path / "in").mkdir()
    for i in range(2):
        _write_png(tmp_path / "in" / f"a{i}.png", (images(1, seed=i)[0] + 1) / 2)
    res = CliRunner().invoke(main, ["evaluate", "translate", "--source-model", str(tmp_path / "a"),
                                    "--target-model", str(tmp_path / "b"), "--images", str(tmp_path / "in"),
                                    "--reference", str(tmp_path / "in"), "--steps", "6", "--methods", "ddib",
                                    "--features", "pixels", "--device", "cpu", "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 0, res.output
    assert "| ddib | 2 |" in res.output

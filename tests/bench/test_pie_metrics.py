"""PIE-Bench's metrics as the official evaluation computes them (cure-lab/PnPInversion ``evaluation/``): each test
would fail if the metric were computed the usual way instead (the mask's border rule, masked images over the whole
frame, the "nan" rule, DINO fed 0–255 pixels, LPIPS on torchvision's SqueezeNet), and each model-based metric is
checked against a restatement of the official formula on random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cyclediff import CycleDiffError
from cyclediff.bench import Scorers, decode_mask, score, strip_brackets
from pie_fixtures import tiny_clip_folder, tiny_dino, tiny_squeezenet_weights

RNG = np.random.default_rng(0)


def _images(size=(64, 64)):
    a = RNG.integers(0, 256, (*size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + RNG.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_the_mask_decodes_runs_and_marks_its_border_edited():
    mask = decode_mask([10, 3, 20, 2], shape=(5, 6))
    inner = mask[1:-1, 1:-1]
    assert mask[0].all() and mask[-1].all() and mask[:, 0].all() and mask[:, -1].all()  # the official border rule
    assert inner.sum() == 3 and mask.flatten()[10:13].all() and mask.flatten()[20:22].all()
    with pytest.raises(CycleDiffError, match=r"runs past the 5×6 image"):
        decode_mask([28, 5], shape=(5, 6))
    with pytest.raises(CycleDiffError, match="pairs"):
        decode_mask([1, 2, 3], shape=(5, 6))


def test_prompts_lose_their_brackets_as_the_official_scripts_do():
    assert strip_brackets("a [red] cat on [the] mat") == "a red cat on the mat"


def test_unedited_part_metrics_are_those_of_the_masked_images_over_the_whole_frame():
    """The official PSNR / MSE / SSIM of the unedited part compare image × (1 − mask) over every pixel (the zeros
    count): not the usual statistic over the unmasked pixels alone."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    a, b = _images()
    mask = np.zeros((64, 64))
    mask[16:48, 16:48] = 1
    got = score(a, b, mask, "s", "t", metrics=["psnr_unedit_part", "mse_unedit_part", "ssim_unedit_part", "psnr",
                                               "mse_edit_part"])
    keep = (1 - mask)[:, :, None]
    fa, fb = a / 255 * keep, b / 255 * keep
    mse = float(np.mean((fa.astype(np.float32) - fb.astype(np.float32)) ** 2))
    assert got["mse_unedit_part"] == pytest.approx(mse, rel=1e-5)
    assert got["psnr_unedit_part"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    outside = (a / 255 - b / 255)[mask == 0]
    usual = 10 * np.log10(1 / np.mean(outside ** 2))
    assert abs(got["psnr_unedit_part"] - usual) > 0.5  # the usual definition gives another number
    t = torch.from_numpy
    expected_ssim = structural_similarity_index_measure(t(fa).permute(2, 0, 1)[None].float(),
                                                        t(fb).permute(2, 0, 1)[None].float(), data_range=1.0)
    assert got["ssim_unedit_part"] == pytest.approx(float(expected_ssim), rel=1e-5)
    whole = peak_signal_noise_ratio(t(a / 255).float(), t(b / 255).float(), data_range=1.0)
    assert got["psnr"] == pytest.approx(float(whole), rel=1e-5)


def test_a_part_the_mask_leaves_empty_is_nan_as_the_official_script_writes_it():
    a, b = _images()
    everything, nothing = np.ones((64, 64)), np.zeros((64, 64))
    assert score(a, b, everything, "s", "t", metrics=["psnr_unedit_part", "mse_unedit_part"]) == {
        "psnr_unedit_part": "nan", "mse_unedit_part": "nan"}
    assert score(a, b, nothing, "s", "t", metrics=["ssim_edit_part"]) == {"ssim_edit_part": "nan"}


def _official_keys_self_sim(model, x):
    """The official VitExtractor path restated: the fused qkv of the last block (here built from the HF layer's
    query / key / value weights), reshaped (N, 3, heads, d) and permuted as ``get_keys_from_qkv`` does, heads
    concatenated, cosine similarity with its 1e-8 clamp."""
    from cyclediff.metrics.structure import projections

    captured = []
    query, key, value = projections(model, 11)
    hook = query.register_forward_hook(lambda m, args, out: captured.append(args[0]))
    model(pixel_values=x, interpolate_pos_encoding=True)
    hook.remove()
    h = captured[0][0]
    qkv = torch.cat([query(h), key(h), value(h)], dim=-1)  # the hub model's fused qkv
    heads = model.config.num_attention_heads
    d = model.config.hidden_size // heads
    k = qkv.reshape(h.shape[0], 3, heads, d).permute(1, 2, 0, 3)[1]
    t = k.shape[1]
    keys = k.transpose(0, 1).reshape(t, heads * d)[None]
    norm = keys.norm(dim=2, keepdim=True)
    return (keys @ keys.permute(0, 2, 1)) / torch.clamp(norm @ norm.permute(0, 2, 1), min=1e-08)


def test_the_structure_distance_follows_the_official_dino_path_with_0_255_pixels(tmp_path):
    from cyclediff.metrics.structure import official_input

    dino = tiny_dino(tmp_path)
    a, b = _images((80, 64))
    got = score(a, b, np.zeros((80, 64)), "s", "t", metrics=["structure_distance"],
                models=Scorers(dino=str(dino), device="cpu"))["structure_distance"]
    model = Scorers(dino=str(dino)).get("dino")
    pa, pb = (torch.from_numpy(v.astype(np.float32)).permute(2, 0, 1)[None] for v in (a, b))
    sa, sb = _official_keys_self_sim(model, official_input(pa)), _official_keys_self_sim(model, official_input(pb))
    assert official_input(pa).shape[-2:] == (280, 224)  # shorter side 224, the other in proportion (80:64)
    assert got == pytest.approx(float(torch.nn.functional.mse_loss(sb, sa)), rel=1e-4)
    scaled = _official_keys_self_sim(model, official_input(pa / 255))
    other = float(torch.nn.functional.mse_loss(_official_keys_self_sim(model, official_input(pb / 255)), scaled))
    assert abs(other - got) > 1e-3 * max(got, other)  # dividing by 255 first (the usual way) gives another number


def test_lpips_is_torchmetrics_lpips_on_torchvisions_squeezenet_layout(tmp_path, monkeypatch):
    """torchmetrics' own LPIPS (net_type='squeeze'), its backbone handed our module with the same weights (as
    torchvision's squeezenet1_1().features would be): the same values; the unedited part compares the masked
    images in [−1, 1]."""
    from torchmetrics.functional.image import lpips as tm

    from cyclediff.metrics.lpips import load_squeezenet

    weights = tiny_squeezenet_weights(tmp_path)
    monkeypatch.setattr(tm, "_get_tv_model_features", lambda net, pretrained=False: load_squeezenet(weights))
    reference = tm._NoTrainLpips(net="squeeze")
    a, b = _images()
    mask = np.zeros((64, 64))
    mask[:20] = 1
    got = score(a, b, mask, "s", "t", metrics=["lpips", "lpips_unedit_part"],
                models=Scorers(lpips=str(weights)))
    keep = (1 - mask)[:, :, None]

    def tensor(v):
        return torch.from_numpy(v.astype(np.float32)).permute(2, 0, 1)[None]

    assert got["lpips"] == pytest.approx(float(reference(tensor(a / 255) * 2 - 1, tensor(b / 255) * 2 - 1)), rel=1e-5)
    expected = reference(tensor(a / 255 * keep) * 2 - 1, tensor(b / 255 * keep) * 2 - 1)
    assert got["lpips_unedit_part"] == pytest.approx(float(expected), rel=1e-5)


def test_clip_similarity_is_torchmetrics_clipscore_of_the_uint8_image_and_its_masked_part(tmp_path):
    """torchmetrics' CLIPScore (100 · cos, floored at 0) of the uint8 image and of uint8(image · mask), restated
    here from its formula: the processor's pixels, the projected features, the cosine."""
    from transformers import CLIPModel, CLIPProcessor

    from cyclediff.metrics.clip import _tensor

    folder = tiny_clip_folder(tmp_path)
    a, b = _images()
    mask = np.zeros((64, 64))
    mask[:, :32] = 1
    got = score(a, b, mask, "a cat", "a dog", metrics=["clip_similarity_source_image",
                                                       "clip_similarity_target_image_edit_part"],
                models=Scorers(clip=str(folder)))
    model, processor = CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)

    def clip_score(image, text):
        pixels = processor(images=[torch.from_numpy(image).permute(2, 0, 1)], return_tensors="pt")["pixel_values"]
        tokens = processor(text=[text], return_tensors="pt", padding=True)
        f = _tensor(model.get_image_features(pixels))
        g = _tensor(model.get_text_features(tokens["input_ids"], tokens["attention_mask"]))
        cos = float((f / f.norm(dim=-1, keepdim=True) * g / g.norm(dim=-1, keepdim=True)).sum())
        return max(100 * cos, 0.0)

    assert got["clip_similarity_source_image"] == pytest.approx(clip_score(a, "a cat"), rel=1e-4, abs=1e-4)
    assert got["clip_similarity_source_image"] > 1  # not floored to 0: the comparison means something
    part = np.uint8(b * mask[:, :, None])  # the official edit part: the uint8 masked image
    assert got["clip_similarity_target_image_edit_part"] == pytest.approx(clip_score(part, "a dog"), rel=1e-4,
                                                                          abs=1e-4)


def test_bad_score_inputs_are_one_line():
    a, b = _images()
    with pytest.raises(CycleDiffError, match="unknown PIE-Bench metrics"):
        score(a, b, np.zeros((64, 64)), "s", "t", metrics=["psnr_everywhere"])
    with pytest.raises(CycleDiffError, match="one size"):
        score(a, b[:32], np.zeros((64, 64)), "s", "t", metrics=["psnr"])

"""Metrics for clips (cyclediff.metrics.video) on synthetic clips: a tiny random CLIP for the text–frame score, pixel
features for temporal consistency (no download)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cyclediff.errors import CycleDiffError
from cyclediff.metrics import ClipScorer, clip_score, pixel_features, psnr, ssim
from cyclediff.metrics.video import background_scores, frame_clip_scores, temporal_consistency, video_scores
from tiny_sd import tiny_clip


def moving_square(frames: int = 6, size: int = 32, step: int = 3, seed: int = 0) -> torch.Tensor:
    """(1, 3, F, H, W): a bright square sliding right over a fixed noisy ground."""
    torch.manual_seed(seed)
    ground = torch.rand(3, size, size) * 0.3
    clip = ground[:, None].repeat(1, frames, 1, 1).clone()
    for f in range(frames):
        clip[:, f, 8:16, 2 + step * f: 10 + step * f] = torch.tensor([0.9, 0.7, 0.2])[:, None, None]
    return clip[None]


def test_clip_text_frame_score_is_each_frames_clip_score(tmp_path):
    scorer = ClipScorer(tiny_clip(tmp_path))
    clips = torch.cat([moving_square(seed=0), moving_square(seed=1)])
    per_frame = frame_clip_scores(clips, ["a red square", "a blue ball"], scorer)
    assert per_frame.shape == (2, 6)
    for b, text in enumerate(["a red square", "a blue ball"]):
        frames = clips[b].transpose(0, 1)
        assert torch.allclose(per_frame[b], clip_score(frames, text, scorer), atol=1e-6)
    records = video_scores(clips, clips, ["a red square", "a blue ball"], scorer=scorer)
    assert records[1]["clip_score"] == pytest.approx(per_frame[1].mean().item(), abs=1e-5)
    assert len(records[0]["clip_frame_scores"]) == 6 and "temporal_consistency" in records[0]  # CLIP features


def test_temporal_consistency_ranks_smooth_motion_above_shuffled_frames():
    features = pixel_features(16)
    smooth = moving_square(frames=8, step=1)
    jumpy = smooth[:, :, torch.tensor([0, 7, 1, 6, 2, 5, 3, 4])]
    still = smooth[:, :, :1].repeat(1, 1, 8, 1, 1)
    scores = temporal_consistency(torch.cat([smooth, jumpy, still]), features)
    assert scores[2] == pytest.approx(1.0, abs=1e-6) and scores[0] > scores[1]
    frames = features(smooth[0].transpose(0, 1))
    expect = F.cosine_similarity(frames[1:], frames[:-1], dim=-1).mean()
    assert scores[0] == pytest.approx(expect.item(), abs=1e-6)
    assert temporal_consistency(smooth[:, :, :1], features).tolist() == [1.0]


def test_background_scores_ignore_the_edited_region_in_every_frame():
    source = moving_square()
    edited = source.clone()
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:20, :] = 1  # the band the square moves in: one mask for all frames
    edited[..., 4:20, :] = torch.rand_like(edited[..., 4:20, :])  # anything may happen inside it
    clean = background_scores(source, edited, mask)
    assert clean["background_psnr"].item() == float("inf") or clean["background_psnr"].item() > 100
    assert clean["background_ssim"].item() == pytest.approx(1.0, abs=1e-6)
    noisy = edited.clone()
    noisy[..., 24:, :] += 0.05  # a change outside the mask, in every frame
    per_frame = background_scores(source, noisy.clamp(0, 1), mask[:, :, None].repeat(1, 1, 6, 1, 1))
    keep = 1 - mask
    frames = lambda c: c[0].transpose(0, 1) * keep  # noqa: E731
    assert per_frame["background_psnr"].item() == pytest.approx(
        psnr(frames(noisy.clamp(0, 1)), frames(source)).mean().item(), abs=1e-9)
    assert per_frame["background_ssim"].item() == pytest.approx(
        ssim(frames(noisy.clamp(0, 1)), frames(source)).mean().item(), abs=1e-9)
    assert per_frame["background_psnr"].item() < 40


def test_bad_shapes_are_one_line():
    clip = moving_square()
    with pytest.raises(CycleDiffError, match=r"\(B, C, F, H, W\)"):
        temporal_consistency(clip[0], pixel_features())
    with pytest.raises(CycleDiffError, match="the mask must be"):
        background_scores(clip, clip, torch.ones(1, 1, 16, 16))
    with pytest.raises(CycleDiffError, match="differ in shape"):
        background_scores(clip, clip[:, :, :3], torch.ones(1, 1, 32, 32))

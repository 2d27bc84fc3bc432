"""Metrics for clips (B, C, F, H, W) in [0, 1], as FiVE-Bench reports them: the CLIP text–frame score per frame and
its mean, PSNR / SSIM of the background (outside the edit mask), and temporal consistency (the cosine similarity of
consecutive frames' CLIP embeddings, averaged). Every feature step takes a function instead of CLIP (e.g.
:func:`~cyclediff.metrics.pixel_features`), so the metrics run where CLIP's weights cannot be downloaded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import CycleDiffError
from . import psnr, ssim
from .clip import ClipScorer, _texts, directional_clip


def check_clips(clips: torch.Tensor, name: str = "clips") -> torch.Tensor:
    """A (B, C, F, H, W) batch of clips, else one error naming the layout."""
    if not isinstance(clips, torch.Tensor) or clips.ndim != 5 or clips.shape[2] < 1:
        shape = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
        raise CycleDiffError(f"{name} must be (B, C, F, H, W) clips in [0, 1] (frames on axis 2); got {shape}")
    return clips


def frames_of(clips: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) → (B·F, C, H, W): clip 0's frames, then clip 1's …"""
    return clips.transpose(1, 2).flatten(0, 1)


def frame_clip_scores(clips: torch.Tensor, texts: str | Sequence[str], scorer: ClipScorer) -> torch.Tensor:
    """cos(CLIP_img(frame), CLIP_text(text)) of every frame: (B, F), each clip against its own text."""
    b, _, f = check_clips(clips).shape[:3]
    img = scorer.image_embeddings(frames_of(clips))
    txt = scorer.text_embeddings(_texts(texts, b)).to(img.device).repeat_interleave(f, dim=0)
    return F.cosine_similarity(img, txt, dim=-1).reshape(b, f)


def temporal_consistency(clips: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The mean cosine similarity of consecutive frames' features, per clip (B,); 1 for a one-frame clip.
    ``features``: frames (N, C, H, W) → (N, D), e.g. ``scorer.image_embeddings`` (CLIP) or ``pixel_features()``."""
    b, _, f = check_clips(clips).shape[:3]
    if f == 1:
        return torch.ones(b)
    emb = features(frames_of(clips)).reshape(b, f, -1).float()
    return F.cosine_similarity(emb[:, 1:], emb[:, :-1], dim=-1).mean(dim=1)


def clip_mask(mask: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """A mask (1 = edited) as (B, 1, F, H, W): one per frame ((B, 1, F, H, W)) or one for every frame
    ((B, 1, H, W)); a batch of one is shared by every clip."""
    b, _, f, h, w = clips.shape
    m = mask[:, :, None] if mask.ndim == 4 else mask
    if m.ndim != 5 or m.shape[1] != 1 or tuple(m.shape[3:]) != (h, w) or m.shape[2] not in (1, f) \
            or m.shape[0] not in (1, b):
        raise CycleDiffError(f"the mask must be (B, 1, H, W) or (B, 1, F, H, W) at the clips' {h}×{w} with {f} "
                             f"frames; got {tuple(mask.shape)}")
    return m.float().expand(b, 1, f, h, w)


def background_scores(sources: torch.Tensor, outputs: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR and SSIM of the background (where ``mask`` is 0), per clip (B,): both clips times (1 − mask), as
    PIE-Bench scores the unedited part of images, frame by frame, then each clip's mean."""
    check_clips(sources, "sources"), check_clips(outputs, "outputs")
    if sources.shape != outputs.shape:
        raise CycleDiffError(f"sources {tuple(sources.shape)} and outputs {tuple(outputs.shape)} differ in shape")
    keep = 1 - clip_mask(mask.to(sources.device), sources)
    a, b = frames_of(sources.float() * keep), frames_of(outputs.float().to(sources.device) * keep)
    n, f = sources.shape[0], sources.shape[2]
    return {"background_psnr": psnr(b, a).reshape(n, f).mean(1), "background_ssim": ssim(b, a).reshape(n, f).mean(1)}


def video_scores(sources: torch.Tensor, outputs: torch.Tensor, texts: str | Sequence[str] | None = None, *,
                 scorer: ClipScorer | None = None, mask: torch.Tensor | None = None,
                 features: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[dict[str, Any]]:
    """One record per clip: ``clip_frame_scores`` (per frame) and ``clip_score`` (their mean) against ``texts`` with
    a ``scorer``; ``background_psnr`` / ``background_ssim`` under a ``mask``; ``temporal_consistency`` of the
    outputs on ``features`` (the scorer's CLIP embeddings when not given). Values rounded to 5 decimals."""
    check_clips(outputs, "outputs")
    columns: dict[str, Any] = {}
    if texts is not None and scorer is not None:
        per_frame = frame_clip_scores(outputs, texts, scorer)
        columns.update(clip_frame_scores=per_frame.tolist(), clip_score=per_frame.mean(1).tolist())
    if mask is not None:
        columns.update({k: v.tolist() for k, v in background_scores(sources, outputs, mask).items()})
    features = features or (scorer.image_embeddings if scorer is not None else None)
    if features is not None:
        columns["temporal_consistency"] = temporal_consistency(outputs, features).tolist()
    return [{k: _round(v[i]) for k, v in columns.items()} for i in range(outputs.shape[0])]


def edit_scores(sources: torch.Tensor, outputs: torch.Tensor, source_texts: str | Sequence[str],
                texts: str | Sequence[str], scorer: ClipScorer | None = None,
                mask: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """An edited clip's record: :func:`video_scores` (with the ``scorer``: the per-frame CLIP score, its mean,
    temporal consistency; under a ``mask``: the background PSNR / SSIM) and, with the scorer, ``directional_clip``
    of each frame pair averaged over the clip (what ``evaluate``'s best-of-N selects by)."""
    sources, outputs = check_clips(sources, "sources").float().cpu(), check_clips(outputs, "outputs").float().cpu()
    records = video_scores(sources, outputs, texts, scorer=scorer, mask=None if mask is None else mask.cpu())
    if scorer is not None:
        b, f = outputs.shape[0], outputs.shape[2]
        each = [t for t in _texts(texts, b) for _ in range(f)], [t for t in _texts(source_texts, b) for _ in range(f)]
        direction = directional_clip(frames_of(sources), frames_of(outputs), each[1], each[0], scorer)
        for record, value in zip(records, direction.reshape(b, f).mean(1).tolist()):
            record["directional_clip"] = _round(value)
    return records


def _round(value: Any) -> Any:
    return [round(float(v), 5) for v in value] if isinstance(value, list) else round(float(value), 5)

"""CLIP score cos(CLIP_img(x̂), CLIP_text(t̂)) and directional CLIP
cos(CLIP_img(x̂) − CLIP_img(x), CLIP_text(t̂) − CLIP_text(t)), from transformers' CLIPModel embeddings.

Images get CLIP's preprocessing: shorter side resized to the vision size (bicubic), center crop, CLIP mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import CycleDiffError
from ..settings import CLIP_MODEL

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipBackbone:
    """One CLIP model and tokenizer for everything that needs CLIP (the metrics here and guidance's CLIP energy):
    loading (a hub id or local folder, or a ``(CLIPModel, tokenizer)`` pair), CLIP's normalisation, the token
    limit, and transformers 4 / 5 outputs alike."""

    def __init__(self, model: Any = CLIP_MODEL, device: Any = None) -> None:
        from transformers import AutoTokenizer, CLIPModel

        if isinstance(model, tuple):
            self.model, self.tokenizer = model
        else:
            try:
                self.model, self.tokenizer = CLIPModel.from_pretrained(model), AutoTokenizer.from_pretrained(model)
            except OSError as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise CycleDiffError(
                    f"cannot load CLIP model {model!r} (offline? pass a local folder): {first}"
                ) from err
        if device is not None:
            self.model = self.model.to(device)
        self.model.eval().requires_grad_(False)
        self.size = int(self.model.config.vision_config.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def image_features(self, images01: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings (float32) of (B, C, size, size) images in [0, 1], differentiably."""
        x = images01.expand(-1, 3, -1, -1) if images01.shape[1] == 1 else images01
        mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype)[:, None, None]
        std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype)[:, None, None]
        dtype = next(self.model.parameters()).dtype
        return _tensor(self.model.get_image_features(pixel_values=((x - mean) / std).to(dtype))).float()

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP text embeddings (float32), each text cut to the model's token limit."""
        limit = min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=limit,
                                return_tensors="pt").to(self.device)
        return _tensor(self.model.get_text_features(**tokens)).float()


class ClipScorer:
    """CLIP for scoring: CLIP's own preprocessing (shorter side resized, center crop) on a :class:`ClipBackbone`
    (a hub id or local folder, a ``(CLIPModel, tokenizer)`` pair, or a backbone)."""

    def __init__(self, model: Any = CLIP_MODEL, device: Any = None) -> None:
        self.backbone = model if isinstance(model, ClipBackbone) else ClipBackbone(model, device)
        self.model, self.tokenizer, self.size = self.backbone.model, self.backbone.tokenizer, self.backbone.size

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] → shorter side resized to CLIP's size (bicubic), center crop, in [0, 1]."""
        x = images.float()
        h, w = x.shape[2:]
        scale = self.size / min(h, w)
        nh, nw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        return x[:, :, top:top + self.size, left:left + self.size]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP pixel values: :meth:`crop`, then CLIP's mean / std."""
        x = self.crop(images)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
        return (x - mean) / std

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.image_features(self.crop(images.to(self.backbone.device)))

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        return self.backbone.text_features(texts)


def _tensor(out: Any) -> torch.Tensor:
    """transformers 5 may return a model output where 4.x returned a tensor."""
    if isinstance(out, torch.Tensor):
        return out
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise CycleDiffError(f"unexpected CLIP output {type(out).__name__}")


def _texts(texts: str | Sequence[str], n: int) -> list[str]:
    items = [texts] * n if isinstance(texts, str) else list(texts)
    if len(items) != n:
        raise ValueError(f"need one text per image ({n}); got {len(items)}")
    return items


def clip_score(images: torch.Tensor, texts: str | Sequence[str], scorer: ClipScorer | None = None) -> torch.Tensor:
    """cos(CLIP_img(x̂), CLIP_text(t̂)) per image (images in [0, 1])."""
    scorer = scorer or ClipScorer()
    img, txt = scorer.image_embeddings(images), scorer.text_embeddings(_texts(texts, len(images)))
    return F.cosine_similarity(img, txt.to(img.device), dim=-1)


def directional_clip(
    sources: torch.Tensor, outputs: torch.Tensor, source_texts: str | Sequence[str], target_texts: str | Sequence[str],
    scorer: ClipScorer | None = None,
) -> torch.Tensor:
    """cos(CLIP_img(x̂) − CLIP_img(x), CLIP_text(t̂) − CLIP_text(t)) per image pair."""
    scorer = scorer or ClipScorer()
    n = len(outputs)
    d_img = scorer.image_embeddings(outputs) - scorer.image_embeddings(sources)
    d_txt = scorer.text_embeddings(_texts(target_texts, n)) - scorer.text_embeddings(_texts(source_texts, n))
    return F.cosine_similarity(d_img, d_txt.to(d_img.device), dim=-1)

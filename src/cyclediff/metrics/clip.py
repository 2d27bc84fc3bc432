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

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipScorer:
    """Holds a CLIP model and its tokenizer (a hub id or local folder, or a (CLIPModel, tokenizer) pair)."""

    def __init__(self, model: Any = "openai/clip-vit-base-patch32", device: Any = None) -> None:
        from transformers import AutoTokenizer, CLIPModel

        if isinstance(model, tuple):
            self.model, self.tokenizer = model
        else:
            try:
                self.model, self.tokenizer = CLIPModel.from_pretrained(model), AutoTokenizer.from_pretrained(model)
            except OSError as err:
                raise CycleDiffError(f"cannot load CLIP model {model!r} (offline? pass a local folder): {err}") from err
        if device is not None:
            self.model = self.model.to(device)
        self.model.eval().requires_grad_(False)
        self.size = int(self.model.config.vision_config.image_size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] → CLIP pixel values: resize shorter side (bicubic), center crop, normalise."""
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[2:]
        scale = self.size / min(h, w)
        nh, nw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        x = x[:, :, top:top + self.size, left:left + self.size]
        mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
        return (x - mean) / std

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.preprocess(images.to(self.model.device))
        return _tensor(self.model.get_image_features(pixel_values=pixels.to(self.model.dtype))).float()

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        limit = min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=limit,
                                return_tensors="pt").to(self.model.device)
        return _tensor(self.model.get_text_features(**tokens)).float()


def _tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    value = getattr(out, "pooler_output", None)
    if isinstance(value, torch.Tensor):  # transformers 5 returns the projected embedding there
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

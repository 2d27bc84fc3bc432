"""PIE-Bench's scores of one edit, each as the official ``calculate_metric`` computes it (see
:mod:`cyclediff.bench.pie_bench` for the rules): :func:`score` and the scoring models it needs (:class:`Scorers`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import CycleDiffError
from ..metrics.lpips import SQUEEZENET_URL
from ..metrics.structure import DINO_MODEL
from .pie_bench import DEFAULT_METRICS, METRICS

CLIP_MODEL = "openai/clip-vit-large-patch14"


@dataclass
class Scorers:
    """The models the metrics need, each loaded on first use from its spec (hub id or folder; LPIPS: a
    squeezenet1_1 state dict file or URL). ``clip`` may also be a callable returning (CLIPModel, CLIPProcessor)."""

    dino: Any = DINO_MODEL
    clip: Any = CLIP_MODEL
    lpips: Any = SQUEEZENET_URL
    device: Any = "cpu"
    _loaded: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        if name not in self._loaded:
            self._loaded[name] = getattr(self, f"_load_{name}")()
        return self._loaded[name]

    def check(self, metrics: Any = None) -> Scorers:
        """Load now every model ``metrics`` need (default: the paper's eight), so that a bad spec or weights file
        fails in one line before any edit runs; returns self."""
        names = list(metrics or DEFAULT_METRICS)
        for model, prefix in (("dino", "structure_distance"), ("lpips", "lpips"), ("clip", "clip_similarity")):
            if any(n.startswith(prefix) for n in names):
                self.get(model)
        return self

    def to(self, device: Any) -> Scorers:
        """The loaded models moved to ``device`` (those loaded later load there); returns self."""
        self.device = device
        self._loaded = {k: v.to(device) for k, v in self._loaded.items()}
        return self

    def _load_dino(self) -> Any:
        from ..metrics.structure import load_dino

        return load_dino(self.dino, self.device)

    def _load_lpips(self) -> Any:
        from ..metrics.lpips import Lpips

        return Lpips(self.lpips).to(self.device)

    def _load_clip(self) -> Any:
        from torchmetrics.multimodal import CLIPScore

        spec = self.clip

        def build() -> tuple[Any, Any]:
            from transformers import CLIPModel, CLIPProcessor

            if callable(spec):
                model, processor = spec()
            else:
                try:
                    model, processor = CLIPModel.from_pretrained(spec), CLIPProcessor.from_pretrained(spec)
                except (OSError, ValueError) as err:
                    why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    raise CycleDiffError(f"cannot load the CLIP model {spec!r} ({why}); give a hub id or a folder "
                                         "(--clip)") from err
            return _FeatureTensors(model), processor

        return CLIPScore(model_name_or_path=build).to(self.device)


class _FeatureTensors(torch.nn.Module):
    """A CLIPModel whose ``get_image_features`` / ``get_text_features`` return tensors, as torchmetrics' CLIPScore
    expects (transformers 5 returns model outputs there); nothing else changes."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        from ..metrics.clip import _tensor

        return _tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        from ..metrics.clip import _tensor

        return _tensor(self.model.get_text_features(*args, **kwargs))


def _floats(image: Any, mask: np.ndarray | None) -> np.ndarray:
    """An image as the official metrics take it: uint8 → float32 in [0, 1], times the (H, W, 3) mask if any."""
    arr = np.asarray(image).astype(np.float32) / 255
    return arr if mask is None else arr * mask.astype(np.float32)


def _chw(arr: np.ndarray, device: Any, batch: bool = True) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous().to(device)
    return t[None] if batch else t


def _pixel_metric(name: str, src: Any, tgt: Any, mask: np.ndarray | None, scorers: Scorers | None) -> float:
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
    from torchmetrics.functional.regression import mean_squared_error

    device = scorers.device if scorers is not None else "cpu"
    if name == "structure_distance":
        from ..metrics.structure import structure_distance

        keep = 1 if mask is None else mask.astype(np.float32)
        a = np.asarray(src).astype(np.float32) * keep  # 0–255, as the official code feeds DINO
        b = np.asarray(tgt).astype(np.float32) * keep
        return structure_distance(_need(scorers, "dino"), _chw(a, "cpu", False), _chw(b, "cpu", False))
    a, b = _floats(src, mask), _floats(tgt, mask)
    if name == "psnr":
        return float(peak_signal_noise_ratio(_chw(a, device), _chw(b, device), data_range=1.0))
    if name == "ssim":
        return float(structural_similarity_index_measure(_chw(a, device), _chw(b, device), data_range=1.0))
    if name == "mse":
        return float(mean_squared_error(_chw(a, device, False), _chw(b, device, False)))
    return float(_need(scorers, "lpips")(_chw(a, device) * 2 - 1, _chw(b, device) * 2 - 1)[0])


def _need(scorers: Scorers | None, name: str) -> Any:
    if scorers is None:
        raise CycleDiffError(f"this metric needs the {name} model: pass models=Scorers(...)")
    return scorers.get(name)


def _clip(scorers: Scorers | None, image: Any, text: str, mask: np.ndarray | None) -> float:
    arr = np.asarray(image)
    if mask is not None:
        arr = np.uint8(arr * mask)
    metric = _need(scorers, "clip")
    return float(metric(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).to(scorers.device), text))


def score(source_image: Any, edited_image: Any, mask: Any, source_prompt: str, target_prompt: str,
          metrics: Any = None, models: Scorers | None = None) -> dict[str, Any]:
    """The official PIE-Bench metrics of one edit: images as PIL or (H, W, 3) uint8 arrays of one size, the
    decoded (H, W) mask (1 = edited), prompts without brackets. Keys are the official names; a part the mask leaves
    empty is the string "nan", as the official script writes it. ``metrics``: names (default: the eight the paper
    reports); the pixel metrics need no models."""
    names = list(metrics or DEFAULT_METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise CycleDiffError(f"unknown PIE-Bench metrics {unknown}; they are {', '.join(METRICS)}")
    from PIL import Image

    src, tgt = (np.asarray(v.convert("RGB")) if isinstance(v, Image.Image) else np.asarray(v)
                for v in (source_image, edited_image))
    if src.shape != tgt.shape or src.ndim != 3 or src.shape[2] != 3:
        raise CycleDiffError(f"the source and edited images must be two RGB images of one size; got {src.shape} "
                             f"and {tgt.shape}")
    m = np.asarray(mask, dtype=np.float64)
    if m.shape != src.shape[:2]:
        raise CycleDiffError(f"the mask is {m.shape}; the images are {src.shape[:2]}")
    mask3 = m[:, :, None].repeat(3, axis=2)
    parts = {"": None, "_unedit_part": 1 - mask3, "_edit_part": mask3}
    out: dict[str, Any] = {}
    for name in names:
        if name.startswith("clip_similarity"):
            if name == "clip_similarity_source_image":
                out[name] = _clip(models, src, source_prompt, None)
            elif name == "clip_similarity_target_image":
                out[name] = _clip(models, tgt, target_prompt, None)
            else:
                out[name] = "nan" if mask3.sum() == 0 else _clip(models, tgt, target_prompt, mask3)
            continue
        base = next(b for b in PIXEL_ORDER if name == b or name.startswith(b + "_"))
        part = parts[name[len(base):]]
        out[name] = "nan" if part is not None and part.sum() == 0 else _pixel_metric(base, src, tgt, part, models)
    return out


PIXEL_ORDER = ("structure_distance", "psnr", "lpips", "mse", "ssim")

__all__ = ["CLIP_MODEL", "Scorers", "score"]

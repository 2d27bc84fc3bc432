"""scikit-learn's bundled handwritten digits (8×8, values 0–16) as (N, 1, 8, 8) tensors in [−1, 1]."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

NULL_LABEL = 10  # the class-conditional model's "no class" label (classifier-free guidance)
SOURCE_DIGIT, TARGET_DIGIT = 3, 8  # the two single-digit domains of the translation demo
SPLIT_SEED = 0
HELD_OUT = 0.2


def to_model(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Digit pixels 0–16 → [−1, 1], shaped (N, 1, 8, 8)."""
    x = torch.as_tensor(np.asarray(values), dtype=torch.float32).reshape(-1, 1, 8, 8)
    return x / 8.0 - 1.0


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """[−1, 1] (N, 1, 8, 8) → digit pixels 0–16 as (N, 64) floats, clipped (what the SVC reads)."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 8.0).reshape(len(x), 64).numpy()


@lru_cache(maxsize=1)
def split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, held-out images, held-out labels): a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(digits.data, digits.target, test_size=HELD_OUT,
                                              random_state=SPLIT_SEED, stratify=digits.target)
    return to_model(x_tr), torch.as_tensor(y_tr), to_model(x_te), torch.as_tensor(y_te)


@lru_cache(maxsize=1)
def classifier():
    """An SVC on the training split's pixels (the demo's judge of which digit an image shows)."""
    from sklearn.svm import SVC

    x_tr, y_tr, _, _ = split()
    return SVC(gamma=0.001, C=10.0).fit(to_pixels(x_tr), y_tr.numpy())


def classify(x: torch.Tensor) -> np.ndarray:
    return classifier().predict(to_pixels(x))

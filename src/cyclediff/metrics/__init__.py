"""Image metrics on (B, C, H, W) tensors in [0, 1], one value per image where that applies.

PSNR, SSIM and KID come from torchmetrics; KID takes any feature extractor (a module or a function mapping
images to (B, D) features), so small images can be compared without downloading Inception weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..settings import RUN


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"need two (B, C, H, W) batches of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    # float64: the order in which a thread count sums the pixels then moves no reported digit
    return x.double(), y.double().to(x.device)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, data range 1 (dB)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, y = _pair(x, y)
    return peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image: Gaussian window 11, σ = 1.5, data range 1 (as the paper computes it).

    The SSIM map comes from torchmetrics and is averaged over the windows that lie inside the image, as
    scikit-image's ``structural_similarity`` does; images smaller than the window (e.g. 8×8 digits) average
    the whole, border-reflected map instead.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = _pair(x, y)
    _, full = structural_similarity_index_measure(x, y, data_range=1.0, gaussian_kernel=True, sigma=1.5,
                                                  kernel_size=11, reduction="none", return_full_image=True)
    pad = 5
    if full.shape[2] > 2 * pad and full.shape[3] > 2 * pad:
        full = full[:, :, pad:-pad, pad:-pad]
    return full.mean(dim=(1, 2, 3))


class _Features(torch.nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x).reshape(len(x), -1).float()


def kid(
    x: torch.Tensor,
    reference: torch.Tensor,
    *,
    features: Callable[[torch.Tensor], torch.Tensor] | str,
    subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel inception distance (mean, std over subsets) of images ``x`` against ``reference`` images, with a
    cubic polynomial kernel on ``features(images)``. Deterministic for a seed (subsets are drawn at random)."""
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    size = subset_size or min(len(x), len(reference))
    if size < 2 or len(x) < size or len(reference) < size:
        raise ValueError(f"KID needs at least {max(size, 2)} images on each side; got {len(x)} and {len(reference)}")
    module = _feature_module(features)
    with warnings.catch_warnings():  # "will save all extracted features in buffer": that is the point here
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=module, subsets=subsets, subset_size=size, normalize=True)
    metric.update(reference.float(), real=True)
    metric.update(x.float(), real=False)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        mean, std = metric.compute()
    finally:
        torch.random.set_rng_state(state)
    return float(mean), float(std)


def fid(
    x: torch.Tensor,
    reference: torch.Tensor,
    *,
    features: Callable[[torch.Tensor], torch.Tensor] | str = RUN.features,
) -> float:
    """Fréchet distance between Gaussian fits of ``features(x)`` and ``features(reference)``.

    ``features="inception"`` is the standard 2048-d Inception-v3 pool features (torchmetrics with the optional
    ``torch-fidelity`` backend: ``pip install cyclediff[fid]``, weights downloaded on first use); any module or
    function mapping images to (B, D) works offline.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    module = _feature_module(features)
    metric = FrechetInceptionDistance(feature=module, normalize=True)
    metric.update(reference.float(), real=True)
    metric.update(x.float(), real=False)
    return float(metric.compute())


def _feature_module(features: Callable[[torch.Tensor], torch.Tensor] | str) -> Any:
    if features == "inception":
        try:
            import torch_fidelity  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "the default Inception features need torch-fidelity (pip install 'cyclediff[fid]'); or pass "
                "features= a module / function mapping images to (B, D)"
            ) from err
        return 2048
    if isinstance(features, str):
        raise ValueError(f"features must be 'inception', a module or a function; got {features!r}")
    return features if isinstance(features, torch.nn.Module) else _Features(features)


def pixel_features(size: int = 32) -> Callable[[torch.Tensor], torch.Tensor]:
    """A download-free feature extractor: images as RGB (grayscale repeated), resized to size×size, as vectors
    (for small images and tests)."""

    def features(x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
        return x.reshape(len(x), -1)

    return features


from .clip import ClipScorer, clip_score, directional_clip  # noqa: E402


def pair_scores(inputs01: torch.Tensor, outputs01: torch.Tensor) -> dict[str, list[float]]:
    """PSNR and SSIM of each output against its input."""
    return {"psnr": psnr(outputs01, inputs01).tolist(), "ssim": ssim(outputs01, inputs01).tolist()}


def distribution_scores(outputs01: torch.Tensor, reference01: torch.Tensor, features: Any) -> dict[str, float]:
    """FID and KID (mean, std) of outputs against reference images on ``features``."""
    kid_mean, kid_std = kid(outputs01, reference01, features=features,
                            subset_size=min(len(outputs01), len(reference01), 50))
    return {"fid": fid(outputs01, reference01, features=features), "kid": kid_mean, "kid_std": kid_std}


__all__ = ["ClipScorer", "clip_score", "directional_clip", "distribution_scores", "fid", "kid", "pair_scores",
           "pixel_features", "psnr", "ssim"]

"""LPIPS with the SqueezeNet backbone (``net_type='squeeze'``, what PIE-Bench reports) without torchvision.

torchmetrics' LPIPS takes its backbone from torchvision, whose wheels do not load beside the pinned torch; the
backbone is written here in torch with torchvision's module layout and weight names (``features.0.weight``,
``features.3.squeeze.weight``, …), so the real ``squeezenet1_1`` ImageNet weights load into it unchanged. Input
scaling, unit-normalising each feature, the learned 1×1 heads (the ``squeeze.pth`` torchmetrics ships) and the
spatial mean are torchmetrics' own modules and functions; the test runs torchmetrics' whole metric on this
backbone and compares.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# the ImageNet weights torchvision's squeezenet1_1 downloads (a plain state dict, no torchvision needed to read it)
SQUEEZENET_URL = "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"


class Fire(nn.Module):
    """torchvision's Fire block: squeeze 1×1, then 1×1 and 3×3 expansions side by side."""

    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))],
                         1)


def squeezenet1_1_features() -> nn.Sequential:
    """``torchvision.models.squeezenet1_1().features``, module for module (indices 0–12)."""
    pool = {"kernel_size": 3, "stride": 2, "ceil_mode": True}
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(**pool),
        Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(**pool),
        Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(**pool),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))


def load_squeezenet(weights: str | Path | None) -> nn.Sequential:
    """The backbone with ``weights``: a ``squeezenet1_1`` state dict (``.pth`` read with ``weights_only``, or
    ``.safetensors``; keys with or without the ``features.`` prefix), the URL above (fetched once by torch.hub),
    or None (random weights: tests only)."""
    from ..errors import CycleDiffError

    features = squeezenet1_1_features()
    if weights is None:
        return features.eval()
    source = str(weights)
    try:
        if source.startswith(("http://", "https://")):
            state = torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True)
        elif source.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(source)
        else:
            state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - each reader raises its own kind (a PNG: pickle's UnpicklingError)
        if isinstance(err, OSError) and source.startswith(("http://", "https://")):
            raise CycleDiffError(f"cannot fetch the LPIPS SqueezeNet weights {source} ({type(err).__name__}); "
                                 "download the file and give its path") from err
        if isinstance(err, OSError):
            raise CycleDiffError(f"cannot read the LPIPS SqueezeNet weights {source}: {err.strerror or err}") from err
        raise CycleDiffError(f"cannot read the LPIPS SqueezeNet weights {source}: not a torch state dict (.pth) or "
                             "safetensors file of squeezenet1_1") from err
    if not isinstance(state, dict):
        raise CycleDiffError(f"{source} is not a squeezenet1_1 state dict (it holds a {type(state).__name__})")
    state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    missing, unexpected = features.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CycleDiffError(f"{source} is not a squeezenet1_1 state dict (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
    return features.eval()


class _Slices(nn.Module):
    """The seven feature slices LPIPS reads (torchmetrics' split of the backbone: after each ReLU / Fire)."""

    RANGES = (range(2), range(2, 5), range(5, 8), range(8, 10), range(10, 11), range(11, 12), range(12, 13))

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.slices = nn.ModuleList(nn.Sequential(*(features[i] for i in r)) for r in self.RANGES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for part in self.slices:
            x = part(x)
            outs.append(x)
        return outs


class Lpips(nn.Module):
    """LPIPS (SqueezeNet) of two batches in [−1, 1], one value per pair: torchmetrics' computation
    (``learned_perceptual_image_patch_similarity(net_type='squeeze')``) on the backbone above."""

    def __init__(self, weights: str | Path | None = SQUEEZENET_URL) -> None:
        super().__init__()
        import inspect

        from torchmetrics.functional.image import lpips as tm

        self.scaling_layer = tm.ScalingLayer()
        self.net = _Slices(load_squeezenet(weights))
        self.chns = [64, 128, 256, 384, 384, 512, 512]
        self.lins = nn.ModuleList(tm.NetLinLayer(c, use_dropout=True) for c in self.chns)
        heads = Path(inspect.getfile(tm)).parent / "lpips_models" / "squeeze.pth"
        state = torch.load(heads, map_location="cpu", weights_only=True)
        self.lins.load_state_dict({k.removeprefix("lin"): v for k, v in state.items() if k.startswith("lin")})
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from torchmetrics.functional.image import lpips as tm

        a, b = self.net(self.scaling_layer(x)), self.net(self.scaling_layer(y))
        total = 0
        for k, lin in enumerate(self.lins):
            diff = (tm._normalize_tensor(a[k]) - tm._normalize_tensor(b[k])) ** 2
            total = total + tm._spatial_average(lin(diff), keep_dim=True)
        return total.flatten()


__all__ = ["SQUEEZENET_URL", "Lpips", "load_squeezenet", "squeezenet1_1_features"]

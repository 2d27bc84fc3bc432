"""Energies for plug-and-play guidance: images in [−1, 1] (B, C, H, W) → one energy per image (B,).

Anything callable that way is an energy; :class:`Energy` adds ``+`` and scalar ``*`` to combine them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ..errors import CycleDiffError
from ..settings import GUIDE
from .augment import DiffAugment


@runtime_checkable
class EnergyFn(Protocol):
    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class Energy:
    """Base class: ``2.0 * a + b`` is the weighted sum of energies a and b."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __add__(self, other: EnergyFn) -> WeightedSum:
        return WeightedSum([(1.0, self), (1.0, other)])

    def __radd__(self, other: EnergyFn) -> WeightedSum:
        return WeightedSum([(1.0, other), (1.0, self)])

    def __mul__(self, weight: float) -> WeightedSum:
        return WeightedSum([(float(weight), self)])

    __rmul__ = __mul__


class WeightedSum(Energy):
    """Σ w_i E_i."""

    def __init__(self, terms: Sequence[tuple[float, EnergyFn]]) -> None:
        flat: list[tuple[float, EnergyFn]] = []
        for w, e in terms:
            if isinstance(e, WeightedSum):
                flat.extend((w * w2, e2) for w2, e2 in e.terms)
            else:
                flat.append((w, e))
        self.terms = flat

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return sum(w * as_energy(e)(images) for w, e in self.terms)


class FunctionEnergy(Energy):
    """Wraps a callable, checking that it returns one finite value per image."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None) -> None:
        self.fn, self.name = fn, name or getattr(fn, "__name__", "energy")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.fn(images)
        if not isinstance(out, torch.Tensor) or out.shape != (images.shape[0],):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CycleDiffError(f"energy {self.name} must return one value per image, shape ({images.shape[0]},); "
                                 f"got {shape}")
        return out


def as_energy(energy: Any) -> Energy:
    if isinstance(energy, Energy):
        return energy
    if callable(energy):
        return FunctionEnergy(energy)
    raise CycleDiffError(f"an energy must be callable (images → one value per image); got {type(energy).__name__}")


def import_object(spec: str, what: str = "energy") -> Any:
    """``module:attribute`` (or ``path/to/file.py:attribute``) → that object; one error naming the spec."""
    if ":" not in spec:
        raise CycleDiffError(f"an {what} spec is module:function (e.g. mypkg.energies:brightness); got {spec!r}")
    import importlib
    import importlib.util

    module_name, _, attr = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            loc = importlib.util.spec_from_file_location("cyclediff_user_energy", module_name)
            if loc is None or loc.loader is None:
                raise ImportError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(loc)
            loc.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError, FileNotFoundError) as err:
        raise CycleDiffError(f"cannot load {what} {spec!r}: {err}") from err


DIGITS_CLASSIFIER = "cyclediff.demo.guidance:digit_classifier"  # the demo digits' classifier (trained in seconds)


def load_classifier(spec: str) -> torch.nn.Module:
    """``module:attribute``: a torch classifier (logits out), or a function or class that makes one."""
    made = import_object(spec, "classifier")
    classifier = made() if callable(made) and not isinstance(made, torch.nn.Module) else made
    if not isinstance(classifier, torch.nn.Module):
        raise CycleDiffError(f"classifier {spec!r} is no torch module (logits out); got {type(classifier).__name__}")
    return classifier


def load_energy(spec: str) -> Energy:
    """``module:function`` (or ``path/to/file.py:function``) → that callable as an energy."""
    fn = import_object(spec)
    return as_energy(fn() if isinstance(fn, type) else fn)


def energy_from_spec(spec: str, *, text: str | None = None, clip_model: Any = GUIDE.clip_model,
                     augment_copies: int = GUIDE.augment_copies) -> Energy:
    """``"clip"`` (with ``text``): a :class:`ClipEnergy`; anything else: :func:`load_energy` of the spec."""
    if spec == "clip":
        if not text:
            raise CycleDiffError("the clip energy needs a text (what the images should show)")
        return ClipEnergy(text, clip_model, augment_copies=augment_copies)
    return load_energy(spec)


class ClassifierEnergy(Energy):
    """−log p(y | x) of a torch classifier (logits out) for target classes y; ``avoid=True`` gives p(y | x),
    the energy of "not this class". ``preprocess`` maps [−1, 1] images to the classifier's input."""

    def __init__(self, classifier: torch.nn.Module, target: int | Sequence[int] | torch.Tensor, *,
                 avoid: bool = False, preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.classifier = classifier.eval().requires_grad_(False)
        self.target = torch.as_tensor(target).long().reshape(-1)
        self.avoid, self.preprocess = avoid, preprocess

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images) if self.preprocess else images
        log_p = F.log_softmax(self.classifier(x).float(), dim=-1)
        y = self.target.to(log_p.device).expand(len(images)) if self.target.numel() == 1 else self.target.to(
            log_p.device)
        if len(y) != len(images):
            raise CycleDiffError(f"{len(y)} target classes for {len(images)} images; give one, or one per image")
        if bool((y < 0).any()) or bool((y >= log_p.shape[1]).any()):
            bad = next(int(v) for v in y.tolist() if not 0 <= v < log_p.shape[1])
            raise CycleDiffError(f"class {bad} is not one of the classifier's {log_p.shape[1]} classes "
                                 f"(0 to {log_p.shape[1] - 1})")
        picked = log_p.gather(1, y[:, None])[:, 0]
        return picked.exp() if self.avoid else -picked


class FeatureSimilarityEnergy(Energy):
    """1 − cos(f(x), f̄) where f̄ is the mean embedding of reference images (identity guidance)."""

    def __init__(self, embed: Callable[[torch.Tensor], torch.Tensor], references: torch.Tensor) -> None:
        self.embed = embed
        with torch.no_grad():
            self.reference = F.normalize(embed(references).float().mean(0, keepdim=True), dim=-1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        feats = F.normalize(self.embed(images).float(), dim=-1)
        return 1 - (feats * self.reference.to(feats.device)).sum(-1)


class ClipEnergy(Energy):
    """The paper's CLIP energy: mean over L differentiably augmented copies of 1 − cos(CLIP_img(aug(x)), CLIP_text(t)).

    ``model``: a hub id or local folder that transformers' ``CLIPModel`` loads (default
    openai/clip-vit-base-patch32), a ``(CLIPModel, tokenizer)`` pair, or a :class:`~cyclediff.metrics.clip.ClipBackbone`
    (shared with the metrics). Images are resized (bicubic, differentiable) to the vision tower's size.
    """

    def __init__(self, text: str | Sequence[str], model: Any = GUIDE.clip_model, *,
                 augment_copies: int = GUIDE.augment_copies, augment: DiffAugment | None = None,
                 generator: torch.Generator | None = None, device: Any = None) -> None:
        from ..metrics.clip import ClipBackbone

        self.backbone = model if isinstance(model, ClipBackbone) else ClipBackbone(model, device)
        self.model, self.size = self.backbone.model, self.backbone.size
        self.copies = max(1, int(augment_copies))
        self.augment = augment or DiffAugment()
        self.generator = generator
        texts = [text] if isinstance(text, str) else list(text)
        self.text = F.normalize(self.backbone.text_features(texts), dim=-1)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.clamp(-1, 1) + 1) / 2
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)
        return F.normalize(self.backbone.image_features(x), dim=-1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        copies = torch.cat([self.augment(images, generator=self.generator) for _ in range(self.copies)])
        feats = self.image_features(copies).reshape(self.copies, b, -1)
        text = self.text.to(feats.device)
        text = text.expand(b, -1) if text.shape[0] == 1 else text
        return (1 - (feats * text[None]).sum(-1)).mean(0)

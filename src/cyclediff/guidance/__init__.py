"""Plug-and-play guidance in the stochastic latent space: energies, differentiable augmentation, Langevin."""

from .augment import DiffAugment
from .energies import (
    ClassifierEnergy,
    ClipEnergy,
    Energy,
    FeatureSimilarityEnergy,
    FunctionEnergy,
    WeightedSum,
    as_energy,
    energy_from_spec,
    load_energy,
)
from .langevin import GuideResult, guide

__all__ = [
    "ClassifierEnergy",
    "ClipEnergy",
    "DiffAugment",
    "Energy",
    "FeatureSimilarityEnergy",
    "FunctionEnergy",
    "GuideResult",
    "WeightedSum",
    "as_energy",
    "energy_from_spec",
    "guide",
    "load_energy",
]

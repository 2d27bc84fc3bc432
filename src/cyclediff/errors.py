"""Exceptions a user can cause. Each message says what went wrong and how to fix it."""

from __future__ import annotations


class CycleDiffError(ValueError):
    """Base class of every error cyclediff raises for bad input."""


class ConfigError(CycleDiffError):
    """A scheduler or model configuration that cyclediff cannot use."""


class IncompatibleModelError(CycleDiffError):
    """A latent, an image or a condition that does not fit the model it is given to."""


class LatentFileError(CycleDiffError):
    """A latent file that cannot be read: not a latent, corrupt, inconsistent or too new."""

"""Model adapters: every diffusion model becomes a :class:`Denoiser`."""

from .base import Condition, Denoiser
from .pixel import PixelDenoiser

__all__ = ["Condition", "Denoiser", "PixelDenoiser"]

"""Model adapters: every diffusion model becomes a :class:`Denoiser`."""

from .base import Condition, Denoiser
from .loading import load
from .pixel import PixelDenoiser
from .stable_diffusion import StableDiffusion

__all__ = ["Condition", "Denoiser", "PixelDenoiser", "StableDiffusion", "load"]

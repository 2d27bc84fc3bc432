"""Model adapters: every diffusion model becomes a :class:`Denoiser`."""

from .base import BatchedDenoiser, Condition, Denoiser, Model
from .codec import Codec, PixelCodec, VaeCodec, check_same_space, images_of, to_images, to_model_space
from .conditions import as_condition, condition_for
from .guided_diffusion import from_guided_diffusion
from .loading import load
from .pixel import PixelDenoiser
from .stable_diffusion import StableDiffusion

__all__ = ["BatchedDenoiser", "Codec", "Condition", "Denoiser", "Model", "PixelCodec", "PixelDenoiser",
           "StableDiffusion", "VaeCodec", "as_condition", "check_same_space", "condition_for",
           "from_guided_diffusion", "images_of", "load", "to_images", "to_model_space"]

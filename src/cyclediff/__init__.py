"""cyclediff: the stochastic latent space of diffusion models (CycleDiffusion, Wu & De la Torre, ICCV 2023)."""

from .encoder import encode
from .errors import ConfigError, CycleDiffError, IncompatibleModelError, LatentFileError
from .latent import Latent
from .sampler import decode, sample_latent
from .schedule import Schedule

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CycleDiffError",
    "IncompatibleModelError",
    "Latent",
    "LatentFileError",
    "Schedule",
    "decode",
    "encode",
    "sample_latent",
]

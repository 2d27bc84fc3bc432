"""cyclediff: the stochastic latent space of diffusion models (CycleDiffusion, Wu & De la Torre, ICCV 2023)."""

from ._version import __version__  # noqa: F401 - the package version
from .api.edit import EditResult, edit
from .api.translate import TranslateResult, translate
from .cycle import cycle
from .encoder import encode
from .errors import ConfigError, CycleDiffError, IncompatibleModelError, LatentFileError
from .guidance import GuideResult, guide
from .interpolation import interpolate
from .latent import Latent
from .options import DDIB, AttentionEdit, CycleDiffusion, EditFriendly, FlowEdit, SDEdit, options_of
from .sampler import decode, sample_latent
from .schedule import Schedule

__all__ = [
    "DDIB",
    "AttentionEdit",
    "ConfigError",
    "CycleDiffusion",
    "EditFriendly",
    "FlowEdit",
    "SDEdit",
    "options_of",
    "EditResult",
    "GuideResult",
    "CycleDiffError",
    "IncompatibleModelError",
    "Latent",
    "LatentFileError",
    "Schedule",
    "TranslateResult",
    "cycle",
    "decode",
    "edit",
    "encode",
    "guide",
    "interpolate",
    "sample_latent",
    "translate",
]

"""Model adapters: every diffusion model becomes a :class:`Denoiser`."""

import logging
import warnings

from .base import BatchedDenoiser, Condition, Denoiser, Model
from .codec import Codec, PixelCodec, VaeCodec, check_same_space, images_of, to_images, to_model_space
from .conditions import as_condition, condition_for
from .flux import Flux
from .guided_diffusion import from_guided_diffusion
from .loading import demo_names, from_pipe, load, load_pair
from .pixel import FlowPixelDenoiser, PixelDenoiser
from .sd3 import StableDiffusion3
from .stable_diffusion import StableDiffusion

# transformers advises installing torchvision whenever diffusers imports an image processor; torchvision's wheels
# do not load beside the pinned torch, and nothing here needs it (the PIL processors are used)
logging.getLogger("transformers.utils.import_utils").addFilter(lambda r: "requires torchvision" not in r.getMessage())

# the optional quantization backends log at import time about kernels this machine does not need (torchao's CUDA
# builds for other GPUs, bitsandbytes' optional CPU kernels, torch's note on their enums); diffusers imports them
# whenever they are installed, so every command would print them. Their real errors still raise.
for _name, _text in (("torchao", "Failed to load"), ("torch.utils._pytree", "is an Enum subclass"),
                     ("bitsandbytes.backends.cpu.ops", "Failed to load CPU"),
                     ("diffusers.quantizers.torchao.torchao_quantizer", "Unable to import `torchao` Tensor"),
                     # a LoRA that does not fit: logged in many lines, then raised (and said in one line by load_lora)
                     ("diffusers.loaders.peft", "was unsuccessful with the following error")):
    logging.getLogger(_name).addFilter(lambda r, _text=_text: _text not in r.getMessage())

# diffusers deprecates its optimum-quanto integration (QuantoConfig, QuantoQuantizer) at every --quantize int8 / int4
# / fp8 load, the first sentence twice: nothing a user can act on while it is the one CPU backend for those types
warnings.filterwarnings("ignore", message=r"`Quanto(Config|Quantizer)` is deprecated", category=FutureWarning)

# the adapters of the newer families, imported when first named (cyclediff.models.QwenImage): the records in
# models/families.py name them, and a command that never uses one does not pay for importing it
_LAZY = {"Chroma": "chroma", "CogView4": "cogview4", "Flux2": "flux2", "HiDreamImage": "hidream_image",
         "Lumina2": "lumina2", "LongCatImage": "longcat_image", "QwenImage": "qwenimage", "Sana": "sana",
         "ZImage": "z_image", "Wan": "wan", "LTXVideo": "ltx", "HunyuanVideo": "hunyuan_video"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BatchedDenoiser", "Codec", "Condition", "Denoiser", "FlowPixelDenoiser", "Flux", "Model", "PixelCodec",
           "PixelDenoiser", "StableDiffusion", "StableDiffusion3", "VaeCodec", "as_condition", "check_same_space",
           "condition_for", "demo_names", "from_guided_diffusion", "from_pipe", "images_of", "load", "load_pair",
           "to_images", "to_model_space", *_LAZY]

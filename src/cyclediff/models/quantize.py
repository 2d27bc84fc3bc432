"""Quantized weights for the denoising network of a text-to-image pipeline, as diffusers loads them: a
``PipelineQuantizationConfig`` over one of diffusers' quantizers. The sampler maths stays in float32: only the
network's weights are stored in the smaller type, and the latent space is the quantized network's own
(``decode(encode(x)) == x`` holds for it exactly, as for any fixed network).

Backends, by ``--quantize`` choice:

- ``int8``, ``int4``, ``fp8``: optimum-quanto (CPUs and GPUs);
- ``torchao-int8``, ``torchao-fp8``: torchao's weight-only configs (CPUs and GPUs);
- ``nf4``, ``bnb-int8``: bitsandbytes (diffusers' bitsandbytes quantizer needs a CUDA GPU).

GGUF files (already quantized) are loaded as ``--model FILE.gguf`` (:mod:`cyclediff.models.gguf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import CycleDiffError
from ..settings import check_setting


@dataclass(frozen=True)
class Backend:
    package: str  # the module the backend imports (its pip name in ``extra``)
    extra: str  # the cyclediff extra that installs it
    cuda_only: bool = False


BACKENDS = {"quanto": Backend("optimum.quanto", "quantize"), "torchao": Backend("torchao", "quantize"),
            "bitsandbytes": Backend("bitsandbytes", "nf4", cuda_only=True)}
# --quantize choice -> (backend, its own name for the type)
CHOICES = {"int8": ("quanto", "int8"), "int4": ("quanto", "int4"), "fp8": ("quanto", "float8"),
           "torchao-int8": ("torchao", "int8"), "torchao-fp8": ("torchao", "float8"),
           "nf4": ("bitsandbytes", "nf4"), "bnb-int8": ("bitsandbytes", "int8")}


def check_quantize(choice: str, device: Any = None) -> Backend:
    """The backend of ``choice``, or one line saying why it cannot run here (not installed, needs a CUDA GPU)."""
    check_setting("quantize", choice, required=True)
    name, _ = CHOICES[choice]
    backend = BACKENDS[name]
    if backend.cuda_only:
        where = torch.device(device) if device is not None else None
        if not torch.cuda.is_available() or (where is not None and where.type != "cuda"):
            raise CycleDiffError(f"--quantize {choice} ({name}) runs on a CUDA GPU only; here use int8, int4 or fp8 "
                                 "(optimum-quanto) or torchao-int8")
    import importlib.util

    try:
        found = importlib.util.find_spec(backend.package) is not None
    except ModuleNotFoundError:  # the parent package of a dotted name (optimum of optimum.quanto) is missing
        found = False
    if not found:
        raise CycleDiffError(f"--quantize {choice} needs {name}: pip install 'cyclediff[{backend.extra}]'")
    return backend


def network_config(choice: str, dtype: torch.dtype | None = None) -> Any:
    """diffusers' quantization config of ``choice`` for one network (compute in ``dtype``, float32 by default)."""
    name, kind = CHOICES[choice]
    compute = dtype or torch.float32
    from ._compat import diffusers_quiet

    with diffusers_quiet():
        if name == "quanto":
            from diffusers import QuantoConfig

            return QuantoConfig(weights_dtype=kind)
        if name == "torchao":
            from diffusers import TorchAoConfig
            from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

            return TorchAoConfig(Int8WeightOnlyConfig() if kind == "int8" else Float8WeightOnlyConfig())
        from diffusers import BitsAndBytesConfig

        if kind == "nf4":
            return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
        return BitsAndBytesConfig(load_in_8bit=True)


def quantization_kwargs(choice: str | None, kind: str, device: Any = None,
                        dtype: torch.dtype | None = None) -> dict[str, Any]:
    """The ``from_pretrained`` keywords that load the ``kind`` pipeline's network quantized to ``choice``, and its
    second network of the same kind where the pipeline has one (Wan 2.2 A14B's low-noise ``transformer_2``;
    diffusers skips a name the pipeline lacks)."""
    if choice is None:
        return {}
    check_setting("quantize", choice)
    from .families import family

    network = family(kind).network
    if network is None:
        raise CycleDiffError("quantized weights are for text-to-image pipelines (Stable Diffusion, SD3, FLUX); "
                             "pixel models are small enough as they are")
    check_quantize(choice, device)
    from diffusers.quantizers import PipelineQuantizationConfig

    mapping = {name: network_config(choice, dtype) for name in (network, f"{network}_2")}
    return {"quantization_config": PipelineQuantizationConfig(quant_mapping=mapping)}


__all__ = ["BACKENDS", "CHOICES", "check_quantize", "network_config", "quantization_kwargs"]

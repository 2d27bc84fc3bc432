"""Quantized weights for the denoising network of a text-to-image pipeline, as diffusers loads them
(``PipelineQuantizationConfig`` with optimum-quanto, which runs on CPUs and GPUs alike). The sampler maths stays
in float32: only the network's weights are stored in the smaller type, and the latent space is the quantized
network's own (``decode(encode(x)) == x`` holds for it exactly, as for any fixed network)."""

from __future__ import annotations

from typing import Any

from ..errors import CycleDiffError

# --quantize choice -> optimum-quanto's weights dtype
QUANTO = {"int8": "int8", "int4": "int4", "fp8": "float8"}
NETWORK = {"latent-diffusion": "unet", "sd3": "transformer", "flux": "transformer"}


def quantization_kwargs(choice: str | None, kind: str) -> dict[str, Any]:
    """The ``from_pretrained`` keywords that load the ``kind`` pipeline's network quantized to ``choice``."""
    if choice is None:
        return {}
    if choice not in QUANTO:
        raise CycleDiffError(f"quantize must be one of {', '.join(QUANTO)}; got {choice!r}")
    if kind not in NETWORK:
        raise CycleDiffError("quantized weights are for text-to-image pipelines (Stable Diffusion, SD3, FLUX); "
                             "pixel models are small enough as they are")
    try:
        import optimum.quanto  # noqa: F401 - the backend diffusers' QuantoConfig needs
    except ImportError as err:
        raise CycleDiffError(f"--quantize {choice} needs optimum-quanto: pip install 'cyclediff[quantize]'") from err
    from diffusers import QuantoConfig
    from diffusers.quantizers import PipelineQuantizationConfig

    from ._compat import diffusers_quiet

    with diffusers_quiet():
        config = QuantoConfig(weights_dtype=QUANTO[choice])
    return {"quantization_config": PipelineQuantizationConfig(quant_mapping={NETWORK[kind]: config})}


__all__ = ["QUANTO", "quantization_kwargs"]

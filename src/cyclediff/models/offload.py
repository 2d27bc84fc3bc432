"""Weights offloaded to the CPU between uses, as diffusers offloads a pipeline, for models that do not fit the GPU:

- ``model``: each network (text encoders, UNet / transformer, VAE) comes to the GPU whole when it runs and stays
  there until the next one runs (diffusers' ``enable_model_cpu_offload``; memory: the largest network);
- ``sequential``: each leaf layer comes to the GPU for its own call (``enable_sequential_cpu_offload``; the least
  memory, the slowest);
- ``group``: blocks of layers come in turn, with CUDA streams prefetching the next block where the device has them
  (``enable_group_offload``; memory near ``sequential``'s at a fraction of its cost).

The adapters call their networks directly (the batched branches, not the pipeline's ``__call__``); the hooks
diffusers installs are on the modules themselves, so every call goes through them. What changes is where the
inputs are made: on the *execution* device, which the adapter and its codec are told here (the weights' own
device is the CPU, or ``meta`` under sequential offloading).

``text_encoders_on_cpu``: the text encoders stay on the CPU and run there, once per prompt (their embeddings go to
the device); the device never holds them (FLUX's T5-XXL is about a third of its weights).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..errors import CycleDiffError
from ..settings import CHOICES, check_setting

MODES = CHOICES["offload"]  # model, sequential, group
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


def check_offload(mode: str | None) -> None:
    check_setting("offload", mode)


def offload(model: Any, mode: str, device: str | torch.device) -> Any:
    """``model``'s pipeline offloaded to the CPU by ``mode``, its networks run on ``device`` (which may be the CPU
    itself: the hooks then move nothing, which is how the tests check that every call goes through them)."""
    check_offload(mode)
    pipe = model.pipe
    onload = torch.device(device)
    from ._compat import diffusers_quiet

    with diffusers_quiet():
        if mode == "model":
            pipe.enable_model_cpu_offload(device=onload)
        elif mode == "sequential":
            pipe.enable_sequential_cpu_offload(device=onload)
        else:
            cuda = onload.type == "cuda"
            pipe.enable_group_offload(onload_device=onload, offload_device=torch.device("cpu"),
                                      offload_type="leaf_level" if cuda else "block_level",
                                      num_blocks_per_group=None if cuda else 1, use_stream=cuda)
    if onload.type == "cuda" and onload.index is None:
        onload = torch.device("cuda", torch.cuda.current_device())
    model.execution_device = onload
    model.codec.execution_device = onload
    return model


def offload_or_note(model: Any, mode: str | None, device: str | torch.device | None) -> Any:
    """:func:`offload` on a GPU; on the CPU a one-line note (everything is in CPU memory already) and nothing else."""
    check_offload(mode)
    if mode is None:
        return model
    check_pipeline(model, "offloading")
    where = torch.device(device) if device is not None else None
    if where is None or where.type == "cpu":
        warnings.warn(f"--offload {mode} moves weights between the CPU and a GPU; this run is on the CPU, where "
                      "they already are: running without offloading", stacklevel=3)
        return model
    return offload(model, mode, where)


def text_encoders_to_cpu(model: Any) -> Any:
    """The model's text encoders on the CPU, run there (their embeddings then go to the model's device)."""
    check_pipeline(model, "text encoders on the CPU")
    pipe = model.pipe
    for name in TEXT_ENCODERS:
        module = getattr(pipe, name, None)
        if module is not None:
            module.to("cpu")
    model.text_encoders_device = torch.device("cpu")
    return model


def check_pipeline(model: Any, what: str) -> None:
    from .pipelines import PromptModel

    if not isinstance(model, PromptModel):
        raise CycleDiffError(f"{what} is for text-to-image pipelines (Stable Diffusion, SD3, FLUX); this model is "
                             f"{model.kind}, small enough as it is")


def device_bytes(model: Any, device: str | torch.device) -> int:
    """Bytes of the pipeline's weights that sit on ``device`` now (what offloading and CPU text encoders save)."""
    where = torch.device(device)
    total = 0
    for module in model.pipe.components.values():
        if isinstance(module, torch.nn.Module):
            for tensor in [*module.parameters(), *module.buffers()]:
                if tensor.device.type == where.type:
                    total += tensor_bytes(tensor)
    return total


def tensor_bytes(tensor: torch.Tensor) -> int:
    """The bytes a tensor stores: a quantized tensor subclass (quanto's, torchao's) by its inner tensors."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is None:
        return tensor.numel() * tensor.element_size()
    names, _ = flatten()
    return sum(tensor_bytes(getattr(tensor, n)) for n in names)


__all__ = ["MODES", "check_offload", "device_bytes", "offload", "offload_or_note", "text_encoders_to_cpu"]

"""How an adapter calls its UNet: eager, or compiled (``torch.compile``) with CUDA-graph replay, channels-last.

Every UNet call of the sampler core goes through :class:`UNetRunner`, so one ``optimize()`` on a model speeds up
edit, translate, encode, decode and sample alike. The sampler maths around the call stays eager and in the
images' dtype (float32), so a compiled model computes the same function up to the UNet's own rounding.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import CycleDiffError

BACKENDS = ("inductor", "cudagraphs", "aot_eager", "eager")


class UNetRunner:
    """Calls ``module(x, t, **kwargs)`` and returns its raw output tensor in ``out_dtype``.

    ``compiled`` is the ``torch.compile`` of the module for calls without autograd; ``compiled_grad`` (when asked
    for) another one for calls under autograd (guidance back-propagates through the sampler: its forward and
    backward graphs are compiled, without CUDA graphs); otherwise gradients go through the eager module.
    ``cudagraphs`` marks each call as a new CUDA-graph step and copies the output out of the graph's static
    buffer before the next replay can overwrite it.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.compiled: Any = None
        self.compiled_grad: Any = None
        self.channels_last = False
        self.cudagraphs = False

    @property
    def settings(self) -> dict[str, Any]:
        return {"compiled": self.compiled is not None, "channels_last": self.channels_last,
                "cuda_graphs": self.cudagraphs}

    @property
    def compiled_backward(self) -> bool:
        """Whether calls under autograd go through a compiled UNet (``optimize(grad=True)``)."""
        return self.compiled_grad is not None

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, out_dtype: torch.dtype, *, eager: bool = False,
                 **kwargs: Any) -> torch.Tensor:
        # one layout for every call: a compiled graph is specialised to its inputs' strides
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        if torch.is_grad_enabled():
            module = self.module if self.compiled_grad is None else self.compiled_grad
            return module(x, timesteps, return_dict=False, **kwargs)[0].to(out_dtype)
        if self.compiled is None or eager:  # eager: e.g. attention control, which swaps the attention processors
            return self.module(x, timesteps, return_dict=False, **kwargs)[0].to(out_dtype)
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.compiled(x, timesteps, return_dict=False, **kwargs)[0]
        return out.to(out_dtype, copy=self.cudagraphs)

    def optimize(self, *, compile: bool, backend: str, mode: str | None, channels_last: bool | None,
                 fullgraph: bool, device: torch.device, grad: bool = False) -> None:
        if backend not in BACKENDS:
            raise CycleDiffError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        cuda = device.type == "cuda"
        self.channels_last = (cuda and compile) if channels_last is None else bool(channels_last)
        self.module.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        if not compile:
            self.compiled, self.compiled_grad, self.cudagraphs = None, None, False
            return
        self.compiled_grad = torch.compile(self.module, backend=backend, dynamic=False, fullgraph=fullgraph) \
            if grad else None
        if mode is None and backend == "inductor" and cuda:
            mode = "reduce-overhead"  # inductor kernels replayed as CUDA graphs
        self.cudagraphs = cuda and (backend == "cudagraphs" or mode in ("reduce-overhead", "max-autotune"))
        options: dict[str, Any] = {"backend": backend, "dynamic": False, "fullgraph": fullgraph}
        if mode is not None:
            options["mode"] = mode
        self.compiled = torch.compile(self.module, **options)


class Optimizable:
    """``optimize()`` for adapters that call their UNet through ``self.runner``."""

    runner: UNetRunner
    device: torch.device

    def optimize(self, *, compile: bool = True, backend: str = "inductor", mode: str | None = None,
                 channels_last: bool | None = None, fullgraph: bool = False, grad: bool = False) -> Any:
        """Speed up every UNet call of this model; returns the model.

        ``compile=True``: ``torch.compile`` the UNet (``backend="inductor"``; on CUDA with ``mode=
        "reduce-overhead"`` by default, so the compiled kernels replay as CUDA graphs; ``backend="cudagraphs"``
        captures CUDA graphs of the eager kernels, with no inductor code generation). Each new
        batch shape compiles once more. ``channels_last`` (default: on CUDA when compiling) stores the UNet's
        weights and inputs in NHWC, which cuDNN's half-precision convolutions prefer. ``grad=True`` also compiles
        the UNet for calls under autograd (guidance: the forward and backward through the sampler; no CUDA
        graphs), which otherwise use the eager UNet. ``compile=False`` undoes the compilation.
        """
        self.runner.optimize(compile=compile, backend=backend, mode=mode, channels_last=channels_last,
                             fullgraph=fullgraph, device=torch.device(self.device), grad=grad)
        return self

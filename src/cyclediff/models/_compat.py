"""Differences between diffusers releases that the loaders must bridge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def dtype_kwargs(dtype: torch.dtype | None) -> dict[str, Any]:
    """The keyword for a weights dtype in ``from_pretrained`` / ``from_single_file``: diffusers 0.42 renamed
    ``torch_dtype`` to ``dtype`` (the old name still works there, with a deprecation warning)."""
    if dtype is None:
        return {}
    import diffusers
    from packaging.version import Version

    return {"dtype" if Version(diffusers.__version__).release >= (0, 42) else "torch_dtype": dtype}


@contextlib.contextmanager
def diffusers_quiet() -> Iterator[None]:
    """diffusers' and transformers' logging silenced for the block (the truncation log repeats the whole cut text;
    loading and casting log warnings that cyclediff says once, in its own words, where they matter)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])

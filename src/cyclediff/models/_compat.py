"""Differences between diffusers releases that the loaders must bridge."""

from __future__ import annotations

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

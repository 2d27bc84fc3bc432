"""Checkpoint files as read before any model is built: their tensor names, and the pickles refused unread."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CycleDiffError


def check_not_legacy_pickle(path: Path) -> None:
    """Pickle checkpoints load only in PyTorch's zip format with ``weights_only``; a legacy (zip-less) pickle
    cannot be loaded safely, so it is refused with what to do instead."""
    import zipfile

    if path.suffix.lower() == ".safetensors":
        return
    if not zipfile.is_zipfile(path):
        raise CycleDiffError(
            f"{path} is a legacy pickle checkpoint (not PyTorch's zip format), which cannot be loaded without "
            "running code from the file; convert it to .safetensors where you trust it (e.g. torch.load then "
            "safetensors.torch.save_file) and pass that file"
        )


def checkpoint_keys(path: Path) -> list[str]:
    """The tensor names of a checkpoint file: read from the safetensors header, or a memory-mapped .ckpt."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            keys = list(state.get("state_dict", state))
    except Exception as err:  # noqa: BLE001 - torch and safetensors raise many kinds for a bad file
        import re

        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found or "Weights only load failed" in str(err):  # PyTorch's six lines on weights_only
            what = f" ({found.group(1)})" if found else ""
            raise CycleDiffError(f"{path.name} holds Python objects besides tensors{what}, which load only by running "
                                 "code from the file; convert it to .safetensors where you trust it (e.g. torch.load "
                                 "then safetensors.torch.save_file) and pass that file") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CycleDiffError(f"{path} is not a readable checkpoint: {first}") from err
    return keys


def looks_local(source: str) -> bool:
    """A spec that can only be a path (a hub id is ``name`` or ``org/name``)."""
    return (source.startswith(("/", "./", "../", "~", ".\\")) or source.count("/") > 1 or "\\" in source
            or Path(source).exists())

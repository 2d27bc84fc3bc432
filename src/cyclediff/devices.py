"""The device rule, one for every front end: the command line's ``--device``, a job file's ``device`` (and the
benchmark's, which runs as a job) and the web server's. A device is ``auto`` (CUDA when there is one, else the
CPU), ``cpu``, ``cuda`` / ``cuda:N`` or ``mps``; naming one that is not here is refused in one line naming the
fix. Under ``accelerate launch`` each rank takes its own GPU (:func:`cyclediff.jobs.run.distributed`)."""

from __future__ import annotations

import torch

from .errors import CycleDiffError

KINDS = ("cpu", "cuda", "mps")


def check_device(name: object) -> torch.device | None:
    """The device ``name`` names (None for ``auto``), or one error: an unknown name or kind."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)  # type: ignore[arg-type]
    except (RuntimeError, TypeError) as err:
        raise CycleDiffError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from err
    if device.type not in KINDS:
        raise CycleDiffError(f"cyclediff runs on cpu, cuda or mps, not {device.type}: the device must be auto, cpu or "
                             "cuda (cuda:N), or mps")
    return device


def resolve_device(name: object) -> torch.device:
    """The device to run on: ``name`` checked (:func:`check_device`) and present here."""
    device = check_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CycleDiffError("CUDA is not available here; use device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CycleDiffError(f"there is no {device} here ({torch.cuda.device_count()} GPUs: cuda:0 to "
                             f"cuda:{torch.cuda.device_count() - 1}); use cuda or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CycleDiffError("MPS (Apple GPU) is not available here; use device cpu (or auto)")
    return device


__all__ = ["KINDS", "check_device", "resolve_device"]

"""GGUF files (llama.cpp's format, the community's Q8_0 / Q5 / Q4 FLUX and SD3.5 files): one quantized denoising
network, loaded with diffusers' ``from_single_file`` and its GGUF quantizer (weights stay quantized, dequantised
layer by layer in torch at each call, in ``dtype``). The rest of the pipeline (text encoders, VAE, scheduler) comes
from ``base``: a hub id or a local diffusers folder of the same architecture, by default the official one.

The architecture is read from the file before anything loads: its tensor names (diffusers' or the original
layout, both of which diffusers converts) and its ``general.architecture`` field; a GGUF of something else (a
language model, another image architecture) is one line naming what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError
from .families import family, family_of_keys


def read_gguf(path: Path) -> tuple[str | None, list[str]]:
    """(``general.architecture`` or None, tensor names) of a GGUF file, without reading its tensors' data."""
    try:
        from gguf import GGUFReader
    except ImportError as err:
        raise CycleDiffError("GGUF files need the gguf package: pip install 'cyclediff[gguf]'") from err
    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # noqa: BLE001 - numpy / struct errors of a damaged or foreign file
        raise CycleDiffError(f"{path.name} is not a readable GGUF file: {err}") from err
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode(errors="replace") if field is not None else None
    return arch, [t.name for t in reader.tensors]


def gguf_kind(path: Path, arch: str | None, keys: list[str]) -> str:
    """The model family of the GGUF file ``path``'s network, from its tensor names (:func:`read_gguf`,
    :func:`~cyclediff.models.families.family_of_keys`); anything else is refused in one line."""
    found = family_of_keys(keys)
    if found is not None and found.network_class is not None:
        return found.name
    what = f"a {arch} model" if arch else "no network cyclediff knows"
    raise CycleDiffError(f"{path.name} holds {what}, not a diffusion network cyclediff loads from GGUF (FLUX.1, "
                         "SD3 / SD3.5, a Stable Diffusion UNet)")


def default_base(kind: str, keys: list[str]) -> str:
    """The official pipeline of a GGUF network's architecture (its text encoders, VAE and scheduler)."""
    record = family(kind)
    if record.gguf_base is None:
        raise CycleDiffError("a GGUF Stable Diffusion UNet needs the pipeline it belongs to: pass --base (a hub id or "
                             "a local diffusers folder of that model)")
    return record.gguf_base(keys)


def load_gguf(path: Path, base: str | None, dtype: torch.dtype | None, device: Any, base_kind: Any) -> Any:
    """The adapter (its family record's) of the pipeline ``base`` with its network from the GGUF file ``path``;
    ``base_kind(spec)`` is the family of ``base``, which must be the file's."""
    import diffusers

    arch, keys = read_gguf(path)
    kind = gguf_kind(path, arch, keys)
    record = family(kind)
    given = base
    if given is not None:
        check_base(given, kind)
    base = base or default_base(kind, keys)
    try:
        found = base_kind(base)
    except CycleDiffError as err:
        if given is not None and Path(given).expanduser().is_dir():
            raise CycleDiffError(f"--base {given} is not a diffusers pipeline folder (no model_index.json); give the "
                                 f"pipeline folder or hub id of {record.title}") from err
        if given is not None:
            raise
        raise CycleDiffError(f"{path.name} holds only the {record.title} network; its pipeline (text encoders, VAE, "
                             f"scheduler) defaults to {base}, which is not reachable here: pass --base a local "
                             "diffusers folder of that model") from err
    if found != kind:
        raise CycleDiffError(f"{path.name} is a {record.title} network but the base {base} is a "
                             f"{family(found).title} pipeline: pass --base of the file's architecture")
    name, folder = record.network_class, record.network
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    from ._compat import diffusers_quiet, dtype_kwargs

    compute = dtype or torch.float32
    check_complete(path, keys, kind, base)
    try:
        with diffusers_quiet():
            network = getattr(diffusers, name).from_single_file(
                str(path), config=str(base), subfolder=folder, **dtype_kwargs(compute),
                quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=compute))
    except (IndexError, SingleFileComponentError) as err:  # diffusers' conversion, short of a tensor it needs
        raise CycleDiffError(f"{path.name} is incomplete or not a {record.title} network diffusers converts: tensors "
                             "its conversion needs are missing; download the file again") from err
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise mismatch(path, err, base) or CycleDiffError(
            f"{path.name} does not fit the {folder} of {base}: {str(err).splitlines()[0]} (pass --base of the model "
            "the file was made from)") from err
    model = record.adapter_class().from_pretrained(base, dtype=compute, device=device, **{folder: network})
    model.model_id = str(path)
    return model


def check_base(base: str, kind: str) -> None:
    """--base of a GGUF network: a diffusers pipeline folder or hub id; a demo model, a file or a folder that does
    not exist are named as such (not as a hub id that cannot be reached)."""
    from .checkpoints import looks_local as _looks_local

    what = f"a diffusers pipeline folder or hub id of {family(kind).title}"
    if base.startswith("demo:"):
        raise CycleDiffError(f"--base must be {what}; {base} is a demo pixel model")
    where = Path(base).expanduser()
    if _looks_local(base) and not where.exists():
        raise CycleDiffError(f"no such folder: {base} (--base: {what})")
    if where.is_file():
        raise CycleDiffError(f"--base must be {what}, not a file ({where.name})")


def check_complete(path: Path, keys: list[str], kind: str, base: str) -> None:
    """A file in diffusers' layout holds every tensor of the network ``base``'s config builds (built without
    weights); one that lacks some (a cut download) is one line naming them. A file in the original layout is
    diffusers' conversion's to check."""
    import diffusers
    from accelerate import init_empty_weights

    from ._compat import diffusers_quiet

    record = family(kind)
    cls = getattr(diffusers, record.network_class)
    try:
        with diffusers_quiet(), init_empty_weights():
            expected = list(cls.from_config(cls.load_config(str(base), subfolder=record.network)).state_dict())
    except Exception:  # noqa: BLE001 - a config diffusers cannot build: from_single_file says why
        return
    found = set(keys)
    if len(found.intersection(expected)) < len(found) / 2:  # the original layout
        return
    missing = [k for k in expected if k not in found]
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        raise CycleDiffError(f"{path.name} is incomplete: it lacks {len(missing)} of the {len(expected)} tensors of "
                             f"the {record.title} network ({shown}); download the file again")


def mismatch(path: Path, err: Exception, base: str) -> CycleDiffError | None:
    """One line for a file whose tensor shapes are not the architecture of ``base`` (diffusers' message advises
    ``ignore_mismatched_sizes``, which would load random weights); None for other errors."""
    import re

    found = re.search(r"(\S+) expected shape torch.Size\((\[[\d, ]*\])\), but got torch.Size\((\[[\d, ]*\])\)",
                      str(err))
    if found is None:
        return None
    return CycleDiffError(f"the tensor shapes of {path.name} do not match the architecture of --base {base} (e.g. "
                          f"{found.group(1)}: {found.group(3)} in the file, {found.group(2)} in the base): pass "
                          "--base of the model the file was made from")


__all__ = ["check_base", "check_complete", "default_base", "gguf_kind", "load_gguf", "mismatch", "read_gguf"]

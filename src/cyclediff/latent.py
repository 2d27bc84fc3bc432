"""The stochastic latent code z = x_start ⊕ ε_{t_K} ⊕ … ⊕ ε_{t_1}, and its file format.

A latent file is a safetensors file with two tensors, ``x_start`` (B, C, H, W) and ``eps`` (K, B, C, H, W), and
one metadata entry ``cyclediff`` holding JSON: the format name and version and every field decoding needs.
Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write
from .errors import LatentFileError

FORMAT = "cyclediff.latent"
FORMAT_VERSION = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True, eq=False)
class Latent:
    """The Gaussian draws that make a stochastic sampler produce one batch of images, with what decoding needs.

    ``eps[k]`` is the draw of step k (timestep ``timesteps[k]``). Where ``residual[k]`` is true the step is
    deterministic (its std is 0, e.g. the last DDIM step when the final ᾱ is 1) and ``eps[k]`` holds the exact
    residual x_s − mean instead of a Gaussian draw; guidance keeps such entries fixed.
    """

    x_start: torch.Tensor
    eps: torch.Tensor
    timesteps: tuple[int, ...]
    residual: tuple[bool, ...]
    sampler: str
    eta: float
    steps: int
    strength: float
    num_train_timesteps: int
    schedule_fingerprint: str
    variance_type: str = "fixed_small"
    model_id: str | None = None
    condition: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "timesteps", tuple(int(t) for t in self.timesteps))
        object.__setattr__(self, "residual", tuple(bool(r) for r in self.residual))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(self.seeds))
        problem = self._inconsistency()
        if problem:
            raise ValueError(f"inconsistent latent: {problem}")

    def _inconsistency(self) -> str | None:
        x, eps = self.x_start, self.eps
        if x.ndim != 4:
            return f"x_start must be (B, C, H, W), got shape {tuple(x.shape)}"
        if eps.ndim != 5 or tuple(eps.shape[1:]) != tuple(x.shape):
            return f"eps must be (K, *x_start.shape) = (K, {tuple(x.shape)}), got {tuple(eps.shape)}"
        if eps.dtype != x.dtype:
            return f"eps is {eps.dtype} but x_start is {x.dtype}"
        k = eps.shape[0]
        if len(self.timesteps) != k or len(self.residual) != k:
            return f"{k} eps entries but {len(self.timesteps)} timesteps and {len(self.residual)} residual flags"
        if list(self.timesteps) != sorted(set(self.timesteps), reverse=True):
            return f"timesteps must be strictly descending, got {list(self.timesteps)}"
        if self.seeds is not None and len(self.seeds) != x.shape[0]:
            return f"{len(self.seeds)} seeds for a batch of {x.shape[0]}"
        return None

    # ------------------------------------------------------------------ views
    @property
    def batch_size(self) -> int:
        return int(self.x_start.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_start.shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return self.x_start.dtype

    @property
    def device(self) -> torch.device:
        return self.x_start.device

    def to(self, *args: Any, **kwargs: Any) -> Latent:
        """Move / cast both tensors (arguments as for ``torch.Tensor.to``)."""
        return replace(self, x_start=self.x_start.to(*args, **kwargs), eps=self.eps.to(*args, **kwargs))

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, index: int | slice | list[int]) -> Latent:
        """The latent of some samples of the batch (an int keeps a batch dimension of 1)."""
        idx = list(range(self.batch_size))[index] if not isinstance(index, list) else index
        idx = [idx] if isinstance(idx, int) else idx
        if not idx:
            raise IndexError("a latent needs at least one sample")
        sel = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        condition = {
            k: ([v[i] for i in idx] if isinstance(v, list) and len(v) == self.batch_size else v)
            for k, v in self.condition.items()
        }
        seeds = None if self.seeds is None else tuple(self.seeds[i] for i in idx)
        return replace(self, x_start=self.x_start[sel], eps=self.eps[:, sel], condition=condition, seeds=seeds)

    # ------------------------------------------------------------------ files
    def metadata(self) -> dict[str, Any]:
        """The JSON part of a latent file (everything but the tensors)."""
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("x_start", "eps")}
        meta["timesteps"], meta["residual"] = list(self.timesteps), list(self.residual)
        meta["seeds"] = None if self.seeds is None else list(self.seeds)
        meta.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            dtype=_dtype_name(self.dtype),
            shape=list(self.x_start.shape),
            steps_stored=int(self.eps.shape[0]),
        )
        return meta

    def save(self, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> Path:
        """Write a ``.latent.safetensors`` file atomically (temporary file in the same folder, then rename).

        ``dtype=torch.float16`` halves the file; decoding such a file is no longer exact (about 1e-3).
        """
        from safetensors.torch import save_file

        store = dtype or self.dtype
        if store not in DTYPES.values():
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {store}")
        tensors = {
            "x_start": self.x_start.detach().to("cpu", store).contiguous(),
            "eps": self.eps.detach().to("cpu", store).contiguous(),
        }
        for name, t in tensors.items():
            if not torch.isfinite(t).all():
                raise ValueError(
                    f"{name} is not finite when stored as {_dtype_name(store)}"
                    + ("; store it at full precision (dtype=None)" if store != self.dtype else "")
                )
        meta = json.dumps(self.metadata())
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"cyclediff": meta}))

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Latent:
        """Read a latent file, validating everything; raises :class:`LatentFileError` naming the problem."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise LatentFileError(f"{path}: no such file")
        try:
            with safe_open(str(path), framework="pt") as f:
                raw_meta = (f.metadata() or {}).get("cyclediff")
                names = set(f.keys())
                tensors = {n: f.get_tensor(n) for n in ("x_start", "eps") if n in names}
        except (SafetensorError, OSError, RuntimeError, ValueError) as err:
            raise LatentFileError(
                f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
            ) from err
        if raw_meta is None:
            raise LatentFileError(f"{path} is a safetensors file but not a cyclediff latent (no 'cyclediff' metadata)")
        try:
            meta = json.loads(raw_meta)
        except json.JSONDecodeError as err:
            raise LatentFileError(f"{path}: the latent metadata is not valid JSON ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise LatentFileError(f"{path} is not a cyclediff latent (format is {meta.get('format')!r})")
        version = meta.get("format_version")
        if not isinstance(version, int):
            raise LatentFileError(f"{path}: the latent metadata has no format_version")
        if version > FORMAT_VERSION:
            raise LatentFileError(
                f"{path} was written in latent format {version}, newer than this cyclediff reads "
                f"({FORMAT_VERSION}); upgrade cyclediff"
            )
        missing = {"x_start", "eps"} - set(tensors)
        if missing:
            raise LatentFileError(f"{path} is missing the tensor(s) {', '.join(sorted(missing))}")
        dtype = DTYPES.get(meta.get("dtype", ""))
        if dtype is None:
            raise LatentFileError(f"{path}: unknown dtype {meta.get('dtype')!r} in the metadata")
        x_start, eps = tensors["x_start"], tensors["eps"]
        shape, k = meta.get("shape"), meta.get("steps_stored")
        if list(x_start.shape) != shape or list(eps.shape) != [k, *(shape or [])]:
            raise LatentFileError(
                f"{path}: tensor shapes x_start {tuple(x_start.shape)}, eps {tuple(eps.shape)} contradict the "
                f"metadata (shape {shape}, {k} steps)"
            )
        if x_start.dtype != eps.dtype or x_start.dtype not in DTYPES.values():
            raise LatentFileError(f"{path}: stored dtypes {x_start.dtype} / {eps.dtype} are not a latent's")
        if x_start.dtype != dtype and x_start.element_size() >= dtype.itemsize:
            raise LatentFileError(
                f"{path}: tensors are stored as {x_start.dtype} but the metadata says {meta['dtype']}"
            )
        for name, t in tensors.items():
            if not torch.isfinite(t).all():
                raise LatentFileError(f"{path}: {name} contains NaN or Inf values")
        kwargs = {f.name: meta[f.name] for f in fields(cls) if f.name in meta and f.name not in ("x_start", "eps")}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        required -= {"x_start", "eps"}
        absent = sorted(required - set(kwargs))
        if absent:
            raise LatentFileError(f"{path}: the latent metadata lacks {', '.join(absent)}")
        try:
            return cls(x_start=x_start.to(device, dtype), eps=eps.to(device, dtype), **kwargs)
        except (ValueError, TypeError) as err:
            raise LatentFileError(f"{path}: {err}") from err

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (the file metadata, plus value statistics of the Gaussian parts)."""
        meta = self.metadata()
        gaussian = [self.eps[k] for k, r in enumerate(self.residual) if not r]
        if gaussian:
            g = torch.stack(gaussian).double()
            meta["eps_mean"], meta["eps_std"] = float(g.mean()), float(g.std())
        return meta


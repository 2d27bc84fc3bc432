"""The stochastic latent code z = x_start ⊕ ε_{t_K} ⊕ … ⊕ ε_{t_1}, and its file format.

A latent file is a safetensors file with two tensors, ``x_start`` (B, C, H, W) and ``eps`` (K, B, C, H, W), and
one metadata entry ``cyclediff`` holding JSON: the format name and version and every field decoding needs.
Loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from ._files import atomic_write
from .checks import json_object
from .errors import LatentFileError
from .schedule import steps_run
from .settings import ENCODE, ENCODERS
from .transitions import SAMPLERS

FORMAT = "cyclediff.latent"
# 2: the metadata carries a SHA-256 of the stored tensor bytes, checked on load (version 1 files have none)
# 3: that SHA-256 covers the metadata too (η, timesteps, condition …: a flipped bit there decodes another image)
FORMAT_VERSION = 3
# the fields each version brought (3: also the optional model_kind and loading): a file of an older version that
# carries one had its header edited (a relabelled version would skip the newer checks)
SINCE = {"sha256": 2, "path": 2, "encoder": 3, "model_kind": 3, "loading": 3}
PATHS = ("vp", "rectified_flow")  # x_t = √ᾱ·x0 + √(1 − ᾱ)·ε, or (1 − σ)·x0 + σ·ε
VARIANCE_TYPES = ("fixed_small", "fixed_large", "learned_range")
_MAX_SEED = 2**64 - 1
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
    path: str = "vp"  # the Gaussian path: "vp" (DDPM / DDIM grids, integer timesteps) or "rectified_flow"
    encoder: str = ENCODE.encoder  # which encoder made it (settings.ENCODERS); decoding is the same for all
    model_kind: str | None = None  # the encoding model's family in words (its adapter's ``kind``)
    loading: dict[str, Any] | None = None  # how that model was changed at loading (RunOptions.model_record)

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise ValueError(f"inconsistent latent: path must be one of {', '.join(PATHS)}; got {self.path!r}")
        timestep_ok = _is_int if self.path == "vp" else _is_number
        if not isinstance(self.timesteps, (list, tuple)) or not all(timestep_ok(t) for t in self.timesteps):
            raise ValueError(f"inconsistent latent: timesteps must be a list of "
                             f"{'integers' if self.path == 'vp' else 'numbers'}; got {self.timesteps!r}")
        if not isinstance(self.residual, (list, tuple)) or not all(isinstance(r, bool) for r in self.residual):
            raise ValueError(f"inconsistent latent: residual must be a list of true/false; got {self.residual!r}")
        if self.seeds is not None and not isinstance(self.seeds, (list, tuple)):
            raise ValueError(f"inconsistent latent: seeds must be a list or null; got {self.seeds!r}")
        object.__setattr__(self, "timesteps", tuple((int if self.path == "vp" else float)(t) for t in self.timesteps))
        object.__setattr__(self, "residual", tuple(self.residual))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(self.seeds))
        problem = self._inconsistency()
        if problem:
            raise ValueError(f"inconsistent latent: {problem}")

    def _inconsistency(self) -> str | None:
        problem = _field_problem(self)
        if problem:
            return problem
        x, eps = self.x_start, self.eps
        if x.is_meta or eps.is_meta:
            return "x_start and eps are on the meta device (shapes without values); make them on the CPU or a GPU"
        if x.ndim not in (4, 5):
            return f"x_start must be (B, C, H, W) (or (B, C, F, H, W) for clips), got shape {tuple(x.shape)}"
        if eps.ndim != x.ndim + 1 or tuple(eps.shape[1:]) != tuple(x.shape):
            return f"eps must be (K, *x_start.shape) = (K, {tuple(x.shape)}), got {tuple(eps.shape)}"
        if eps.dtype != x.dtype:
            return f"eps is {eps.dtype} but x_start is {x.dtype}"
        k = eps.shape[0]
        if len(self.timesteps) != k or len(self.residual) != k:
            return f"{k} eps entries but {len(self.timesteps)} timesteps and {len(self.residual)} residual flags"
        if list(self.timesteps) != sorted(set(self.timesteps), reverse=True):
            return f"timesteps must be strictly descending, got {list(self.timesteps)}"
        flow = self.path == "rectified_flow"  # σ·T in (0, T]; VP: integer timesteps in 0..T−1
        if (self.timesteps[0] > self.num_train_timesteps or self.timesteps[-1] <= 0) if flow else (
                self.timesteps[0] >= self.num_train_timesteps or self.timesteps[-1] < 0):
            return f"timesteps {list(self.timesteps)} leave the model's range 0..{self.num_train_timesteps}"
        run = steps_run(self.steps, self.strength, "skip" if flow else "floor")  # each path's pipelines' cut
        if k != run or self.steps > self.num_train_timesteps:
            return (f"{k} steps stored, but steps={self.steps} at strength={self.strength} on "
                    f"{self.num_train_timesteps} training timesteps runs {run}")
        if any(self.residual[:-1]) and self.eta != 0:  # η = 0 (a sampled ODE): every step is a zero residual
            return ("only the last step can be deterministic (a residual); the residual flags are "
                    f"{list(self.residual)}")
        if self.seeds is not None and len(self.seeds) != x.shape[0]:
            return f"{len(self.seeds)} seeds for a batch of {x.shape[0]}"
        return None

    @classmethod
    def from_draws(cls, schedule: Any, model_id: str | None, *, x_start: torch.Tensor, eps: torch.Tensor,
                   timesteps: Any, residual: Any, sampler: str, eta: float, steps: int, strength: float,
                   condition: dict[str, Any], seeds: tuple[int, ...] | None,
                   encoder: str = ENCODE.encoder, model_kind: str | None = None) -> Latent:
        """The latent of one run's draws on ``schedule`` (its size, fingerprint and variance type recorded)."""
        return cls(x_start=x_start, eps=eps, timesteps=tuple(timesteps), residual=tuple(residual), sampler=sampler,
                   eta=eta, steps=steps, strength=float(strength), num_train_timesteps=schedule.num_train_timesteps,
                   schedule_fingerprint=schedule.fingerprint(), variance_type=schedule.variance_type,
                   model_id=model_id, condition=condition, seeds=seeds, path=schedule.path, encoder=encoder,
                   model_kind=model_kind)

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
        if self.path == "vp":  # VP files keep the layout they always had
            del meta["path"]
        for name in ("model_kind", "loading"):  # optional: absent when unknown
            if meta[name] is None:
                del meta[name]
        meta.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            dtype=_dtype_name(self.dtype),
            shape=list(self.x_start.shape),
            steps_stored=int(self.eps.shape[0]),
        )
        return meta

    def save(self, path: str | os.PathLike, *, dtype: torch.dtype | None = None,
             record: dict[str, Any] | None = None) -> Path:
        """Write a ``.latent.safetensors`` file atomically (temporary file in the same folder, then rename).

        ``dtype=torch.float16`` halves the file; decoding such a file is no longer exact (about 1e-3).
        ``record``: JSON-able settings stored beside the metadata (not read by :meth:`load`).
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
        described = self.metadata()
        meta = {"cyclediff": json.dumps({**described, "sha256": checksum(tensors, described)})}
        if record is not None:  # how the file was made (the CLI's settings), for its skip decision
            meta["cyclediff.record"] = json.dumps(record, default=str)
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

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
            looks = looks_like(path)
            if looks:
                raise LatentFileError(f"{path} is not a latent file: it looks like {looks} (latent files are "
                                      "the .latent.safetensors files cyclediff encode writes)") from err
            raise LatentFileError(
                f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
            ) from err
        if raw_meta is None:
            raise LatentFileError(f"{path} is a safetensors file but not a cyclediff latent (no 'cyclediff' metadata)")
        meta = json_object(raw_meta, f"{path}: the latent metadata", LatentFileError)
        if meta.get("format") != FORMAT:
            raise LatentFileError(f"{path} is not a cyclediff latent (format is {meta.get('format')!r})")
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise LatentFileError(f"{path}: the latent metadata has no format_version")
        if version < 1:
            raise LatentFileError(f"{path}: latent format {version} does not exist (versions start at 1)")
        if version > FORMAT_VERSION:
            raise LatentFileError(
                f"{path} was written in latent format {version}, newer than this cyclediff reads "
                f"({FORMAT_VERSION}); upgrade cyclediff"
            )
        newer = [f"{k} (format {since} on)" for k, since in SINCE.items() if k in meta and version < since]
        if newer:
            raise LatentFileError(
                f"{path}: latent format {version} has no {', '.join(newer)}, yet the file carries "
                f"{'them' if len(newer) > 1 else 'it'}: its header was edited; encode the image again"
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
        if version >= 2 and meta.get("sha256") != checksum(tensors, meta if version >= 3 else None):
            what = "tensor bytes and metadata" if version >= 3 else "tensor bytes"
            raise LatentFileError(
                f"{path}: the {what} do not match the checksum in the metadata (the file was corrupted or "
                "edited); encode the image again"
            )
        kwargs = {f.name: meta[f.name] for f in fields(cls) if f.name in meta and f.name not in ("x_start", "eps")}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        required -= {"x_start", "eps"}
        absent = sorted(required - set(kwargs))
        if absent:
            raise LatentFileError(f"{path}: the latent metadata lacks {', '.join(absent)}")
        try:
            return cls(x_start=x_start.to(device, dtype), eps=eps.to(device, dtype), **kwargs)
        except (ValueError, TypeError, AttributeError) as err:
            raise LatentFileError(f"{path}: {err}") from err

    def summary(self) -> dict[str, Any]:
        """A short JSON-able description (``cyclediff inspect``): the model, the condition, the shapes, the grid
        (its first and last timestep), the sampler and the draws' statistics; unset fields left out."""
        meta, ts = self.describe(), self.timesteps
        keep = ("format_version", "model_id", "model_kind", "loading", "condition", "shape", "dtype", "path",
                "sampler", "encoder", "eta", "steps", "strength", "num_train_timesteps", "seeds", "eps_mean",
                "eps_std")
        short = {k: meta.get(k, getattr(self, k, None)) for k in keep}
        short["eps_shape"] = list(self.eps.shape)
        short["grid"] = f"{ts[0]:g} → {ts[-1]:g} ({len(ts)} of {self.steps} steps)"
        return {k: v for k, v in short.items() if v is not None}

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (the file metadata, plus value statistics of the Gaussian parts)."""
        meta = self.metadata()
        gaussian = [self.eps[k] for k, r in enumerate(self.residual) if not r]
        if gaussian:
            g = torch.stack(gaussian).double()
            meta["eps_mean"], meta["eps_std"] = float(g.mean()), float(g.std())
        return meta



def checksum(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> str:
    """SHA-256 over the stored bytes of x_start then eps (as written: CPU, contiguous, the storage dtype), then
    (format 3 on) over the metadata but its ``sha256`` entry, as sorted JSON."""
    h = hashlib.sha256()
    for name in ("x_start", "eps"):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if meta is not None:
        h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    return h.hexdigest()


# a file's first bytes -> what it is, for "this is not a latent file" messages
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
          (b"PK\x03\x04", "a zip archive (a PyTorch .pt / .ckpt checkpoint?)"), (b"\x80", "a Python pickle"),
          (b"GGUF", "a GGUF network"))


def looks_like(path: Path) -> str | None:
    """What a file that is not a safetensors file looks like, from its first bytes (None: unknown)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    return next((what for magic, what in _MAGIC if head.startswith(magic)), None)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _field_problem(z: Latent) -> str | None:
    """The first metadata field of ``z`` whose type or range is wrong (as a file may hold anything), or None."""
    if z.path not in PATHS:
        return f"path must be one of {', '.join(PATHS)}; got {z.path!r}"
    if not all((_is_int if z.path == "vp" else _is_number)(t) for t in z.timesteps) or not z.timesteps:
        kind = "integers" if z.path == "vp" else "numbers"
        return f"timesteps must be a non-empty list of {kind}; got {list(z.timesteps)!r}"
    if z.encoder not in ENCODERS:
        return f"encoder must be one of {', '.join(ENCODERS)}; got {z.encoder!r}"
    if z.sampler not in SAMPLERS:
        return f"sampler must be one of {', '.join(SAMPLERS)}; got {z.sampler!r}"
    ode = z.eta == 0 and all(z.residual)  # sampled with η = 0 (ordinary generation): no draws after x_start
    if not _is_number(z.eta) or not (0 < z.eta <= 1 or ode) or (z.sampler in ("ddpm", "fresh") and z.eta != 1):
        return f"eta must be a number in (0, 1] (1 for ddpm and fresh, 0 for a sampled ODE); got {z.eta!r}"
    if not _is_int(z.steps) or z.steps < 1:
        return f"steps must be a positive integer; got {z.steps!r}"
    if not _is_number(z.strength) or not 0 < z.strength <= 1:
        return f"strength must be a number in (0, 1]; got {z.strength!r}"
    if not _is_int(z.num_train_timesteps) or z.num_train_timesteps < 2:
        return f"num_train_timesteps must be an integer ≥ 2; got {z.num_train_timesteps!r}"
    if not isinstance(z.schedule_fingerprint, str):
        return f"schedule_fingerprint must be a string; got {z.schedule_fingerprint!r}"
    if z.variance_type not in VARIANCE_TYPES:
        return f"variance_type must be one of {', '.join(VARIANCE_TYPES)}; got {z.variance_type!r}"
    if z.model_id is not None and not isinstance(z.model_id, str):
        return f"model_id must be a string or null; got {z.model_id!r}"
    if not isinstance(z.condition, dict) or not all(isinstance(k, str) for k in z.condition):
        return f"condition must be a JSON object of condition keywords; got {z.condition!r}"
    if z.model_kind is not None and not isinstance(z.model_kind, str):
        return f"model_kind must be a string or null; got {z.model_kind!r}"
    if z.loading is not None and (not isinstance(z.loading, dict) or not all(isinstance(k, str) for k in z.loading)):
        return f"loading must be a JSON object or null; got {z.loading!r}"
    if z.seeds is not None and not all(s is None or (_is_int(s) and 0 <= s <= _MAX_SEED) for s in z.seeds):
        return f"seeds must be integers in 0..2^64-1 (or null); got {list(z.seeds)!r}"
    return None

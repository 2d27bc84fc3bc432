"""Noise schedules and timestep grids (pure functions; the schedule itself is float64).

A :class:`Schedule` holds ᾱ_t = Π_{i<=t} (1 - β_i) for the training timesteps 0..T-1, the ᾱ used after the last
sampling step, and the settings of a diffusers scheduler config that change a sampling step (prediction type,
x̂0 clipping, dynamic thresholding, variance type). It never holds sampling state: the grid for N steps is
computed by :meth:`Schedule.timesteps`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SPACINGS = ("leading", "trailing", "linspace")
# diffusers' names; the "_log" variants give the same standard deviations as their plain twins.
VARIANCE_TYPES = {
    "fixed_small": "fixed_small",
    "fixed_small_log": "fixed_small",
    "fixed_large": "fixed_large",
    "fixed_large_log": "fixed_large",
    "learned_range": "learned_range",
}


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """β evenly spaced from beta_start to beta_end (DDPM)."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def scaled_linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """√β evenly spaced (latent diffusion / Stable Diffusion)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of improved DDPM ("squaredcos_cap_v2"): ᾱ(t) = cos²((t + 0.008)/1.008 · π/2)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float64)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale √ᾱ so that ᾱ_{T-1} = 0 and ᾱ_0 is unchanged (Lin et al. 2023, algorithm 1)."""
    sqrt_ab = torch.cumprod(1 - betas, 0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    alpha_bar = sqrt_ab**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


@dataclass(frozen=True, eq=False)
class Schedule:
    """ᾱ over the training timesteps plus the step settings of a scheduler config.

    Build one with :meth:`from_config` (a diffusers scheduler config, a scheduler, or a path to
    ``scheduler_config.json``), or give ``alpha_bar`` itself.
    """

    alpha_bar: torch.Tensor  # (T,) float64
    final_alpha_bar: float = 1.0
    prediction_type: str = "epsilon"
    variance_type: str = "fixed_small"
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0
    config: dict[str, Any] = field(default_factory=dict)
    path = "vp"  # the Gaussian path (a class constant; cyclediff.flow.FlowSchedule: "rectified_flow")

    def __post_init__(self) -> None:
        ab = self.alpha_bar
        if ab.ndim != 1 or ab.numel() < 2:
            raise ConfigError("a schedule needs at least two training timesteps")
        if ab.dtype != torch.float64:
            object.__setattr__(self, "alpha_bar", ab.to(torch.float64))
        if not torch.isfinite(self.alpha_bar).all() or (self.alpha_bar < 0).any() or (self.alpha_bar > 1).any():
            raise ConfigError("ᾱ must lie in [0, 1]; check the betas (each must lie in [0, 1))")
        # Python floats for the step loop: indexing the tensor costs a dispatch per lookup
        object.__setattr__(self, "_alpha_bar_list", self.alpha_bar.tolist())
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"prediction_type {self.prediction_type!r} is not supported; use one of {', '.join(PREDICTION_TYPES)}"
            )
        if self.variance_type not in VARIANCE_TYPES:
            raise ConfigError(
                f"variance_type {self.variance_type!r} is not supported; use one of {', '.join(VARIANCE_TYPES)}"
            )
        object.__setattr__(self, "variance_type", VARIANCE_TYPES[self.variance_type])
        if self.timestep_spacing not in SPACINGS:
            raise ConfigError(
                f"timestep_spacing {self.timestep_spacing!r} is not supported; use one of {', '.join(SPACINGS)}"
            )

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, config: Any) -> Schedule:
        """A schedule from a diffusers scheduler config.

        ``config`` is a mapping (``scheduler.config``), a diffusers scheduler object, or the path of a
        ``scheduler_config.json`` file or of a folder holding one. Keys follow diffusers' DDPM/DDIM schedulers:
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr,
        prediction_type, variance_type, set_alpha_to_one, steps_offset, timestep_spacing, clip_sample,
        clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value.
        """
        cfg = _config_dict(config)
        n = int(cfg.get("num_train_timesteps", 1000))
        start, end = float(cfg.get("beta_start", 0.0001)), float(cfg.get("beta_end", 0.02))
        kind = cfg.get("beta_schedule", "linear")
        if cfg.get("trained_betas") is not None:
            betas = torch.as_tensor(cfg["trained_betas"], dtype=torch.float64).flatten()
            if betas.numel() != n:
                raise ConfigError(f"trained_betas has {betas.numel()} values but num_train_timesteps is {n}")
        elif kind == "linear":
            betas = linear_betas(n, start, end)
        elif kind == "scaled_linear":
            betas = scaled_linear_betas(n, start, end)
        elif kind == "squaredcos_cap_v2":
            betas = cosine_betas(n)
        else:
            raise ConfigError(
                f"beta_schedule {kind!r} is not supported; use linear, scaled_linear, squaredcos_cap_v2 "
                "or pass trained_betas"
            )
        if cfg.get("rescale_betas_zero_snr", False):
            betas = rescale_zero_terminal_snr(betas)
        alpha_bar = torch.cumprod(1 - betas, 0)
        # DDIM-style configs say what ᾱ follows the last step; DDPM's always ends at ᾱ = 1.
        set_alpha_to_one = cfg.get("set_alpha_to_one", True)
        final = 1.0 if set_alpha_to_one else float(alpha_bar[0])
        variance_type = cfg.get("variance_type") or "fixed_small"
        if variance_type == "learned":
            raise ConfigError(
                "variance_type 'learned' (a raw predicted variance) is not supported; models trained with "
                "learned variances in diffusers use 'learned_range'"
            )
        return cls(
            alpha_bar=alpha_bar,
            final_alpha_bar=final,
            prediction_type=cfg.get("prediction_type", "epsilon"),
            variance_type=variance_type,
            timestep_spacing=cfg.get("timestep_spacing", "leading"),
            steps_offset=int(cfg.get("steps_offset", 0)),
            clip_sample=bool(cfg.get("clip_sample", False)),
            clip_sample_range=float(cfg.get("clip_sample_range", 1.0)),
            thresholding=bool(cfg.get("thresholding", False)),
            dynamic_thresholding_ratio=float(cfg.get("dynamic_thresholding_ratio", 0.995)),
            sample_max_value=float(cfg.get("sample_max_value", 1.0)),
            config=cfg,
        )

    # ----------------------------------------------------------------- queries
    @property
    def num_train_timesteps(self) -> int:
        return int(self.alpha_bar.numel())

    def alpha_bar_at(self, t: int) -> float:
        """ᾱ_t; t < 0 means "after the last step" (the final ᾱ)."""
        return self.final_alpha_bar if t < 0 else self._alpha_bar_list[t]

    def fingerprint(self) -> str:
        """A short hash of everything in the schedule that changes a sampling step."""
        h = hashlib.sha256(self.alpha_bar.numpy().tobytes())
        settings = [self.final_alpha_bar, self.prediction_type, self.variance_type, self.clip_sample,
                    self.clip_sample_range, self.thresholding, self.dynamic_thresholding_ratio,
                    self.sample_max_value]
        h.update(json.dumps(settings).encode())
        return h.hexdigest()[:16]

    def grid(self, steps: int) -> list[int]:
        """The N = ``steps`` inference timesteps, descending, as diffusers' DDIM/DDPM ``set_timesteps`` makes them."""
        n = self.num_train_timesteps
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= n:
            raise ConfigError(f"steps must be an integer from 1 to {n} (the model's training timesteps); got {steps!r}")
        if self.timestep_spacing == "linspace":
            ts = torch.linspace(0, n - 1, steps, dtype=torch.float64).round().long().flip(0)
        elif self.timestep_spacing == "leading":
            ratio = n // steps
            ts = torch.arange(steps, dtype=torch.int64).flip(0) * ratio + self.steps_offset
        else:  # trailing
            ratio = n / steps
            ts = torch.round(torch.arange(n, 0, -ratio, dtype=torch.float64)).long() - 1
        out = [int(t) for t in ts]
        if out[0] >= n or out[-1] < 0:
            raise ConfigError(
                f"steps_offset {self.steps_offset} pushes the grid for {steps} steps outside 0..{n - 1}; "
                "fix the scheduler config"
            )
        return out

    #: how a strength cuts this grid (:func:`steps_run`): the DDIM / DDPM img2img pipelines' rule
    cut = "floor"

    def plan(self, steps: int, strength: float = 1.0) -> Grid:
        """The grid of one call, computed once and handed to the encoder, the decoder, masks and attention: the
        whole grid for ``steps`` and the part a run started at ``strength`` visits."""
        if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not 0 < strength <= 1:
            raise ConfigError(f"strength must be a number in (0, 1]; got {strength!r}")
        full = tuple(self.grid(steps))
        run = steps_run(steps, strength, self.cut)
        if run == 0:
            raise ConfigError(f"strength {strength} runs no step of {steps} ({self.cut_rule(steps, strength)}); "
                              "raise steps or strength")
        return Grid(steps, float(strength), full, full[len(full) - run:])

    def cut_rule(self, steps: int, strength: float) -> str:
        return f"int({steps} × {strength})"

    def timesteps(self, steps: int, strength: float = 1.0) -> list[int]:
        """The timesteps a sampler visits for ``steps`` inference steps started part-way at ``strength``: as in
        diffusers' img2img pipelines, the last :func:`steps_run` timesteps of :meth:`grid`."""
        return list(self.plan(steps, strength).run)


@dataclass(frozen=True)
class Grid:
    """One call's grid: ``full`` the ``steps`` timesteps of the whole grid (descending), ``run`` the last ones, those
    a run started at ``strength`` visits."""

    steps: int
    strength: float
    full: tuple
    run: tuple

    @property
    def start(self) -> int:
        """The index in ``full`` of the first step run."""
        return len(self.full) - len(self.run)


def steps_run(steps: int, strength: float, cut: str = "floor") -> int:
    """How many steps a (steps, strength) pair runs — the strength cut, written once. ``"floor"``: int(steps ·
    strength), the DDIM / DDPM img2img pipelines' rule (and FlowEdit's n_max); ``"skip"``: steps minus the
    int(steps − steps · strength) skipped first, the flow-matching img2img pipelines' rule (SD3, FLUX). They differ
    when steps · strength is not whole: 50 × 0.33 runs 16 and 17 steps."""
    if cut == "floor":
        return min(int(steps * strength), steps)
    if cut == "skip":
        return steps - int(max(steps - min(steps * strength, steps), 0))
    raise ValueError(f"unknown strength cut {cut!r}")


def step_pairs(timesteps: list[int]) -> list[tuple[int, int]]:
    """(t, s) for each step of a descending grid; s = -1 after the last step (the final ᾱ)."""
    return list(zip(timesteps, list(timesteps[1:]) + [-1]))


def _config_dict(config: Any) -> dict[str, Any]:
    # a diffusers scheduler (any ConfigMixin) carries its config as .config: the one duck-typed probe we keep,
    # so that schedule.py stays free of diffusers imports
    if hasattr(config, "config") and isinstance(config.config, Mapping):
        config = config.config
    if isinstance(config, (str, Path)):
        path = Path(config)
        if path.is_dir():
            path = path / "scheduler_config.json"
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise ConfigError(
                f"no scheduler config at {path}; pass the folder that holds scheduler_config.json"
            ) from err
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"a scheduler config must be a mapping, a diffusers scheduler or a path; got {type(config).__name__}"
        )
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}

"""The decoder: the ordinary stochastic sampler, fed a noise source that replays a latent's ε."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ._noise import Generators, NoiseStream, batch_size_of, check_generators, gaussian_like, seeds_of
from ._progress import stepping
from .errors import IncompatibleModelError
from .latent import Latent
from .models.base import BatchedDenoiser, Denoiser, Model
from .models.conditions import merge_condition
from .schedule import step_pairs
from .settings import ENCODE, SAMPLE
from .transitions import Transition, check_sampler, is_deterministic, transition


def progress_steps(timesteps: list[int], *, progress: bool, desc: str) -> Iterator[tuple[int, int, int]]:
    """(k, t, s) for each step, with a progress bar when asked (and the step hook, :mod:`cyclediff._progress`)."""
    for k, (t, s) in enumerate(stepping(step_pairs(list(timesteps)), desc=desc, progress=progress)):
        yield k, t, s


def decoder_step(step: Transition, e: torch.Tensor, residual: bool) -> torch.Tensor:
    """x_s = mean + std · ε (or mean + residual for a deterministic step)."""
    return step.mean + (e if residual else step.std * e)


def check_grid(denoiser: Denoiser, *, num_train_timesteps: int, steps: int, strength: float,
               timesteps: Any, sample: torch.Tensor) -> None:
    """Refuse a model whose timestep grid or sample shape differs from a latent's, naming the difference."""
    denoiser.check_sample(sample)
    schedule = denoiser.schedule_for(tuple(sample.shape))  # FLUX's grid depends on the sample size
    if schedule.num_train_timesteps != num_train_timesteps:
        raise IncompatibleModelError(
            f"the latent was encoded on a {num_train_timesteps}-timestep schedule but the model has "
            f"{schedule.num_train_timesteps}; decode with a model trained on the same number of timesteps"
        )
    grid = schedule.timesteps(steps, strength)
    if tuple(grid) != tuple(timesteps):
        fix = ("it was encoded by another model family or flow scheduler (shift, dynamic shifting): decode it with "
               "the family that encoded it" if getattr(schedule, "path", "vp") == "rectified_flow" else
               "align timestep_spacing / steps_offset in the scheduler config")
        raise IncompatibleModelError(
            f"the model's grid for steps={steps}, strength={strength} is {_short(grid)} but the "
            f"latent's is {_short(timesteps)}; {fix}"
        )


def check_compatible(latent: Latent, denoiser: Denoiser) -> None:
    """Refuse a model that cannot decode ``latent`` (another family of path, other grid or sample shape)."""
    family = {"vp": "variance-preserving (DDPM / DDIM)", "rectified_flow": "rectified-flow (SD3 / FLUX / flow UNets)"}
    model_path = denoiser.schedule_for(tuple(latent.x_start.shape)).path
    if latent.path != model_path:
        raise IncompatibleModelError(
            f"the latent was encoded by a {family[latent.path]} model but this is a {family[model_path]} model; "
            "decode it with a model of its own family")
    try:
        check_grid(denoiser, num_train_timesteps=latent.num_train_timesteps, steps=latent.steps,
                   strength=latent.strength, timesteps=latent.timesteps, sample=latent.x_start)
    except IncompatibleModelError as err:
        kind = getattr(denoiser, "kind", None)
        if latent.model_kind and kind and latent.model_kind != kind:  # the reason, named: another family
            made = f"{latent.model_kind}{f', {latent.model_id}' if latent.model_id else ''}"
            raise IncompatibleModelError(f"the latent was encoded by another model family ({made}) than this "
                                         f"model's ({kind}); decode it with a model of its own family") from err
        raise


def evaluate(branches: list[tuple[Denoiser, torch.Tensor, Any]], t: int) -> list[torch.Tensor]:
    """Model outputs for several (denoiser, x_t, condition) branches at timestep t.

    Branches on the same denoiser go through its ``predict_batch`` (one batched model call) when it has one.
    """
    outputs: list[torch.Tensor | None] = [None] * len(branches)
    groups: dict[int, list[int]] = {}
    for i, (den, _, _) in enumerate(branches):
        groups.setdefault(id(den), []).append(i)
    for idx in groups.values():
        den = branches[idx[0]][0]
        # a denoiser that batches branches gets them in one call; a plain one is called per branch
        if len(idx) > 1 and isinstance(den, BatchedDenoiser):
            results = den.predict_batch([(branches[i][1], branches[i][2]) for i in idx], t)
        else:
            results = [den(branches[i][1], t, branches[i][2]) for i in idx]
        for i, out in zip(idx, results):
            outputs[i] = out
    return outputs  # type: ignore[return-value]


def decode(
    latent: Latent,
    denoiser: Denoiser,
    *,
    progress: bool = False,
    checkpoint: bool = False,
    grad_steps: int | None = None,
    condition: Any = None,
    **keywords: Any,
) -> torch.Tensor:
    """Run the sampler from ``latent.x_start`` with its recorded draws; returns x0 (B, C, H, W).

    With no condition keywords the latent's recorded condition is used (same model and condition give back the
    encoded image); pass e.g. ``class_labels=`` or ``prompt=`` to decode under another condition, or another
    ``denoiser`` to translate. A recorded condition an unconditional model cannot take (a class latent decoded by
    a one-class model) is left out with a warning that says so.

    Differentiable: runs under autograd when the latent's tensors require grad. ``checkpoint=True`` recomputes
    each step in the backward pass instead of storing its activations, so memory does not grow with the number
    of steps. ``grad_steps=K`` back-propagates through the last K steps only (an approximation: earlier steps
    are treated as constants, so the draws before them get no gradient).
    """
    check_compatible(latent, denoiser)
    condition = merge_condition(condition, keywords) or recorded_condition(latent, denoiser)
    cond = denoiser.prepare_condition(latent.batch_size, **condition)
    return replay(denoiser, cond, latent.x_start, list(latent.timesteps), latent.eps, latent.residual,
                  sampler=latent.sampler, eta=latent.eta, progress=progress, checkpoint=checkpoint,
                  grad_steps=grad_steps)


def recorded_condition(latent: Latent, denoiser: Denoiser) -> dict[str, Any]:
    """The latent's recorded condition; on an unconditional model (a class latent translated to a one-class
    model) the keywords it does not take are left out, with a warning. A conditional model is given the record
    as it is (it refuses a condition of another kind, naming what it takes)."""
    keys = getattr(denoiser, "condition_keys", None)
    if keys is None or set(keys) - {"guidance_scale"}:
        return dict(latent.condition)
    takes = set(keys)
    dropped = sorted(k for k, v in latent.condition.items() if k not in takes and v is not None)
    if dropped:
        import warnings

        warnings.warn(f"the latent records {', '.join(dropped)}, which this model does not take; decoded without "
                      "(pass a condition of this model to decode under one)", stacklevel=3)
    return {k: v for k, v in latent.condition.items() if k in takes}


def replay(
    denoiser: Denoiser, cond: Any, x_start: torch.Tensor, timesteps: list[int], eps: torch.Tensor,
    residual: tuple[bool, ...], *, sampler: str, eta: float, progress: bool = False, desc: str = "decode",
    checkpoint: bool = False, grad_steps: int | None = None,
) -> torch.Tensor:
    """The sampler loop: from x_start, x_s = mean + std · eps[k] at every step (mean + eps[k] where residual)."""
    x = x_start
    first_grad = 0 if grad_steps is None else max(0, len(timesteps) - grad_steps)
    for k, t, s in progress_steps(timesteps, progress=progress, desc=desc):

        def step(x_t: torch.Tensor, e: torch.Tensor, t: int = t, s: int = s, k: int = k) -> torch.Tensor:
            out = transition(denoiser.schedule, denoiser(x_t, t, cond), x_t, t, s, sampler=sampler, eta=eta)
            return decoder_step(out, e, residual[k])

        if k < first_grad:
            with torch.no_grad():
                x = step(x, eps[k])
        elif checkpoint and torch.is_grad_enabled():
            # the step draws no randomness (its noise is eps[k]), so the RNG state need not be saved and restored:
            # saving a CUDA generator's state is a host-device synchronisation per step, which stalls the GPU
            x = torch.utils.checkpoint.checkpoint(step, x, eps[k], use_reentrant=False, preserve_rng_state=False)
        else:
            x = step(x, eps[k])
    return x


def fresh_draws(
    like: torch.Tensor, schedule: Any, timesteps: list[int], *, sampler: str, eta: float, gens: Any
) -> tuple[torch.Tensor, tuple[bool, ...]]:
    """New N(0, I) draws for every step (zero residuals where a step is deterministic), taken from the
    generator(s) in the order diffusers' pipelines take them (DDPM draws nothing at t = 0)."""
    eps, residual = [], []
    pairs = step_pairs(timesteps)
    drawn = [eta > 0 and not (sampler == "ddpm" and t == 0) for t, _ in pairs]  # DDIM at η = 0 draws nothing
    noise = NoiseStream(like, gens, count=sum(drawn))
    for (t, s), d in zip(pairs, drawn):
        e = noise.next() if d else None
        deterministic = is_deterministic(schedule, t, s, sampler=sampler, eta=eta)
        eps.append(torch.zeros_like(like) if deterministic else e)
        residual.append(deterministic)
    return torch.stack(eps), tuple(residual)


def sample_latent(
    denoiser: Denoiser,
    batch_size: int | None = None,
    *,
    steps: int = SAMPLE.steps,
    eta: float | None = SAMPLE.eta,
    sampler: str = ENCODE.sampler,
    generator: Generators = None,
    sample_shape: tuple[int, ...] | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    condition: Any = None,
    **keywords: Any,
) -> Latent:
    """Draw a latent from the prior N(0, I): decoding it is ordinary sampling from the model.

    The draws come in the order diffusers' DDIM / DDPM pipelines take them from the same generator (x_T, then one
    per step; DDPM draws nothing at t = 0), so a seed gives the image those pipelines give. Deterministic steps get
    a zero residual. ``eta=0`` is ordinary generation (the ODE: DDIM, or Euler for flow models): every step is a
    zero residual and a seed gives the image the model's own diffusers pipeline gives.
    """
    eta = check_sampler(sampler, eta, sampling=True)
    batch_size = batch_size_of(generator, batch_size)
    # a bare Denoiser has no default sample shape or device: then the caller gives them
    is_model = isinstance(denoiser, Model)
    shape = sample_shape or (denoiser.sample_shape if is_model else None)
    if shape is None:
        raise IncompatibleModelError("this model has no default sample size; pass sample_shape=(C, H, W)")
    device = device if device is not None else (denoiser.device if is_model else "cpu")
    like = torch.empty((batch_size, *shape), dtype=dtype, device=device)
    denoiser.check_sample(like)
    schedule = denoiser.schedule_for(tuple(like.shape))
    timesteps = schedule.timesteps(steps)
    gens = check_generators(generator, batch_size)
    cond = denoiser.prepare_condition(batch_size, **merge_condition(condition, keywords))
    x_start = gaussian_like(like, gens)
    if schedule.path == "rectified_flow":  # the flow pipelines start from x_σ0 = ε even where σ0 < 1 (SANA's
        x_start = x_start / schedule.scale_at(timesteps[0])  # grid): ε in flow coordinates is ε / c in the core's
    eps, residual = fresh_draws(like, schedule, timesteps, sampler=sampler, eta=eta, gens=gens)
    return Latent.from_draws(schedule, denoiser.model_id, x_start=x_start, eps=eps, timesteps=timesteps,
                             residual=residual, sampler=sampler, eta=eta, steps=steps, strength=1.0,
                             condition=cond.record, seeds=seeds_of(gens, batch_size),
                             model_kind=getattr(denoiser, "kind", None))


def _short(ts: Any) -> str:
    ts = list(ts)
    return str(ts) if len(ts) <= 6 else f"[{ts[0]}, {ts[1]}, ..., {ts[-1]}] ({len(ts)} steps)"

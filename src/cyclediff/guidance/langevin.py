"""Plug-and-play guidance: Langevin dynamics in the stochastic latent space.

To sample p(x | C) ∝ p(x) e^{−λE(x|C)} from a pretrained model with no training, sample
p(z | C) ∝ N(z; 0, I) e^{−λE(G(z)|C)} and decode: z ← z − (s/2) ∇_z[½‖z‖² + λE(G(z)|C)] + √s ω.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from .._noise import Generators, batch_size_of, check_generators, gaussian_like
from ..apps.methods import as_condition
from ..defaults import GUIDE, check_number
from ..errors import CycleDiffError
from ..latent import Latent
from ..sampler import decode, sample_latent
from .energies import as_energy


@dataclass(frozen=True)
class GuideResult:
    """``latent``: the chain's final (or, with keep_best, lowest-energy) latent; ``images``: its decoding,
    (B, C, H, W) in [0, 1]; ``energies``: E(G(z)) along the chain, (langevin_steps + 1, B)."""

    latent: Latent
    images: torch.Tensor
    energies: torch.Tensor


def images_of(denoiser: Any, x: torch.Tensor) -> torch.Tensor:
    """Model-space samples → images in [−1, 1] (through the VAE for latent diffusion), differentiably."""
    decode_latents = getattr(denoiser, "decode_latents", None)
    return (decode_latents(x) if decode_latents is not None else x).clamp(-1, 1)


def guide(
    denoiser: Any,
    energy: Callable[[torch.Tensor], torch.Tensor],
    *,
    weight: float = GUIDE["weight"],
    langevin_steps: int = GUIDE["langevin_steps"],
    step_size: float = GUIDE["step_size"],
    steps: int = GUIDE["steps"],
    strength: float = 1.0,
    eta: float = GUIDE["eta"],
    condition: Any = None,
    batch_size: int | None = None,
    latent: Latent | None = None,
    generator: Generators = None,
    keep_best: bool = False,
    checkpoint: bool = True,
    grad_steps: int | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = False,
) -> GuideResult:
    """Langevin dynamics on z = (x_start, ε_K..ε_1) under N(0, I) e^{−weight · E(G(z))}.

    Starts from N(0, I) (``batch_size`` samples, ``steps`` sampler steps, ``eta``) or from ``latent`` (e.g. the
    encoding of a real image: guided editing). ``condition``: class label(s), a prompt, or None. ``energy`` maps
    images in [−1, 1] to one value per image. The Gaussian parts move; residual entries stay fixed, and so does
    x_start when the latent starts part-way (strength < 1: it is then not a standard normal draw). The decoder
    runs with gradient checkpointing (memory independent of ``steps``); ``grad_steps`` limits back-propagation
    to the last steps (an approximation). ``generator``: one, or one per sample (then each sample's chain
    depends on its own generator alone). ``callback(n, images01, energies)`` runs after each step.
    """
    energy = as_energy(energy)
    check_number("weight", weight)
    check_number("langevin_steps", langevin_steps, int, 0)
    check_number("step_size", step_size, float, 0, low_open=True)
    cond = as_condition(condition)
    if latent is None:
        batch_size = batch_size_of(generator, batch_size)
        gens = check_generators(generator, batch_size)
        latent = sample_latent(denoiser, batch_size, steps=steps, eta=eta, generator=gens, **cond)
        cond = {}  # recorded in the latent
    else:
        if batch_size is not None and batch_size != latent.batch_size:
            raise CycleDiffError(f"batch_size={batch_size} but the latent holds {latent.batch_size} samples; "
                                 "drop batch_size")
        gens = check_generators(generator, latent.batch_size)
    move_start = latent.strength == 1.0
    free = torch.tensor([not r for r in latent.residual], device=latent.device)[:, None, None, None, None]

    def energy_of(z: Latent) -> tuple[torch.Tensor, torch.Tensor]:
        x = images_of(denoiser, decode(z, denoiser, checkpoint=checkpoint, grad_steps=grad_steps, **cond))
        return energy(x), x

    x_start, eps = latent.x_start.detach().clone(), latent.eps.detach().clone()
    trace, best, best_e = [], (x_start.clone(), eps.clone()), None
    bar = tqdm(range(langevin_steps + 1), desc="guide", disable=not progress, leave=False)
    for n in bar:
        x_start.requires_grad_(move_start)
        eps.requires_grad_(True)
        with torch.enable_grad():
            e, images = energy_of(replace(latent, x_start=x_start, eps=eps))
            if not torch.isfinite(e).all():
                raise CycleDiffError(f"the energy is not finite at Langevin step {n}: {e.detach().tolist()}")
            potential = weight * e.sum() + 0.5 * (eps * free).pow(2).sum()
            if move_start:
                potential = potential + 0.5 * x_start.pow(2).sum()
            wrt = [x_start, eps] if move_start else [eps]
            grads = torch.autograd.grad(potential, wrt)
        e = e.detach()
        trace.append(e)
        if keep_best:
            better = e < best_e if best_e is not None else torch.ones_like(e, dtype=torch.bool)
            best_e = e if best_e is None else torch.where(better, e, best_e)
            best = (torch.where(better[:, None, None, None], x_start.detach(), best[0]),
                    torch.where(better[None, :, None, None, None], eps.detach(), best[1]))
        bar.set_postfix(energy=f"{e.mean().item():.4f}")
        if callback is not None:
            callback(n, ((images.detach() + 1) / 2), e)
        if n == langevin_steps:
            break
        with torch.no_grad():  # z ← z − (s/2) ∇U + √s ω
            g_eps = grads[-1] * free
            eps = eps.detach() - 0.5 * step_size * g_eps + step_size**0.5 * _noise_like(eps, gens) * free
            if move_start:
                x_start = x_start.detach() - 0.5 * step_size * grads[0] + step_size**0.5 * gaussian_like(x_start, gens)
            else:
                x_start = x_start.detach()
    final = replace(latent, x_start=best[0] if keep_best else x_start.detach(),
                    eps=best[1] if keep_best else eps.detach())
    with torch.no_grad():
        images = (images_of(denoiser, decode(final, denoiser, **cond)) + 1) / 2
    return GuideResult(latent=final, images=images, energies=torch.stack(trace))


def _noise_like(eps: torch.Tensor, gens: Any) -> torch.Tensor:
    """N(0, I) for every step's ε, drawn per sample when there is one generator per sample."""
    return torch.stack([gaussian_like(eps[k], gens) for k in range(eps.shape[0])])

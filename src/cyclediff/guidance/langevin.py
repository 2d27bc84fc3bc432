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

from .._noise import Generators, NoiseStream, batch_size_of, check_generators
from .._progress import at_step
from ..errors import CycleDiffError
from ..latent import Latent
from ..models.codec import images_of
from ..models.conditions import as_condition
from ..sampler import decode, sample_latent
from ..settings import GUIDE, check_setting
from .energies import as_energy


@dataclass(frozen=True)
class GuideResult:
    """``latent``: the chain's final (or, with keep_best, lowest-energy) latent; ``images``: its decoding,
    (B, C, H, W) in [0, 1]; ``energies``: E(G(z)) along the chain, (langevin_steps + 1, B)."""

    latent: Latent
    images: torch.Tensor
    energies: torch.Tensor


def guide(
    denoiser: Any,
    energy: Callable[[torch.Tensor], torch.Tensor],
    *,
    weight: float = GUIDE.weight,
    langevin_steps: int = GUIDE.langevin_steps,
    step_size: float = GUIDE.step_size,
    steps: int = GUIDE.steps,
    strength: float = 1.0,
    eta: float = GUIDE.eta,
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
    for name, value in (("weight", weight), ("langevin_steps", langevin_steps), ("step_size", step_size)):
        check_setting(name, value, required=True)
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
    chain = Chain.start(latent)
    # every Langevin draw, in the order the steps take them (each step: one per ε_k, then x_start's when it
    # moves), drawn ahead into pinned memory on an accelerator: no host-device copy waits inside the chain
    per_step = latent.eps.shape[0] + int(chain.move_start)
    noise = NoiseStream(latent.x_start, gens, count=langevin_steps * per_step)
    potential = Potential(denoiser, energy, weight, cond, checkpoint=checkpoint, grad_steps=grad_steps)
    trace: list[torch.Tensor] = []
    bar = tqdm(range(langevin_steps + 1), desc="guide", disable=not progress, leave=False)
    for n in bar:
        at_step("guide", n, langevin_steps + 1)
        grads, e, images = potential.gradient(chain)  # U(z) and ∇U at the current z
        if not torch.isfinite(e).all():
            raise CycleDiffError(f"the energy is not finite at Langevin step {n}: {e.tolist()}")
        trace.append(e)
        if keep_best:
            chain.keep_if_better(e)
        bar.set_postfix(energy=f"{e.mean().item():.4f}")
        if callback is not None:
            callback(n, (images + 1) / 2, e)
        if n == langevin_steps:
            break
        chain = langevin_step(chain, grads, step_size, noise.next)
    final = chain.best_latent() if keep_best else chain.latent()
    with torch.no_grad():
        images = (images_of(denoiser, decode(final, denoiser, **cond)) + 1) / 2
    return GuideResult(latent=final, images=images, energies=torch.stack(trace))


@dataclass
class Chain:
    """The state of the Langevin chains: z = (x_start, ε) around a latent, which parts move, the best so far."""

    base: Latent
    x_start: torch.Tensor
    eps: torch.Tensor
    free: torch.Tensor  # (K, 1, 1, 1, 1): 1 where ε_k is a Gaussian draw, 0 for a residual (kept fixed)
    move_start: bool  # x_start moves only when it is a N(0, I) draw (strength 1)
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    best_energy: torch.Tensor | None = None

    @classmethod
    def start(cls, latent: Latent) -> Chain:
        free = torch.tensor([not r for r in latent.residual], device=latent.device)[:, None, None, None, None]
        x_start, eps = latent.x_start.detach().clone(), latent.eps.detach().clone()
        return cls(latent, x_start, eps, free, latent.strength == 1.0, best=(x_start.clone(), eps.clone()))

    def latent(self) -> Latent:
        return replace(self.base, x_start=self.x_start.detach(), eps=self.eps.detach())

    def best_latent(self) -> Latent:
        return replace(self.base, x_start=self.best[0], eps=self.best[1])

    def keep_if_better(self, e: torch.Tensor) -> None:
        """Per chain, keep z when its energy is the lowest seen."""
        better = e < self.best_energy if self.best_energy is not None else torch.ones_like(e, dtype=torch.bool)
        self.best_energy = e if self.best_energy is None else torch.where(better, e, self.best_energy)
        self.best = (torch.where(better[:, None, None, None], self.x_start.detach(), self.best[0]),
                     torch.where(better[None, :, None, None, None], self.eps.detach(), self.best[1]))


@dataclass
class Potential:
    """U(z) = weight · Σ E(G(z)) + ½‖z_free‖²: the negative log-density of N(0, I) e^{−weight·E(G(z))} over the
    parts of z that move. G decodes z with the model (checkpointed: memory flat in the number of steps)."""

    denoiser: Any
    energy: Callable[[torch.Tensor], torch.Tensor]
    weight: float
    condition: dict[str, Any]
    checkpoint: bool = True
    grad_steps: int | None = None

    def gradient(self, chain: Chain) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(∇U with respect to the moving parts, [x_start,] ε; energies (B,); images in [−1, 1]), detached."""
        x_start = chain.x_start.detach().requires_grad_(chain.move_start)
        eps = chain.eps.detach().requires_grad_(True)
        with torch.enable_grad():
            z = replace(chain.base, x_start=x_start, eps=eps)
            images = images_of(self.denoiser, decode(z, self.denoiser, checkpoint=self.checkpoint,
                                                     grad_steps=self.grad_steps, **self.condition))
            e = self.energy(images)
            u = self.weight * e.sum() + 0.5 * (eps * chain.free).pow(2).sum()
            if chain.move_start:
                u = u + 0.5 * x_start.pow(2).sum()
            grads = torch.autograd.grad(u, [x_start, eps] if chain.move_start else [eps])
        return list(grads), e.detach(), images.detach()


@torch.no_grad()
def langevin_step(chain: Chain, grads: list[torch.Tensor], step_size: float,
                  draw: Callable[[], torch.Tensor]) -> Chain:
    """z ← z − (s/2) ∇U(z) + √s ω, ω ~ N(0, I), on the moving parts (residual entries and a part-way x_start
    stay). ``draw()`` gives one N(0, I) sample shaped like x_start (per sample from its own generator, when there
    is one generator per sample): one per ε_k, then one for x_start."""
    free = chain.free
    omega = torch.stack([draw() for _ in range(chain.eps.shape[0])])
    eps = chain.eps - 0.5 * step_size * grads[-1] * free + step_size**0.5 * omega * free
    x_start = chain.x_start
    if chain.move_start:
        x_start = x_start - 0.5 * step_size * grads[0] + step_size**0.5 * draw()
    return replace(chain, x_start=x_start, eps=eps)

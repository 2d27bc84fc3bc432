"""Guidance through a compiled UNet — the forward and backward graphs compiled by
inductor — gives eager's gradients and eager's Langevin chain."""

from __future__ import annotations

from dataclasses import replace

import torch

from conftest import images, pixel
from cyclediff import decode, encode, guide


def test_the_compiled_backward_matches_eager():
    eager = pixel(num_classes=3)
    fast = pixel(num_classes=3).optimize(compile=True, backend="inductor", grad=True)
    assert fast.runner.compiled_backward and not eager.runner.compiled_backward
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    z = encode(images(2), eager, steps=4, generator=gens, class_labels=[0, 1])

    def grad(den):
        eps = z.eps.clone().requires_grad_(True)
        decode(replace(z, eps=eps), den, checkpoint=True).square().mean().backward()
        return eps.grad

    reference = grad(eager)
    # float32 through different kernels: 2e-8 measured; the bound is relative to the gradient's size (5e-3)
    torch.testing.assert_close(grad(fast), reference, rtol=0, atol=1e-4 * reference.abs().max().item())

    def chain(den):
        gens = [torch.Generator().manual_seed(10 + i) for i in range(2)]
        return guide(den, lambda x: x.mean(dim=(1, 2, 3)), weight=5.0, langevin_steps=2, latent=z,
                     generator=gens)

    a, b = chain(eager), chain(fast)
    torch.testing.assert_close(b.energies, a.energies, rtol=0, atol=1e-4)
    torch.testing.assert_close(b.images, a.images, rtol=0, atol=1e-4)

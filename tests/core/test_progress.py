"""The step hook of the core's loops (:mod:`cyclediff._progress`): seen before every step of the encoder, the
decoder and Langevin guidance, set for one context only, and a hook that raises stops the work at that step."""

from __future__ import annotations

import pytest
import torch

from conftest import images, pixel
from cyclediff import decode, encode, guide
from cyclediff._progress import each_step


class Stop(Exception):
    pass


def test_the_hook_sees_every_step_of_each_loop_in_its_context_only():
    den, seen = pixel(), []
    with each_step(lambda stage, k, n: seen.append((stage, k, n))):
        z = encode(images(1), den, steps=6, strength=1.0, eta=0.5, generator=torch.Generator().manual_seed(0))
        decode(z, den)
    assert [(k, n) for stage, k, n in seen if stage == "encode"] == [(k, 6) for k in range(6)]
    assert [(k, n) for stage, k, n in seen if stage == "decode"] == [(k, 6) for k in range(6)]
    count = len(seen)
    decode(z, den)  # outside the block: no hook
    assert len(seen) == count


def test_a_hook_that_raises_stops_a_guided_chain_and_its_decoder_at_that_step():
    den, calls = pixel(), []
    forward = den.unet.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    den.unet.forward = counted

    def hook(stage: str, k: int, n: int) -> None:
        if stage == "guide" and k == 2:
            raise Stop

    settings = dict(weight=1.0, step_size=0.01, steps=4, batch_size=1)
    guide(den, lambda x: x.mean(dim=(1, 2, 3)), langevin_steps=1, generator=torch.Generator().manual_seed(0),
          **settings)  # two energy evaluations: Langevin steps 0 and 1
    two, calls[:] = len(calls), []
    with each_step(hook), pytest.raises(Stop):
        guide(den, lambda x: x.mean(dim=(1, 2, 3)), langevin_steps=50, generator=torch.Generator().manual_seed(0),
              **settings)
    assert len(calls) == two - 4, "the chain went on after the hook stopped it"  # less the final decode's 4
    calls.clear()

    def at_third_decoder_step(stage: str, k: int, n: int) -> None:
        if stage == "decode" and k == 2:
            raise Stop

    with each_step(at_third_decoder_step), pytest.raises(Stop):
        guide(den, lambda x: x.mean(dim=(1, 2, 3)), langevin_steps=50, generator=torch.Generator().manual_seed(0),
              **settings)
    assert len(calls) == 2  # the decoder's first two steps of the first energy evaluation

"""The one condition convention of the core: ``condition=`` or keywords, for encode, decode and sample alike."""

from __future__ import annotations

import pytest
import torch

from conftest import images, pixel
from cyclediff import decode, encode, sample_latent
from cyclediff.errors import CycleDiffError


def test_one_condition_convention_for_encode_decode_and_sample(gen):
    den = pixel(num_classes=3)
    x0 = images(2)
    by_keyword = encode(x0, den, steps=6, generator=[gen(0), gen(1)], class_labels=[1, 2])
    by_condition = encode(x0, den, steps=6, generator=[gen(0), gen(1)], condition={"class_labels": [1, 2]})
    assert torch.equal(by_keyword.eps, by_condition.eps)
    torch.testing.assert_close(decode(by_keyword, den, condition=[0, 0]), decode(by_keyword, den, class_labels=0))
    a = sample_latent(den, steps=4, generator=gen(3), condition=2)
    b = sample_latent(den, steps=4, generator=gen(3), class_labels=2)
    assert a.condition == b.condition and torch.equal(a.eps, b.eps)
    with pytest.raises(CycleDiffError, match="takes no condition 'stregth'"):
        encode(x0, den, steps=6, stregth=0.5)

"""Masked class edits on the shipped digits model (the README's picture): c → c + 5 with no mask, with the right
half masked, and with the automatic mask; outside a mask the output is the input, pixel for pixel.

    python examples/masked_digits.py docs/masked-edit.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from cyclediff import CycleDiffusion, translate
from cyclediff.demo.data import split
from cyclediff.models import load


def main(out: Path) -> None:
    model = load("demo:digits")
    _, _, x, y = split()
    picks = torch.cat([(y == c).nonzero()[0] for c in range(5)])  # a 0, 1, 2, 3 and 4 from the held-out split
    images, source = (x[picks] + 1) / 2, y[picks]
    target = (source + 5) % 10
    gens = [torch.Generator().manual_seed(i) for i in range(len(picks))]
    settings = dict(strength=0.8, steps=100, eta=0.1, source_condition={"class_labels": source.tolist()},
                    target_condition={"class_labels": target.tolist(), "guidance_scale": 2.0})
    right = torch.zeros(len(picks), 1, 8, 8)
    right[..., 4:] = 1

    def run(mask):
        return translate(images, model, model, generator=[torch.Generator().manual_seed(i) for i in range(len(gens))],
                         **settings, method=CycleDiffusion(mask=mask))

    free, half, auto = run(None), run(right), run("auto")
    assert torch.equal(half.images * (1 - right), images * (1 - right))
    rows = [images, free.images, right, half.images, auto.mask, auto.images]
    tiles = [torch.nn.functional.pad(r[:, :1], (1, 1, 1, 1), value=0.35) for r in rows]  # gray frames
    grid = torch.cat([torch.cat(list(t), dim=2) for t in tiles], dim=1)[0]  # rows × (columns · 10)
    big = np.kron((grid.clamp(0, 1).numpy() * 255).round().astype(np.uint8), np.ones((12, 12), dtype=np.uint8))
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(big).save(out)
    print(f"rows: input, edit c → c+5, right-half mask, masked edit, automatic mask, auto-masked edit -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "masked-edit.png"))

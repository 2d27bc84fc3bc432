"""The README's picture: held-out digits (before) and their class edits on demo:digits (after), offline in seconds.

    .venv/bin/python examples/before_after.py [OUT.png]      # default: docs/before-after.png

It also writes the example inputs the README's tour uses (examples/digits/three.png and five.png: the first 3
and the first 5 of the held-out split of scikit-learn's digits, as the demo and the web app pick them; and
three-moving.gif: a held-out 3 bouncing over 8 frames at 8 fps, the video demo model's input).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from cyclediff import edit
from cyclediff._images import save_image
from cyclediff._video import write_clip
from cyclediff.demo.data import split
from cyclediff.demo.video_data import clips
from cyclediff.models import load

root = Path(__file__).resolve().parents[1]
out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "before-after.png"
_, _, x, y = split()
model = load("demo:digits")
pairs = [(3, 8), (5, 6), (1, 7), (4, 9)]
before = torch.cat([(x[(y == c).nonzero()[0, 0]][None] + 1) / 2 for c, _ in pairs])
for c, name in ((3, "three"), (5, "five")):
    save_image(before[[c for c, _ in pairs].index(c)], root / "examples" / "digits" / f"{name}.png")
write_clip(root / "examples" / "digits" / "three-moving.gif", clips(1, seed=0, digit=3)[0][0].transpose(0, 1), 8)
after = edit(model, before, source_prompt=[c for c, _ in pairs], prompt=[t for _, t in pairs], guidance_scale=1.0,
             generator=[torch.Generator().manual_seed(0) for _ in pairs]).images
big = F.interpolate(torch.cat([before, after]), scale_factor=16, mode="nearest")
tiles = F.pad(big, (4, 4, 4, 4), value=1.0)  # a white frame round each digit
n = len(pairs)
grid = torch.cat([torch.cat(list(tiles[:n]), dim=2), torch.cat(list(tiles[n:]), dim=2)], dim=1)  # before; after
save_image(grid, out)
print(out)

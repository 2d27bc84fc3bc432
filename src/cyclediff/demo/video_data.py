"""Moving digits: one of scikit-learn's 8×8 digits bouncing over a dark 16×16 canvas for 8 frames, as clips
(B, 1, F, H, W) in [0, 1] (the video API's layout), deterministic for a seed.

Each clip draws a digit (from a given pool), a start position of its 8×8 box (top-left corner in 0..8 on each axis)
and a velocity of −2..2 pixels per frame on each axis (not both 0); the box moves in whole pixels and bounces off
the canvas' edges (the position is reflected into 0..8), so every frame holds the whole digit, unblurred.
"""

from __future__ import annotations

import torch

from .data import split

FRAMES, SIZE, DIGIT = 8, 16, 8  # frames per clip, canvas side, digit side
SPAN = SIZE - DIGIT  # the box's top-left corner lies in 0..SPAN
SPEEDS = (-2, -1, 0, 1, 2)  # pixels per frame on each axis


def bounce(start: torch.Tensor, velocity: torch.Tensor, frames: int = FRAMES) -> torch.Tensor:
    """(N, 2) starts and velocities → (N, frames, 2) top-left corners, reflected into 0..SPAN."""
    t = torch.arange(frames)[None, :, None]
    q = (start[:, None, :] + velocity[:, None, :] * t) % (2 * SPAN)
    return torch.where(q <= SPAN, q, 2 * SPAN - q)


def draw_motion(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2) starts in 0..SPAN and (N, 2) velocities in SPEEDS² without (0, 0)."""
    start = torch.randint(0, SPAN + 1, (n, 2), generator=generator)
    moves = torch.tensor([(a, b) for a in SPEEDS for b in SPEEDS if (a, b) != (0, 0)])
    return start, moves[torch.randint(0, len(moves), (n,), generator=generator)]


def render(digits01: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """(N, 1, 8, 8) digits in [0, 1] and (N, F, 2) top-left corners → clips (N, 1, F, SIZE, SIZE) on black."""
    n, frames = corners.shape[:2]
    clips = torch.zeros(n, 1, frames, SIZE, SIZE, dtype=digits01.dtype)
    for i in range(n):
        for f in range(frames):
            y, x = (int(v) for v in corners[i, f])
            clips[i, 0, f, y:y + DIGIT, x:x + DIGIT] = digits01[i, 0]
    return clips


def moving_digits(digits01: torch.Tensor, generator: torch.Generator,
                  frames: int = FRAMES) -> tuple[torch.Tensor, torch.Tensor]:
    """Each digit of (N, 1, 8, 8) in [0, 1] bouncing on its own drawn path: (clips, corners (N, F, 2))."""
    start, velocity = draw_motion(len(digits01), generator)
    corners = bounce(start, velocity, frames)
    return render(digits01, corners), corners


def clips(n: int, *, seed: int = 0, digit: int | None = None, held_out: bool = True,
          frames: int = FRAMES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` clips of the held-out (or training) split's digits (only ``digit`` when given), drawn for ``seed``:
    (clips (n, 1, F, SIZE, SIZE) in [0, 1], labels (n,), corners (n, F, 2))."""
    x_tr, y_tr, x_te, y_te = split()
    x, y = (x_te, y_te) if held_out else (x_tr, y_tr)
    if digit is not None:
        x, y = x[y == digit], y[y == digit]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(x), (n,), generator=g) if n > len(x) else torch.randperm(len(x), generator=g)[:n]
    video, corners = moving_digits((x[pick] + 1) / 2, g, frames)
    return video, y[pick], corners


__all__ = ["DIGIT", "FRAMES", "SIZE", "bounce", "clips", "moving_digits", "render"]

"""The demo's video rows: held-out 3s bouncing over 8 frames (:mod:`.video_data`) edited into 8s by the shipped
``demo:moving-digits`` rectified flow (one class-conditional model, source class 3, target class 8), with
CycleDiffusion, FlowEdit and SDEdit at equal steps and strength; does the output keep the input's motion?

- **Per-frame accuracy**: each frame's 8×8 digit window (the one holding the most ink within a pixel of the window
  placed on the frame's centre of mass as the training digits sit around theirs) goes to the shipped digits SVC
  (:func:`.data.classify`); the share of frames read as the target digit.
- **Trajectory distance**: the centre of mass per frame of input and output, the Euclidean distance between them
  averaged over the frames, in pixels (0: the output moves exactly as the input).

For scale: the same scores of the inputs themselves (their frames read as 3s; distance 0) and the distance between
each input's trajectory and another input's (unrelated motion).
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write
from ..api.translate import translate
from ..options import options_of
from .data import SOURCE_DIGIT, TARGET_DIGIT, classify, split
from .video_data import DIGIT, clips

VIDEO_MODEL = "moving-digits"
VIDEO_METHODS = ("cyclediffusion", "flowedit", "sdedit")
VIDEO_FILE = "demo-video.png"


def centres(video01: torch.Tensor) -> torch.Tensor:
    """(B, 1, F, H, W) clips in [0, 1] → (B, F, 2) centres of mass (row, column) of each frame's intensity, in
    pixels; an empty frame's centre is the canvas' centre."""
    mass = video01.detach().float().clamp(0, 1)[:, 0]
    h, w = mass.shape[-2:]
    total = mass.sum((-2, -1))
    rows = (mass.sum(-1) * torch.arange(h, dtype=mass.dtype)).sum(-1)
    cols = (mass.sum(-2) * torch.arange(w, dtype=mass.dtype)).sum(-1)
    centre = torch.stack([rows, cols], -1) / total.clamp_min(1e-8)[..., None]
    middle = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=mass.dtype)
    return torch.where((total > 1e-8)[..., None], centre, middle)


@lru_cache(maxsize=1)
def digit_centre() -> torch.Tensor:
    """(2,) the training digits' mean centre of mass in their 8×8 box (row, column: about (3.49, 3.57))."""
    x, _, _, _ = split()
    return centres(((x + 1) / 2)[:, :, None]).mean((0, 1))


def corners(video01: torch.Tensor) -> torch.Tensor:
    """(B, F, 2) top-left corners of each frame's digit window: among the 8×8 windows within a pixel of the one
    placed as the training digits sit around their centre of mass (:func:`digit_centre`), the one holding the
    most ink (ties: the one nearest that placement)."""
    b, _, f, h, w = video01.shape
    guess = centres(video01) - digit_centre()
    ink = torch.nn.functional.avg_pool2d(video01.detach().float()[:, 0].reshape(b * f, 1, h, w), DIGIT, 1)
    ink = (ink.reshape(b, f, h - DIGIT + 1, w - DIGIT + 1) * DIGIT**2).round(decimals=4)
    found = torch.empty(b, f, 2, dtype=torch.long)
    for i in range(b):
        for j in range(f):
            y0, x0 = guess[i, j].round().long().tolist()
            options = [(float(ink[i, j, y, x]), -float(torch.hypot(y - guess[i, j, 0], x - guess[i, j, 1])), y, x)
                       for y in range(y0 - 1, y0 + 2) for x in range(x0 - 1, x0 + 2)
                       if 0 <= y <= h - DIGIT and 0 <= x <= w - DIGIT]
            found[i, j] = torch.tensor(max(options)[2:]) if options else torch.tensor([(h - DIGIT) // 2,
                                                                                       (w - DIGIT) // 2])
    return found


def crops(video01: torch.Tensor) -> torch.Tensor:
    """(B, 1, F, H, W) → (B·F, 1, 8, 8): each frame's digit window (:func:`corners`)."""
    b, _, f = video01.shape[:3]
    where = corners(video01)
    out = torch.empty(b * f, 1, DIGIT, DIGIT, dtype=video01.dtype)
    for i in range(b):
        for j in range(f):
            y, x = where[i, j].tolist()
            out[i * f + j, 0] = video01[i, 0, j, y:y + DIGIT, x:x + DIGIT]
    return out


def frame_classes(video01: torch.Tensor) -> np.ndarray:
    """(B, F) digit classes the shipped SVC reads in each frame's centred 8×8 window."""
    b, _, f = video01.shape[:3]
    return classify(crops(video01) * 2 - 1).reshape(b, f)


def trajectory_distance(a01: torch.Tensor, b01: torch.Tensor) -> torch.Tensor:
    """(B,) mean over frames of the distance (pixels) between the two clips' centres of mass."""
    return (centres(a01) - centres(b01)).norm(dim=-1).mean(-1)


def clip_scores(inputs01: torch.Tensor, outputs01: torch.Tensor, target: int) -> dict[str, float]:
    classes = frame_classes(outputs01)
    return {"frame_accuracy": float(np.mean(classes == target)),
            "clip_accuracy": float(np.mean((classes == target).all(1))),  # every frame the target digit
            "trajectory_distance": float(trajectory_distance(inputs01, outputs01).mean())}


def video_edits(model: Any, *, n: int, steps: int, strength: float, eta: float, guidance_scale: float, seed: int,
                counted: Any, progress: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Scores of the 3 → 8 clip edits per method (and of the inputs), and the first clip's frames per row."""
    inputs, _, _ = clips(n, seed=seed, digit=SOURCE_DIGIT)
    labels = {"source_condition": {"class_labels": torch.full((n,), SOURCE_DIGIT)},
              "target_condition": {"class_labels": torch.full((n,), TARGET_DIGIT), "guidance_scale": guidance_scale}}
    source_frames = frame_classes(inputs)
    results: dict[str, Any] = {
        "clips": n, "frames": int(inputs.shape[2]), "size": list(inputs.shape[-2:]), "steps": steps,
        "strength": strength, "eta": eta, "guidance_scale": guidance_scale,
        "inputs": {"frame_accuracy_as_source": float(np.mean(source_frames == SOURCE_DIGIT)),
                   "frame_accuracy_as_target": float(np.mean(source_frames == TARGET_DIGIT)),
                   "trajectory_distance_unrelated": float(trajectory_distance(inputs, inputs.roll(1, 0)).mean())},
        "methods": {}}
    shown = {"input": inputs[0, 0]}
    for method in VIDEO_METHODS:
        gens = [torch.Generator().manual_seed(seed + i) for i in range(n)]
        result, rows = counted([model], partial(
            translate, inputs, model, model, strength=strength, steps=steps,
            method=options_of(method, strict=False, eta=eta), generator=gens, progress=progress, **labels))
        results["methods"][method] = {**clip_scores(inputs, result.images, TARGET_DIGIT),
                                      "evaluations_per_edit": rows / n}
        shown[method] = result.images[0, 0]
    return results, shown


def markdown(video: dict[str, Any]) -> str:
    i = video["inputs"]
    lines = [f"Clips {SOURCE_DIGIT} → {TARGET_DIGIT} ({video['clips']} held-out {SOURCE_DIGIT}s bouncing over "
             f"{video['frames']} frames of {video['size'][0]}×{video['size'][1]}, demo:{VIDEO_MODEL}, {video['steps']}"
             f" steps at strength {video['strength']:g}, η {video['eta']:g}, guidance {video['guidance_scale']:g}): "
             f"frames judged by the SVC on each frame's 8×8 digit window, "
             f"found from its centre of mass (the inputs' frames: {i['frame_accuracy_as_source']:.1%} read as "
             f"{SOURCE_DIGIT}s); "
             f"trajectory distance = mean distance of the centres of mass per frame (between two unrelated inputs: "
             f"{i['trajectory_distance_unrelated']:.2f} px).", "",
             "| method | frames read as the target | clips with every frame the target | trajectory distance (px) | "
             "model evaluations per edit |", "|---|---|---|---|---|"]
    for method, r in video["methods"].items():
        lines.append(f"| {method} | {r['frame_accuracy']:.1%} | {r['clip_accuracy']:.1%} | "
                     f"{r['trajectory_distance']:.2f} | {r['evaluations_per_edit']:g} |")
    return "\n".join(lines) + "\n"


def write_strip(path: Path, shown: dict[str, torch.Tensor], scale: int = 4) -> None:
    """One clip before and after: a row of frames per entry (input, then each method), dark digits on white."""
    from PIL import Image

    rows = [np.concatenate([np.pad(frame.numpy(), 1, constant_values=0.25) for frame in frames], axis=1)
            for frames in shown.values()]
    grid = (1 - np.concatenate(rows, axis=0)) * 255
    img = Image.fromarray(grid.astype(np.uint8)).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                                         Image.Resampling.NEAREST)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


__all__ = ["centres", "clip_scores", "corners", "crops", "frame_classes", "trajectory_distance", "video_edits"]

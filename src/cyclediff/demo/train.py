"""Training the demo DDPMs (deterministic for a seed; minutes on two CPU cores).

    cyclediff demo train --out DIR [--iters N] [--seed S]

writes DIR/digits (class-conditional, labels 0–9 plus the null label 10), DIR/digit-3 and DIR/digit-8
(unconditional) and DIR/digits-flow (class-conditional rectified flow), each a diffusers UNet folder with
scheduler_config.json and cyclediff.json.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from tqdm.auto import tqdm

from .data import NULL_LABEL, SOURCE_DIGIT, TARGET_DIGIT, split
from .video_data import FRAMES, SIZE, moving_digits

SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                 prediction_type="epsilon", clip_sample=True, variance_type="fixed_small")
FLOW_SCHEDULER = dict(num_train_timesteps=1000, shift=1.0)  # rectified flow (FlowMatchEulerDiscreteScheduler)
MODELS = ("digits", f"digit-{SOURCE_DIGIT}", f"digit-{TARGET_DIGIT}", "digits-flow")


def make_unet(num_class_embeds: int | None = None) -> UNet2DModel:
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=16, num_class_embeds=num_class_embeds,
    )


def train_unet(
    x: torch.Tensor, labels: torch.Tensor | None, *, iters: int, seed: int, batch_size: int = 64,
    lr: float = 2e-3, p_uncond: float = 0.15, ema_decay: float = 0.999, desc: str = "train", flow: bool = False,
) -> UNet2DModel:
    """ε-prediction DDPM training with EMA; with labels, drops them to the null label with prob. p_uncond.
    ``flow``: rectified flow instead, x_σ = (1 − σ)·x0 + σ·ε with σ ~ U(0, 1), timestep σ·1000, target v = ε − x0."""
    torch.manual_seed(seed)
    unet = make_unet(NULL_LABEL + 1 if labels is not None else None)

    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        return x[idx], None if labels is None else labels[idx]

    return fit(unet, draw, iters=iters, seed=seed, lr=lr, p_uncond=p_uncond, ema_decay=ema_decay, desc=desc,
               flow=flow)


def fit(unet: UNet2DModel, draw, *, iters: int, seed: int, lr: float = 2e-3, p_uncond: float = 0.15,
        ema_decay: float = 0.999, desc: str = "train", flow: bool = False) -> UNet2DModel:
    """Train ``unet`` on batches ``draw(generator) -> (x0, labels or None)`` (AdamW, warm-up then cosine, EMA);
    returns the EMA copy."""
    g = torch.Generator().manual_seed(seed)
    ema = copy.deepcopy(unet).requires_grad_(False)
    sched = DDPMScheduler(**SCHEDULER)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, iters // 20)
    lr_at = lambda i: lr * min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * i / iters))  # noqa: E731
    unet.train()
    for i in tqdm(range(iters), desc=desc, leave=False):
        x0, y = draw(g)
        batch_size = len(x0)
        noise = torch.randn(x0.shape, generator=g)
        if flow:
            sigma = torch.rand(batch_size, generator=g)
            s4 = sigma.view(-1, *[1] * (x0.ndim - 1))
            x_t, t, target = (1 - s4) * x0 + s4 * noise, sigma * FLOW_SCHEDULER["num_train_timesteps"], noise - x0
        else:
            t = torch.randint(0, SCHEDULER["num_train_timesteps"], (batch_size,), generator=g)
            x_t, target = sched.add_noise(x0, noise, t), noise
        kwargs = {}
        if y is not None:
            y = y.clone()
            y[torch.rand(batch_size, generator=g) < p_uncond] = NULL_LABEL
            kwargs["class_labels"] = y
        loss = torch.nn.functional.mse_loss(unet(x_t, t, **kwargs).sample, target)
        for group in opt.param_groups:
            group["lr"] = lr_at(i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + i) / (10 + i))
            for p_ema, p in zip(ema.parameters(), unet.parameters()):
                p_ema.lerp_(p, 1 - decay)
    return ema.eval()


def save_model(unet: UNet2DModel, folder: Path, *, null_label: int | None, description: str,
               flow: bool = False, frames: int | None = None, frame_grid: tuple[int, int] | None = None) -> Path:
    """Save as a diffusers UNet folder; weights in float16 (half the size; loaded back as float32)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    folder.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(unet).half().save_pretrained(folder, safe_serialization=True)
    (FlowMatchEulerDiscreteScheduler(**FLOW_SCHEDULER) if flow else DDPMScheduler(**SCHEDULER)).save_config(folder)
    meta = {"null_class_label": null_label, "description": description, "data_range": [-1.0, 1.0],
            "foreground": "light",  # sklearn's digits: light strokes on a dark ground
            "defaults": {"guidance_scale": 1.0}}  # stronger guidance turns these small models' edits into blobs
    if frames is not None:
        meta["frames"] = frames  # a video UNet (models/pixel_video.py): frames folded into its channels, or
        if frame_grid is not None:  # laid out as rows × columns tiles of one picture
            meta["frame_grid"] = list(frame_grid)
    (folder / "cyclediff.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def train_all(out: Path, *, iters: int = 4000, seed: int = 0, threads: int | None = 2) -> list[Path]:
    """Train the four demo models on the training split and save them under ``out``."""
    if threads:
        torch.set_num_threads(threads)
    x, y, _, _ = split()
    paths = [save_model(train_unet(x, y, iters=iters, seed=seed, desc="digits"), out / "digits",
                        null_label=NULL_LABEL, description="class-conditional DDPM on sklearn digits (0-9, null 10)")]
    for digit in (SOURCE_DIGIT, TARGET_DIGIT):
        paths.append(save_model(
            train_unet(x[y == digit], None, iters=iters, seed=seed + digit, desc=f"digit-{digit}"),
            out / f"digit-{digit}", null_label=None, description=f"unconditional DDPM on sklearn digits {digit}"))
    paths.append(save_model(train_unet(x, y, iters=iters, seed=seed, desc="digits-flow", flow=True),
                            out / "digits-flow", null_label=NULL_LABEL, flow=True,
                            description="class-conditional rectified flow on sklearn digits (0-9, null 10)"))
    return paths


# ------------------------------------------------------------------------------------------ the video demo model
VIDEO_MODEL = "moving-digits"
VIDEO_ITERS = 700
FRAME_GRID = (2, 4)  # the 8 frames laid out as 2 rows of 4 tiles: one 32×64 picture


def make_video_unet(frames: int = FRAMES, size: int = SIZE, grid: tuple[int, int] = FRAME_GRID) -> UNet2DModel:
    """A class-conditional UNet2DModel over a clip's one-channel frames laid out as a grid of tiles (``grid`` rows ×
    columns = ``frames``): its convolutions are shared by every frame, so a digit's strokes are learnt once wherever
    and whenever it is; attention at the coarsest level (8×16) lines up the frames."""
    rows, cols = grid
    assert rows * cols == frames, "the grid holds every frame"
    return UNet2DModel(
        sample_size=(rows * size, cols * size), in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=16,
        num_class_embeds=NULL_LABEL + 1,
    )


def train_video(out: Path, *, iters: int = VIDEO_ITERS, seed: int = 0, batch_size: int = 32, lr: float = 2e-3,
                ema_decay: float = 0.995, threads: int | None = 1) -> Path:
    """Train the moving-digits rectified flow (clips of the training split's digits bouncing on fresh paths each
    batch, laid out as :data:`FRAME_GRID` tiles) and save it as ``out/moving-digits``; deterministic for a seed."""
    from ..models.pixel_video import tile_frames

    if threads:
        torch.set_num_threads(threads)
    x, y, _, _ = split()
    torch.manual_seed(seed)
    unet = make_video_unet()

    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        video, _ = moving_digits((x[idx] + 1) / 2, g)
        return tile_frames(video * 2 - 1, FRAME_GRID), y[idx]  # (B, 1, 32, 64) in [−1, 1]

    ema = fit(unet, draw, iters=iters, seed=seed, lr=lr, ema_decay=ema_decay, desc=VIDEO_MODEL, flow=True)
    return save_model(ema, out / VIDEO_MODEL, null_label=NULL_LABEL, flow=True, frames=FRAMES, frame_grid=FRAME_GRID,
                      description=f"class-conditional rectified flow on sklearn digits bouncing over {SIZE}x{SIZE} "
                                  f"for {FRAMES} frames, laid out as {FRAME_GRID[0]}x{FRAME_GRID[1]} tiles "
                                  f"(0-9, null 10); cyclediff.demo.train.train_video(iters={iters}, seed={seed}, "
                                  f"batch_size={batch_size}, lr={lr:g}, ema_decay={ema_decay})")


if __name__ == "__main__":  # python -m cyclediff.demo.train DIR: retrain the video demo model into DIR
    import sys

    print(train_video(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-models")))

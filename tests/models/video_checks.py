"""The clip checks the video families' tests share, bound to each family's frames, size and pipeline call by a
``VideoFamily``: sliding clips, a seed's clip against the pipeline's (``ours`` / ``theirs`` / ``assert_parity``, as
tests/models/family_checks.py has them for images), a method editing a clip, and the CLI editing a clip with a saved
folder (its frames cut as the family requires and said, its frame rate kept)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from family_checks import PROMPT, SENSITIVE, STEPS, TOLERANCE, gap, seed

from conftest import gens
from cyclediff import decode, edit
from cyclediff.models.codec import to_images, to_model_space
from cyclediff.sampler import sample_latent
from tiny_sd import photos


@dataclass(frozen=True)
class VideoFamily:
    """One video family's defaults for the shared clip checks."""

    frames: int
    size: tuple[int, int]
    call: dict = field(default_factory=dict)  # what every pipeline call gets (max_sequence_length, its guidance)
    prompt: str = PROMPT
    steps: int = STEPS
    slide: int = 1  # pixels a frame the clips' picture slides
    prepare: Callable[[object, dict], dict] | None = None  # sets the pipeline up for a call (a guider), returns it

    def clips(self, batch: int, seed: int = 0, frames: int | None = None, size=None) -> torch.Tensor:
        """(B, 3, F, H, W) clips in [0, 1]: a picture sliding ``slide`` pixels a frame."""
        h, w = self.size if size is None else (size, size) if isinstance(size, int) else size
        base = photos(batch, size=max(h, w), seed=seed)[..., :h, :w]
        frames = frames or self.frames
        return torch.stack([torch.roll(base, shifts=self.slide * i, dims=-1) for i in range(frames)], dim=2)

    def ours(self, model, s: int, frames: int | None = None, size=None, **condition) -> torch.Tensor:
        """Our clip for seed s: a prior latent decoded by the sampler, then through the model's codec."""
        frames, size = frames or self.frames, size or self.size
        f = (frames - 1) // model.codec.temporal + 1
        h, w = (n // model.codec.factor for n in size)
        z = sample_latent(model, 1, steps=self.steps, eta=0, generator=seed(s), prompt=self.prompt,
                          sample_shape=(model.sample_shape[0], f, h, w), **condition)
        return to_images(model, decode(z, model))

    def theirs(self, pipe, s: int, frames: int | None = None, size=None, **call) -> torch.Tensor:
        """The pipeline's clip as (B, 3, F, H, W) in [0, 1] (it gives (B, F, 3, H, W))."""
        frames, size = frames or self.frames, size or self.size
        call = {**self.call, **call}
        if self.prepare is not None:
            call = self.prepare(pipe, call)
        with torch.no_grad():
            out = pipe(prompt=self.prompt, num_inference_steps=self.steps, height=size[0], width=size[1],
                       num_frames=frames, generator=seed(s), output_type="pt", **call).frames
        return out.transpose(1, 2)

    def assert_parity(self, model, pipe, other: dict, frames: int | None = None, size=None, call=None,
                      **condition) -> float:
        """Ours equals the pipeline's clip for seed 3; seed 4, and ``other`` over the condition, are far from it."""
        frames, size = frames or self.frames, size or self.size
        reference = self.theirs(pipe, 3, frames, size, **{**condition, **(call or {})})
        mine = self.ours(model, 3, frames, size, **condition)
        assert mine.shape == reference.shape == (1, 3, frames, *size)
        diff = gap(mine, reference)
        assert diff <= TOLERANCE, f"max |ours − pipeline| = {diff:.3g}"
        assert gap(self.ours(model, 4, frames, size, **condition), reference) > SENSITIVE
        assert gap(self.ours(model, 3, frames, size, **{**condition, **other}), reference) > SENSITIVE
        return diff


def assert_method_edits_clip(model, x: torch.Tensor, method: str, guidance_scale: float) -> None:
    """A method edits a clip: finite frames of the clip's shape, far from the clip's own reconstruction."""
    out = edit(model, x, source_prompt="a cat", prompt="a dog", steps=4, guidance_scale=guidance_scale,
               generator=gens(0), method=method).images
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert gap(out, to_images(model, to_model_space(model, x, None))) > SENSITIVE


def assert_cli_edits_clip(tmp_path, folder, clip: torch.Tensor, kept: int, note: str, *options: str) -> None:
    """``cyclediff edit cat.mp4 --model FOLDER`` (a cat to a dog, with ``options``): the clip's frames are cut to
    ``kept`` (``note`` in the status line) and the edit is written as an .mp4 of them at the input's frame rate."""
    from click.testing import CliRunner

    from cyclediff._video import read_clip, write_clip
    from cyclediff.cli import main

    write_clip(tmp_path / "cat.mp4", clip.transpose(0, 1), 8.0)
    res = CliRunner().invoke(main, ["edit", str(tmp_path / "cat.mp4"), "--model", str(folder), "--source-prompt",
                                    "a cat", "--prompt", "a dog", *options, "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert note in res.output
    (written,) = (tmp_path / "out").glob("cat_a-dog_*.mp4")
    made = read_clip(written)
    assert made.frames.shape == (kept, 3, *clip.shape[-2:]) and made.fps == pytest.approx(8.0)

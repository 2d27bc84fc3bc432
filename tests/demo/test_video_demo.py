"""The video demo: moving-digits clips, the video UNet adapter (frames tiled or folded) and its shipped model
demo:moving-digits,
the clip metrics (per-frame class, centre-of-mass trajectories) on clips whose answer is known, and one short edit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cyclediff.demo.data import classify, split
from cyclediff.demo.video import centres, corners, frame_classes, trajectory_distance
from cyclediff.demo.video_data import FRAMES, SIZE, bounce, clips, render
from cyclediff.errors import CycleDiffError, IncompatibleModelError
from cyclediff.models import load


def test_clips_are_deterministic_whole_digits_bouncing_inside_the_canvas():
    a, la, ca = clips(6, seed=3)
    b, lb, cb = clips(6, seed=3)
    c, _, _ = clips(6, seed=4)
    assert a.shape == (6, 1, FRAMES, SIZE, SIZE) and torch.equal(a, b) and torch.equal(la, lb) and torch.equal(ca, cb)
    assert not torch.equal(a, c) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert int(ca.min()) >= 0 and int(ca.max()) <= SIZE - 8
    # the whole digit in every frame: each frame holds the same ink
    ink = a.sum((-2, -1))[:, 0]
    assert torch.allclose(ink, ink[:, :1].expand_as(ink))
    # reflected at the edges: 0..8 on a path of speed 2 from 7 goes 7, 7 + 1 bounced back, …
    assert bounce(torch.tensor([[7, 0]]), torch.tensor([[2, -1]]), 6)[0].tolist() == \
        [[7, 0], [7, 1], [5, 2], [3, 3], [1, 4], [1, 5]]
    assert set(clips(4, seed=0, digit=3)[1].tolist()) == {3}


def test_centres_and_trajectory_distance_of_known_clips():
    video = torch.zeros(1, 1, 3, SIZE, SIZE)
    for f, (y, x) in enumerate([(2, 3), (5, 5), (9, 1)]):
        video[0, 0, f, y, x] = 1.0  # one bright pixel: its centre of mass is the pixel
    assert centres(video)[0].tolist() == [[2, 3], [5, 5], [9, 1]]
    # a digit moved by (1, 2) in every frame: the trajectories are √5 apart; a clip and itself 0
    digit = (split()[0][:1] + 1) / 2
    path = torch.tensor([[[0, 0], [2, 1], [4, 2], [6, 3]]])
    near, far = render(digit, path), render(digit, path + torch.tensor([1, 2]))
    assert float(trajectory_distance(near, far)[0]) == pytest.approx(5 ** 0.5, abs=1e-5)
    assert float(trajectory_distance(near, near)[0]) == 0
    # an empty frame's centre is the canvas' middle (no division by zero)
    assert centres(torch.zeros(1, 1, 1, SIZE, SIZE))[0, 0].tolist() == [7.5, 7.5]


def test_frame_classes_find_the_digit_where_it_is():
    """Real held-out digits placed at known corners: the locator finds the drawn corner in almost every frame, and
    there the SVC reads the frame as it reads the digit itself."""
    video, labels, drawn = clips(40, seed=5)
    found = corners(video)
    assert float((found == drawn).all(-1).float().mean()) >= 0.85
    digits = torch.stack([video[i, :, 0, y:y + 8, x:x + 8] for i, (y, x) in enumerate(drawn[:, 0].tolist())])
    own = classify(digits * 2 - 1)
    read = frame_classes(video)
    exact = (found == drawn).all(-1).numpy()
    assert (read[exact] == np.repeat(own[:, None], FRAMES, 1)[exact]).all()
    assert np.mean(read == labels.numpy()[:, None]) >= 0.9


def test_the_shipped_video_model_loads_as_a_frames_tiled_flow():
    from cyclediff.models.pixel_video import FlowPixelVideo

    model = load("demo:moving-digits")
    assert isinstance(model, FlowPixelVideo) and model.family == "flow-pixel-video" and model.frame_grid == (2, 4)
    assert model.sample_shape == (1, FRAMES, SIZE, SIZE) and model.frames == FRAMES and model.codec.temporal == 1
    assert model.schedule.path == "rectified_flow" and model.null_class_label == 10
    assert model.fit_clip(10, 18, 16) == (FRAMES, 16, 16, "10 frames cut to 8 (this model takes 8); 18×16 cut to "
                                                          "16×16 (multiples of 4)")
    assert model.fit_clip(FRAMES, SIZE, SIZE)[3] == ""
    with pytest.raises(IncompatibleModelError, match="fit_clip"):
        model.codec.encode(torch.zeros(1, 1, SIZE, SIZE))
    with pytest.raises(IncompatibleModelError, match=f"\\(B, 1, {FRAMES}, H, W\\)"):
        model.check_sample(torch.zeros(1, 1, FRAMES - 1, SIZE, SIZE))
    # the network sees one 32×64 picture of 2 rows of 4 frames, as the training laid them out: frame 5 is the second
    # row's second tile
    x, t = torch.randn(2, 1, FRAMES, SIZE, SIZE), torch.full((2,), 500.0)
    y = torch.tensor([3, 8])
    picture = torch.cat([torch.cat(list(x[:, :, r * 4:(r + 1) * 4].unbind(2)), dim=-1) for r in range(2)], dim=-2)
    assert picture.shape == (2, 1, 2 * SIZE, 4 * SIZE) and torch.equal(picture[:, :, SIZE:, SIZE:2 * SIZE], x[:, :, 5])
    with torch.no_grad():
        out = model.unet(picture, t, class_labels=y).sample
        back = torch.stack([out[:, :, r * SIZE:(r + 1) * SIZE, c * SIZE:(c + 1) * SIZE]
                            for r in range(2) for c in range(4)], dim=2)
        assert torch.equal(model.runner(x, t, x.dtype, class_labels=y), back)
    # a clip model and an image model do not share a space (translate refuses them)
    assert not model.codec.same_space(load("demo:digits-flow").codec)
    meta = json.loads((model_folder() / "cyclediff.json").read_text())
    assert meta["frames"] == FRAMES and meta["frame_grid"] == [2, 4] and "train_video" in meta["description"]


def test_a_frames_folded_video_unet_sees_the_frames_as_channels(tmp_path):
    """The other layout: a UNet of F·C channels, the clip's frames folded into them ((B, 1, F, H, W).flatten(1, 2))."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DModel

    from cyclediff.models.pixel_video import FlowPixelVideo

    UNet2DModel(sample_size=SIZE, in_channels=FRAMES, out_channels=FRAMES, layers_per_block=1,
                block_out_channels=(8, 8), down_block_types=("DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, num_class_embeds=11
                ).save_pretrained(tmp_path)
    FlowMatchEulerDiscreteScheduler().save_config(tmp_path)
    (tmp_path / "cyclediff.json").write_text(json.dumps({"frames": FRAMES, "null_class_label": 10}))
    model = load(str(tmp_path))
    assert isinstance(model, FlowPixelVideo) and model.frame_grid is None
    assert model.sample_shape == (1, FRAMES, SIZE, SIZE)
    x, t, y = torch.randn(2, 1, FRAMES, SIZE, SIZE), torch.full((2,), 500.0), torch.tensor([3, 8])
    with torch.no_grad():
        folded = model.unet(x.flatten(1, 2), t, class_labels=y).sample
        assert torch.equal(model.runner(x, t, x.dtype, class_labels=y), folded.reshape(x.shape))
    (tmp_path / "cyclediff.json").write_text(json.dumps({"frames": FRAMES, "frame_grid": [2, 3]}))
    with pytest.raises(CycleDiffError, match="frame_grid") as err:  # 2 × 3 tiles cannot hold 8 frames
        load(str(tmp_path))
    assert "\n" not in str(err.value)


def model_folder():
    from importlib.resources import files

    return files("cyclediff") / "demo" / "weights" / "moving-digits"


def test_a_video_cyclediff_json_with_a_ddpm_scheduler_is_one_line(tmp_path):
    from diffusers import DDPMScheduler

    from cyclediff.demo.train import make_video_unet
    from cyclediff.models.pixel import PixelDenoiser

    make_video_unet().save_pretrained(tmp_path)
    DDPMScheduler().save_config(tmp_path)
    (tmp_path / "cyclediff.json").write_text(json.dumps({"frames": FRAMES}))
    with pytest.raises(CycleDiffError, match="FlowMatch scheduler") as err:
        PixelDenoiser.from_pretrained(tmp_path)
    assert "\n" not in str(err.value)


def test_a_short_clip_edit_changes_the_class_and_keeps_the_motion():
    """CycleDiffusion 3 → 8 on the shipped model at the demo's video settings, 8 clips at 20 steps: a clip of the
    input's shape in [0, 1] with most of its frames read as 8s (measured 70%; the inputs 0%; the model before the
    tiled layout 12.5%), whose centre of mass follows the input's path within half the distance between two
    unrelated inputs."""
    from cyclediff.api.translate import translate
    from cyclediff.demo.run import DemoSettings
    from cyclediff.demo.video import clip_scores
    from cyclediff.options import options_of

    s, n = DemoSettings(), 8
    model = load("demo:moving-digits")
    inputs, _, _ = clips(n, seed=0, digit=3)
    result = translate(inputs, model, model, steps=20, strength=s.video_strength,
                       method=options_of("cyclediffusion", strict=False, eta=s.video_eta),
                       generator=[torch.Generator().manual_seed(i) for i in range(n)],
                       source_condition={"class_labels": 3},
                       target_condition={"class_labels": 8, "guidance_scale": s.video_guidance_scale})
    assert result.images.shape == inputs.shape and 0 <= float(result.images.min()) <= float(result.images.max()) <= 1
    assert float(np.mean(frame_classes(inputs) == 8)) == 0.0
    scores = clip_scores(inputs, result.images, 8)
    unrelated = float(trajectory_distance(inputs, inputs.roll(1, 0)).mean())
    assert scores["frame_accuracy"] >= 0.4, scores
    assert scores["trajectory_distance"] < unrelated / 2, (scores, unrelated)


def test_train_video_writes_a_loadable_model_deterministically(tmp_path):
    from safetensors.torch import load_file

    from cyclediff.demo.models import load_demo
    from cyclediff.demo.train import train_video
    from cyclediff.models.pixel_video import FlowPixelVideo

    before = torch.get_num_threads()
    try:
        a = train_video(tmp_path / "a", iters=2, batch_size=4, threads=None)
        b = train_video(tmp_path / "b", iters=2, batch_size=4, threads=None)
    finally:
        torch.set_num_threads(before)
    wa, wb = (load_file(p / "diffusion_pytorch_model.safetensors") for p in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    model = load_demo("moving-digits", root=tmp_path / "a")
    assert isinstance(model, FlowPixelVideo) and model.sample_shape == (1, FRAMES, SIZE, SIZE)

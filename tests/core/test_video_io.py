"""Clips in and out (cyclediff._video): containers built with PyAV itself, a coloured square moving over 9 frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cyclediff import _video
from cyclediff._video import is_clip, read_clip, read_record, write_clip
from cyclediff.errors import CycleDiffError

LOSSY_PSNR = 30.0  # dB: H.264 / VP9 at the quality written (yuv420p halves the chroma of the square's sharp edges)


def square_frames(n: int = 9, h: int = 32, w: int = 48) -> np.ndarray:
    """(n, h, w, 3) uint8: an orange square moving right by 4 pixels a frame over a dark blue ground."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 2] = 60
    for i in range(n):
        frames[i, 8:20, 2 + 4 * i: 14 + 4 * i] = (250, 160, 30)
    return frames


def as_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def make_clip(path: Path, frames: np.ndarray, fps: int = 24, codec: str = "libx264", audio: bool = False) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=44100) if audio else None
        for a in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        if sound is not None:
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate = 44100
            out.mux(sound.encode(chunk))
            out.mux(sound.encode())
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("suffix, codec", [(".mp4", "libx264"), (".mov", "libx264"), (".webm", "libvpx-vp9")])
def test_clips_made_by_pyav_read_with_their_frames_and_fps(tmp_path, suffix, codec):
    frames = square_frames()
    clip = read_clip(make_clip(tmp_path / f"a{suffix}", frames, fps=24, codec=codec))
    assert clip.frames.shape == (9, 3, 32, 48) and clip.frames.dtype == torch.float32
    assert clip.fps == 24 and clip.notes == []
    assert psnr(clip.frames, as_tensor(frames)) > LOSSY_PSNR
    assert clip.batch.shape == (1, 3, 9, 32, 48) and torch.equal(clip.batch[0, :, 4], clip.frames[4])


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm"])
def test_lossy_round_trip_keeps_count_fps_and_the_picture(tmp_path, suffix):
    x = as_tensor(square_frames())
    path = write_clip(tmp_path / f"out{suffix}", x, 30000 / 1001)
    clip = read_clip(path)
    assert clip.frames.shape == x.shape and abs(clip.fps - 30000 / 1001) < 1e-6
    assert psnr(clip.frames, x) > LOSSY_PSNR
    with av.open(str(path)) as c:  # what players need: H.264 / VP9 in yuv420p
        ctx = c.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ({".webm": "vp9"}.get(suffix, "h264"), "yuv420p")


def test_frames_and_gif_round_trip_exactly(tmp_path):
    x = as_tensor(square_frames())
    folder = write_clip(tmp_path / "frames", x, 12)
    assert sorted(p.name for p in folder.iterdir())[:2] == ["frame_00000.png", "frame_00001.png"]
    back = read_clip(folder, fps=12)
    assert torch.equal(back.frames, x) and back.fps == 12 and back.notes == []
    gif = read_clip(write_clip(tmp_path / "a.gif", x, 25))
    assert torch.equal(gif.frames, x) and gif.fps == 25  # a few colours: the palette holds them exactly


@pytest.mark.parametrize("fps", [8, 12, 15, 24, 25, 30])
@pytest.mark.parametrize("frames", [5, 8, 9, 17, 33])
def test_a_gif_keeps_its_frame_rate_though_it_counts_hundredths(tmp_path, fps, frames):
    """GIF keeps frame times in hundredths of a second (24 fps is 4.17 of them): the written durations alternate
    so that the length is right, and the rate read back is the one written."""
    x = torch.rand(frames, 3, 8, 8)
    assert read_clip(write_clip(tmp_path / "a.gif", x, fps)).fps == fps


def test_a_gif_of_equal_delays_reads_at_its_own_rate(tmp_path):
    """Another writer's GIF of 12-hundredth frames plays at 8.33 fps, not at a whole rate near it."""
    from PIL import Image

    frames = [Image.new("RGB", (8, 8), (i * 30, 0, 0)) for i in range(8)]
    frames[0].save(tmp_path / "b.gif", save_all=True, append_images=frames[1:], duration=120, loop=0)
    assert read_clip(tmp_path / "b.gif").fps == pytest.approx(100 / 12)


def test_folder_frames_in_numeric_order_and_fps_assumed(tmp_path):
    x = as_tensor(square_frames(n=11))
    from cyclediff._images import save_image

    for i in range(11):
        save_image(x[i], tmp_path / "f" / f"frame{i}.png")  # frame10 sorts before frame2 as text
    clip = read_clip(tmp_path / "f")
    assert torch.equal(clip.frames, x)
    assert clip.fps == _video.FOLDER_FPS and clip.notes == ["f: a folder of frames has no frame rate; 24 fps assumed"]
    assert is_clip(tmp_path / "f") and not is_clip(tmp_path) and is_clip("x.MP4") and not is_clip("x.png")


def test_long_clips_are_cut_and_strided_with_a_note(tmp_path):
    frames = square_frames(n=9)
    path = make_clip(tmp_path / "a.mp4", frames, fps=24)
    full = read_clip(path).frames
    cut = read_clip(path, max_frames=5)
    assert torch.equal(cut.frames, full[:5]) and cut.fps == 24
    assert cut.notes == ["a.mp4: cut to its first 5 frames of 9 (0.21 s)"]
    strided = read_clip(path, stride=2)
    assert torch.equal(strided.frames, full[::2]) and strided.fps == 12
    assert strided.notes == ["a.mp4: every 2nd frame taken (24 → 12 fps)"]
    both = read_clip(path, stride=2, max_frames=3)
    assert torch.equal(both.frames, full[:6:2]) and len(both.notes) == 2
    assert "of 5" in both.notes[1]


def test_audio_is_dropped_with_a_note(tmp_path):
    clip = read_clip(make_clip(tmp_path / "talk.mp4", square_frames(), audio=True))
    assert len(clip.frames) == 9 and clip.notes == ["talk.mp4: its audio was dropped (clips are written without sound)"]


def test_sizing_grayscale_and_the_pixel_limit(tmp_path):
    path = make_clip(tmp_path / "a.mp4", square_frames())
    assert read_clip(path, size=(16, 24)).frames.shape == (9, 3, 16, 24)
    cropped = read_clip(path, multiple=20)
    assert cropped.frames.shape == (9, 3, 20, 40)  # center-cropped to multiples, as images
    assert cropped.notes == ["a.mp4: 48×32 cropped to 40×20 (sides multiples of 20)"]
    gray = read_clip(path, channels=1)
    assert gray.frames.shape == (9, 1, 32, 48)
    with pytest.raises(CycleDiffError, match=r"over the limit of 1,000; downscale it first"):
        read_clip(path, max_pixels=1000)


@pytest.mark.parametrize("content, expect", [
    (b"not a video at all" * 20, "not a video FFmpeg decodes"),
    (b"", "not a video FFmpeg decodes"),
])
def test_bad_files_are_one_line_naming_the_fix(tmp_path, content, expect):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(CycleDiffError) as err:
        read_clip(path)
    message = str(err.value)
    assert expect in message and "re-encode it as .mp4" in message and "\n" not in message
    assert "Errno" not in message and "Invalid data" not in message
    with pytest.raises(CycleDiffError, match="no such file"):
        read_clip(tmp_path / "missing.webm")
    with pytest.raises(CycleDiffError, match="folder without frames"):
        read_clip(tmp_path)


def test_a_truncated_clip_reads_what_it_holds_or_fails_in_one_line(tmp_path):
    path = make_clip(tmp_path / "a.webm", square_frames(), codec="libvpx-vp9")
    data = path.read_bytes()
    (tmp_path / "half.webm").write_bytes(data[: len(data) // 2])
    try:
        clip = read_clip(tmp_path / "half.webm")
    except CycleDiffError as err:
        assert "\n" not in str(err) and "re-encode" in str(err)
    else:
        assert 1 <= len(clip.frames) < 9


def test_writing_is_atomic_and_records_settings(tmp_path):
    x = as_tensor(square_frames())
    target = write_clip(tmp_path / "out.mp4", x, 24, record='{"prompt": "a cat"}')
    assert read_record(target) == '{"prompt": "a cat"}'
    assert read_record(write_clip(tmp_path / "out.webm", x, 24, record="w")) == "w"
    assert read_record(write_clip(tmp_path / "out.gif", x, 24, record="g")) == "g"
    assert read_record(write_clip(tmp_path / "frames", x, 24, record="f")) == "f"
    before = target.read_bytes()

    class Boom(RuntimeError):
        pass

    def fail(*args, **kwargs):
        raise Boom("disk full")

    original = av.VideoFrame.from_ndarray
    av.VideoFrame.from_ndarray = fail
    try:
        with pytest.raises(Boom):
            write_clip(target, 1 - x, 24)
    finally:
        av.VideoFrame.from_ndarray = original
    assert target.read_bytes() == before  # the old clip stays whole
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    with pytest.raises(CycleDiffError, match="even sides"):
        write_clip(tmp_path / "odd.mp4", x[:, :, :31], 24)
    assert not (tmp_path / "odd.mp4").exists()
    assert read_clip(write_clip(tmp_path / "odd.webm", x[:, :, :31], 24)).frames.shape == (9, 3, 31, 48)


def test_frames_folder_replaced_whole_and_foreign_folders_refused(tmp_path):
    x = as_tensor(square_frames())
    write_clip(tmp_path / "frames", x, 24)
    write_clip(tmp_path / "frames", x[:4], 24)
    assert len(list((tmp_path / "frames").iterdir())) == 4  # no stale frame 5..8 left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(CycleDiffError, match="other than frames"):
        write_clip(tmp_path / "mine", x, 24)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(CycleDiffError, match=r"\(F, C, H, W\)"):
        write_clip(tmp_path / "a.mp4", x[None].transpose(1, 2), 24)
    with pytest.raises(CycleDiffError, match="fps"):
        write_clip(tmp_path / "a.mp4", x, 0)


def test_frames_resized_to_a_size_are_said_as_the_cut_is(tmp_path):
    """A fixed-size model (size given) resizes every clip: the status line says so (the web said "as uploaded")."""
    path = make_clip(tmp_path / "a.mp4", square_frames())  # 48×32
    assert read_clip(path, size=(16, 16)).notes == ["a.mp4: 48×32 resized to 16×16, its aspect changed"]
    assert read_clip(path, size=(16, 24)).notes == ["a.mp4: 48×32 resized to 24×16"]
    assert read_clip(path, size=(32, 48)).notes == []


def test_a_variable_frame_rate_is_said_and_an_uneven_count_of_milliseconds_is_not(tmp_path):
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as out:  # frames 20 to 100 ms apart
        stream = out.add_stream("libx264", rate=24)
        stream.height, stream.width, stream.pix_fmt = 16, 16, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, a in enumerate(square_frames(n=8, h=16, w=16)):
            frame = av.VideoFrame.from_ndarray(a, format="rgb24")
            frame.pts, frame.time_base = [0, 33, 99, 119, 219, 252, 318, 338][i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    (note,) = read_clip(path).notes
    assert note.startswith("phone.mp4: its frame rate varies (10 to 50 fps); written evenly at its average")
    ntsc = write_clip(tmp_path / "ntsc.webm", as_tensor(square_frames()), 24000 / 1001)  # 41 and 42 ms apart
    assert read_clip(ntsc).notes == []


def test_a_file_in_a_folder_of_frames_that_is_no_image_is_one_line_naming_it(tmp_path):
    write_clip(tmp_path / "f", as_tensor(square_frames(n=3)), 24)
    (tmp_path / "f" / "frame_00001.png").write_bytes(b"not a png")
    with pytest.raises(CycleDiffError) as err:
        read_clip(tmp_path / "f")
    assert str(err.value) == (f"{tmp_path / 'f'}: its frame frame_00001.png is not an image (damaged, or another "
                              "format?); remove it from the folder, or save it again as a PNG")

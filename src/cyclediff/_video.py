"""Video clips: .mp4 / .webm / .mov / .gif files (PyAV, whose wheels bundle FFmpeg) and folders of frames, read as
(F, C, H, W) frames in [0, 1] with their frame rate; written atomically in a file's own container.

Conventions: a clip longer than asked is cut (``max_frames``) or strided (``stride``), audio is dropped, and each
such change is one line in :attr:`Clip.notes`; a bad file is one error naming the fix (never FFmpeg's message).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ._files import atomic_write, check_writable, process_umask
from ._images import _check_pixels, _resize, _scaled_size, _target_size, _to_uint8, load_image, save_image
from ._paths import IMAGE_SUFFIXES
from .errors import CycleDiffError
from .settings import RUN, check_setting

CLIP_SUFFIXES = (".mp4", ".webm", ".mov", ".gif")  # the containers read and written (a folder of frames too)
FOLDER_FPS = 24.0  # a folder of frames says no frame rate: this one is assumed (and said)
RECORD_KEY = "comment"  # the container tag that holds an output's settings (cyclediff's record)
# container -> (encoder, pixel format, options): H.264 / VP9 at a quality that keeps edits visible, yuv420p so that
# every player plays them; GIF goes through Pillow (an adaptive palette per frame, not FFmpeg's fixed one)
_ENCODERS = {".mp4": ("libx264", "yuv420p", {"crf": "12", "preset": "medium"}),
             ".mov": ("libx264", "yuv420p", {"crf": "12", "preset": "medium"}),
             ".webm": ("libvpx-vp9", "yuv420p", {"crf": "15", "b": "0", "row-mt": "1"})}
_FIX = "re-encode it as .mp4 (H.264), or give its frames as a folder of PNGs"


@dataclass(frozen=True)
class Clip:
    """Frames (F, C, H, W) float32 in [0, 1], the frame rate they play at, and what reading changed (one line each:
    cut, strided, audio dropped, frame rate assumed)."""

    frames: torch.Tensor
    fps: float
    notes: list[str] = field(default_factory=list)

    @property
    def batch(self) -> torch.Tensor:
        """The frames as one clip of a batch, (1, C, F, H, W): frames on axis 2, as video models take them."""
        return self.frames.permute(1, 0, 2, 3)[None]


def is_clip(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a clip: a file ending in one of :data:`CLIP_SUFFIXES`, or a folder of frames (image
    files and no clips)."""
    path = Path(path)
    if path.is_dir():
        names = [p.suffix.lower() for p in path.iterdir() if p.is_file()]
        return any(s in IMAGE_SUFFIXES for s in names) and not any(s in CLIP_SUFFIXES for s in names)
    return path.suffix.lower() in CLIP_SUFFIXES


def list_clips(folder: Path) -> list[Path]:
    """The clip files (:data:`CLIP_SUFFIXES`) of a folder, sorted (a job's folder of clips)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in CLIP_SUFFIXES)


def not_a_clip_folder(path: Path) -> str:
    """Why a folder :func:`is_clip` refuses is no clip (it holds clips, or no image files), naming the fix."""
    clips, what = list_clips(path), "holds both frames and clips" if frame_files(path) else "is a folder without frames"
    if clips:
        return (f"{path} {what}: give its clips ({path}/*{clips[0].suffix.lower()}) or a job file over it (cyclediff "
                "run); or a folder of frames alone")
    return f"{path} is a folder without frames: give it image files ({', '.join(IMAGE_SUFFIXES)})"


def frame_files(folder: Path) -> list[Path]:
    """A folder's image files in frame order: names sorted with their numbers as numbers (frame2 before frame10)."""
    def key(p: Path) -> list:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", p.name.lower())]

    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=key)


def read_clip(path: str | os.PathLike, *, max_frames: int | None = None, stride: int = RUN.stride, channels: int = 3,
              size: tuple[int, int] | int | None = None, multiple: int = 1, fit: str = RUN.fit,
              max_pixels: int = RUN.max_pixels, fps: float | None = None) -> Clip:
    """A clip as :class:`Clip`: every ``stride``-th frame (the frame rate divided by it), at most ``max_frames`` of
    them (the rest cut), sized as :func:`~cyclediff._images.load_image` sizes images (``size``, ``multiple``,
    ``fit``; frames over ``max_pixels`` refused before they are decoded). ``fps`` gives a folder of frames its rate
    (else :data:`FOLDER_FPS`, said in a note)."""
    path = Path(path)
    check_setting("fit", fit, required=True)
    if not isinstance(stride, int) or stride < 1:
        raise CycleDiffError(f"stride must be a positive integer; got {stride!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise CycleDiffError(f"max_frames must be a positive integer; got {max_frames!r}")
    sizing = {"size": size, "multiple": multiple, "fit": fit, "max_pixels": max_pixels}
    if path.is_dir():
        arrays, rate, total, notes = _read_folder(path, max_frames, stride, channels, sizing, fps)
    elif not path.is_file():
        raise CycleDiffError(f"{path}: no such file")
    elif path.suffix.lower() not in CLIP_SUFFIXES:
        raise CycleDiffError(f"{path} is not a clip: give a {', '.join(CLIP_SUFFIXES)} file or a folder of frames")
    else:
        arrays, rate, total, notes = _read_file(path, max_frames, stride, sizing)
    if not arrays:
        raise CycleDiffError(f"{path} holds no frames; {_FIX}")
    if path.is_dir():
        frames = torch.cat(arrays)
    else:
        frames = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    if frames.shape[1] != channels:
        frames = _channels(frames, channels)
    given = tuple(frames.shape[2:])
    frames = _resize(frames, size=size, multiple=multiple, fit=fit)
    notes = _length_notes(path, len(frames), total, stride, rate) + notes
    notes += _size_notes(path, given, _scaled_size(given, size), tuple(frames.shape[2:]), multiple, fit)
    return Clip(frames.contiguous(), rate / stride, notes)


def _size_notes(path: Path, given: tuple, scaled: tuple, made: tuple, multiple: int, fit: str) -> list[str]:
    """The one-line notes of a clip's frames sized anew: resized (``size``: the model's own size, or --size), then
    brought to the model's multiple; each said, as the frame count's cut is."""
    notes = []
    if scaled != given:
        squeezed = abs(given[1] * scaled[0] / (given[0] * scaled[1]) - 1) > 0.02  # W/H changed by over 2 %
        notes.append(f"{path.name}: {given[1]}×{given[0]} resized to {scaled[1]}×{scaled[0]}"
                     + (", its aspect changed" if squeezed else ""))
    if made != scaled:
        how = "cropped" if fit == "crop" else "resized"
        notes.append(f"{path.name}: {scaled[1]}×{scaled[0]} {how} to {made[1]}×{made[0]} (sides multiples of "
                     f"{multiple})")
    return notes


def _channels(frames: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB frames as ``channels`` (1: ITU-R 601 luma, as Pillow's "L")."""
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=frames.dtype).view(1, 3, 1, 1)
        return (frames * weights).sum(1, keepdim=True)
    return frames.expand(-1, 3, -1, -1) if frames.shape[1] == 1 else frames


def _length_notes(path: Path, kept: int, total: int | None, stride: int, rate: float) -> list[str]:
    """The one-line notes of a clip read shorter than it is: strided, then cut."""
    notes = []
    if stride > 1:
        nth = {1: "st", 2: "nd", 3: "rd"}.get(stride % 10 if stride % 100 not in (11, 12, 13) else 0, "th")
        notes.append(f"{path.name}: every {stride}{nth} frame taken ({_fps(rate)} → {_fps(rate / stride)} fps)")
    available = None if total is None else -(-total // stride)
    if available is None or kept < available:
        of = f"of {available} " if available is not None else ""
        notes.append(f"{path.name}: cut to its first {kept} frames {of}({kept / (rate / stride):.2f} s)")
    return notes


def _fps(rate: float) -> str:
    return f"{rate:.3f}".rstrip("0").rstrip(".")


def _read_folder(path: Path, max_frames, stride, channels, sizing, fps) -> tuple[list, float, int, list[str]]:
    files = frame_files(path)
    if not files:
        raise CycleDiffError(not_a_clip_folder(path))
    chosen = files[::stride][:max_frames]
    frames = [_frame(p, channels, sizing["max_pixels"]) for p in chosen]
    sizes = {tuple(f.shape[2:]) for f in frames}
    if len(sizes) > 1:
        odd = next(p for p, f in zip(chosen, frames) if tuple(f.shape[2:]) != tuple(frames[0].shape[2:]))
        raise CycleDiffError(f"{path}: the frames differ in size ({odd.name} is not {frames[0].shape[3]}×"
                             f"{frames[0].shape[2]}); give frames of one size")
    _check_pixels(path, _target_size(frames[0].shape[2:], sizing["size"], sizing["multiple"], sizing["fit"]),
                  sizing["max_pixels"], "after resizing")
    notes = [] if fps is not None else [f"{path.name}: a folder of frames has no frame rate; {_fps(FOLDER_FPS)} fps "
                                        "assumed"]
    return frames, float(fps or FOLDER_FPS), len(files), notes


def _frame(path: Path, channels: int, max_pixels: int) -> torch.Tensor:
    """One frame of a folder; a file there that is no image is one line naming it (not the image reader's words)."""
    try:
        return load_image(path, channels=channels, max_pixels=max_pixels)
    except CycleDiffError as err:
        if err.__cause__ is None or type(err.__cause__).__name__ == "DecompressionBombError":
            raise  # the pixel limit: its own fix
        raise CycleDiffError(f"{path.parent}: its frame {path.name} is not an image (damaged, or another format?); "
                             "remove it from the folder, or save it again as a PNG") from err


def _read_file(path: Path, max_frames, stride, sizing) -> tuple[list, float, int | None, list[str]]:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise CycleDiffError(f"cannot read {path}: not a video FFmpeg decodes (truncated, or another format?); "
                             f"{_FIX}") from err
    with container:
        if not container.streams.video:
            raise CycleDiffError(f"{path} has no video stream (audio only?); give a clip with pictures")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        _check_pixels(path, (ctx.height, ctx.width), sizing["max_pixels"], "")
        _check_pixels(path, _target_size((ctx.height, ctx.width), sizing["size"], sizing["multiple"], sizing["fit"]),
                      sizing["max_pixels"], "after resizing")
        rate = _gif_rate(path) if path.suffix.lower() == ".gif" else None
        rate = rate or _rate(stream)
        notes = [f"{path.name}: its audio was dropped (clips are written without sound)"] if container.streams.audio \
            else []
        arrays, total, times = _decode(container, stream, path, max_frames, stride, notes)
        notes += _varying_rate(path, times, stream.time_base, rate)
    return arrays, rate, total, notes


def _decode(container, stream, path: Path, max_frames, stride, notes: list[str]) -> tuple[list, int | None, list]:
    """(every ``stride``-th frame as RGB, at most ``max_frames``; the frame count, None when unknown; the times of
    the frames decoded). Damage after a frame keeps those before it (said in ``notes``)."""
    import av

    total = int(stream.frames) or None
    arrays, times, seen = [], [], 0
    try:
        for frame in container.decode(stream):
            if seen % stride == 0:
                if max_frames is not None and len(arrays) == max_frames:
                    break  # more frames than kept: their count is the container's (when it says one)
                arrays.append(_rotated(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0)))
            times.append(frame.time)
            seen += 1
        else:
            total = seen
    except (av.error.FFmpegError, OSError, ValueError) as err:
        if not arrays:
            raise CycleDiffError(f"cannot decode {path}: its frames are damaged or in a codec FFmpeg lacks; "
                                 f"{_FIX}") from err
        notes.append(f"{path.name}: damaged after frame {seen}; the {len(arrays)} frames before it were read")
        total = len(arrays) * stride
    return arrays, total, times


def _varying_rate(path: Path, times: list, time_base, rate: float) -> list[str]:
    """The note of a clip whose frames are unevenly spaced (phones, screen recordings): it is written at one rate,
    its average. Gaps a tick or two apart (24 fps in milliseconds: 41 and 42) are even."""
    if any(t is None for t in times):
        return []
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    if len(gaps) < 2 or gaps[-1] / gaps[0] <= 1.25 or gaps[-1] - gaps[0] <= 2 * float(time_base or 0):
        return []
    return [f"{path.name}: its frame rate varies ({_fps(1 / gaps[-1])} to {_fps(1 / gaps[0])} fps); written evenly "
            f"at its average {_fps(rate)} fps"]


def _rate(stream) -> float:
    """A stream's frame rate (its average; the guessed one; 24 when the container says neither)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return FOLDER_FPS


def gif_ticks(frames: int, fps: float) -> list[int]:
    """The durations (hundredths of a second) :func:`write_clip` gives the frames of a GIF at ``fps``: each frame's
    start time rounded to a hundredth (24 fps: 4 and 5 alternating, so the clip's length stays right), none under
    2 (players slow shorter ones down)."""
    starts = [round(100 * i / fps) for i in range(frames + 1)]
    return [max(2, b - a) for a, b in zip(starts, starts[1:])]


def _gif_rate(path: Path) -> float | None:
    """A GIF's frame rate: the whole rate whose :func:`gif_ticks` are its frames' durations (the one nearest its
    mean rate when several are), else frames / length (another writer's equal delays: 12 hundredths is 8.33 fps);
    None when its frames say no durations."""
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as img:
            ticks = [int(frame.info.get("duration", 0)) // 10 for frame in ImageSequence.Iterator(img)]
    except (OSError, ValueError):
        return None
    if not ticks or not sum(ticks):
        return None
    mean = 100 * len(ticks) / sum(ticks)
    fitting = [r for r in range(1, 101) if gif_ticks(len(ticks), r) == ticks]
    return float(min(fitting, key=lambda r: abs(r - mean))) if fitting else mean


def _rotated(array: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame turned upright (phones record a rotation in the stream instead of turning the pixels)."""
    turns = (int(rotation or 0) // 90) % 4
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def write_clip(path: str | os.PathLike, frames: torch.Tensor, fps: float, *, record: str | None = None) -> Path:
    """Write (F, C, H, W) frames in [0, 1] as ``path``'s container (.mp4 / .mov: H.264 yuv420p, .webm: VP9, .gif),
    atomically, at ``fps``; a path without one of those suffixes is a folder of PNG frames (:func:`write_frames`).
    ``record`` (text: an output's settings) goes into the container's comment tag."""
    path = Path(path)
    frames = _check_frames(frames)
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and 0 < fps <= 1000):
        raise CycleDiffError(f"fps must be a number in (0, 1000]; got {fps!r}")
    suffix = path.suffix.lower()
    if suffix not in CLIP_SUFFIXES:
        return write_frames(path, frames, record=record)
    h, w = frames.shape[2:]
    if suffix in (".mp4", ".mov") and (h % 2 or w % 2):
        raise CycleDiffError(f"{path.name}: H.264 needs even sides; the frames are {w}×{h}: crop a pixel, or write "
                             ".webm, .gif or frames")
    pixels = _to_uint8(frames.expand(-1, 3, -1, -1)).permute(0, 2, 3, 1).numpy()
    write = _gif_writer(pixels, fps, record) if suffix == ".gif" else _av_writer(pixels, fps, suffix, record)
    return atomic_write(path, write)


def _check_frames(frames: torch.Tensor) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] not in (1, 3) or not len(frames):
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise CycleDiffError(f"frames must be an (F, C, H, W) tensor with C = 1 or 3 and F ≥ 1; got {shape} (a "
                             "(1, C, F, H, W) clip of a batch: pass clip[0].transpose(0, 1))")
    return frames.detach().float().cpu()


def _av_writer(pixels: np.ndarray, fps: float, suffix: str, record: str | None):
    import av

    codec, pix_fmt, options = _ENCODERS[suffix]

    def write(tmp: str) -> None:
        with av.open(tmp, "w", format={".mp4": "mp4", ".mov": "mov", ".webm": "webm"}[suffix]) as out:
            if record is not None:
                out.metadata[RECORD_KEY] = record
            stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=dict(options))
            stream.height, stream.width = pixels.shape[1:3]
            stream.pix_fmt = pix_fmt
            for array in pixels:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            out.mux(stream.encode())

    return write


def _gif_writer(pixels: np.ndarray, fps: float, record: str | None):
    from PIL import Image

    duration = [tick * 10 for tick in gif_ticks(len(pixels), fps)]  # GIF counts hundredths of a second

    def write(tmp: str) -> None:
        images = [Image.fromarray(a) for a in pixels]
        extra = {"comment": record.encode()} if record is not None else {}
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                       optimize=False, disposal=1, **extra)

    return write


def write_frames(folder: str | os.PathLike, frames: torch.Tensor, *, record: str | None = None) -> Path:
    """Write (F, C, H, W) frames in [0, 1] as ``folder``/frame_00000.png … at once: the frames go to a temporary
    folder beside it that then takes its place (a folder of frames written before is replaced whole; anything
    else there is refused)."""
    folder = check_writable(Path(folder)) if not Path(folder).is_dir() else Path(folder)
    frames = _check_frames(frames)
    if folder.is_dir() and any(p.suffix.lower() != ".png" for p in folder.iterdir()):
        raise CycleDiffError(f"{folder} holds files other than frames; refusing to replace it: name a new folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for i, frame in enumerate(frames):
            save_image(frame, tmp / f"frame_{i:05d}.png", text={RECORD_KEY: record} if record else None)
        os.chmod(tmp, 0o777 & ~process_umask())
        old = None
        if folder.is_dir():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_record(path: str | os.PathLike) -> str | None:
    """The record text a clip cyclediff wrote carries (:func:`write_clip`'s ``record``), or None."""
    path = Path(path)
    try:
        if path.is_dir():
            from PIL import Image

            first = next(iter(frame_files(path)), None)
            if first is None:
                return None
            with Image.open(first) as img:
                return getattr(img, "text", {}).get(RECORD_KEY)
        import av

        with av.open(str(path)) as container:
            tags = {k.lower(): v for k, v in container.metadata.items()}
        return tags.get(RECORD_KEY)
    except Exception:  # noqa: BLE001 - unreadable or foreign: nothing recorded
        return None

"""Video I/O on PyAV: read an MP4 to uint8 (T, H, W, 3), write one with libx264, sample, probe."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from videolift.core.errors import VideoError


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int
    height: int
    width: int


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.exists():
        raise VideoError(path, "file not found")
    if path.is_dir():
        raise VideoError(path, "is a directory, not a video file")
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises a family of FFmpeg errors
        raise VideoError(path, f"not a readable video ({exc.__class__.__name__}: {exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(path, "contains no video stream")
    return container


# What every major browser's <video> plays: H.264, VP8, VP9 and AV1 in MP4 / MOV / WebM / Matroska.
# HEVC plays only where the system decodes it; GIF, MJPEG, PNG and AVI files not at all.
BROWSER_CODECS = {"h264", "vp8", "vp9", "av1"}
BROWSER_CONTAINERS = {"mov", "mp4", "webm", "matroska"}  # PyAV: "mov,mp4,m4a,...", "matroska,webm"


def browser_problem(path: str | Path) -> str | None:
    """Why a browser's video player would not play ``path`` (its container or codec), or None."""
    container = _open(path)
    with container:
        name = container.format.name
        # The codec, not the decoder FFmpeg picked for it (AV1 decodes with "libdav1d")
        codec = container.streams.video[0].codec_context.codec.canonical_name
    if not set(name.split(",")) & BROWSER_CONTAINERS:
        return f"{name.split(',')[0].upper()} container"
    if codec not in BROWSER_CODECS:
        return f"{codec.upper()} video"
    return None


_local = threading.local()


def _to_rgb(frame, size: tuple[int, int] | None = None) -> np.ndarray:
    """``frame`` as RGB, scaled to ``size`` (width, height) if given."""
    # One reformatter per thread: `frame.to_ndarray(format=...)` builds a new swscale context for every
    # frame (~8 ms); reusing one reads 48x48 toy clips 9x faster, same pixels (benchmarks/video_read.py).
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = _local.reformatter = VideoReformatter()
    width, height = size or (None, None)
    return reformatter.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()


def _shown_size(stream: Any, frame: Any) -> tuple[int, int]:
    """(width, height) at which ``frame``'s pixels are shown square: its width times the stream's sample
    aspect ratio, as players show an anamorphic video (HDV's 1440x1080 with pixels 4/3 wide is 1920x1080)."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    if not sar or sar <= 0 or sar == 1:
        return frame.width, frame.height
    return max(1, round(frame.width * sar)), frame.height


# Transfer curves of HDR video (FFmpeg's AVColorTransferCharacteristic): swscale converts the colour
# matrix, not the curve, so its pixels would be read washed out (a browser tone-maps them for raters).
HDR_TRANSFERS = {16: "PQ / SMPTE 2084", 18: "HLG"}


def _turns(frame: Any) -> int:
    """Counter-clockwise quarter turns that show ``frame`` upright: a phone video's rotation flag (its
    display matrix), which browsers apply and the stored pixels do not."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def _frame_problem(frame: Any) -> str | None:
    if (curve := HDR_TRANSFERS.get(getattr(frame, "color_trc", None))) is not None:
        return f"HDR video ({curve}): convert it to SDR (BT.709) first; its colours would be read washed out"
    return None


def _upright_rgb(frame: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    rgb = _to_rgb(frame, size if size != (frame.width, frame.height) else None)
    return np.ascontiguousarray(np.rot90(rgb, k)) if (k := _turns(frame)) else rgb


def _decode(
    path: str | Path, keep: Any = None, max_frames: int | None = None
) -> tuple[dict[int, np.ndarray], float, int]:
    """Decode ``path``: (upright RGB frames by index, the ones ``keep(i)`` accepts (default all), the
    stream's frame rate (0 if unknown), frames decoded). Stops after ``max_frames``. Pixels are made
    square (``_shown_size``), and every frame has the first one's size: a stream that changes size
    midway (WebRTC recordings do) has its later frames scaled to it, as FFmpeg does when converting."""
    container = _open(path)
    kept: dict[int, np.ndarray] = {}
    count = 0
    size = None
    ends: list[float] = []
    try:
        with container:
            stream = container.streams.video[0]
            rate = stream.average_rate
            for frame in _frames(container, stream, ends):
                if count == 0:
                    if problem := _frame_problem(frame):
                        raise VideoError(path, problem)
                    size = _shown_size(stream, frame)
                if keep is None or keep(count):
                    kept[count] = _upright_rgb(frame, size)
                count += 1
                if count == max_frames:  # a long clip's rest is not decoded
                    break
            else:
                _check_complete(path, container, ends)
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(path, f"could not decode ({exc.__class__.__name__}: {exc})") from None
    if not count:
        raise VideoError(path, "no decodable frames (truncated or empty file)")
    return kept, float(rate or 0), count


def read_video_and_fps(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """All frames (T, H, W, 3) RGB uint8, upright, or the first ``max_frames``, and the stream's frame rate
    (0 if unknown), one open."""
    kept, rate, count = _decode(path, max_frames=max_frames)
    return np.stack([kept[i] for i in range(count)]), rate


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first ``max_frames``) as a uint8 array (T, H, W, 3), RGB, upright."""
    return read_video_and_fps(path, max_frames)[0]


def _packets(container: Any, stream: Any, ends: list[float]) -> Iterator[Any]:
    """The packets of ``stream`` (``container.demux(stream)``), every stream's read for
    ``_check_complete``: the latest time one of them ends at is kept in ``ends`` (an audio track may
    outlast the video)."""
    for packet in container.demux():
        if packet.pts is not None and packet.time_base is not None:
            end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            ends[:] = [max(ends[0], end)] if ends else [end]
        if packet.stream.index == stream.index:
            yield packet


def _frames(container: Any, stream: Any, ends: list[float]) -> Iterator[Any]:
    """``container.decode(stream)``, the packets' ends kept in ``ends`` (``_packets``)."""
    for packet in _packets(container, stream, ends):
        yield from packet.decode()


# Containers whose header states the duration (from the index, written when the file was finished); other
# formats' durations may be estimates from the bit rate (AVI without its index, MPEG-TS).
STATED_DURATION = {"mov", "mp4", "matroska", "webm"}
MISSING_SECONDS = 0.5  # ... or 5% of the duration: more missing at the end is a truncated file


def _check_complete(path: str | Path, container: Any, ends: list[float]) -> None:
    """VideoError if the packets read (their latest end: ``ends``) stop well before the duration the
    header states: a copy or download cut short. A WebM or MKV cut midway otherwise reads as a shorter
    video (its frames are counted, not stated); an MP4 too when cut between two frames."""
    formats = set(container.format.name.split(","))
    if not ends or not container.duration or not formats & STATED_DURATION:
        return
    stated = container.duration / 1e6  # AV_TIME_BASE
    reached = ends[0] - (container.start_time or 0) / 1e6
    if stated - reached > max(MISSING_SECONDS, 0.05 * stated):
        raise VideoError(
            path, f"truncated: its header says {stated:.2f} s, its data ends at {max(reached, 0):.2f} s"
        )


def _stored_count(path: str | Path, container: Any) -> int:
    """The video stream's frame count as the container stores it, else by counting its packets (and
    checking, for ``_check_complete``, that they last as long as the header says)."""
    stream = container.streams.video[0]
    if stream.frames:
        return int(stream.frames)
    ends: list[float] = []
    try:
        count = sum(1 for f in _packets(container, stream, ends) if f.size)
    except Exception as exc:  # PyAV raises a family of FFmpeg errors
        raise VideoError(path, f"could not read ({exc.__class__.__name__}: {exc})") from None
    _check_complete(path, container, ends)
    return count


def probe_video(path: str | Path, *, decode: bool = False) -> VideoInfo:
    """fps, frame count and (upright) size; the first frame is decoded, for its rotation and colours.
    ``decode=True`` counts frames by decoding them all (slower, catches truncation)."""
    if decode:  # every frame decoded and counted, only the first kept (a long 1080p clip is GBs of RGB)
        first, rate, count = _decode(path, keep=lambda i: i == 0)
        return VideoInfo(rate, count, *first[0].shape[:2])
    first, _, _ = _decode(path, max_frames=1)
    height, width = first[0].shape[:2]
    container = _open(path)
    with container:  # (PyAV 18.1.1 refuses a closed container's streams' properties)
        rate = float(container.streams.video[0].average_rate or 0)
        count = _stored_count(path, container)
    if not count:
        raise VideoError(path, "no video frames (truncated or empty file)")
    return VideoInfo(rate, count, height, width)


def video_problem(path: str | Path, *, decode: bool = False, seen: dict[str, str | None]) -> str | None:
    """Why ``path`` is not a readable video (``probe_video``), or None; each path is probed once,
    its answer remembered in ``seen`` (records of several annotators share a video)."""
    key = str(path)
    if key not in seen:
        try:
            probe_video(path, decode=decode)
            seen[key] = None
        except VideoError as exc:
            seen[key] = str(exc)
    return seen[key]


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 8.0,
    *,
    crf: int = 18,
    preset: str = "veryfast",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write uint8 (T, H, W, 3) RGB frames as H.264 MP4, atomically.

    yuv420p needs even sizes: odd heights/widths are padded by repeating the last row/column.
    ``crf=0`` with ``pix_fmt="yuv444p"`` is lossless but for the conversion to YUV, which rounds (frames
    read back within 2 levels); used for tiny toy videos where chroma subsampling would smear the colours.
    (H.264 of the RGB frames, libx264rgb, reads back exactly, but browsers show it in wrong colours.)
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError("cannot write a video with no frames")
    if pix_fmt == "yuv420p":
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.height, stream.width = frames.shape[1], frames.shape[2]
            stream.pix_fmt = pix_fmt
            # Without x264's macroblock-tree rate control: it reads memory it never wrote, so lossy encodes
            # of the same frames differed from one write to the next with whatever freed memory held
            # (decoded up to 19 levels apart; one encoder thread did not help), and a regenerated video did
            # not read back the same. The price: ~1.6x the bytes at the same PSNR (49x480x720), faster.
            stream.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
            for array in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def sample_indices(num_frames: int, n: int) -> list[int]:
    """``n`` frame indices spread uniformly over a clip of ``num_frames`` (first and last included).

    Shorter clips repeat frames so callers always get exactly ``n``.
    """
    if num_frames <= 0:
        raise ValueError("clip has no frames")
    if n <= 0:
        raise ValueError("n must be positive")
    if n == 1:
        return [0]
    return [min(num_frames - 1, math.floor(i * (num_frames - 1) / (n - 1) + 0.5)) for i in range(n)]


def pair_indices(num_frames: int, n: int) -> list[int]:
    """``n // 2`` frame steps spread uniformly over a clip, each as (frame, next frame).

    VLMs that patch video two frames at a time (the Qwen-VL family) then see one real step of motion
    inside every temporal patch, instead of a step between patches that only the language model can compare.
    """
    if n <= 0 or n % 2:
        raise ValueError(f"pairs sampling needs a positive even number of frames, got {n}")
    starts = sample_indices(max(num_frames - 1, 1), n // 2)
    return [i for s in starts for i in (s, min(s + 1, num_frames - 1))]


FRAME_SAMPLERS = {"uniform": sample_indices, "pairs": pair_indices}


@dataclass(frozen=True)
class FrameTiming:
    """Where sampled frames were taken: what VLMs that read timestamps (Qwen3-VL) are told."""

    fps: float  # of the source video
    indices: tuple[int, ...]  # of the sampled frames in the source video
    total: int  # frames of the source video


class Clip(np.ndarray):
    """Sampled frames (an ordinary uint8 array) that carry their ``FrameTiming``.

    numpy's documented way to attach metadata to an array, so the frames pass through every API that
    takes arrays. Arrays derived from a clip (slices, stacks) have ``timing`` None: it would be wrong.
    """

    timing: FrameTiming | None

    def __new__(cls, frames: np.ndarray, timing: FrameTiming | None) -> Clip:
        clip = np.asarray(frames).view(cls)
        clip.timing = timing
        return clip

    def __array_finalize__(self, obj: Any) -> None:
        self.timing = None


def sample_frames(
    video: np.ndarray | str | Path, n: int = 8, sampling: str = "uniform", *, fps: float | None = None
) -> Clip:
    """``n`` frames of a clip (an array or a file), ``uniform`` or in ``pairs``: (n, H, W, 3) uint8,
    with their timing (a file's own frame rate; for an array, ``fps`` if given)."""
    if isinstance(video, str | Path):
        return sample_views(video, [(n, sampling)], fps=fps)[0]
    whole = np.asarray(video)
    indices = FRAME_SAMPLERS[sampling](whole.shape[0], n)
    return _clip(whole, indices, whole.shape[0], fps)


def sample_views(path: str | Path, views: list[tuple[int, str]], *, fps: float | None = None) -> list[Clip]:
    """``sample_frames`` of a file for each (n, sampling) of ``views``, decoded once (a critic's frames
    and its check model's): only the frames some view samples are converted and kept."""
    kept, chosen, total, rate = _sample_file(path, views)
    return [_clip(kept, indices, total, fps or rate or None) for indices in chosen]


def _clip(frames: Any, indices: list[int], total: int, fps: float | None) -> Clip:
    """The frames at ``indices`` (of an array, or of a dict by index), with their timing if ``fps``."""
    picked = frames[indices] if isinstance(frames, np.ndarray) else np.stack([frames[i] for i in indices])
    timing = FrameTiming(float(fps), tuple(int(i) for i in indices), total) if fps else None
    return Clip(picked, timing)


def _sample_file(
    path: str | Path, views: list[tuple[int, str]]
) -> tuple[dict[int, np.ndarray], list[list[int]], int, float]:
    """(the sampled frames by index, each view's indices, the clip's frame count, its frame rate) of a file.
    Every frame is decoded but only the sampled ones are converted and kept (a 10-s 1080p clip is ~1.9 GB of
    RGB frames); where the container's frame count proves wrong, the frames are chosen again from the
    decoded count."""

    def choose(total: int) -> list[list[int]]:
        return [FRAME_SAMPLERS[sampling](total, n) for n, sampling in views]

    container = _open(path)
    with container:
        stored = _stored_count(path, container)
    if stored:
        chosen = choose(stored)
        kept, rate, count = _decode(path, set().union(*chosen).__contains__)
        if count == stored:
            return kept, chosen, count, rate
        stored = count
    else:
        _, rate, stored = _decode(path, lambda i: False)
    chosen = choose(stored)
    kept, rate, _ = _decode(path, set().union(*chosen).__contains__)
    return kept, chosen, stored, rate

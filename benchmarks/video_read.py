"""Decoding speed of `core.video.read_video` against PyAV's per-frame `to_ndarray(format="rgb24")`.

Writes N toy-sized clips (lossless yuv444p, as the toy world stores them, or yuv420p) to a temp dir,
then reads them all back both ways and prints ms per video and whether the frames are identical.

    .venv/bin/python benchmarks/video_read.py
    .venv/bin/python benchmarks/video_read.py --videos 100 --size 256 --frames 49 --pix-fmt yuv420p
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from videolift.core.video import read_video, write_video


def per_frame_to_ndarray(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def moving_square(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A flat background and a square crossing it, like a toy clip (random pixels decode far slower)."""
    clip = np.empty((frames, size, size, 3), dtype=np.uint8)
    clip[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    side, colour = size // 4, rng.integers(0, 256, 3, dtype=np.uint8)
    for t in range(frames):
        x = t * (size - side) // max(1, frames - 1)
        clip[t, size // 3 : size // 3 + side, x : x + side] = colour
    return clip


def timed(read, paths: list[Path]) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    frames = [read(p) for p in paths]
    return (time.perf_counter() - start) / len(paths) * 1000, frames


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=50)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--pix-fmt", default="yuv444p", choices=["yuv444p", "yuv420p"])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each reader (best counts)")
    args = parser.parse_args(argv)
    if min(args.videos, args.frames, args.size, args.repeats) < 1:
        parser.error("--videos, --frames, --size and --repeats must be at least 1")
    rng = np.random.default_rng(0)
    lossless = args.pix_fmt == "yuv444p"
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.videos):
            clip = moving_square(rng, args.frames, args.size)
            paths.append(
                write_video(Path(tmp) / f"{i}.mp4", clip, crf=0 if lossless else 18, pix_fmt=args.pix_fmt)
            )
        read_video(paths[0])  # warm-up of both readers: imports, codec initialisation
        per_frame_to_ndarray(paths[0])
        # Best of --repeats passes each, alternating (one pass swung the speed-up 2x-28x on a shared CPU).
        ms_old = ms_new = float("inf")
        for _ in range(args.repeats):
            ms, old = timed(per_frame_to_ndarray, paths)
            ms_old = min(ms_old, ms)
            ms, new = timed(read_video, paths)
            ms_new = min(ms_new, ms)
    same = all(np.array_equal(a, b) for a, b in zip(old, new, strict=True))
    shape = f"{args.frames}x{args.size}x{args.size} {args.pix_fmt}"
    print(
        f"| reader ({args.videos} clips, {shape}, best of {args.repeats}) | ms / video | identical frames |"
    )
    print("|---|---|---|")
    print(f"| per-frame `to_ndarray(format='rgb24')` | {ms_old:.1f} | |")
    print(f"| `read_video` (one reformatter per thread) | {ms_new:.1f} | {same} |")
    print(f"speed-up: {ms_old / ms_new:.1f}x")


if __name__ == "__main__":
    main()

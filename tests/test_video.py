from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from videolift.core.errors import VideoError
from videolift.core.video import (
    FrameTiming,
    pair_indices,
    probe_video,
    read_video,
    sample_frames,
    sample_indices,
    write_video,
)


def _clip(t=9, h=32, w=48):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, h, w, 3), dtype=np.uint8)
    return np.repeat(base, t, axis=0)


def test_write_read_probe_round_trip(tmp_path):
    frames = _clip()
    path = write_video(tmp_path / "a.mp4", frames, fps=8, crf=0, pix_fmt="yuv444p")
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 2.0
    assert np.array_equal(read_video(path, 4), back[:4]) and np.array_equal(read_video(path, 20), back)
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width, info.fps) == (9, 32, 48, 8.0)
    assert probe_video(path, decode=True) == info
    clip = sample_frames(path, 3)  # a file's clip carries its frame rate and which frames it holds
    assert np.array_equal(clip, back[[0, 4, 8]]) and clip.timing == FrameTiming(8.0, (0, 4, 8), 9)
    assert sample_frames(path, 3, fps=16).timing.fps == 16.0  # a given rate wins
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_reading_matches_pyav_per_frame_conversion_across_sizes_and_threads(tmp_path):
    """The shared reformatter must give PyAV's own pixels, also when the size or format changes
    between files and when threads read at once (critic scoring decodes in a thread pool)."""
    import av

    paths = [
        write_video(tmp_path / "a.mp4", _clip(), crf=0, pix_fmt="yuv444p"),
        write_video(tmp_path / "b.mp4", _clip(t=5, h=64, w=32)),
        write_video(tmp_path / "c.mp4", _clip(h=16, w=16), crf=0, pix_fmt="yuv444p"),
    ]

    def reference(path):
        with av.open(str(path)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

    expected = [reference(p) for p in paths]
    for path, want in zip(paths * 2, expected * 2, strict=True):
        assert np.array_equal(read_video(path), want)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(read_video, paths * 4))
    for got, want in zip(results, expected * 4, strict=True):
        assert np.array_equal(got, want)


def test_odd_sizes_are_padded_for_yuv420p(tmp_path):
    frames = _clip(h=31, w=45)
    back = read_video(write_video(tmp_path / "odd.mp4", frames))
    assert back.shape == (9, 32, 46, 3)


def test_sample_indices_are_uniform_and_cover_the_clip():
    assert sample_indices(49, 8) == [0, 7, 14, 21, 27, 34, 41, 48]
    assert sample_indices(9, 8)[0] == 0 and sample_indices(9, 8)[-1] == 8
    assert len(sample_indices(3, 8)) == 8  # short clips repeat frames
    frames = np.arange(20)[:, None, None, None] * np.ones((1, 2, 2, 3), dtype=np.uint8)
    assert sample_frames(frames, 4)[:, 0, 0, 0].tolist() == [0, 6, 13, 19]


def test_pairs_are_consecutive_frames_spread_over_the_clip():
    every_step = [f for step in range(8) for f in (step, step + 1)]  # 0, 1, 1, 2, ..., 7, 8
    assert pair_indices(9, 16) == every_step  # a 9-frame clip has 8 steps
    idx = pair_indices(49, 8)
    assert idx == [0, 1, 16, 17, 31, 32, 47, 48]
    assert all(b == a + 1 for a, b in zip(idx[::2], idx[1::2], strict=True))
    assert pair_indices(1, 4) == [0, 0, 0, 0]
    for bad in (0, 3):
        with pytest.raises(ValueError, match="even"):
            pair_indices(9, bad)
    frames = np.arange(20)[:, None, None, None] * np.ones((1, 2, 2, 3), dtype=np.uint8)
    assert sample_frames(frames, 4, "pairs")[:, 0, 0, 0].tolist() == [0, 1, 18, 19]


def test_bad_files_raise_errors_naming_the_file(tmp_path):
    with pytest.raises(VideoError, match=r"missing\.mp4: file not found"):
        read_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(VideoError, match="notes.mp4"):
        read_video(text)
    good = write_video(tmp_path / "good.mp4", _clip(t=30, h=64, w=64))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(VideoError, match="truncated.mp4"):
        read_video(truncated)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", _clip().astype(np.float32))


def test_a_phone_videos_rotation_flag_is_applied_as_browsers_apply_it(tmp_path):
    """A clip stored landscape with a display rotation of -90 degrees (a phone held upright) is read
    upright, as raters see it in a browser; its probe gives the upright size."""
    import av

    stored = np.zeros((64, 96, 3), np.uint8)
    stored[:32, :48], stored[:32, 48:], stored[32:, :48] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv444p"
        stream.options = {"crf": "0"}
        stream.set_display_rotation(-90)
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        out.mux(stream.encode())
    frames = read_video(path)
    upright = np.rot90(stored, -1)  # turned clockwise: the blue corner comes to the top left
    assert frames.shape == (3, 96, 64, 3) and np.abs(frames[0].astype(int) - upright).max() <= 3
    assert (probe_video(path).height, probe_video(path).width) == (96, 64)
    assert sample_frames(path, 2).shape == (2, 96, 64, 3)


def test_hdr_frames_are_refused_by_name_not_read_washed_out():
    from types import SimpleNamespace

    from videolift.core.video import _frame_problem

    assert "HDR video (HLG)" in _frame_problem(SimpleNamespace(color_trc=18, rotation=0))
    assert _frame_problem(SimpleNamespace(color_trc=1, rotation=0)) is None  # BT.709


def test_sampling_a_file_converts_only_the_frames_it_keeps(tmp_path, monkeypatch):
    import videolift.core.video as video

    path = write_video(tmp_path / "a.mp4", _clip(t=30), fps=8, crf=0, pix_fmt="yuv444p")
    whole = read_video(path)
    converted = []
    to_rgb = video._to_rgb
    monkeypatch.setattr(video, "_to_rgb", lambda frame, size=None: converted.append(1) or to_rgb(frame, size))
    clip = sample_frames(path, 4)
    assert len(converted) == 4 and np.array_equal(clip, whole[sample_indices(30, 4)])
    assert clip.timing.indices == tuple(sample_indices(30, 4)) and clip.timing.total == 30


def test_a_lossy_encode_of_the_same_frames_reads_back_the_same_every_time(tmp_path):
    """x264's macroblock-tree rate control made lossy encodes differ from one write to the next (a
    regenerated video would not read back the same): it reads memory it never wrote, whatever freed memory
    held. Freed memory is filled with random bytes before each write here (with mbtree, ~half the writes
    differ); without it, every write of the same frames decodes alike."""
    import os

    for seed in range(4):
        rng = np.random.default_rng(seed)
        clip = np.repeat(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), 9, axis=0)
        for t in range(9):
            clip[t, 20:36, 4 + 3 * t : 20 + 3 * t] = 255
        clip = np.clip(clip.astype(int) + rng.integers(-20, 20, clip.shape), 0, 255).astype(np.uint8)
        first = read_video(write_video(tmp_path / "a.mp4", clip))
        for _ in range(7):
            junk = [os.urandom(1 << 16) for _ in range(64)]  # 4 MB of random bytes, freed
            del junk
            assert np.array_equal(read_video(write_video(tmp_path / "b.mp4", clip)), first), seed


def test_a_decoding_probe_counts_every_frame_but_keeps_only_the_first(tmp_path, monkeypatch):
    """``hra validate --videos`` decodes every video to count its frames: it held them all as RGB (a 100-s
    clip of 320x240 took 1.4 GB; one of 1080p would take tens), where it needs only the first's size."""
    import videolift.core.video as video

    path = write_video(tmp_path / "a.mp4", _clip(t=30, h=16, w=24), fps=8)
    converted = []
    to_rgb = video._to_rgb
    monkeypatch.setattr(video, "_to_rgb", lambda frame, size=None: converted.append(1) or to_rgb(frame, size))
    assert probe_video(path, decode=True) == video.VideoInfo(8.0, 30, 16, 24)
    assert len(converted) == 1


def _encode(path, frames, *, fmt=None, options=None, setup=lambda stream: None):
    """Write RGB ``frames`` (a list, sizes may differ) with PyAV (the muxer's ``options``), ``setup``
    adjusting the stream."""
    import av

    with av.open(str(path), "w", format=fmt, options=options) as out:
        stream = out.add_stream("libx264", rate=8)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        setup(stream)
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def _halves(h, w, left=(255, 0, 0), right=(0, 0, 255)):
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, : w // 2], frame[:, w // 2 :] = left, right
    return frame


def test_anamorphic_pixels_are_read_square_as_players_show_them(tmp_path):
    """A video whose pixels are twice as wide as tall (its sample aspect ratio, e.g. HDV's 1440x1080 shown
    at 1920x1080) is read at the size players show it, not squeezed to half its width."""
    from fractions import Fraction

    def wide_pixels(stream):
        stream.codec_context.sample_aspect_ratio = Fraction(2, 1)

    path = _encode(tmp_path / "hdv.mp4", [_halves(16, 16)] * 3, setup=wide_pixels)
    frames = read_video(path)
    assert frames.shape == (3, 16, 32, 3)
    assert np.abs(frames[0].astype(int) - _halves(16, 32))[:, [0, 14, 17, 31]].max() <= 3
    assert (probe_video(path).height, probe_video(path).width) == (16, 32)
    assert probe_video(path, decode=True).width == 32 and sample_frames(path, 2).shape == (2, 16, 32, 3)


def test_a_stream_that_changes_size_midway_is_read_at_its_first_size(tmp_path):
    """Frames of a stream whose size changes (two H.264 streams one after the other; WebRTC recordings
    change size with the bandwidth) are scaled to the first frame's size, as FFmpeg converts them; they
    raised numpy's "all input arrays must have the same shape", which critic scoring did not catch."""
    big = _encode(tmp_path / "a.h264", [_halves(16, 32)] * 3, fmt="h264")
    small = _encode(tmp_path / "b.h264", [_halves(8, 8, left=(0, 255, 0))] * 3, fmt="h264")
    path = tmp_path / "both.h264"
    path.write_bytes(big.read_bytes() + small.read_bytes())
    frames = read_video(path)
    assert frames.shape == (6, 16, 32, 3)
    assert np.abs(frames[4].astype(int) - _halves(16, 32, left=(0, 255, 0)))[:, [0, 12, 19, 31]].max() <= 3
    assert sample_frames(path, 4).shape == (4, 16, 32, 3) and probe_video(path, decode=True).num_frames == 6


def test_a_video_cut_short_is_refused_as_truncated_not_read_as_a_shorter_one(tmp_path):
    """A WebM/MKV (frames counted, not stated) cut midway, and an MP4 with its index first cut between two
    frames, read as shorter videos: the critic rated, and align trained on, what was left. Their
    headers state the duration; data ending well before it is a truncated file, named as such."""
    import av

    frames = list(np.random.default_rng(0).integers(0, 255, (24, 16, 16, 3), dtype=np.uint8))  # 3 s at 8 fps
    mkv = _encode(tmp_path / "whole.mkv", frames)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    for read in (probe_video, read_video, lambda p: sample_frames(p, 4)):
        with pytest.raises(VideoError, match=r"cut\.mkv: truncated: its header says 3\.00 s"):
            read(cut)

    # the index before the frames, as MP4s made for streaming have it
    mp4 = _encode(tmp_path / "whole.mp4", frames, options={"movflags": "faststart"})
    with av.open(str(mp4)) as container:  # where the 13th frame's data starts
        start = sorted(p.pos for p in container.demux(video=0) if p.size)[12]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(mp4.read_bytes()[:start])
    for read in (read_video, lambda p: sample_frames(p, 4), lambda p: probe_video(p, decode=True)):
        with pytest.raises(VideoError, match=r"cut\.mp4: truncated"):
            read(cut)
    assert read_video(mp4).shape[0] == 24 and sample_frames(mkv, 4).timing.total == 24  # whole files read

"""Before anything is written: every video to train on opens, is long enough, and comes out of
preprocessing at the size of the others (one batch holds them all).

From the files' headers, since otherwise a mismatch shows only once every video has been encoded
(hours for the paper's 40K videos). Each rank probes its share of the videos, a few at a time (on a
network file system opening a file costs more than reading its header), and every rank then reaches
the same verdict from the gathered answers, so all ranks fail together or none does. The verdict is
the one a single process reading the videos in order would give: the first problem in file order.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from videolift.align.cache import preprocessed_shape
from videolift.align.config import AlignConfig
from videolift.align.weights import Sample
from videolift.core.errors import DataError, VideoError, VideoliftError
from videolift.core.video import probe_video

PROBE_THREADS = 8

# One video's answer: ("problem", message, where) or ("shape", shape, description).
Answer = tuple[str, object, object]
# One rank's summary: its first problem and the first video of each size it saw, by global index.
Summary = tuple[tuple[int, str, dict] | None, dict[tuple[int, ...], tuple[int, str]]]


def _probe(root: Path, sample: Sample, listed_in: Path, preprocessing: dict) -> Answer:
    path = root / sample.video
    where = {"file": listed_in, "line": sample.line, "field": "video"}
    if not path.is_file():
        return (
            "problem",
            f"{path} is a directory, not a video" if path.is_dir() else f"no video at {path}",
            where,
        )
    try:
        info = probe_video(path)
        shape = preprocessed_shape(info.num_frames, info.height, info.width, preprocessing)
    except VideoError as exc:
        return "problem", str(exc), where
    except ValueError as exc:  # too short for the frames asked
        return "problem", f"{path}: {exc}", where
    return "shape", shape, f"{'x'.join(map(str, shape))} ({path}, {listed_in} line {sample.line})"


def summarize(answers: list[tuple[int, Answer]]) -> Summary:
    """What the verdict needs of one rank's answers (small, so gathering it is cheap)."""
    problem, shapes = None, {}
    for index, (kind, value, detail) in sorted(answers, key=lambda a: a[0]):
        if kind == "problem":
            problem = problem or (index, value, detail)
        else:
            shapes.setdefault(value, (index, detail))
    return problem, shapes


def verdict(summaries: list[Summary]) -> None:
    """Raise what a sequential check would have raised first, or nothing."""
    problems = [s[0] for s in summaries if s[0] is not None]
    firsts: dict[tuple[int, ...], tuple[int, str]] = {}
    for _, shapes in summaries:
        for shape, seen in shapes.items():
            if shape not in firsts or seen[0] < firsts[shape][0]:
                firsts[shape] = seen
    # The second-earliest first-of-its-size video is the first one that differs from video 0.
    by_order = sorted(firsts.values())
    mismatch_at = by_order[1][0] if len(by_order) > 1 else None
    problem = min(problems, default=None)
    if problem is not None and (mismatch_at is None or problem[0] < mismatch_at):
        raise DataError(problem[1], **problem[2])
    if mismatch_at is not None:
        raise VideoliftError(
            f"videos of different sizes after preprocessing cannot share a batch: {by_order[0][1]} vs "
            f"{by_order[1][1]}; set --frames / --height / --width so all are preprocessed to one size"
        )


def check_videos(
    cfg: AlignConfig,
    synthetic: list[Sample],
    real: list[Sample],
    *,
    rank: int = 0,
    world: int = 1,
    gather: Callable[[list[Summary]], list[Summary]] | None = None,
    held_out: list[Sample] = (),
) -> None:
    """Probe this rank's share of the videos; ``gather`` (accelerate's ``gather_object``) brings every
    rank's summary to every rank. Raises DataError naming file, line and field, or VideoliftError. The
    held-out clips of ``--validation-real`` are checked apart: they share batches with each other only."""
    training = [(cfg.videos, synthetic, cfg.scores), (cfg.real_root, real, cfg.real)]
    _check(cfg, training, rank, world, gather)
    if held_out:
        _check(cfg, [(cfg.validation_root, held_out, cfg.validation_real)], rank, world, gather)


def _check(cfg: AlignConfig, sets: list, rank: int, world: int, gather: Any) -> None:
    """The check of ``sets`` ((root, samples, file listing them) each): all ranks, one verdict."""
    preprocessing = cfg.preprocessing()
    items = [(root, sample, listed_in) for root, samples, listed_in in sets for sample in samples]
    mine = range(rank, len(items), world)
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        answers = list(zip(mine, pool.map(lambda i: _probe(*items[i], preprocessing), mine), strict=True))
    summary = summarize(answers)
    verdict(gather([summary]) if gather is not None and world > 1 else [summary])

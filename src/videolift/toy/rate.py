"""Rate toy-world videos of any origin (rendered or generated) from their pixels: the oracle, or a
simulated annotator panel; canonical HRA records out (``videolift toy rate``, the pipeline's rate stage)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videolift.core.errors import DataError, UsageError, VideoliftError
from videolift.core.schema import DIMENSIONS, Dimension, Label, parse_label

if TYPE_CHECKING:
    from videolift.core.manifest import ManifestRecord
    from videolift.core.reward import RewardConfig
    from videolift.core.schema import HRARecord

HRA_FIELDS = ("video_id", "video", "prompt", "annotator", "ratings")


def _read_manifest(path: Path) -> list[ManifestRecord]:
    """The records, read by core.manifest's rules; then each prompt must be in the toy grammar."""
    from videolift.core.manifest import read_manifest
    from videolift.toy.grammar import parse_prompt

    records = read_manifest(path)
    for record in records:
        try:
            parse_prompt(record.prompt)
        except ValueError as exc:
            raise DataError(str(exc), file=path, line=record.line, field="prompt") from None
    return records


def check_options(
    *, oracle: bool, scores_out: Path | None, reward_config: Path | None, shape_doubt: float | None
) -> None:
    """The options of ``rate_manifest`` that do not go together, from themselves alone (usage errors)."""
    if scores_out is not None and not oracle:
        raise UsageError("--scores-out needs --oracle (a panel gives several ratings per video)")
    if reward_config is not None and scores_out is None:
        raise UsageError(
            f"--reward-config {reward_config}: only used with --scores-out (HRA holds labels only)"
        )
    if shape_doubt is not None and not 1.0 <= shape_doubt < math.inf:  # NaN would pass any shape
        raise UsageError(f"--shape-doubt {shape_doubt}: must be a number >= 1.0 (1.0: strict)")


def rate_manifest(
    manifest: Path,
    videos: Path,
    out: Path,
    *,
    annotators: int = 3,
    seed: int = 0,
    oracle: bool = False,
    progress: bool = True,
    scores_out: Path | None = None,
    reward_config: Path | None = None,
    shape_doubt: float | None = None,
) -> dict[str, Any]:
    """Write one HRA record per (video, annotator) to ``out``; returns counts and, when the manifest
    carries injected ``truth``, the oracle's agreement with it per dimension. With ``scores_out``
    (oracle only) the same ratings are also written in `critic score`'s format, rewards included:
    the oracle as a perfect critic, the upper bound of what alignment can get from its rewards.
    ``shape_doubt`` overrides the oracle's benefit of the doubt on shapes (``oracle.judge``)."""
    from tqdm import tqdm

    from videolift.core.errors import VideoError
    from videolift.core.files import replacing
    from videolift.core.jsonl import write_jsonl
    from videolift.core.reward import RewardConfig
    from videolift.core.schema import HRARecord
    from videolift.core.video import read_video
    from videolift.critic.data import check_videos
    from videolift.toy.oracle import SHAPE_DOUBT, ClipSizeError, judge
    from videolift.toy.panel import Panel

    if not videos.is_dir():
        raise VideoliftError(f"{videos}: videos root is not a directory")
    check_options(oracle=oracle, scores_out=scores_out, reward_config=reward_config, shape_doubt=shape_doubt)
    doubt = SHAPE_DOUBT if shape_doubt is None else shape_doubt
    reward = RewardConfig.load(reward_config)
    records_in = _read_manifest(manifest)
    # Every video there and opening before the first is rated, all the bad ones said at once: not the
    # first of them found after minutes of rating the ones before it (as `critic train` / `eval` do).
    check_videos([(r.line, r) for r in records_in], videos, file=manifest, action="fix or remove those lines")
    # Each record's fields with ``video_id`` set to its id (a string; the path when not given).
    rows = [(r.line, {**r.fields, "video_id": r.key}) for r in records_in]
    panel = None if oracle else Panel(annotators, seed=seed)
    records: list[HRARecord] = []
    agree: Counter[str] = Counter()
    counted: Counter[str] = Counter()  # videos with a truth label of the dimension
    with_truth = 0  # videos whose manifest line carries injected labels
    for line, obj in tqdm(rows, desc="rating", unit="video", disable=not progress):
        try:
            frames = read_video(videos / obj["video"])
        except VideoError as exc:
            raise DataError(
                f"cannot read the video: {exc}", file=manifest, line=line, field="video"
            ) from None
        try:
            verdict = judge(frames, obj["prompt"], shape_doubt=doubt)
        except ClipSizeError as exc:
            raise DataError(str(exc), file=manifest, line=line, field="video") from None
        video_id = obj["video_id"]  # the record's id, or its path
        extra = {k: v for k, v in obj.items() if k not in HRA_FIELDS}
        rated = [("oracle", verdict.ratings())] if panel is None else panel.rate(video_id, verdict)
        for name, ratings in rated:
            records.append(
                HRARecord(
                    video_id=video_id,
                    video=obj["video"],
                    prompt=obj["prompt"],
                    annotator=name,
                    ratings=ratings,
                    **extra,
                )
            )
        # A corpus's injected labels (`toy corpus`); a `truth` of another kind is only carried along.
        if isinstance(truth := obj.get("truth"), dict) and (
            given := [d for d in DIMENSIONS if d.value in truth]
        ):
            with_truth += 1
            for dim in given:
                counted[dim.value] += 1
                agree[dim.value] += _truth_label(truth[dim.value], dim, manifest, line) is verdict.label(dim)
    # Both files together: a failure or a kill leaves the old ones whole, never old scores beside new ratings.
    with replacing(out, *([] if scores_out is None else [scores_out])) as temps:
        write_jsonl(temps[0], records)
        if scores_out is not None:
            write_jsonl(temps[1], (_score_line(r, reward) for r in records))
    return {
        "records": len(records),
        "videos": len(rows),
        "oracle_vs_truth": {d: agree[d] / n for d, n in counted.items()},
        "videos_with_truth": with_truth,
    }


def _truth_label(value: Any, dim: Dimension, manifest: Path, line: int) -> Label:
    """A manifest line's injected label of ``dim``; DataError naming it if it is not a label (it would
    count as a disagreement)."""
    field = f"truth.{dim.value}"
    if not isinstance(value, str):
        raise DataError(f"expected a label, got {value!r}", file=manifest, line=line, field=field)
    try:
        return parse_label(value)
    except ValueError as exc:
        raise DataError(str(exc), file=manifest, line=line, field=field) from None


def _score_line(record: HRARecord, reward: RewardConfig) -> dict[str, Any]:
    """One HRA record as a `critic score` line: label, reason and score per dimension, and the reward
    (by the same builder, so a manifest field named as one the scorer writes is left out as there)."""
    from videolift.core.scores import rating_entry, score_line

    ratings = {d: rating_entry(r.label, r.reason, reward) for d, r in record.ratings.items()}
    return score_line(record.model_dump(mode="json", exclude={"annotator"}), ratings, reward)

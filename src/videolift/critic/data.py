"""Supervised examples for VLM fine-tuning, and the HRA adapters on top of them.

The trainer only knows ``SFTExample`` = (video file, user text, answer text, weight): the critic's HRA
data is one adapter (``hra_examples``), caption pretraining ("Describe the video." -> caption) another
(``caption_examples``). Evaluation reads held-out HRA records as one majority-label item per video.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from videolift.core.errors import DataError, VideoError
from videolift.core.schema import Dimension, HRARecord, Label, format_answer
from videolift.core.video import sample_frames
from videolift.critic.prompts import DESCRIBE_INSTRUCTION, one_pass_answer, user_text
from videolift.critic.spec import CriticSpec
from videolift.data.stats import labels_by_video, majority_label


@dataclass(frozen=True)
class SFTExample:
    video: Path
    user_text: str
    answer: str
    weight: float = 1.0
    labels: tuple[tuple[Dimension, Label], ...] = ()  # what the answer says, for class weights and stats
    # where the example came from, for errors found only when training decodes the video: the data
    # file and DataError's location keywords (``line`` or ``record``)
    origin: tuple[Path, dict[str, int]] | None = None


class FrameCache:
    """Sampled frames per video file, decoded once and kept (LRU, bounded in bytes) across epochs."""

    def __init__(self, num_frames: int, max_bytes: int = 2 << 30, sampling: str = "uniform") -> None:
        self.num_frames, self.sampling, self.max_bytes, self.bytes = num_frames, sampling, max_bytes, 0
        self._items: OrderedDict[Path, np.ndarray] = OrderedDict()
        # The batch-preparing thread and a validation pass on the training thread share one cache.
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> np.ndarray:
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        frames = sample_frames(path, self.num_frames, self.sampling)  # decoded outside the lock
        with self._lock:
            if frames.nbytes <= self.max_bytes and path not in self._items:
                self._items[path] = frames
                self.bytes += frames.nbytes
                while self.bytes > self.max_bytes:
                    self.bytes -= self._items.popitem(last=False)[1].nbytes
        return frames


def example_frames(example: SFTExample, frames: FrameCache) -> np.ndarray:
    """The example's frames; a video that opened when checked but fails to decode now is named by the
    data file's line that asked for it (the run resumes from its last checkpoint once it is fixed)."""
    try:
        return frames(example.video)
    except VideoError as exc:
        if example.origin is None:
            raise
        file, where = example.origin
        raise DataError(
            f"{exc}; fix or remove it, then rerun with --resume", file=file, field="video", **where
        ) from exc


def resolve_video(
    root: Path, hra: HRARecord, *, file: Path, line: int | None = None, record: int | None = None
) -> Path:
    """The record's video file under ``root``; a missing one is a DataError naming the record's JSONL
    ``line`` (or, for records not read from a file, its 0-based index ``record``)."""
    path = root / hra.video
    if not path.is_file():
        raise DataError(f"video not found: {path}", file=file, line=line, record=record, field="video")
    return path


MAX_LISTED = 20  # unreadable videos listed in one error


class NamesAVideo(Protocol):
    """A record naming a video relative to a root: an HRA record, a manifest record (``toy rate``)."""

    @property
    def video(self) -> str: ...


def check_videos(records: list[tuple[int, NamesAVideo]], root: Path, *, file: Path, action: str) -> None:
    """Refuse, before any work, records whose video is missing or does not open as a video container
    (the check of ``hra validate --videos --quick``: cheap, no decoding), each named by file, line and
    field. ``action`` ends the first line of the message: what the user should do."""
    from videolift.core.video import video_problem

    if not root.is_dir():  # one line, not a "file not found" for every record
        what = "is not a directory" if root.exists() else "is not found"
        raise DataError(f"the videos root of {file} {what}", file=root)
    opened: dict[str, str | None] = {}
    bad: list[str] = []
    for line, record in records:
        if (problem := video_problem(root / record.video, seen=opened)) is not None:
            bad.append(str(DataError(problem, file=file, line=line, field="video")))
    if bad:
        listed = "\n".join(f"  {b}" for b in bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise DataError(
            f"{len(bad)} record(s) name a missing or unreadable video; {action}:\n{listed}{more}", file=file
        )


def hra_examples(
    records: list[HRARecord],
    videos: Path,
    spec: CriticSpec,
    *,
    file: Path,
    descriptions: dict[Path, str] | None = None,
    checks: dict[tuple[Path, str], str] | None = None,
    lines: list[int] | None = None,
) -> tuple[list[SFTExample], int]:
    """HRA records -> examples in the spec's layout; returns (examples, records skipped). ``lines``: each
    record's line in ``file`` (``data.hra_file.read_hra_lines``), for errors; without them errors give record indexes.

    ``per_dimension``: one example per rated dimension. ``one_pass``: one per record that rates every
    dimension of the spec (others are skipped: a partial answer would teach the model to omit lines).
    With ``spec.describe``, ``descriptions`` (per video file) go into every question, and each video
    also gets one describe example teaching that description (the critic writes it itself when scoring).
    With ``spec.check``, ``checks`` (per video file and caption) go into the questions of
    ``spec.check_dimensions`` (the one-pass question always).
    """
    if spec.describe and descriptions is None:
        raise ValueError("spec.describe needs the videos' descriptions")
    if spec.check and checks is None:
        raise ValueError("spec.check needs the captions' checks")
    out: list[SFTExample] = []
    described: set[Path] = set()
    skipped = 0
    for i, record in enumerate(records):
        rated = [d for d in spec.dimensions if d in record.ratings]
        if not rated or (spec.layout == "one_pass" and len(rated) < len(spec.dimensions)):
            skipped += 1
            continue
        where = _where(i, lines)
        video = resolve_video(videos, record, file=file, **where)
        origin = (file, where)
        seen = descriptions[video] if spec.describe else None
        check = checks[(video, record.prompt)] if spec.check else None
        if seen is not None and video not in described:
            described.add(video)
            out.append(SFTExample(video, spec.describe_instruction, seen, origin=origin))
        reason = {d: record.ratings[d].reason if spec.reasons else "" for d in rated}
        labels = tuple((d, record.ratings[d].label) for d in rated)
        if spec.layout == "one_pass":
            answer = one_pass_answer({d: (record.ratings[d].label, reason[d]) for d in rated}, rated)
            out.append(
                SFTExample(
                    video,
                    user_text(record.prompt, spec.one_pass_question, seen, check),
                    answer,
                    labels=labels,
                    origin=origin,
                )
            )
            continue
        for dim, label in labels:
            text = user_text(record.prompt, spec.question(dim), seen, check if spec.check_in(dim) else None)
            example = SFTExample(
                video, text, format_answer(label, reason[dim]), labels=((dim, label),), origin=origin
            )
            out.append(example)
    return out, skipped


def _where(index: int, lines: list[int] | None) -> dict[str, int]:
    """Where a record is, for DataError: its JSONL line if known, else its 0-based index."""
    return {"line": lines[index]} if lines is not None else {"record": index}


def caption_examples(
    items: Iterable[tuple[str | Path, str]], instruction: str = DESCRIBE_INSTRUCTION
) -> list[SFTExample]:
    """(video, caption) pairs -> "describe the video" examples, for VLM caption pretraining."""
    return [SFTExample(Path(video), instruction, caption) for video, caption in items]


def class_weights(examples: list[SFTExample], power: float) -> list[SFTExample]:
    """Reweight examples by (inverse frequency of their (dimension, label)) ** power, mean weight 1.

    ``power=1`` balances classes fully, ``0.5`` halfway (sqrt); one-pass examples average their lines.
    """
    if power == 0:
        return examples
    counts = Counter(pair for ex in examples for pair in ex.labels)
    if not counts:
        return examples
    per_dim = Counter(d for d, _ in counts.elements())
    classes = Counter(d for d, _ in counts)

    def weight(pair: tuple[Dimension, Label]) -> float:
        dim = pair[0]
        return (per_dim[dim] / (classes[dim] * counts[pair])) ** power

    raw = [float(np.mean([weight(p) for p in ex.labels])) if ex.labels else 1.0 for ex in examples]
    scale = len(raw) / sum(raw)
    return [replace(ex, weight=w * scale) for ex, w in zip(examples, raw, strict=True)]


@dataclass
class EvalItem:
    """One held-out video with its reference label per dimension (majority over raters)."""

    video_id: str
    video: str
    prompt: str
    labels: dict[Dimension, Label] = field(default_factory=dict)


def majority_items(records: list[HRARecord]) -> list[EvalItem]:
    """One item per video id, in first-appearance order; ties go to the worse label (see data.stats)."""
    items: dict[str, EvalItem] = {}
    for record in records:
        items.setdefault(record.video_id, EvalItem(record.video_id, record.video, record.prompt))
    for dim, per_video in labels_by_video(records).items():
        for video_id, labels in per_video.items():
            items[video_id].labels[dim] = majority_label(labels)
    return list(items.values())

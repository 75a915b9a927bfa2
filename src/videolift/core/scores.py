"""A scores file's line, as `critic score` and the toy oracle (`toy rate --scores-out`) write it and
alignment reads it: the manifest record's own fields, then
``"ratings": {dimension: {"label": "Good" | "Normal" | "Bad" | null, "reason", "score"[, "answer"]}}``
and ``"reward"`` (null: no label parsed). See docs/critic.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videolift.core.errors import DataError
from videolift.core.jsonl import finite_number, iter_json_lines, text_field
from videolift.core.reward import RewardConfig
from videolift.core.schema import Dimension, Label, parse_dimension, parse_label

# What a scorer writes into a line; a manifest record's own keys of these names are left out.
SCORED_KEYS = ("ratings", "reward", "error", "description", "check")


def rating_entry(label: Label | None, reason: str, reward: RewardConfig, answer: str = "") -> dict[str, Any]:
    """One dimension of a line. An unparsed answer (``label`` None) has a null label and score, and
    keeps its text as ``answer`` so it can be looked at."""
    if label is None:
        return {"label": None, "reason": "", "score": None, "answer": answer}
    return {"label": label.value, "reason": reason, "score": reward.score(label)}


def score_line(
    record: Mapping[str, Any],
    ratings: Mapping[Dimension, dict[str, Any]],
    reward: RewardConfig,
    **fields: str | None,
) -> dict[str, Any]:
    """The line of ``record``: its own fields, ``fields`` (None: left out), the ``rating_entry`` of
    each dimension and the reward of the parsed labels."""
    line = {k: v for k, v in record.items() if k not in SCORED_KEYS}
    line |= {k: v for k, v in fields.items() if v is not None}
    labels = {d: entry["label"] for d, entry in ratings.items()}
    return {**line, "ratings": {d.value: e for d, e in ratings.items()}, "reward": reward.reward(labels)}


@dataclass(frozen=True)
class ScoredVideo:
    video: str
    prompt: str
    reward: float | None
    labels: dict[Dimension, Label | None]  # None: the critic's answer was unparsed
    line: int | None = None  # in the scores file, for errors


def read_scores(path: str | Path, *, from_labels: bool = False) -> list[ScoredVideo]:
    """Parse a scores file; DataError naming file, line and field on malformed lines. Labels are read
    in any case ("good") and kept canonical (Label.Good), so every reader counts them alike.

    Every line needs a ``reward`` (null: the critic's answer was unparsed), or with ``from_labels``
    (what is trained on follows from the labels: rewards recomputed by a reward config, or RS's all-Good
    test) its ``ratings`` object (``{}``: a video that could not be read): a line without is a mistake,
    not a video to drop silently."""
    path = Path(path)
    items = []
    for line, obj in iter_json_lines(path):
        # An empty prompt is an unconditional sample (what classifier-free guidance learns from).
        video = text_field(obj, "video", path, line)
        prompt = text_field(obj, "prompt", path, line, allow_empty=True)
        needed = "ratings" if from_labels else "reward"
        if needed not in obj:
            raise DataError("missing", file=path, line=line, field=needed)
        reward = obj.get("reward")
        if reward is not None and not finite_number(reward):
            raise DataError(
                f"expected a finite number or null, got {reward!r}", file=path, line=line, field="reward"
            )
        ratings = obj.get("ratings")
        if ratings is None and not from_labels:  # its reward is what counts
            ratings = {}
        if not isinstance(ratings, dict):
            raise DataError("expected an object", file=path, line=line, field="ratings")
        labels = {}
        for dim, rating in ratings.items():
            # {"label": ..., "reason": ...} as `critic score` writes; null: nothing parsed
            label = rating.get("label") if isinstance(rating, dict) else None
            if not (rating is None or isinstance(rating, dict) and isinstance(label, str | None)):
                raise DataError(
                    f'expected {{"label": "Good" | "Normal" | "Bad" | null, ...}}, got {rating!r}',
                    file=path,
                    line=line,
                    field=f"ratings.{dim}",
                )
            try:  # a misspelt dimension or label would silently count as not Good (RS) or be ignored
                labels[parse_dimension(str(dim))] = None if label is None else parse_label(label)
            except ValueError as exc:
                raise DataError(str(exc), file=path, line=line, field=f"ratings.{dim}") from None
        items.append(ScoredVideo(video, prompt, None if reward is None else float(reward), labels, line))
    return items

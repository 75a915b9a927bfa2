"""Evaluation metrics over rated videos: label rates, mean reward, all-Good rate, pairwise win/tie/loss.

A "rating" here is ``{dimension: label}`` for one video (from the critic, the toy oracle or people).
Unparsed critic answers are ``None`` labels: they count as not Good and are reported separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from videolift.core.reward import RewardConfig
from videolift.core.schema import DIMENSIONS, LABEL_RANK, LABELS, Dimension, Label

Rating = Mapping[Dimension | str, Label | str | None]


def _label(value: Label | str | None) -> Label | None:
    return None if value is None else Label(value)


def summarize(ratings: Sequence[Rating], reward: RewardConfig | None = None) -> dict[str, Any]:
    """Per-dimension label rates, mean reward and all-Good rate of a set of videos (rates in [0, 1])."""
    reward = reward or RewardConfig()
    n = len(ratings)
    out: dict[str, Any] = {"videos": n, "dimensions": {}}
    if n == 0:
        return {**out, "mean_reward": None, "all_good_rate": None}
    rewards, all_good = [], 0
    for rating in ratings:
        labels = {Dimension(d): _label(v) for d, v in rating.items()}
        parsed = {d: lab for d, lab in labels.items() if lab is not None}
        rewards.append(reward.aggregate(parsed) if parsed else None)
        all_good += all(labels.get(d) is Label.Good for d in DIMENSIONS)
    for dim in DIMENSIONS:
        labels = [_label(r.get(dim) if dim in r else r.get(dim.value)) for r in ratings]
        out["dimensions"][dim.value] = {
            **{lab.value: sum(x is lab for x in labels) / n for lab in LABELS},
            "unparsed": sum(x is None for x in labels) / n,
        }
    valid = [r for r in rewards if r is not None]
    out["mean_reward"] = sum(valid) / len(valid) if valid else None
    out["all_good_rate"] = all_good / n
    return out


def pairwise(a: Sequence[Rating], b: Sequence[Rating]) -> dict[str, dict[str, float]]:
    """Win/tie/loss of A vs B per dimension and overall, comparing videos of the same prompt and seed.

    Per dimension the better label wins; "overall" compares the number of Good dimensions, the
    LiFT-style summary of a pairwise human study. Unparsed labels rank below Bad.
    """
    if len(a) != len(b):
        raise ValueError(f"pairwise comparison needs aligned lists, got {len(a)} vs {len(b)} videos")
    n = len(a)

    def rank(r: Rating, d: Dimension) -> int:
        lab = _label(r.get(d) if d in r else r.get(d.value))
        return -1 if lab is None else LABEL_RANK[lab]

    out: dict[str, dict[str, float]] = {}
    keys: list[tuple[str, Any]] = [(d.value, d) for d in DIMENSIONS] + [("overall", None)]
    for name, dim in keys:
        win = tie = loss = 0
        for ra, rb in zip(a, b, strict=True):
            if dim is None:
                sa = sum(rank(ra, d) == LABEL_RANK[Label.Good] for d in DIMENSIONS)
                sb = sum(rank(rb, d) == LABEL_RANK[Label.Good] for d in DIMENSIONS)
            else:
                sa, sb = rank(ra, dim), rank(rb, dim)
            win += sa > sb
            tie += sa == sb
            loss += sa < sb
        out[name] = (
            {"win": win / n, "tie": tie / n, "loss": loss / n} if n else {"win": 0.0, "tie": 0.0, "loss": 0.0}
        )
    return out

"""Deterministic train/test split of HRA records with no video (or prompt) on both sides."""

from __future__ import annotations

import math
import random
from typing import Literal

from videolift.core.schema import HRARecord


def split_records(
    records: list[HRARecord], test_fraction: float, seed: int, group_by: Literal["video", "prompt"] = "video"
) -> tuple[list[HRARecord], list[HRARecord]]:
    """Split by group so all records of one video (default) or one prompt land on one side.

    Groups are sorted before shuffling so the result depends only on the records and the seed, not
    on file order. A group key also covers the video path: two ids pointing at one file stay together.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    # Union video ids that share a video path (or a prompt) into one group.
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def keys(r: HRARecord) -> list[str]:
        return ["p:" + r.prompt] if group_by == "prompt" else ["id:" + r.video_id, "path:" + r.video]

    for record in records:
        first, *rest = keys(record)
        for other in rest:
            parent[find(other)] = find(first)
    groups = sorted({find(keys(r)[0]) for r in records})
    random.Random(seed).shuffle(groups)
    n_test = min(len(groups) - 1, max(1, math.ceil(test_fraction * len(groups)))) if len(groups) > 1 else 0
    test_groups = set(groups[:n_test])
    train = [r for r in records if find(keys(r)[0]) not in test_groups]
    test = [r for r in records if find(keys(r)[0]) in test_groups]
    return train, test

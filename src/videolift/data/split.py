"""Deterministic train/test split of HRA records with no video (or prompt) on both sides."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Literal

from videolift.core.errors import VideoliftError
from videolift.core.files import replacing
from videolift.core.jsonl import write_jsonl
from videolift.core.schema import HRARecord
from videolift.data.prompts import prompt_key


def split_records(
    records: list[HRARecord], test_fraction: float, seed: int, group_by: Literal["video", "prompt"] = "video"
) -> tuple[list[HRARecord], list[HRARecord]]:
    """Split by group so all records of one video (default) or one prompt land on one side.

    Groups are sorted before shuffling so the result depends only on the records and the seed, not
    on file order. A group key also covers the video path: two ids pointing at one file stay together,
    and by prompt, so do two prompts given one video.
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
        video = ["id:" + r.video_id, "path:" + r.video]  # a video is never on both sides
        # One prompt written two ways ("A cat jumps." / "a cat  jumps") is one prompt, as to `prompts
        # sample --exclude`: held out on one side only. The prompt as written stays the group's name, so
        # a file without such variants splits as it did before.
        by_prompt = ["p:" + r.prompt, "q:" + prompt_key(r.prompt), *video]
        return by_prompt if group_by == "prompt" else video

    firsts = []
    for record in records:
        first, *rest = keys(record)
        firsts.append(first)
        for other in rest:
            parent[find(other)] = find(first)
    roots = [find(first) for first in firsts]  # each record's group, once all unions are made
    # A group is named by its smallest first key (id, or prompt): the same whatever the file's order.
    names: dict[str, str] = {}
    for root, first in zip(roots, firsts, strict=True):
        names[root] = min(names.get(root, first), first)
    if len(names) < 2:
        raise VideoliftError(
            f"the {len(records)} records are all of one {'prompt' if group_by == 'prompt' else 'video'} "
            "(or of videos sharing one): nothing is left to hold out"
        )
    groups = sorted(names.values())
    random.Random(seed).shuffle(groups)
    # Rounded up, but not past a float product's last bit: 0.14 * 50 is 7.000000000000001, 7 groups.
    n_test = min(len(groups) - 1, max(1, math.ceil(round(test_fraction * len(groups), 9))))
    test_groups = set(groups[:n_test])
    held = [names[root] in test_groups for root in roots]
    train = [r for r, h in zip(records, held, strict=True) if not h]
    test = [r for r, h in zip(records, held, strict=True) if h]
    return train, test


def write_split(out: Path, train: list[HRARecord], test: list[HRARecord]) -> None:
    """``out/train.jsonl`` and ``out/test.jsonl``, together (``replacing``): a run that fails or is killed
    leaves the old pair whole, never a new train set beside an old test set sharing its videos."""
    with replacing(out / "train.jsonl", out / "test.jsonl") as (train_tmp, test_tmp):
        write_jsonl(train_tmp, train)
        write_jsonl(test_tmp, test)

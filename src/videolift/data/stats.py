"""Counts, label distributions and inter-annotator agreement of HRA datasets."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from videolift.core.errors import DataError
from videolift.core.schema import DIMENSIONS, LABEL_RANK, LABELS, Dimension, HRARecord, Label


def labels_by_video(records: Iterable[HRARecord]) -> dict[Dimension, dict[str, list[Label]]]:
    """dimension -> video_id -> every label it received (one per record rating that dimension)."""
    out: dict[Dimension, dict[str, list[Label]]] = {d: defaultdict(list) for d in DIMENSIONS}
    for record in records:
        for dim, rating in record.ratings.items():
            out[dim][record.video_id].append(rating.label)
    return out


def majority_label(labels: list[Label]) -> Label:
    """Most frequent label; ties go to the worse label (a rater saw a problem: be conservative)."""
    counts = Counter(labels)
    return max(counts, key=lambda lab: (counts[lab], -LABEL_RANK[lab]))


def agreement(per_video: dict[str, list[Label]]) -> dict[str, Any]:
    """Krippendorff's alpha (ordinal) and pairwise percent agreement over videos rated >= 2 times.

    Alpha only needs the values within each unit, so anonymous ratings are placed in rater slots.
    """
    import krippendorff

    units = [labels for labels in per_video.values() if len(labels) >= 2]
    if not units:
        return {"videos": 0, "krippendorff_alpha": None, "pairwise_agreement": None}
    width = max(len(u) for u in units)
    data = np.full((width, len(units)), np.nan)
    pairs = agree = 0
    for j, labels in enumerate(units):
        for i, label in enumerate(labels):
            data[i, j] = LABEL_RANK[label]
        for a, b in itertools.combinations(labels, 2):
            pairs += 1
            agree += a == b
    values = {v for v in data[~np.isnan(data)].tolist()}
    alpha = (
        1.0
        if len(values) == 1
        else float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    )
    return {"videos": len(units), "krippendorff_alpha": alpha, "pairwise_agreement": agree / pairs}


def is_review(record: HRARecord) -> bool:
    """An admin's adjudicated record (``annotate export --with-reviews``): not another rater's."""
    return bool(getattr(record, "adjudicated", False))


def prefer_reviews(records: list[tuple[int, HRARecord]]) -> tuple[list[tuple[int, HRARecord]], int]:
    """(line, record) pairs with every rater's record of an adjudicated video left out: the admin's
    review (``annotate export --with-reviews``) corrected them, so a critic learns and is judged by it,
    not by one more vote beside the labels it overruled. Returns the records kept and how many went."""
    reviewed = {record.video_id for _, record in records if is_review(record)}
    kept = [(line, r) for line, r in records if r.video_id not in reviewed or is_review(r)]
    return kept, len(records) - len(kept)


def dataset_stats(records: list[HRARecord]) -> dict[str, Any]:
    """Counts, label distributions and agreement; adjudicated reviews are counted apart, not as a rater."""
    reviews = sum(map(is_review, records))
    all_records, records = records, [r for r in records if not is_review(r)]
    by_video = labels_by_video(records)
    annotators = {r.annotator for r in records if r.annotator is not None}
    out: dict[str, Any] = {
        "records": len(all_records),
        "adjudicated_records": reviews,
        "videos": len({r.video_id for r in all_records}),
        "prompts": len({r.prompt for r in all_records}),
        "annotators": len(annotators),
        "dimensions": {},
    }
    for dim in DIMENSIONS:
        labels = [lab for labs in by_video[dim].values() for lab in labs]
        counts = Counter(labels)
        total = len(labels)
        out["dimensions"][dim.value] = {
            "ratings": total,
            "videos": len(by_video[dim]),
            "labels": {lab.value: counts.get(lab, 0) for lab in LABELS},
            "label_rates": {lab.value: (counts.get(lab, 0) / total if total else 0.0) for lab in LABELS},
            "empty_reasons": sum(
                1
                for r in records
                if dim in r.ratings and r.ratings[dim].label != Label.Good and not r.ratings[dim].reason
            ),
            "agreement": agreement(by_video[dim]),
        }
    return out


def video_id_conflict(
    record: HRARecord, line: int, first: dict[str, tuple[int, HRARecord]], file: Any
) -> DataError | None:
    """The error of a record giving its video id another video or prompt than the id's first record
    (``first``: video id -> (line, record), updated here), or None. Records of one id rate one video;
    two videos under one id would be scored as the first and judged by both's labels."""
    seen_line, seen = first.setdefault(record.video_id, (line, record))
    for name in ("video", "prompt"):
        if getattr(record, name) != getattr(seen, name):
            return DataError(
                f"video id {record.video_id!r} is {getattr(seen, name)!r} on line {seen_line}, "
                f"{getattr(record, name)!r} here; one id names one video",
                file=file,
                line=line,
                field=name,
            )
    return None


def check_one_video_per_id(records: Iterable[tuple[int, HRARecord]], file: Any) -> None:
    """Raise the first ``video_id_conflict`` of (line, record) pairs."""
    first: dict[str, tuple[int, HRARecord]] = {}
    for line, record in records:
        if (conflict := video_id_conflict(record, line, first, file)) is not None:
            raise conflict

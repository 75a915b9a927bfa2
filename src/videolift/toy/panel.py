"""A simulated annotator panel: K people who see what the oracle sees, but are human about it.

Each annotator sometimes moves a label to a neighbouring one (Good <-> Normal <-> Bad), words reasons in
their own way, and now and then skips a video. Everything is seeded: the same (seed, video, annotator)
always gives the same rating, whatever else is in the file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from videolift.core.schema import DIMENSIONS, LABEL_RANK, Dimension, Label, Rating
from videolift.toy.oracle import Judgement
from videolift.toy.phrases import PHRASES, phrase


@dataclass(frozen=True)
class Annotator:
    name: str
    flip: float  # chance, per dimension, of a neighbouring label instead of the one the evidence supports
    skip: float  # chance of not rating a video at all
    wording: int  # preferred paraphrase


class Panel:
    """``k`` annotators with their own flip and skip rates, drawn from ``seed``."""

    def __init__(
        self,
        k: int = 3,
        *,
        seed: int = 0,
        flip: tuple[float, float] = (0.03, 0.12),
        skip: tuple[float, float] = (0.0, 0.05),
    ) -> None:
        if k < 1:
            raise ValueError(f"a panel needs at least one annotator, got {k}")
        rng = np.random.default_rng([seed, 21])
        self.seed = seed
        self.annotators = [
            Annotator(
                f"sim-{i + 1:02d}", float(rng.uniform(*flip)), float(rng.uniform(*skip)), int(rng.integers(3))
            )
            for i in range(k)
        ]

    def rate(self, video_id: str, judgement: Judgement) -> list[tuple[str, dict[Dimension, Rating]]]:
        """(annotator, ratings) for every annotator who does not skip this video."""
        out = []
        for i, person in enumerate(self.annotators):
            rng = np.random.default_rng([self.seed, zlib.crc32(video_id.encode()), i])
            if rng.random() < person.skip:
                continue
            ratings = {}
            for dim in DIMENSIONS:
                label = judgement.label(dim)
                if rng.random() < person.flip:
                    label = _neighbour(label, rng)
                variant = person.wording + int(rng.random() < 0.3)  # mostly their own phrasing
                ratings[dim] = Rating(label=label, reason=reason_as(judgement, dim, label, variant))
            out.append((person.name, ratings))
        return out


def _neighbour(label: Label, rng: np.random.Generator) -> Label:
    rank = LABEL_RANK[label]
    options = [r for r in (rank - 1, rank + 1) if 0 <= r <= 2]
    target = options[int(rng.integers(len(options)))]
    return next(lab for lab, r in LABEL_RANK.items() if r == target)


def reason_as(judgement: Judgement, dim: Dimension, label: Label, variant: int) -> str:
    """A reason that fits ``label`` (which may differ from the oracle's): the oracle's findings in other
    words when the label agrees, otherwise the nearest sensible wording."""
    if label == judgement.label(dim):
        return judgement.reason(dim, variant)
    if label == Label.Good:
        return judgement.reason_when_good(dim, variant)
    top = judgement.top_findings(dim)
    if not top:  # the evidence says Good, this annotator saw a minor problem
        return phrase(dim, "ok", Label.Normal, judgement.ok_slots[dim], variant)
    worded = [phrase(dim, f.kind, label, f.slots, variant) for f in top if label in PHRASES[(dim, f.kind)]]
    return " ".join(worded) if worded else judgement.reason(dim, variant)

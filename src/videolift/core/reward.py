"""Label -> score mapping and aggregation over dimensions: the reward as data, not code.

Defaults are the paper's: Good 0.9, Normal 0.2, Bad 0.05, mean over the three dimensions
(all Good = 0.90, all Bad = 0.05). Load another mapping from YAML/JSON with ``RewardConfig.load``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from videolift.core.errors import DataError
from videolift.core.jsonl import validation_field
from videolift.core.schema import DIMENSIONS, Dimension, Label, parse_label
from videolift.core.settings import read_settings


def _number(value: object, key: object) -> object:
    """A score or weight as given, unless it is true / false (pydantic would read 1 / 0, YAML's yes / off
    included): refused, naming its label or dimension."""
    if isinstance(value, bool):
        raise ValueError(
            f"{key}: {str(value).lower()} is not a number (YAML reads yes, no, on and off as true / false)"
        )
    return value


class RewardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scores: dict[Label, float] = Field(
        default_factory=lambda: {Label.Good: 0.9, Label.Normal: 0.2, Label.Bad: 0.05},
        description="score of each label",
    )
    aggregation: Literal["mean", "min", "weighted"] = Field(
        "mean", description="how dimension scores combine"
    )
    weights: dict[Dimension, float] = Field(
        default_factory=lambda: {d: 1.0 for d in DIMENSIONS},
        description="per-dimension weights for aggregation='weighted'",
    )

    @field_validator("scores", mode="before")
    @classmethod
    def _labels(cls, value: object) -> dict:
        if not isinstance(value, dict):
            raise ValueError(
                f"must map each label to its score, e.g. {{Good: 1, Normal: 0.5, Bad: 0}}, got {value!r}"
            )
        out: dict = {}
        for key, score in value.items():
            if (label := parse_label(key)) in out:  # "Good" and "good": which one is meant?
                raise ValueError(f"{label.value} is given twice (labels are case-insensitive)")
            out[label] = _number(score, label.value)
        missing = [label.value for label in Label if label not in out]
        if missing:
            raise ValueError(f"missing score for {', '.join(missing)}")
        return out

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: object) -> object:
        return {k: _number(w, k) for k, w in value.items()} if isinstance(value, dict) else value

    @field_validator("scores", "weights")
    @classmethod
    def _not_negative(cls, value: dict) -> dict:
        # Rewards weight a training loss: a negative one would push the model towards what it scores.
        bad = {str(getattr(k, "value", k)): v for k, v in value.items() if not 0 <= v < float("inf")}
        if bad:
            raise ValueError(f"must be finite and at least 0, got {bad}")
        return value

    @model_validator(mode="after")
    def _something_counts(self) -> RewardConfig:
        if self.aggregation == "weighted" and not any(w > 0 for w in self.weights.values()):
            raise ValueError("aggregation 'weighted' needs a weight above 0 on some dimension")
        return self

    @classmethod
    def load(cls, path: str | Path | None) -> RewardConfig:
        """The default mapping for ``None``; otherwise a YAML or JSON file with the fields above."""
        if path is None:
            return cls()
        path = Path(path)
        # An empty file, or one holding [] or 0, is refused rather than read as every default.
        data = read_settings(path, name="reward config", fields="scores, aggregation and weights")
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            field, msg = validation_field(exc)
            raise DataError(msg, file=path, field=field) from None
        # Each weight defaults to 1, but a mapping given replaces them all: one naming a single dimension
        # would weigh the others 0 unseen. (Files only: configs stored in critics and reports load as before.)
        if config.aggregation == "weighted" and (
            missing := [d.value for d in DIMENSIONS if d not in config.weights]
        ):
            raise DataError(
                f"give every dimension a weight (0 leaves one out); missing: {', '.join(missing)}",
                file=path,
                field="weights",
            )
        return config

    def is_paper(self) -> bool:
        """Whether this maps labels as the paper does: its label scores, mean over the rated dimensions
        (weights count only for ``weighted``)."""
        paper = RewardConfig()
        return self.aggregation == paper.aggregation and self.scores == paper.scores

    def describe(self) -> str:
        """The mapping in a line: ``Good 0.9, Normal 0.2, Bad 0.05; mean over the rated dimensions``."""
        scores = ", ".join(f"{label.value} {self.scores[label]:g}" for label in Label)
        if self.aggregation == "weighted":
            weights = ", ".join(f"{d.value} {self.weights.get(d, 0.0):g}" for d in DIMENSIONS)
            return f"{scores}; weighted over the rated dimensions ({weights})"
        how = "mean" if self.aggregation == "mean" else "minimum"
        return f"{scores}; {how} over the rated dimensions"

    def score(self, label: Label | str) -> float:
        return float(self.scores[parse_label(str(label))])

    def reward(self, labels: Mapping[Dimension | str, Label | str | None]) -> float | None:
        """Reward of a video from its parsed labels (None: unparsed, left out); None when no parsed
        label is on a dimension this mapping counts (a weight above 0 for ``weighted``)."""
        parsed = {d: lab for d, lab in labels.items() if lab is not None}
        counted = self.aggregation != "weighted" or any(self.weights.get(Dimension(d), 0) > 0 for d in parsed)
        return self.aggregate(parsed) if parsed and counted else None

    def aggregate(self, labels: Mapping[Dimension | str, Label | str]) -> float:
        """Reward of one video from the labels of the dimensions it was rated on."""
        if not labels:
            raise ValueError("cannot compute a reward without any rated dimension")
        per_dim = {Dimension(d): self.score(lab) for d, lab in labels.items()}
        if self.aggregation == "min":
            return min(per_dim.values())
        if self.aggregation == "weighted":
            total = sum(self.weights.get(d, 0.0) for d in per_dim)
            if total <= 0:
                raise ValueError("weights of the rated dimensions sum to zero")
            return sum(self.weights.get(d, 0.0) * s for d, s in per_dim.items()) / total
        return sum(per_dim.values()) / len(per_dim)

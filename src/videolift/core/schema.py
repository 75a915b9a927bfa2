"""The human-rating (HRA) data model every stage shares.

One record per (video, annotator); each rates some or all of the three LiFT dimensions with a
Good / Normal / Bad label and a free-text reason. See docs/formats.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from videolift.core.jsonl import json_kind, valid_unicode


class Dimension(StrEnum):
    semantic_consistency = "semantic_consistency"
    motion_smoothness = "motion_smoothness"
    video_fidelity = "video_fidelity"

    @property
    def short(self) -> str:
        """One word for narrow tables: semantic, motion, fidelity ("video" would say nothing)."""
        return _SHORT[self.value]


_SHORT = {"semantic_consistency": "semantic", "motion_smoothness": "motion", "video_fidelity": "fidelity"}


class Label(StrEnum):
    Good = "Good"
    Normal = "Normal"
    Bad = "Bad"


DIMENSIONS: tuple[Dimension, ...] = tuple(Dimension)
LABELS: tuple[Label, ...] = tuple(Label)
# Ordinal rank, used by agreement statistics and neighbouring-label logic.
LABEL_RANK: dict[Label, int] = {Label.Bad: 0, Label.Normal: 1, Label.Good: 2}


def parse_label(value: str) -> Label:
    """Exact label name, case-insensitive ('good' -> Label.Good); ValueError otherwise."""
    for label in LABELS:
        if isinstance(value, str) and value.strip().lower() == label.value.lower():
            return label
    raise ValueError(f"unknown label {value!r}; expected one of {', '.join(LABELS)}")


NUL_IN_PATH = "the path holds a NUL byte, which no file name can"


def tidy_path(path: str) -> str:
    """A relative video path without "." parts and doubled slashes: one file written two ways
    ("./v/a.mp4", "v//a.mp4") is one video to splits, stats, ids and duplicate checks. ".." is kept
    (collapsing it would ignore symlinks)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return ("/" if path.startswith("/") else "") + "/".join(parts) if parts else path


def rated_dimensions(ratings: Iterable[Mapping[Dimension | str, Any]]) -> tuple[Dimension, ...]:
    """The LiFT dimensions that some of ``ratings`` hold (a critic trained on a subset of them writes only
    its own), in canonical order; all three when none holds any."""
    present = {d for rating in ratings for d in DIMENSIONS if d.value in rating}
    return tuple(d for d in DIMENSIONS if d in present) or DIMENSIONS


def all_good(
    labels: Mapping[Dimension | str, Label | str | None], dimensions: Iterable[Dimension] = DIMENSIONS
) -> bool:
    """Rated Good on every one of ``dimensions``, the dimensions its rater rates (``rated_dimensions`` of
    its file or set): the one test RS training keeps videos by and evaluation's all-Good rate counts. A
    missing or unparsed (None) label is not Good. Labels read as ``parse_label`` does (any case;
    ValueError on an unknown one, which must not pass as merely not Good)."""
    # Keyed by Dimension or by its value alike (a Dimension hashes and compares as its value). Every
    # label is parsed before any is tested, so an unknown one raises wherever it stands.
    parsed = {d: None if (label := labels.get(d.value)) is None else parse_label(label) for d in DIMENSIONS}
    return all(parsed[d] is Label.Good for d in dimensions)


def parse_dimension(value: str) -> Dimension:
    try:
        return Dimension(value)
    except ValueError:
        raise ValueError(f"unknown dimension {value!r}; expected one of {', '.join(DIMENSIONS)}") from None


# Leading label of a free-text answer: optional markup/quotes, an optional "Label:" prefix, then the
# word. Only the *leading* word counts: "Good. Nothing bad here" is Good (the LiFT reference script
# searches the whole answer and would get this wrong).
_ANSWER_RE = re.compile(
    r"^[\s*_\"'`#>(\[]*"  # leading markup: bold, quotes, headings, brackets
    r"(?:(?:label|answer|rating)\s*[:\-]\s*[*_\"'`(\[]*)?"  # an optional "Label:" prefix
    r"(good|normal|bad)\b"
    r"[*_\"'`)\]]*"  # closing markup
    r"(?:\s*[.:;,!\-\u2013\u2014]+)?\s*",  # one separator run, then the reason
    re.IGNORECASE,
)


def parse_answer(text: str) -> tuple[Label | None, str]:
    """Split an answer like ``"Bad. The panda has no spacesuit."`` into (label, reason).

    Case- and markup-tolerant (``**good**:``, ``"Normal" -``). Returns ``(None, text)`` when the answer
    does not start with a label: callers must count that as unparsed, never as a label.
    """
    match = _ANSWER_RE.match(text or "")
    if match is None:
        return None, (text or "").strip()
    return parse_label(match.group(1)), text[match.end() :].strip()


def format_answer(label: Label | str, reason: str = "") -> str:
    """Serialise as the LiFT release does: ``"<Label>. <reason>"`` (just ``"<Label>."`` without reason)."""
    label = parse_label(str(label))
    reason = reason.strip()
    return f"{label.value}. {reason}" if reason else f"{label.value}."


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label
    reason: str = ""

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Label:
        if isinstance(value, Label):
            return value
        if not isinstance(value, str):
            raise ValueError(f"label must be a string, got {json_kind(value)}")
        return parse_label(value)

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ValueError(f"reason must be a string, got {json_kind(value)}")
        if not valid_unicode(value):
            raise ValueError("reason is not valid Unicode text (it holds a lone surrogate)")
        return value.strip()


class HRARecord(BaseModel):
    """One annotator's ratings of one video. Extra keys (e.g. ``truth``, ``seed``) are carried along."""

    model_config = ConfigDict(extra="allow")

    video_id: str = ""
    video: str = Field(min_length=1, description="path relative to the videos root")
    prompt: str
    annotator: str | None = None
    ratings: dict[Dimension, Rating]

    @field_validator("ratings", mode="before")
    @classmethod
    def _dims(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("ratings must be an object mapping dimension -> {label, reason}")
        for key in value:
            parse_dimension(key)
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():  # the critic is asked whether the video matches it
            raise ValueError("prompt is empty")
        if not valid_unicode(value):  # read fine, it broke every file written with it (export, split)
            raise ValueError("prompt is not valid Unicode text (it holds a lone surrogate)")
        return value

    @field_validator("video")
    @classmethod
    def _video(cls, value: str) -> str:
        if not value.strip():  # as in a manifest: no file is named by blanks
            raise ValueError("video is blank")
        if "\x00" in value:
            raise ValueError(NUL_IN_PATH)
        return tidy_path(value)

    @field_validator("video_id")
    @classmethod
    def _video_id(cls, value: str) -> str:
        if value and not value.strip():  # ratings are grouped by it: a blank would be an id nobody means
            raise ValueError("video_id is blank (omit the field: the video path stands in)")
        if not valid_unicode(value):
            raise ValueError("video_id is not valid Unicode text (it holds a lone surrogate)")
        return value

    @field_validator("annotator")
    @classmethod
    def _annotator(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():  # a blank name would merge raters; omit it instead
            raise ValueError("annotator is blank (omit the field for an anonymous rater)")
        if value is not None and not valid_unicode(value):
            raise ValueError("annotator is not valid Unicode text (it holds a lone surrogate)")
        return value

    @model_validator(mode="after")
    def _default_id(self) -> HRARecord:
        if not self.video_id:
            self.video_id = self.video
        return self

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if data["annotator"] is None:  # anonymous: no field (extra fields keep their nulls)
            del data["annotator"]
        # Keep dimensions in canonical order for readable, diffable files.
        data["ratings"] = {
            d.value: data["ratings"][d.value] for d in DIMENSIONS if d.value in data["ratings"]
        }
        return data

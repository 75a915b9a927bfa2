"""The LiFT release layout (LiFT-HRA-10K/20K, VIDGEN) <-> canonical HRA records.

The release is a JSON list with one record per (video, dimension) in the LLaVA conversation layout:
``{"video": "videos/x.mp4", "conversations": [{"from": "human", "value": "<video>\\n <caption> <question>"},
{"from": "gpt", "value": "<Label>. <reason>"}]}``. Every question starts with "Please identify the"
and names its dimension by a key phrase.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from videolift.core.errors import DataError
from videolift.core.jsonl import LONE_SURROGATE, json_kind, valid_unicode, validation_field
from videolift.core.schema import (
    DIMENSIONS,
    Dimension,
    HRARecord,
    Rating,
    format_answer,
    parse_answer,
    tidy_path,
)

VIDEO_TOKEN = "<video>"
QUESTION_PREFIX = "Please identify the"

# The release's question texts (also the critic's default per-dimension questions).
QUESTIONS: dict[Dimension, str] = {
    Dimension.semantic_consistency: (
        "Please identify the semantic consistency issues in this video, focusing on the alignment between "
        "the text and the visual content. Specifically, point out any discrepancies regarding the subject "
        "(e.g., person or animal), quantity, color, scene description, style, and other relevant aspects."
    ),
    Dimension.motion_smoothness: (
        "Please identify the motion issues in this video, focusing on the continuity and smoothness of "
        "actions, as well as their coherence and adherence to the laws of physics."
    ),
    Dimension.video_fidelity: (
        "Please identify the fidelity issues in this video, assessing the realism of the content, including "
        "people, animals, and other objects. Highlight any problems such as missing limbs, deformed hands or "
        "faces, or other unrealistic elements."
    ),
}
# The keys a release record is read by: the release's two, and the two `hra export` adds.
RECORD_KEYS = ("video", "conversations", "video_id", "annotator")
KEY_PHRASES: dict[str, Dimension] = {
    "semantic consistency": Dimension.semantic_consistency,
    "motion issues": Dimension.motion_smoothness,
    "fidelity issues": Dimension.video_fidelity,
}


def split_human_turn(text: str) -> tuple[str, Dimension]:
    """``"<video>\\n <caption> <question>"`` -> (caption, dimension); ValueError if not recognisable."""
    body = text.replace(VIDEO_TOKEN, "", 1) if VIDEO_TOKEN in text else text
    at = body.rfind(QUESTION_PREFIX)  # the last: a caption may contain the phrase too
    if at < 0:
        raise ValueError(f"no question starting with {QUESTION_PREFIX!r}")
    caption, question = body[:at].strip(), body[at:].lower()
    found = [dim for phrase, dim in KEY_PHRASES.items() if phrase in question]
    if len(found) != 1:
        raise ValueError(f"question names {'no' if not found else 'several'} dimension(s): {question[:80]!r}")
    return caption, found[0]


def human_turn(caption: str, dimension: Dimension) -> str:
    return f"{VIDEO_TOKEN}\n {caption} {QUESTIONS[dimension]}"


def _turn(conversations: list[Any], role: str, what: str, path: str | Path, i: int) -> str:
    """The text of the ``role`` turn; DataError naming element ``i`` and the field if it is missing or not text."""
    turn = next((t for t in conversations if isinstance(t, dict) and t.get("from") == role), None)
    if turn is None:
        raise DataError(f"no {what} turn", file=path, record=i, field="conversations")
    value, field = turn.get("value"), f"conversations[{role}].value"
    if not isinstance(value, str):  # the turn is there: not "no human turn"
        raise DataError(f"expected a string, got {json_kind(value)}", file=path, record=i, field=field)
    if not valid_unicode(value):  # JSON's "\\ud800": no UTF-8 file can hold it, the write failed
        raise DataError(LONE_SURROGATE, file=path, record=i, field=field)
    return value


def import_lift(path: str | Path, data: Any) -> tuple[list[HRARecord], dict[str, Any]]:
    """Merge per-(video, dimension) release records into canonical per-video records.

    Records of the same video merge into one (a video has one caption: another is refused, one
    differing only in spacing takes the first's text). A second answer for a dimension that a
    record already has (duplicates across releases, or several raters) starts another record for that
    video, so nothing is lost. Returns the records and counts for a summary; ``ignored_keys`` maps each
    key outside ``RECORD_KEYS`` to (records holding it, first element), for the caller to warn of once.
    """
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of records, got {json_kind(data)}", file=path)
    if not data:
        raise DataError("the release file holds no records", file=path)
    groups: dict[tuple[str, str], list[HRARecord]] = {}
    captions: dict[str, tuple[int, str]] = {}  # video -> (element, caption) of its first record
    stats: dict[str, Any] = {"input_records": len(data), "duplicates": 0, "extra_records": 0}
    # Not carried into the canonical records: one video's records are merged, and a per-(video,
    # dimension) key (an "id", say) has no single value there. Said, not dropped unseen.
    ignored: dict[str, list[int]] = {}  # key -> [records holding it, first element]
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataError(f"expected an object, got {json_kind(item)}", file=path, record=i)
        for key in item.keys() - set(RECORD_KEYS):
            ignored.setdefault(key, [0, i])[0] += 1
        video = item.get("video")
        if not isinstance(video, str) or not video.strip():
            raise DataError("missing or empty video path", file=path, record=i, field="video")
        # A lone surrogate (JSON's "\\ud800") in any text kept: no UTF-8 file can hold it, the write failed.
        for field, value in (
            ("video", video),
            ("video_id", item.get("video_id")),
            ("annotator", item.get("annotator")),
        ):
            if isinstance(value, str) and not valid_unicode(value):
                raise DataError(LONE_SURROGATE, file=path, record=i, field=field)
        # As the record will hold it: one file written two ways ("./videos//a.mp4") is one video to the
        # merge, and the id that the path stands in for is the record's own path.
        video = tidy_path(video)
        video_id = item.get("video_id")  # an extra key `hra export` adds, a string; absent or "": the path
        if video_id is not None and video_id != "" and not (isinstance(video_id, str) and video_id.strip()):
            raise DataError(
                f"video_id must be a string, not blank, got {video_id!r}",
                file=path,
                record=i,
                field="video_id",
            )
        conv = item.get("conversations")
        if not isinstance(conv, list):
            raise DataError("missing conversations list", file=path, record=i, field="conversations")
        roles = [turn.get("from") if isinstance(turn, dict) else None for turn in conv]
        if len(conv) > 2 or (len(conv) == 2 and roles != ["human", "gpt"]):
            # One question and its answer per release record; more turns would be dropped unread.
            raise DataError(
                f"expected one human turn and its gpt answer, got turns {roles}",
                file=path, record=i, field="conversations",
            )  # fmt: skip
        human, answer = _turn(conv, "human", "human", path, i), _turn(conv, "gpt", "gpt (answer)", path, i)
        try:
            caption, dim = split_human_turn(human)
        except ValueError as exc:
            raise DataError(str(exc), file=path, record=i, field="conversations[human].value") from None
        label, reason = parse_answer(answer)
        if label is None:
            raise DataError(
                f"answer does not start with Good, Normal or Bad: {answer[:60]!r}",
                file=path,
                record=i,
                field="conversations[gpt].value",
            )
        if not caption:
            raise DataError("empty caption", file=path, record=i, field="conversations[human].value")
        rating = Rating(label=label, reason=reason)
        annotator = item.get("annotator")
        if annotator is not None and not (isinstance(annotator, str) and annotator.strip()):
            raise DataError(
                f"annotator must be a name, got {annotator!r}",
                file=path,
                record=i,
                field="annotator",
            )
        if video in captions and captions[video][1] != caption:
            first, text = captions[video]
            if text.split() != caption.split():  # spacing alone: the first one's text
                raise DataError(
                    f"video {video!r} has the caption {text!r} at element [{first}], {caption!r} here; "
                    "one video has one prompt",
                    file=path,
                    record=i,
                    field="conversations[human].value",
                )
        caption = captions.setdefault(video, (i, caption))[1]
        records = groups.setdefault((video, caption), [])
        # An exact repeat first (e.g. the 20K file contains the 10K one): it must not fill another
        # rater's record that lacks the dimension.
        if any(r.ratings.get(dim) == rating and r.annotator == annotator for r in records):
            stats["duplicates"] += 1
            continue
        target = next(
            (r for r in records if dim not in r.ratings and r.annotator == annotator),
            None,
        )
        if target is None:
            # A repeated rating: this rater (or an unnamed one) answered the dimension already. Another
            # named annotator's first answer (an `hra export` round trip) starts that rater's own record.
            if any(r.annotator == annotator for r in records):
                stats["extra_records"] += 1
            try:  # what the checks above left to the record's own rules (a path no file can have)
                target = HRARecord(
                    video_id=video_id or video, video=video, prompt=caption, annotator=annotator, ratings={}
                )
            except ValidationError as exc:
                field, msg = validation_field(exc)
                raise DataError(msg, file=path, record=i, field=field) from None
            records.append(target)
        target.ratings[dim] = rating
    out = [r for records in groups.values() for r in records]
    stats["output_records"] = len(out)
    stats["ignored_keys"] = {key: (n, first) for key, (n, first) in sorted(ignored.items())}
    return out, stats


def export_lift(records: list[HRARecord]) -> list[dict[str, Any]]:
    """Canonical records -> release layout. ``video_id`` and ``annotator`` ride along as extra keys
    (LLaVA loaders ignore them) so that export -> import loses nothing."""
    out = []
    for record in records:
        for dim in DIMENSIONS:
            rating = record.ratings.get(dim)
            if rating is None:
                continue
            item: dict[str, Any] = {
                "video": record.video,
                "conversations": [
                    {"from": "human", "value": human_turn(record.prompt, dim)},
                    {"from": "gpt", "value": format_answer(rating.label, rating.reason)},
                ],
            }
            if record.video_id != record.video:
                item["video_id"] = record.video_id
            if record.annotator is not None:
                item["annotator"] = record.annotator
            out.append(item)
    return out

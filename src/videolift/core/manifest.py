"""The videos manifest (``manifest.jsonl``), read alike by `critic score`, `annotate create` and `toy rate`.

`generate` and `toy corpus` write it: one video per line, ``video`` (relative to the videos root) and
``prompt``, an optional ``video_id``, anything else carried along. The rules are in docs/formats.md
(videos manifest); each command adds only checks of its own (annotate: safe paths and files; toy rate:
the toy grammar), so a manifest one of them takes is not refused by another for its fields or ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videolift.core.errors import DataError
from videolift.core.jsonl import LONE_SURROGATE, iter_json_lines, text_field, valid_unicode
from videolift.core.schema import NUL_IN_PATH, tidy_path


@dataclass(frozen=True)
class ManifestRecord:
    line: int
    video: str
    prompt: str
    video_id: str | None  # as given, an integer as its digits; None: not given
    fields: dict[str, Any]  # the line as written (video_id as given), to carry along

    @property
    def key(self) -> str:
        """What the video is known by: its id, else its path."""
        return self.video if self.video_id is None else self.video_id


def video_key(line: Mapping[str, Any]) -> str:
    """``ManifestRecord.key`` of a line carrying a record's fields (a scores line)."""
    vid = line.get("video_id")
    return line["video"] if vid is None or vid == "" else str(vid)


def read_manifest(path: str | Path, prefix: str = "") -> list[ManifestRecord]:
    """Every record, in file order; DataError naming file, line and field on the first bad one.
    ``prefix``: a folder the paths are relative to (``annotate create --dir``), put before each ``video``
    before duplicates are looked for, since a path without an id is the id it is stored under."""
    path = Path(path)
    records: list[ManifestRecord] = []
    first: dict[tuple[str, str], int] = {}
    for line, obj in iter_json_lines(path):
        video, prompt = text_field(obj, "video", path, line), text_field(obj, "prompt", path, line)
        if "\x00" in video:  # a path no file can have (and os calls raise ValueError on)
            raise DataError(NUL_IN_PATH, file=path, line=line, field="video")
        video = tidy_path(f"{prefix}/{video}" if prefix else video)  # "./a.mp4" is "a.mp4"
        vid = obj.get("video_id")
        vid = None if vid == "" else vid  # as in an HRA record: the path stands in (a blank is refused)
        # Ratings and scores are matched to their video by it: not a list, an object, true or a blank.
        if vid is not None and (
            isinstance(vid, bool) or not isinstance(vid, str | int) or not str(vid).strip()
        ):
            raise DataError(
                f"{vid!r}: not a video id (a string or an integer)", file=path, line=line, field="video_id"
            )
        if vid is not None and not valid_unicode(str(vid)):  # it is written wherever the video is
            raise DataError(LONE_SURROGATE, file=path, line=line, field="video_id")
        record = ManifestRecord(line, video, prompt, None if vid is None else str(vid), obj)
        # A repeated video would be rated or scored twice; a repeated id would merge two videos' ratings.
        for field, key in (("video", video), ("video_id", record.key)):
            if (field, key) in first:
                raise DataError(
                    f"{key!r} already on line {first[field, key]}", file=path, line=line, field=field
                )
            first[field, key] = line
        records.append(record)
    if not records:
        raise DataError("the manifest has no records", file=path)
    return records

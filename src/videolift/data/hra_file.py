"""Reading an HRA file as every command that takes one does: `hra validate` lists what
`record_problems` finds, the others (and `videolift run`) refuse the file at its first problem."""

from __future__ import annotations

from pathlib import Path

from videolift.core.errors import DataError
from videolift.core.jsonl import iter_json_lines, parse_model
from videolift.core.schema import HRARecord
from videolift.data.stats import video_id_conflict


def _second_record(record: HRARecord, line: int, first: dict, src: Path) -> DataError | None:
    """The error of a second record of one video by one named annotator (``first``: (video_id,
    annotator) -> line of the first, updated here), or None."""
    if record.annotator is None:
        return None
    key = (record.video_id, record.annotator)
    if key not in first:
        first[key] = line
        return None
    return DataError(
        f"second record of video {record.video_id!r} by annotator {record.annotator!r} "
        f"(first on line {first[key]})",
        file=src,
        line=line,
        field="annotator",
    )


def record_problems(
    record: HRARecord, line: int, src: Path, first: dict, videos_by_id: dict
) -> list[DataError]:
    """What is wrong with a valid record among the file's earlier ones (``first``, ``videos_by_id``:
    what they said, updated here): it rates nothing, it is a rater's second record of its video, or
    its id names another video than before."""
    problems = []
    if not record.ratings:  # valid JSON, but a record that rates nothing is a mistake upstream
        problems.append(
            DataError("no rating: rate at least one dimension", file=src, line=line, field="ratings")
        )
    if (twice := _second_record(record, line, first, src)) is not None:
        problems.append(twice)
    if (conflict := video_id_conflict(record, line, videos_by_id, src)) is not None:
        problems.append(conflict)
    return problems


def read_hra_lines(src: str | Path) -> list[tuple[int, HRARecord]]:
    """(1-based JSONL line, record) of every record of an HRA file, refused as `hra validate` refuses it: a
    file without any is a mistake (a wrong path, a failed export), and so is a record that
    `record_problems` finds wrong (a rater's second record of a video would count twice in training and
    outvote the others in a test set)."""
    src = Path(src)
    records, first, videos_by_id = [], {}, {}
    for line, obj in iter_json_lines(src):
        record = parse_model(HRARecord, obj, file=src, line=line)
        if problems := record_problems(record, line, src, first, videos_by_id):
            raise problems[0]
        records.append((line, record))
    if not records:
        raise DataError("no records: the file is empty", file=src)
    return records


def read_hra(src: str | Path) -> list[HRARecord]:
    return [record for _, record in read_hra_lines(src)]

"""Reading prompt files (.txt, .jsonl, .csv) with errors that name the file, line and field.

Every reader returns ``PromptRecord`` objects: the prompt text, where it came from, and every other
field of its record (carried along into generation manifests, e.g. ``categories``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolift.core.errors import DataError
from videolift.core.jsonl import iter_json_lines, json_kind, read_text, split_lines

SUFFIXES = (".txt", ".jsonl", ".csv")


@dataclass(frozen=True)
class PromptRecord:
    prompt: str
    line: int  # 1-based line of the source file (for error messages)
    extra: dict[str, Any] = field(default_factory=dict)  # the record's other fields


def read_prompts(path: str | Path, *, prompt_field: str = "prompt") -> list[PromptRecord]:
    """All prompts of a .txt (one per line), .jsonl (``prompt_field``) or .csv (a ``prompt_field`` column).

    Blank .txt lines and .txt lines starting with ``#`` (comments, as in the phrase lists) are skipped;
    a prompt that starts with ``#`` needs a .jsonl or .csv file. DataError for a missing, empty, non-UTF-8 or malformed file or record
    (a .csv quote left open, or a quoted prompt running over several lines, included).
    """
    path = Path(path)
    if path.is_dir():  # a folder has no suffix: named as what it is, not as an unknown file type
        raise DataError("is a directory, expected a prompt file (.txt, .jsonl or .csv)", file=path)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"unsupported prompt file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}", file=path
        )
    if not path.is_file():
        raise DataError("prompt file not found" if not path.exists() else "not a file", file=path)
    reader = {".txt": _read_txt, ".jsonl": _read_jsonl, ".csv": _read_csv}[path.suffix.lower()]
    records = reader(path, prompt_field)
    if not records:  # "it is empty" only if it is: not of blank lines, or a CSV header alone
        raise DataError(
            "no prompts in file" + (" (it is empty)" if not path.stat().st_size else ""), file=path
        )
    return records


def _read_txt(path: Path, _field: str) -> list[PromptRecord]:
    # A "# held-out set, v2" header is a note, not a prompt to spend a video on; only whole lines are
    # comments ("a sign reading #1" keeps its '#'). Line numbers stay those of the file.
    lines = split_lines(read_text(path))
    return [
        PromptRecord(text, i)
        for i, line in enumerate(lines, start=1)
        if (text := line.strip()) and not text.startswith("#")
    ]


def _checked_prompt(value: Any, *, file: Path, line: int, prompt_field: str) -> str:
    if value is None:
        raise DataError("missing prompt", file=file, line=line, field=prompt_field)
    if not isinstance(value, str):
        raise DataError(
            f"prompt must be a string, got {json_kind(value)}", file=file, line=line, field=prompt_field
        )
    if not value.strip():
        raise DataError("empty prompt", file=file, line=line, field=prompt_field)
    return value.strip()


def _read_jsonl(path: Path, prompt_field: str) -> list[PromptRecord]:
    records = []
    for line, obj in iter_json_lines(path):
        prompt = _checked_prompt(obj.get(prompt_field), file=path, line=line, prompt_field=prompt_field)
        records.append(PromptRecord(prompt, line, {k: v for k, v in obj.items() if k != prompt_field}))
    return records


def _read_csv(path: Path, prompt_field: str) -> list[PromptRecord]:
    # strict: a quote left open (or text right after a closing quote) is an error, not a silent merge
    # of every following line into one cell.
    reader = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []  # (first line of the record, cells)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise DataError("unterminated quote", file=path, line=start) from None
            where = (
                f"; the record runs from here to line {reader.line_num}" if reader.line_num > start else ""
            )
            raise DataError(
                f"malformed CSV ({exc}{where}; a quote left open?)", file=path, line=start
            ) from None
        if row:  # a blank line
            rows.append((start, row))
    if not rows:
        return []
    (header_line, header), *body = rows
    if prompt_field not in header:
        raise DataError(
            f"no {prompt_field!r} column (header has: {', '.join(header)})", file=path, line=header_line
        )
    # Spreadsheets export trailing columns with no name ("prompt,category,,"): left out when empty.
    unnamed = {i for i, name in enumerate(header) if not name.strip()}
    for line, cells in body:
        if filled := [i + 1 for i in sorted(unnamed) if i < len(cells) and cells[i].strip()]:
            raise DataError(
                f"column {filled[0]} has no name in the header (line {header_line}) but holds a value",
                file=path,
                line=line,
            )
    if repeated := sorted({name for name in header if name.strip() and header.count(name) > 1}):
        raise DataError(
            f"the header names {', '.join(map(repr, repeated))} twice", file=path, line=header_line
        )
    records = []
    for line, cells in body:
        if len(cells) > len(header):
            raise DataError(f"{len(cells)} cells but the header has {len(header)}", file=path, line=line)
        row = {
            name: value
            for i, (name, value) in enumerate(
                zip(header, cells + [None] * (len(header) - len(cells)), strict=True)
            )
            if i not in unnamed
        }
        if not any((v or "").strip() for v in row.values()):
            continue  # a row of empty cells
        prompt = _checked_prompt(row[prompt_field], file=path, line=line, prompt_field=prompt_field)
        if len(lines := split_lines(prompt)) > 1:
            raise DataError(
                f"the quoted prompt runs over {len(lines)} lines (a quote left open?); a prompt is one line",
                file=path,
                line=line,
                field=prompt_field,
            )
        records.append(PromptRecord(prompt, line, {k: v for k, v in row.items() if k != prompt_field}))
    return records

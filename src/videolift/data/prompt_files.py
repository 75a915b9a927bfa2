"""Reading prompt files (.txt, .jsonl, .csv) with errors that name the file, line and field.

Every reader returns ``PromptRecord`` objects: the prompt text, where it came from, and every other
field of its record (carried along into generation manifests, e.g. ``categories``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolift.core.errors import DataError
from videolift.core.jsonl import iter_json_lines

SUFFIXES = (".txt", ".jsonl", ".csv")


@dataclass(frozen=True)
class PromptRecord:
    prompt: str
    line: int  # 1-based line of the source file (for error messages)
    extra: dict[str, Any] = field(default_factory=dict)  # the record's other fields


def read_prompts(path: str | Path, *, prompt_field: str = "prompt") -> list[PromptRecord]:
    """All prompts of a .txt (one per line), .jsonl (``prompt_field``) or .csv (a ``prompt_field`` column).

    Blank .txt lines are skipped. DataError for a missing, empty or malformed file or record.
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"unsupported prompt file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}", file=path
        )
    if not path.is_file():
        raise DataError("prompt file not found" if not path.exists() else "not a file", file=path)
    reader = {".txt": _read_txt, ".jsonl": _read_jsonl, ".csv": _read_csv}[path.suffix.lower()]
    records = reader(path, prompt_field)
    if not records:
        raise DataError("no prompts in file (it is empty)", file=path)
    return records


def _read_txt(path: Path, _field: str) -> list[PromptRecord]:
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    return [PromptRecord(line.strip(), i) for i, line in enumerate(lines, start=1) if line.strip()]


def _checked_prompt(value: Any, *, file: Path, line: int, prompt_field: str) -> str:
    if value is None:
        raise DataError("missing prompt", file=file, line=line, field=prompt_field)
    if not isinstance(value, str):
        raise DataError(
            f"prompt must be a string, got {type(value).__name__}", file=file, line=line, field=prompt_field
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
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return []
        if prompt_field not in reader.fieldnames:
            raise DataError(
                f"no {prompt_field!r} column (header has: {', '.join(reader.fieldnames)})", file=path, line=1
            )
        records = []
        for row in reader:
            line = reader.line_num
            if None in row:  # DictReader files surplus cells under the key None
                raise DataError(
                    f"{len(reader.fieldnames) + len(row[None])} cells but the header has {len(reader.fieldnames)}",
                    file=path,
                    line=line,
                )
            if not any((v or "").strip() for v in row.values()):
                continue  # a blank row
            prompt = _checked_prompt(row[prompt_field], file=path, line=line, prompt_field=prompt_field)
            records.append(PromptRecord(prompt, line, {k: v for k, v in row.items() if k != prompt_field}))
    return records

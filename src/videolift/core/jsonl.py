"""JSON, JSONL and YAML reading with located errors, and all-or-nothing file writing."""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from videolift.core.errors import DataError

M = TypeVar("M", bound=BaseModel)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write to a temporary file next to ``path`` and rename it into place only on success.

    A crash or an exception leaves either the old file or nothing, never a half-written one.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("is a directory; name a file to write", file=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # named by the file asked for, not the temporary one beside it
        problem = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        raise DataError(f"cannot write it ({problem})", file=path) from None
    # mkstemp creates 0600; give the file the permissions a plain open() would (0666 minus umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a write or fsync that failed (a full disk)
            exc.filename = str(path)
        raise


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any] | BaseModel]) -> int:
    """Atomically write records (dicts or models) as JSONL; returns the count."""
    n = 0
    with atomic_write(path) as handle:
        for record in records:
            data = record.to_json() if hasattr(record, "to_json") else record
            if isinstance(data, BaseModel):
                data = data.model_dump(mode="json")
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")
            n += 1
    return n


def finite_values(record: dict[str, Any]) -> dict[str, Any]:
    """A log line every JSON reader takes: a NaN or infinite number (a diverged loss, an overflowing
    gradient norm) becomes null, named with its value under ``non_finite`` (``json.dumps`` would write a
    bare ``NaN``, which jq and JSON.parse refuse)."""
    bad = {k: str(v) for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
    if not bad:
        return record
    return {k: None if k in bad else v for k, v in record.items()} | {"non_finite": bad}


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one line and fsync: used by resumable stages whose logs grow line by line (a torn line a
    failed write leaves is cut by ``repair_log`` when the stage resumes)."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        if exc.filename is None:  # a full disk: name the file, as a failed open does
            exc.filename = str(path)
        raise


def repair_log(path: str | Path) -> None:
    """Cut a torn last line (a process killed mid-append) so the next append starts on a fresh line."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def iter_json_lines(
    path: str | Path, *, skip_partial_last: bool = False, errors: list[DataError] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; DataError on malformed JSON, a line that is
    not an object or an object giving one key twice.

    ``skip_partial_last`` tolerates a torn final line (a process killed mid-append), which resumable
    stages then rewrite. With an ``errors`` list, bad lines are collected there instead of raising
    (for validators that report every problem).
    """
    path = Path(path)
    text = _decoded(path, torn_tail=skip_partial_last)
    # Lines end at "\n" only: str.splitlines would also cut at U+2028 and friends, which JSON strings
    # may hold unescaped.
    lines = text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    first = True
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            # so a cut-off line's error column is where it ends
            obj = json.loads(line.rstrip("\r\n"), object_pairs_hook=_unique_keys)
        except _RepeatedKey as exc:  # json would keep the last value silently, as PyYAML would
            error = DataError(f"{exc.key!r} is given twice in one object", file=path, line=i, field=exc.key)
        except (ValueError, RecursionError) as exc:  # also an integer over 4,300 digits, deep nesting
            if skip_partial_last and i == len(lines) and not line.endswith("\n"):
                return
            error = DataError(f"malformed JSON ({parse_problem(exc)})", file=path, line=i)
        else:
            if isinstance(obj, dict):
                first = False
                yield i, obj
                continue
            error = DataError(f"expected a JSON object, got {json_kind(obj)}", file=path, line=i)
        if first and line.lstrip().startswith("[") and _json_array(text):
            # A whole file in one JSON array: every line of it would be an error of its own.
            error = DataError(
                "one JSON array, not JSON Lines: write one object per line (jq -c '.[]' converts it)",
                file=path,
            )
            if errors is None:
                raise error
            errors.append(error)
            return
        first = False
        if errors is None:
            raise error
        errors.append(error)


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"{key!r} is given twice")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs as a dict; _RepeatedKey for a key given twice."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


def _json_array(text: str) -> bool:
    """Whether ``text`` is one JSON array of objects (a JSON file given where JSON Lines are read)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, list) and all(isinstance(item, dict) for item in data)


LONE_SURROGATE = "not valid Unicode text (it holds a lone surrogate)"


def valid_unicode(text: str) -> bool:
    """False for text holding a lone surrogate (JSON's "\\ud800" reads as one): no UTF-8 file can hold it,
    so every later write of it fails."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_kind(value: Any) -> str:
    """What a parsed JSON (or YAML) value is, in JSON's words, for errors ("got null", not "NoneType")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    kinds = ((int | float, "a number"), (str, "a string"), (list, "an array"), (dict, "an object"))
    return next((kind for types, kind in kinds if isinstance(value, types)), type(value).__name__)


def parse_problem(exc: ValueError | RecursionError, *, line: bool = False) -> str:
    """What a JSON (or YAML) parser's error says, for a DataError's message."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if not isinstance(exc, json.JSONDecodeError):  # Python's own limit on integer digits
        return str(exc).split(";")[0]
    # "Unterminated string starting at" already ends in "at": no "at at column 5".
    where = f"line {exc.lineno}, column {exc.colno}" if line else f"column {exc.colno}"
    return f"{exc.msg.removesuffix(' at')} at {where}"


def read_rank_logs(
    folder: str | Path, key: Callable[[dict[str, Any]], Hashable]
) -> dict[Any, dict[str, Any]]:
    """Merge the per-process logs ``folder/rank*.jsonl`` of a sharded, resumable job (any world size):
    the last record per ``key`` wins; a torn last line (a killed writer) is ignored."""
    merged: dict[Any, dict[str, Any]] = {}
    for path in sorted(Path(folder).glob("rank*.jsonl")):
        for _, record in iter_json_lines(path, skip_partial_last=True):
            merged[key(record)] = record
    return merged


def trim_step_log(path: str | Path, step: int) -> None:
    """Keep the lines of a per-step training log up to ``step`` (a run resumed from that checkpoint
    logs the later ones again); a torn last line is dropped. Atomic; no file, nothing to do."""
    if Path(path).exists():
        write_jsonl(
            path, [o for _, o in iter_json_lines(path, skip_partial_last=True) if o.get("step", 0) <= step]
        )


def validation_field(exc: ValidationError) -> tuple[str, str]:
    """The first error of a pydantic ValidationError as (dotted field path, message)."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return loc, msg


def parse_model(
    model: type[M],
    obj: dict[str, Any],
    *,
    file: str | Path,
    line: int | None = None,
    record: int | None = None,
) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        field, msg = validation_field(exc)
        raise DataError(msg, file=file, line=line, record=record, field=field) from None


def read_jsonl(path: str | Path, model: type[M]) -> list[M]:
    """Read and validate every line; the first bad one raises a DataError naming file, line, field."""
    return [parse_model(model, obj, file=path, line=i) for i, obj in iter_json_lines(path)]


def read_jsonl_dicts(path: str | Path) -> list[dict[str, Any]]:
    """Every line as a plain dict (no schema)."""
    return [obj for _, obj in iter_json_lines(path)]


def finite_number(value: Any) -> bool:
    """A JSON number that is a number (true / false are not; Python's json reads NaN and Infinity)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def text_field(obj: dict[str, Any], name: str, path: Path, line: int, allow_empty: bool = False) -> str:
    """``obj[name]`` if it is a string (not blank unless ``allow_empty``); DataError naming it otherwise."""
    value = obj.get(name)
    if value is not None and not isinstance(value, str):  # a number, say: not "missing"
        raise DataError(f"expected a string, got {json_kind(value)}", file=path, line=line, field=name)
    if value is None or (not allow_empty and not value.strip()):
        raise DataError("missing or empty", file=path, line=line, field=name)
    if not valid_unicode(value):  # read fine, it would break every file written with it
        raise DataError(LONE_SURROGATE, file=path, line=line, field=name)
    return value


def split_lines(text: str) -> list[str]:
    r"""Lines of a text file: they end at \n, \r\n or \r only (str.splitlines would also cut at a form
    feed or U+2028 inside a line, making two of one and every later line number wrong)."""
    return re.split(r"\r\n|\r|\n", text)


def read_text(path: str | Path) -> str:
    """A text file's content; DataError naming the file (and line) if it is missing, a directory or
    not UTF-8. A leading byte-order mark is dropped."""
    return _decoded(path)


def _decoded(path: str | Path, *, torn_tail: bool = False) -> str:
    """``read_text``; with ``torn_tail``, an unterminated last line that is not UTF-8 is left out (a writer
    killed, or a disk filled, in the middle of a character's bytes): the text up to its last newline."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=path)
    if path.is_dir():
        raise DataError("is a directory, expected a file", file=path)
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)  # (error offsets then count from its end)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if torn_tail and exc.start > data.rfind(b"\n"):
            return data[: data.rfind(b"\n") + 1].decode("utf-8")
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise DataError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); save the file as UTF-8",
            file=path,
            line=line,
        ) from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What the YAML parser objects to, in a few words ("expected ',' or ']', but got ...")."""
    return getattr(exc, "problem", None) or str(exc).splitlines()[0]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:  # before merges (<<) are applied: a merged key may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the constructor itself refuses it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """A YAML (or JSON) file's content; DataError naming file, line and column if it does not parse or
    gives one key twice."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = yaml_problem(exc)
        where = f", column {mark.column + 1}" if mark is not None else ""
        line = mark.line + 1 if mark is not None else None
        raise DataError(f"malformed YAML ({problem}{where})", file=path, line=line) from None
    except (ValueError, RecursionError) as exc:  # an integer over 4,300 digits, nesting past the stack
        raise DataError(f"malformed YAML ({parse_problem(exc)})", file=path) from None


def read_json(path: str | Path, *, last_of_repeated_keys: bool = False) -> Any:
    """A JSON file's content; DataError naming the file if it does not parse or (as JSON Lines and YAML
    are read) an object gives one key twice, which json would read as its last value without a word.
    ``last_of_repeated_keys``: read that last value, as transformers and diffusers read their config
    files (a model they load must not be refused here)."""
    path = Path(path)
    hook = None if last_of_repeated_keys else _unique_keys
    try:
        return json.loads(read_text(path), object_pairs_hook=hook)
    except _RepeatedKey as exc:
        raise DataError(f"{exc.key!r} is given twice in one object", file=path, field=exc.key) from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"malformed JSON ({parse_problem(exc, line=True)})", file=path) from None

"""User-facing errors. The CLI prints these without a traceback and exits non-zero: 2 for a
``UsageError`` (the command line itself is wrong), 1 for every other ``VideoliftError``."""

from __future__ import annotations

from pathlib import Path

import typer

# typer vendors its own click: subclass the ClickException class typer's main loop actually catches.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class VideoliftError(_ClickException):
    """An error caused by the user's input or environment, with a message that says what to fix.

    A ClickException, so every command (and typer's test runner) prints it as ``Error: ...`` without
    a traceback and exits with status 1.
    """


class UsageError(VideoliftError, _UsageError):
    """The command line itself is wrong: an option's value out of its range or of the wrong kind, options
    that conflict or that need another. Found from the command line alone, without reading an input (a
    bad data or config file, a missing video, a model that does not fit are plain VideoliftErrors).

    Exits with status 2, as click's own usage errors do (a ``--steps 0``, an unknown option), after the
    command's usage line; a VideoliftError all the same, so that callers catching those catch it.
    """

    exit_code = 2


class DataError(VideoliftError):
    """Bad content in a data file, located by file, line (or 0-based record index) and field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        record: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.line, self.record, self.field = file, line, record, field
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if record is not None:  # a 0-based index into an array (a line number is 1-based)
            where.append(f"element [{record}]")
        if field:
            where.append(f"field '{field}'")
        self.detail = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class OptionError(DataError, UsageError):
    """A DataError of a setting the command line gave (an option's value, a pipeline's ``--set``), located
    as DataErrors are; a usage error (exit status 2)."""


class VideoError(VideoliftError):
    """A video file that is missing, truncated or not a video."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {message}")

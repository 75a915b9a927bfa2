"""What every settings model shares: unknown keys are refused, and so is true / false for a number;
NaN and infinity are refused; ``~`` at the start of a path setting is the user's home, as in a shell.

Pydantic reads ``true`` as 1 for an int field, and YAML reads ``yes``, ``no``, ``on`` and ``off`` as
booleans, so ``epochs: yes`` would silently train one epoch. ``.inf`` and ``.nan`` are YAML floats
that pass every ``gt`` / ``le`` bound. Pydantic keeps ``~/runs`` literally: a folder named ``~``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from videolift.core.errors import DataError
from videolift.core.jsonl import read_yaml


def takes_bool(annotation: Any) -> bool:
    """Whether a field of this type is meant to hold true / false (bool, bool | None, Literal[True])."""
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(arg, bool) for arg in get_args(annotation))
    return any(takes_bool(arg) for arg in get_args(annotation))


def refuse_bool_number(annotation: Any, value: Any) -> Any:
    """A before-validator's body: ``value`` unchanged unless it is true / false for a non-bool field."""
    if isinstance(value, bool) and not takes_bool(annotation):
        raise ValueError(
            f"{str(value).lower()} is not a value of this setting (YAML reads yes, no, on and off as true / false)"
        )
    return value


def read_settings(path: Path, *, name: str, fields: str) -> dict[str, Any]:
    """The mapping of a settings file; a missing file, or content that is not a mapping, is a DataError
    naming it: an empty file too, more likely cut short than meant as "every default"."""
    if not path.exists():
        raise DataError(f"{name} not found", file=path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        got = "nothing (write {} for every default)" if data is None else f"a {type(data).__name__}"
        raise DataError(f"expected a mapping of {fields}, got {got}", file=path)
    return data


def expand_home(model: str) -> str:
    """A model given as a path or a Hub id: a leading ``~`` expanded (a Hub id never starts with one)."""
    return str(Path(model).expanduser()) if model.startswith("~") else model


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_bool_number(cls.model_fields[info.field_name].annotation, value)

    @field_validator("*", mode="after")
    @classmethod
    def _home(cls, value: Any) -> Any:
        return value.expanduser() if isinstance(value, Path) else value

"""What every settings model shares: unknown keys are refused, and so is true / false for a number;
NaN and infinity are refused; ``~`` at the start of a path setting is the user's home, as in a shell.
A command's options take their help text and defaults from the fields (``field_help``, ``field_default``).

Pydantic reads ``true`` as 1 for an int field, and YAML reads ``yes``, ``no``, ``on`` and ``off`` as
booleans, so ``epochs: yes`` would silently train one epoch. ``.inf`` and ``.nan`` are YAML floats
that pass every ``gt`` / ``le`` bound. Pydantic keeps ``~/runs`` literally: a folder named ``~``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic.fields import FieldInfo

from videolift.core.errors import DataError
from videolift.core.jsonl import read_json, read_yaml


def dotted(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted names (``{"vae": {"steps": 2}}`` -> ``{"vae.steps": 2}``), to say which one
    changed; an empty mapping stays a value."""
    out: dict[str, Any] = {}
    for k, v in settings.items():
        if isinstance(v, dict) and v:
            out |= dotted(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def recorded_changes(path: Path, now: dict[str, Any], may_change: Iterable[str] = ()) -> list[str] | None:
    """How the settings recorded in ``path`` (JSON) differ from ``now``, one ``"name: X then, Y now"`` a
    setting (nested ones dotted), leaving out the names in ``may_change`` (a top-level name covers the
    settings under it); None when nothing is recorded. Compared as recorded: a tuple reads back as a list."""
    if not path.is_file():
        return None
    then, now = dotted(read_json(path)), dotted(json.loads(json.dumps(now)))
    allowed = set(may_change)
    return [
        f"{k}: {then.get(k)!r} then, {now.get(k)!r} now"
        for k in sorted(set(now) | set(then))
        if k.split(".")[0] not in allowed and now.get(k) != then.get(k)
    ]


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
        kind = type(data).__name__
        got = (
            "nothing (write {} for every default)"
            if data is None
            else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
        )
        raise DataError(f"expected a mapping of {fields}, got {got}", file=path)
    return data


def expand_home(model: str) -> str:
    """A model given as a path or a Hub id: a leading ``~`` expanded (a Hub id never starts with one)."""
    return str(Path(model).expanduser()) if model.startswith("~") else model


def settings_field(settings: type, name: str) -> FieldInfo:
    """A field of a settings model or of a pydantic dataclass (both keep them in ``__pydantic_fields__``)."""
    return settings.__pydantic_fields__[name]


def field_default(settings: type, name: str) -> Any:
    """A field's default, for a typer option of the field to show in --help and to pass when not given."""
    return settings_field(settings, name).get_default(call_default_factory=True)


def field_help(settings: type, name: str, *, choices_and_default: bool = True) -> str:
    """An option's help: its field's description, by default with the field's choices and default added.
    Options that default to None, so that only those given override a settings file, need them added
    (typer would show that None); an option that defaults to the field's default, with an Enum type for
    the choices, has typer show both (``choices_and_default=False``)."""
    field = settings_field(settings, name)
    text = field.description or ""
    if not choices_and_default:
        return text
    if get_origin(field.annotation) is Literal:
        text = f"{' | '.join(get_args(field.annotation))}. {text}"
    if field.is_required():
        return f"{text} [required, here or in --config]"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, bool):
        default = "on" if default else "off"
    elif isinstance(default, list):
        default = ",".join(default)
    return text if default is None else f"{text} [default: {default}]"


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

"""What every settings model shares: unknown keys are refused, and so is true / false for a number.

Pydantic reads ``true`` as 1 for an int field, and YAML reads ``yes``, ``no``, ``on`` and ``off`` as
booleans, so ``epochs: yes`` would silently train one epoch.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


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


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_bool_number(cls.model_fields[info.field_name].annotation, value)

"""The base of every configuration schema (params.yaml sections, family hyperparameters): strict and frozen.

Strict means: an unknown key is an error (``extra="forbid"``), and a YAML boolean is never read as a number
(pydantic's lax mode would take ``epochs: true`` as 1 epoch).
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def accepts_bool(annotation: Any) -> bool:
    """Whether a field's type admits ``True``/``False`` (``bool``, ``bool | Literal[...]``, ``Any``)."""
    if annotation is bool or annotation is Any:
        return True
    return any(accepts_bool(a) for a in get_args(annotation))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and not accepts_bool(annotation):
            raise ValueError(f"a {_kind(annotation)}, got the boolean {value}")  # the message gets "expected "
        return value


def _kind(annotation: Any) -> str:
    args = {a for a in get_args(annotation) if a is not type(None)} or {annotation}
    if args <= {int}:
        return "whole number"
    if args <= {int, float}:
        return "number"
    return "value of the field's type"

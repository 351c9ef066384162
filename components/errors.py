"""User-facing errors: each one is printed as a single line by the stage runner, without a traceback.

Messages follow one style: ``<where>: expected X, got Y`` and, where there is one, the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class GenfoundryError(Exception):
    """A problem the user can fix (bad params, bad data, a diverged run). The message names the fix."""


class ConfigError(GenfoundryError):
    """``params.yaml`` does not describe a valid pipeline."""


class DataError(GenfoundryError):
    """An input dataset is missing, empty, corrupt or inconsistent."""


class DivergenceError(GenfoundryError):
    """Training produced a non-finite or exploding loss; the run is marked FAILED and never registered."""


def format_validation_error(e: ValidationError, *, prefix: str = "") -> str:
    """The first error of a pydantic ValidationError as one line: key, value, expectation."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"]))
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}'; remove it or fix its spelling"
    if err["type"] == "missing":
        return f"missing key '{loc}'; add it"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if err["type"] == "value_error" and not err["loc"]:
        return f"{prefix + ': ' if prefix else ''}{msg}"
    if err["type"] == "value_error" and isinstance(value, dict):  # a section's own check: name it, not its dict
        return f"{loc}: {msg}"
    return f"'{loc}' = {value!r}: expected {msg[0].lower() + msg[1:] if msg else 'a valid value'}"

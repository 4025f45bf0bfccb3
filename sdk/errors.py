"""The one exception type users see: a one-line message that names the problem and what to do."""
from __future__ import annotations

from enum import Enum


class SadhError(ValueError):
    """Bad input or state, reported in one line (the CLI prints it and exits with code 2)."""


class ModelError(SadhError):
    """The model itself is at fault (wrong code width, NaN outputs): no input could be encoded, so none is skipped."""


def first_line(error: BaseException) -> str:
    """The first non-blank line of an exception's message (its type name when it has none), for one-line errors."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def choice(kind: type[Enum], value: object, what: str) -> str:
    """`value` (a member of the str-valued Enum `kind`, or its value) as a plain string; SadhError listing the choices
    for anything else (`what` names the setting)."""
    try:
        return kind(value).value
    except ValueError:
        raise SadhError(f"unknown {what} {value!r}; choose one of {', '.join(m.value for m in kind)}") from None

"""The one validator of sadh's records on disk (JSON sidecars and manifests, model metadata, checkpoint fields), and
where the JSON sidecar of a file lives.

A format declares its fields once, as type hints: a dataclass's annotations (`RecordFormat.of`) or a mapping of them.
`Annotated[T, Rule(...)]` adds a range or a rule to T. `RecordFormat.check` checks a record against them and raises
one line naming the file and each wrong field; fields it does not declare (of later versions) are left out.
"""
from __future__ import annotations

import functools
import os
import types
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Union

from ..codes import MAX_INDEX_BITS, bits_fit, bits_rule
from ..errors import SadhError
from ..json_text import parse_json
from ..printable import value_text

SIDECAR_SUFFIX = ".json"
_UNIONS = (Union, types.UnionType)
_PLAIN = {int: frozenset({int}), float: frozenset({int, float}), str: frozenset({str})}  # item types fitting at a glance
_MOST_DIGITS = 18  # the most digits a code length of no upper limit (`code_length(None)`) is read from


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the JSON sidecar of a file lives: `model.engine` -> `model.engine.json`, `db.sidx` -> `db.sidx.json`."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class Rule:
    """A condition on a value beyond its type (`Annotated[int, POSITIVE]`); `words` say what a fitting value is. A
    `test` may raise SadhError to say why a value fails (a parser's message); any other exception it raises is a value
    that fails."""

    words: str
    test: Callable[[Any], bool]

    def passes(self, value: Any) -> bool:
        """Whether `value` meets the rule: `test(value)`, False when the test breaks on it (SadhError passes on)."""
        try:
            return bool(self.test(value))
        except SadhError:
            raise
        except Exception:  # a value a rule's test cannot take (a 5000-digit number, ...) does not fit
            return False


POSITIVE = Rule("a positive int", lambda v: v > 0)


def code_length(most: int | None = MAX_INDEX_BITS) -> Rule:
    """The rule of a code length in bits (`sadh.sdk.codes.bits_fit`), for an int or (model metadata) its decimal str."""

    digits = len(str(most)) if most is not None else _MOST_DIGITS

    def fits(value: Any) -> bool:
        if isinstance(value, str):  # a decimal (leading zeros allowed) of no more digits than the longest code length
            significant = value.lstrip("0")
            decimal = value.isascii() and value.isdigit() and len(significant) <= digits
            return decimal and bits_fit(int(significant or "0"), most)
        return bits_fit(value, most)

    return Rule(f"a code length ({bits_rule(most)})", fits)


@functools.lru_cache(maxsize=None)
def _fitter(hint: Any) -> Callable[[Any], bool]:
    """The test of `value_fits(value, hint)`, built once per hint (a list's items are many)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        base, rules = _fitter(args[0]), args[1:]
        return lambda v: base(v) and all(rule.passes(v) for rule in rules)
    if origin in _UNIONS:
        options = [_fitter(arg) for arg in args]
        return lambda v: any(fits(v) for fits in options)
    if origin is list:
        item, plain = _fitter(args[0]), _PLAIN.get(args[0], frozenset())
        return lambda v: isinstance(v, list) and (plain.issuperset(map(type, v)) or all(map(item, v)))
    if origin is dict:
        key, value = _fitter(args[0]), _fitter(args[1])
        return lambda v: isinstance(v, dict) and all(key(k) and value(x) for k, x in v.items())
    if hint is Any:
        return lambda v: True
    if hint in (int, float):
        kinds = (int, float) if hint is float else int
        return lambda v: isinstance(v, kinds) and not isinstance(v, bool)
    return lambda v: isinstance(v, hint)


def value_fits(value: Any, hint: Any) -> bool:
    """Whether `value` has the type `hint` declares and meets its rules (bools are not numbers; ints are floats); for
    JSON-like data."""
    return _fitter(hint)(value)


def type_in_words(hint: Any) -> str:
    """A type hint in words: Optional[list[int]] -> "a list of int or None"; an Annotated one by its rules' words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return " and ".join(rule.words for rule in args[1:])
    if origin in _UNIONS:
        return " or ".join(type_in_words(arg) for arg in args)
    if origin is list:
        return f"a list of {type_in_words(args[0])}"
    if origin is dict:
        return f"a mapping of {type_in_words(args[0])} to {type_in_words(args[1])}"
    if hint is Any:
        return "any value"
    return "None" if hint is type(None) else hint.__name__


@dataclass(frozen=True)
class RecordFormat:
    """One kind of record: what it is (`WHERE: not NAME (...)` in errors), its fields' type hints, which of them it must
    have, and what to do about a bad one (`advice`, appended to errors)."""

    name: str
    hints: Mapping[str, Any]
    required: tuple[str, ...]
    advice: str = ""

    @classmethod
    def of(cls, record: type, name: str, advice: str = "") -> "RecordFormat":
        """The format of a dataclass's fields: their annotations; the fields without a default are required."""
        declared = fields(record)
        # the fields' annotations alone: Python 3.10 cannot evaluate an InitVar annotation with get_type_hints
        annotations = {f.name: f.type for f in declared}
        only_fields = type(record.__name__, (), {"__annotations__": annotations, "__module__": record.__module__})
        hints = typing.get_type_hints(only_fields, include_extras=True)
        required = tuple(f.name for f in declared if f.default is MISSING and f.default_factory is MISSING)
        return cls(name, {f.name: hints[f.name] for f in declared}, required, advice)

    def error(self, where: str | os.PathLike, reason: object) -> SadhError:
        """`WHERE: not NAME (REASON); ADVICE` as one SadhError."""
        return SadhError(f"{where}: not {self.name} ({reason})" + (f"; {self.advice}" if self.advice else ""))

    def check(self, record: Any, where: str | os.PathLike) -> dict[str, Any]:
        """The declared fields of `record` (a mapping); SadhError naming `where` and every missing or wrong field."""
        if not isinstance(record, Mapping):
            raise self.error(where, f"a JSON {type(record).__name__}, not an object")
        missing = [k for k in self.required if k not in record]
        wrong = [f"missing {', '.join(missing)}"] if missing else []
        for k, hint in self.hints.items():
            if k not in record:
                continue
            try:
                if value_fits(record[k], hint):
                    continue
                why = f"got {value_text(record[k])}"  # (only for a wrong field: the text of a long list is slow to make)
            except SadhError as e:
                why = str(e)
            wrong.append(f"{k} must be {type_in_words(hint)}, {why}")
        if wrong:
            raise self.error(where, "; ".join(wrong))
        return {k: record[k] for k in self.hints if k in record}

    def read(self, path: str | os.PathLike) -> dict[str, Any]:
        """The checked JSON record in the file at `path` (FileNotFoundError when there is none)."""
        try:
            record = parse_json(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as e:
            raise self.error(path, e) from None
        return self.check(record, path)

"""`when:` conditions on a request: compiled once from config, evaluated per request.

A condition is a mapping. Each key names a field of the request and each value
is what it must be; several keys must all hold::

    when: {properties.tier: free}                       # equality
    when: {properties.tier: {in: [free, trial]}}        # membership
    when: {params.max_tokens: {gt: 1000}}               # comparison: gt, ge, lt, le
    when: {user: {regex: "^test-"}}                     # regular expression (search)
    when: {session: {exists: true}}                     # presence
    when: {any: [{user: alice}, {properties.team: ml}]} # any / all / not combine them

Fields: ``user``, ``session``, ``model`` (the requested name), ``stream``,
``properties.<name>`` (from the request options) and ``params.<name>`` (a
request parameter such as ``temperature`` or ``max_tokens``). A missing field
fails every test except ``{exists: false}`` and ``{ne: ...}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "ConditionError", "Subject", "compile_condition"]

_MISSING = object()
_OPERATORS = ("eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "regex", "exists")


class ConditionError(ValueError):
    """A malformed condition; `path` locates the problem inside it."""

    def __init__(self, message: str, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(slots=True, frozen=True)
class Subject:
    """What conditions are evaluated against: one request."""

    user: str | None
    session: str | None
    model: str
    stream: bool
    properties: Mapping[str, str]
    params: Mapping[str, Any]

    def lookup(self, field: str) -> Any:
        if field.startswith("properties."):
            return self.properties.get(field[11:], _MISSING)
        if field.startswith("params."):
            value = self.params.get(field[7:], _MISSING)
            return _MISSING if value is None else value
        value = getattr(self, field)
        return _MISSING if value is None else value


Condition = Callable[[Subject], bool]


def _field_ok(name: str, path: str) -> None:
    if name in ("user", "session", "model", "stream"):
        return
    for prefix in ("properties.", "params."):
        if name.startswith(prefix) and len(name) > len(prefix):
            return
    raise ConditionError(
        f"unknown field {name!r}; use user, session, model, stream, properties.<name> or "
        "params.<name>",
        path,
    )


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConditionError(f"expected a number, got {value!r}", path)
    return float(value)


def _test(op: str, operand: Any, path: str) -> Callable[[Any], bool]:
    if op == "eq":
        return lambda v: v is not _MISSING and v == operand
    if op == "ne":
        return lambda v: v is _MISSING or v != operand
    if op in ("in", "not_in"):
        if not isinstance(operand, list):
            raise ConditionError(f"{op!r} expects a list, got {operand!r}", path)
        members = list(operand)
        if op == "in":
            return lambda v: v is not _MISSING and v in members
        return lambda v: v is _MISSING or v not in members
    if op in ("gt", "ge", "lt", "le"):
        limit = _number(operand, path)
        compare: dict[str, Callable[[float], bool]] = {
            "gt": lambda x: x > limit, "ge": lambda x: x >= limit,
            "lt": lambda x: x < limit, "le": lambda x: x <= limit,
        }  # fmt: skip
        check = compare[op]
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and check(v)
    if op == "regex":
        if not isinstance(operand, str):
            raise ConditionError(f"'regex' expects a string, got {operand!r}", path)
        try:
            pattern = re.compile(operand)
        except re.error as exc:
            raise ConditionError(f"invalid regular expression {operand!r}: {exc}", path) from None
        return lambda v: isinstance(v, str) and pattern.search(v) is not None
    if op == "exists":
        if not isinstance(operand, bool):
            raise ConditionError(f"'exists' expects true or false, got {operand!r}", path)
        return lambda v: (v is not _MISSING) is operand
    raise ConditionError(f"unknown test {op!r}; expected one of: {', '.join(_OPERATORS)}", path)


def _field_condition(name: str, spec: Any, path: str) -> Condition:
    _field_ok(name, path)
    if isinstance(spec, Mapping):
        if not spec:
            raise ConditionError("an empty test", path)
        tests = [_test(str(op), operand, f"{path}.{op}") for op, operand in spec.items()]
    else:
        tests = [_test("eq", spec, path)]
    return lambda s: all(test(s.lookup(name)) for test in tests)


def _combine(inner: list[Condition], *, every: bool) -> Condition:
    if every:
        return lambda s: all(c(s) for c in inner)
    return lambda s: any(c(s) for c in inner)


def _negate(condition: Condition) -> Condition:
    return lambda s: not condition(s)


def compile_condition(spec: Any, path: str = "when") -> Condition:
    """A predicate from a condition mapping; `ConditionError` names what is wrong where."""
    if not isinstance(spec, Mapping) or not spec:
        raise ConditionError(f"a condition is a non-empty mapping, got {spec!r}", path)
    parts: list[Condition] = []
    for key, value in spec.items():
        where = f"{path}.{key}"
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise ConditionError(f"{key!r} expects a non-empty list of conditions", where)
            inner = [compile_condition(v, f"{where}.{i}") for i, v in enumerate(value)]
            parts.append(_combine(inner, every=key == "all"))
        elif key == "not":
            parts.append(_negate(compile_condition(value, where)))
        else:
            parts.append(_field_condition(str(key), value, where))
    if len(parts) == 1:
        return parts[0]
    return lambda s: all(p(s) for p in parts)

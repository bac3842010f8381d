"""Parsing of human-written durations (``30s``, ``1m30s``, ``250ms``) and rates (``60/min``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

__all__ = ["DURATION_SCHEMA", "Duration", "PositiveDuration", "parse_duration", "parse_rate"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_BARE_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|min|s|m|h|d)")
_RATE_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}  # fmt: skip


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"30s"``, ``"1m30s"``, ``"250ms"``, ``"2h"``.

    A bare number (or numeric string) is seconds. Raises `ValueError` otherwise.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 250ms or 2m, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(
            f"expected a duration such as 30s, 250ms or 2m, got {type(value).__name__}"
        )
    text = value.strip().lower().replace(" ", "")
    if _BARE_NUMBER.fullmatch(text):
        return float(text)
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"expected a duration such as 30s, 250ms or 2m, got {value!r}")
    return total


def parse_rate(value: object) -> tuple[float, float]:
    """``(amount, period_seconds)`` from ``"60/min"``, ``"100k/1h"``, ``"5/day"``."""
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"expected a rate such as 60/min or 100k/h, got {value!r}")
    amount_text, _, period_text = value.replace(" ", "").lower().partition("/")
    multiplier = 1.0
    if amount_text.endswith("k"):
        amount_text, multiplier = amount_text[:-1], 1_000.0
    elif amount_text.endswith("m"):
        amount_text, multiplier = amount_text[:-1], 1_000_000.0
    try:
        amount = float(amount_text) * multiplier
    except ValueError:
        raise ValueError(f"expected a rate such as 60/min or 100k/h, got {value!r}") from None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)?([a-z]+)", period_text)
    unit = match.group(2) if match else ""
    if unit not in _RATE_UNITS and unit.endswith("s") and len(unit) > 2:
        unit = unit[:-1]  # plurals: "mins", "hours", "days", "seconds"
    if match is None or unit not in _RATE_UNITS:
        raise ValueError(f"unknown rate period {period_text!r} in {value!r}; use s, min, h or day")
    count = float(match.group(1)) if match.group(1) else 1.0
    if amount < 0 or count <= 0:
        raise ValueError(f"a rate needs an amount >= 0 and a period > 0, got {value!r}")
    return amount, count * _RATE_UNITS[unit]


#: What editors are told a duration looks like (the JSON Schema of `Duration`).
DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|min|s|m|h|d)?\s*)+$"},
    ],
    "description": "seconds, or a duration such as 250ms, 30s, 1m30s, 2h",
}

Duration = Annotated[
    float, BeforeValidator(parse_duration), Field(ge=0), WithJsonSchema(DURATION_SCHEMA)
]
PositiveDuration = Annotated[
    float, BeforeValidator(parse_duration), Field(gt=0), WithJsonSchema(DURATION_SCHEMA)
]

"""Human-written durations and rates."""

from __future__ import annotations

import pytest

from llmroute._units import parse_duration, parse_rate


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("2min", 120.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        (" 45S ", 45.0),
        ("1m0.5s", 60.5),
        ("10", 10.0),
        ("0.5", 0.5),
        (5, 5.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert result == pytest.approx(seconds)
    assert type(result) is float


@pytest.mark.parametrize(
    "value",
    ["fast", "", "   ", "ms", "30seconds", "1h30", "s30", "1.2.3s", "30 s x", True, None, [30]],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 30s, 250ms or 2m"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "rate"),
    [
        ("60/min", (60.0, 60.0)),
        ("100k/h", (100_000.0, 3600.0)),
        ("5/day", (5.0, 86400.0)),
        ("10/5s", (10.0, 5.0)),
        ("3/s", (3.0, 1.0)),
        ("7/sec", (7.0, 1.0)),
        ("30 / minute", (30.0, 60.0)),
        ("2/hours", (2.0, 3600.0)),
        ("12/10m", (12.0, 600.0)),
        ("1.5k/2min", (1500.0, 120.0)),
        ("1m/d", (1_000_000.0, 86400.0)),
        ("100K/H", (100_000.0, 3600.0)),
    ],
)
def test_parse_rate(value: str, rate: tuple[float, float]) -> None:
    assert parse_rate(value) == rate


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("60", "expected a rate such as 60/min"),
        (60, "expected a rate such as 60/min"),
        (None, "expected a rate such as 60/min"),
        ("abc/min", "expected a rate such as 60/min"),
        ("/min", "expected a rate such as 60/min"),
        ("k/min", "expected a rate such as 60/min"),
        ("60/", "unknown rate period ''"),
        ("60/5", "unknown rate period '5'"),
        ("60/fortnight", "unknown rate period 'fortnight'"),
        ("10/500ms", "unknown rate period '500ms'"),  # not minutes ("m" + plural "s")
    ],
)
def test_parse_rate_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate(value)


@pytest.mark.parametrize("value", ["60/0s", "-5/min"])
def test_parse_rate_rejects_empty_period_and_negative_amount(value: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(value)

"""Budget amounts and their calendar windows (``5/day``, ``100/month``, ``2/12h``).

Budget windows are calendar-aligned, not rolling: a day starts at midnight, a
week on Monday at midnight, a month on the 1st at midnight, in the budgets'
time zone (UTC by default). Periods counted in seconds, minutes or hours
(``2/12h``) are aligned to multiples of the period since the Unix epoch. A
window's spend starts again from zero when the next window begins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal

__all__ = ["BudgetAmount", "format_usd", "parse_budget"]

_UNITS = {
    "s": "second", "sec": "second", "second": "second",
    "m": "minute", "min": "minute", "minute": "minute",
    "h": "hour", "hour": "hour",
    "d": "day", "day": "day",
    "w": "week", "week": "week",
    "mo": "month", "month": "month",
}  # fmt: skip
_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
_PERIOD = re.compile(r"(\d+)?([a-z]+)")


@dataclass(frozen=True, slots=True)
class BudgetAmount:
    """A budget: `usd` dollars per window of `count` `unit` (``5/day`` is 5, 1, ``day``)."""

    usd: float
    count: int
    unit: str

    def __str__(self) -> str:
        period = self.unit if self.count == 1 else f"{self.count} {self.unit}s"
        return f"{format_usd(self.usd)} USD/{period}"

    def window(self, now: float, zone: tzinfo) -> tuple[float, float]:
        """The window holding `now` (Unix seconds): its start and end, as Unix seconds."""
        if self.unit in _SECONDS:
            size = self.count * _SECONDS[self.unit]
            start = now - (now % size)
            return start, start + size
        local = datetime.fromtimestamp(now, zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.unit == "day":
            begin, end = midnight, midnight + timedelta(days=1)
        elif self.unit == "week":
            begin = midnight - timedelta(days=local.weekday())
            end = begin + timedelta(days=7)
        else:
            begin = midnight.replace(day=1)
            end = (begin + timedelta(days=32)).replace(day=1)
        # wall-clock arithmetic: the zone's offset is worked out again at each end,
        # so a daylight-saving change inside the window is honoured
        return begin.timestamp(), end.timestamp()


def format_usd(value: float) -> str:
    """Dollars as plain decimals, never in exponent form (``0.00002``, ``5``, ``1.25``)."""
    return format(Decimal(repr(round(value, 12))).normalize(), "f")


def parse_budget(value: object) -> BudgetAmount:
    """A `BudgetAmount` from ``"5/day"``, ``"$100/month"``, ``"20/week"``, ``"2.5/12h"``.

    Days, weeks and months take no count (they are calendar windows); seconds,
    minutes and hours may (``12h``).
    """
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"expected a budget such as 5/day or 100/month, got {value!r}")
    amount_text, _, period_text = value.replace(" ", "").lower().partition("/")
    amount_text = amount_text.removeprefix("$")
    multiplier = 1.0
    if amount_text.endswith("k"):
        amount_text, multiplier = amount_text[:-1], 1_000.0
    try:
        usd = float(amount_text) * multiplier
    except ValueError:
        raise ValueError(f"expected a budget such as 5/day or 100/month, got {value!r}") from None
    match = _PERIOD.fullmatch(period_text)
    word = match.group(2) if match else ""
    if word not in _UNITS and word.endswith("s") and len(word) > 2:
        word = word[:-1]  # plurals: "days", "months", "hours"
    if match is None or word not in _UNITS:
        raise ValueError(
            f"unknown budget period {period_text!r} in {value!r}; use h, day, week or month"
        )
    unit = _UNITS[word]
    count = int(match.group(1)) if match.group(1) else 1
    if usd <= 0 or count <= 0:
        raise ValueError(f"a budget needs an amount > 0 and a period > 0, got {value!r}")
    if count != 1 and unit not in _SECONDS:
        raise ValueError(
            f"{value!r}: a budget {unit} is a calendar window and takes no count; "
            f"use hours for other spans (such as 48h)"
        )
    return BudgetAmount(usd, count, unit)

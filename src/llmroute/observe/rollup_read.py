"""What the readers of the rollups share: which filters they serve, and how a time range
splits into whole days, hours and minutes (`llmroute.observe.rollup` keeps the tables).

Kept apart from `rollup` so that the store, which writes the rollups, does not import the
analytics their readers filter with.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import fields

from .analytics import Filters
from .rollup import FILTER_DIMENSIONS

__all__ = ["covers", "pieces"]


def covers(filters: Filters) -> bool:
    """Whether the rollups can answer `filters`: only dimensions filter (and none by ``''``,
    which a rollup cannot tell from a missing value)."""
    if filters.properties:
        return False
    for f in fields(Filters):
        if f.name in ("since", "until", "properties"):
            continue
        value = getattr(filters, f.name)
        if value is not None and (f.name not in FILTER_DIMENSIONS or value == ""):
            return False
    return True


def pieces(
    lo: float, hi: float, grains: tuple[tuple[str, int], ...]
) -> Iterator[tuple[str | None, float, float]]:
    """Cover ``[lo, hi)`` with whole buckets of the coarsest of `grains` (tables and their
    widths, coarsest first) that fits, finer grains either side, and raw rows (table None)
    for what no bucket of the finest covers."""
    if hi <= lo:
        return
    if not grains:
        yield None, lo, hi
        return
    (table, grain), rest = grains[0], grains[1:]
    first = -(-math.ceil(lo) // grain) * grain  # the first multiple of grain >= lo
    last = math.floor(hi) // grain * grain  # the last <= hi
    if first >= last:
        yield from pieces(lo, hi, rest)
        return
    yield from pieces(lo, first, rest)
    yield table, first, last
    yield from pieces(last, hi, rest)

"""The cost strategy's orders, computed once per range of prompt sizes.

A target's expected cost for a request is a line in the request's input
tokens x: ``input_price * x + output_price * expected_output``. Between two
points where lines cross, the cheapest-first order of the targets cannot
change, so it is sorted once per range and then found with one bisection:
with 10 targets there are at most 45 crossings.

Fast path: part of eb689e0 (cost selection of 10 targets 9-14 µs -> under 5 µs; 1.0 µs
today, bench_select.py). Oracle: tests/test_strategy_orders.py (brute-force cost
order, hypothesis).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["CostLines"]

#: Input token counts this close to a crossing (relative) are sorted for real:
#: there the costs tie, or differ by no more than float rounding.
_NEAR = 1e-9


class CostLines(Generic[T]):
    """Cheapest-first orders of `items` by lines ``slopes[k] * x + intercepts[k]``, x >= 0.

    Args:
        items: what is ordered (the targets).
        slopes: the input price of each target, USD per token.
        intercepts: the expected cost of each target's output, USD.
    """

    __slots__ = ("_breaks", "_intercepts", "_orders", "_slopes", "items", "tied")

    def __init__(self, items: Sequence[T], slopes: list[float], intercepts: list[float]) -> None:
        self.items = items
        self._slopes = slopes
        self._intercepts = intercepts
        count = len(slopes)
        #: Whether two targets cost the same for every x (their order needs a tie-break).
        self.tied = len(set(zip(slopes, intercepts, strict=True))) < count
        crossings: set[float] = set()
        for a in range(count):
            for b in range(a + 1, count):
                if slopes[a] != slopes[b]:
                    x = (intercepts[b] - intercepts[a]) / (slopes[a] - slopes[b])
                    if x >= 0.0:
                        crossings.add(x)
        self._breaks = sorted(crossings)
        self._orders: dict[int, list[T]] = {}

    def costs(self, x: float) -> list[float]:
        """Each line's value at `x`."""
        return [s * x + c for s, c in zip(self._slopes, self._intercepts, strict=True)]

    def order(self, x: float) -> list[T] | None:
        """The items cheapest first at `x`, or None where two lines meet or nearly do
        (at a crossing, or everywhere when `tied`): the caller sorts those itself."""
        if self.tied:
            return None
        breaks = self._breaks
        k = bisect_left(breaks, x)
        near = _NEAR * max(x, 1.0)
        if (k < len(breaks) and breaks[k] - x <= near) or (k and x - breaks[k - 1] <= near):
            return None
        order = self._orders.get(k)
        if order is None:  # no lines cross inside this range: one order holds throughout
            costs = self.costs(x)
            indices = sorted(range(len(costs)), key=costs.__getitem__)
            order = self._orders[k] = [self.items[i] for i in indices]
        return order

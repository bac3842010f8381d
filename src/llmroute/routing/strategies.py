"""Selection strategies: put a route's eligible targets in the order to try them.

A strategy receives the candidates that passed every filter (health aside,
which the attempt plan applies as it goes) and a `SelectionContext`, and
returns a `Selection`: the order, and why. The first target is the primary;
the rest are its fallbacks, in order. Strategies are cheap (microseconds) and
keep per-route state only where they need it (round-robin's counter).

Write your own by implementing `Strategy`::

    class PreferEU:
        name = "prefer_eu"

        def order(self, candidates, ctx):
            eu = [t for t in candidates if t.provider.name.endswith("-eu")]
            rest = [t for t in candidates if t not in eu]
            return Selection(eu + rest, f"EU first: {len(eu)} of {len(candidates)}")

and passing it as ``AsyncRouter(config, strategies={"prefer_eu": PreferEU()})``.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .stats import LiveStats

if TYPE_CHECKING:
    from .._catalog import Target

__all__ = [
    "BUILT_IN",
    "CostStrategy",
    "LatencyStrategy",
    "LeastBusyStrategy",
    "OrderedStrategy",
    "RoundRobinStrategy",
    "Selection",
    "SelectionContext",
    "Strategy",
    "WeightedStrategy",
]

Reason = str | Callable[[], str]


def _draw(rng: random.Random, weights: list[float]) -> int:
    """An index drawn with probability proportional to its weight (the total must be > 0)."""
    cumulative = list(accumulate(weights))
    return bisect(cumulative, rng.random() * cumulative[-1], hi=len(cumulative) - 1)


@dataclass(slots=True)
class Selection:
    """A strategy's answer: the targets in order, and why (a string, or a function making one)."""

    targets: list[Target]
    reason: Reason


class SelectionContext:
    """What a strategy may look at for one request.

    Attributes:
        stream: whether the request is streamed.
        input_tokens: the request's estimated input tokens (0 unless the route
            prices requests: the estimate is only made when it matters).
        output_tokens: the request's own cap on output tokens, if any.
        now: the time, on llmroute's clock.
        stats: the router's live per-target statistics.
        rng: the router's random generator.
    """

    __slots__ = ("_cost", "input_tokens", "now", "output_tokens", "rng", "stats", "stream")

    def __init__(
        self,
        stream: bool,
        input_tokens: int,
        output_tokens: int | None,
        now: float,
        stats: LiveStats,
        rng: random.Random,
        cost: Callable[[Target, SelectionContext], float | None],
    ) -> None:
        self.stream = stream
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.now = now
        self.stats = stats
        self.rng = rng
        self._cost = cost

    def cost(self, target: Target) -> float | None:
        """The expected USD cost of the request on `target`; None when its price is unknown."""
        return self._cost(target, self)

    def expected_output(self, target: Target) -> int:
        """The output tokens to expect from `target`: the request's cap, else the target's
        observed mean, else 256."""
        if self.output_tokens is not None:
            return self.output_tokens
        state = self.stats.target(target.key)
        if state is not None and state.output_count:
            return round(state.output_tokens / state.output_count)
        return 256


@runtime_checkable
class Strategy(Protocol):
    """Orders a route's eligible targets for one request."""

    name: str

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        """The candidates in the order to try them, and why."""
        ...


class OrderedStrategy:
    """The targets in config order: the first is the primary, the rest its fallbacks."""

    name = "ordered"

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        return Selection(list(candidates), "config order")


class WeightedStrategy:
    """Random by `weight`; a target of weight 0 is only ever a fallback.

    The first target is drawn with probability weight / total; the others
    follow as fallbacks in config order.
    """

    name = "weighted"

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        weights = [t.weight for t in candidates]
        total = sum(weights)
        if total <= 0:
            return Selection(list(candidates), "every weight is 0: config order")
        first = candidates[_draw(ctx.rng, weights)]
        return Selection(
            [first, *(t for t in candidates if t is not first)],
            lambda: f"weighted draw: {first.key} (weight {first.weight:g} of {total:g})",
        )


class RoundRobinStrategy:
    """Each request starts at the next target in turn (one counter per route)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        count = len(candidates)
        if not count:
            return Selection([], "no candidates")
        start = self._next % count
        self._next += 1
        ordered = [*candidates[start:], *candidates[:start]]
        return Selection(ordered, lambda: f"round robin: turn {start + 1} of {count}")


class LeastBusyStrategy:
    """Fewest requests in flight first; ties keep config order."""

    name = "least_busy"

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        targets = ctx.stats._targets

        def busy(target: Target) -> int:
            state = targets.get(target.key)
            return state.in_flight if state is not None else 0

        ordered = sorted(candidates, key=busy)
        return Selection(
            ordered, lambda: "least busy: " + ", ".join(f"{t.key}={busy(t)}" for t in ordered)
        )


class LatencyStrategy:
    """Fastest expected first, by two random choices over a peak-sensitive EWMA.

    The latency compared is the time to first token for streams, and seconds
    per output token for non-streamed requests (whose total time mostly
    measures how long the answer was). Each score is the EWMA times (requests
    in flight + 1), so a fast target that is already busy looks slower.

    Two distinct candidates are drawn, each with probability proportional to
    1 / score; the better of the two goes first, the other second, and the
    rest follow in config order.
    Drawing two and comparing (power of two choices) spreads concurrent
    requests instead of sending every one to a single "best" target, while
    the 1 / score weights make the fastest target the usual winner. A target
    with no samples is tried first (an optimistic prior: it gets explored),
    an EWMA whose last sample is old fades toward 0 (half-life `fade`
    seconds), and with probability `explore` the first target is drawn
    uniformly, so every target keeps being measured and one that recovers is
    found again.
    """

    name = "latency"

    def __init__(self, explore: float = 0.05, fade: float = 120.0) -> None:
        self._explore = explore
        self._fade = fade

    def _score(self, target: Target, ctx: SelectionContext) -> float:
        return self._scores([target], ctx)[0]

    def _scores(self, candidates: Sequence[Target], ctx: SelectionContext) -> list[float]:
        targets = ctx.stats._targets
        stream, now, fade = ctx.stream, ctx.now, self._fade
        scores: list[float] = []
        append = scores.append
        for target in candidates:
            state = targets.get(target.key)
            if state is None:
                append(0.0)
                continue
            ewma = state.ewma_ttft if stream else state.ewma_per_token
            value = ewma.value
            if value is None:
                append(0.0)
                continue
            age = now - ewma.at
            if age > 1.0:  # under a second the fade changes nothing that matters
                value *= 0.5 ** (age / fade)
            append(value * (state.in_flight + 1))
        return scores

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        count = len(candidates)
        values = self._scores(candidates, ctx)
        if count < 2:
            return Selection(list(candidates), "one candidate")
        rng = ctx.rng
        if 0.0 in values:
            unexplored = [k for k, v in enumerate(values) if v == 0.0]
            i = j = unexplored[rng.randrange(len(unexplored))]
            how = "unexplored first"
        elif rng.random() < self._explore:
            i = j = rng.randrange(count)
            how = "exploring"
        else:
            i, j = _two_draws(rng, [1.0 / v for v in values])
            if values[j] < values[i]:
                i, j = j, i
            how = "two choices"
        # the winner, the other drawn, then the rest in config order
        ordered = [candidates[i]]
        if j != i:
            ordered.append(candidates[j])
        ordered += [t for k, t in enumerate(candidates) if k != i and k != j]
        unit = "ttft s" if ctx.stream else "s/token"
        return Selection(
            ordered,
            lambda: (
                f"{how} ({candidates[i].key} vs {candidates[j].key}); score ({unit} x busy): "
                + ", ".join(f"{t.key}={v:.4g}" for t, v in zip(candidates, values, strict=True))
            ),
        )


def _two_draws(rng: random.Random, weights: list[float]) -> tuple[int, int]:
    """Two distinct indices, each drawn with probability proportional to its weight."""
    cumulative = list(accumulate(weights))
    last = len(cumulative) - 1
    total = cumulative[-1]
    i = bisect(cumulative, rng.random() * total, hi=last)
    # the second draw skips the first's share of the line
    start = cumulative[i - 1] if i else 0.0
    point = rng.random() * (total - weights[i])
    if point >= start:
        point += weights[i]
    j = bisect(cumulative, point, hi=last)
    return i, (j if j != i else (i + 1) % len(cumulative))


class CostStrategy:
    """Cheapest expected cost first (genai-prices, or the target's `price`); ties by latency.

    The expected cost is the estimated input tokens times the input price plus
    the expected output tokens (the request's cap, else the target's observed
    mean) times the output price. Targets without a known price follow the
    priced ones, in config order (the route's `unknown_price: last`); with
    `unknown_price: exclude` they were filtered out before this strategy runs.
    """

    name = "cost"

    def __init__(self) -> None:
        self._latency = LatencyStrategy(explore=0.0)

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        cost, tokens_in, tokens_out = ctx.cost, ctx.input_tokens, ctx.output_tokens
        keyed: list[tuple[float, int]] = []
        unpriced: list[int] = []
        for i, target in enumerate(candidates):
            rates = target.rates
            if rates is not None and tokens_out is not None:  # the common case, inline
                keyed.append((tokens_in * rates[0] + tokens_out * rates[1], i))
                continue
            value = cost(target)
            if value is None:
                unpriced.append(i)
            else:
                keyed.append((value, i))
        keyed.sort()  # by cost, then config order
        if any(keyed[k][0] == keyed[k + 1][0] for k in range(len(keyed) - 1)):
            scores = self._latency._scores(candidates, ctx)  # ties: the faster first
            keyed.sort(key=lambda pair: (pair[0], scores[pair[1]]))
        ordered = [candidates[i] for _, i in keyed]
        ordered += [candidates[i] for i in unpriced]

        def why() -> str:
            parts = [f"{candidates[i].key}=${c:.6g}" for c, i in keyed]
            parts += [f"{candidates[i].key}=unknown" for i in unpriced]
            return "expected USD: " + ", ".join(parts)

        return Selection(ordered, why)


#: The built-in strategies by name: each route gets its own instance.
BUILT_IN: dict[str, Callable[[], Strategy]] = {
    "ordered": OrderedStrategy,
    "weighted": WeightedStrategy,
    "round_robin": RoundRobinStrategy,
    "least_busy": LeastBusyStrategy,
    "latency": LatencyStrategy,
    "cost": CostStrategy,
}

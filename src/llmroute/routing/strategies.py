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
from functools import partial
from itertools import accumulate

from ._lines import CostLines
from .model import (
    OrderedStrategy,
    Rates,
    Selection,
    SelectionContext,
    Strategy,
    Target,
)
from .stats import LiveStats, TargetCounters

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

#: The sort key of a target whose price is unknown: after every priced one.
_UNKNOWN = float("inf")


class _Memo:
    """What a strategy derives from one candidate list, kept while the list is the same one
    (a route's own list, unless a filter dropped a target for this request).

    Selections share the `orders` lists: nothing downstream mutates `Selection.targets`.

    Fast path: with `LiveStats` weights and `CostLines`, latency and cost selection of 10
    targets went from 9-14 µs to under 5 µs (eb689e0; today 1.7 and 1.0 µs,
    bench_select.py). Oracle: tests/test_strategy_orders.py (brute force, hypothesis).
    """

    __slots__ = ("candidates", "counters", "cumulative", "lines", "measured", "orders", "rates")

    def __init__(self) -> None:
        self.candidates: Sequence[Target] = ()
        self.orders: dict[object, list[Target]] = {}
        #: Every candidate's live counters, once each has been tried (they live as long as
        #: the router, so the list stays current).
        self.counters: list[TargetCounters] | None = None
        self.rates: list[Rates] | None = None
        self.cumulative: list[float] | None = None
        #: The cost strategy's lines, by output cap or by observed mean outputs.
        self.lines: dict[object, CostLines[Target]] = {}
        #: By stream: the `LiveStats.epoch` in which every candidate was last seen measured.
        self.measured = {False: -1, True: -1}

    def of(self, candidates: Sequence[Target]) -> _Memo:
        """This memo for `candidates`, emptied when the list is a different one."""
        if candidates is not self.candidates:
            # filtered lists are new objects each request; holding the last one keeps its
            # identity from being reused by another list
            self.candidates, self.orders = candidates, {}
            self.counters = self.rates = self.cumulative = None
            self.lines = {}
            self.measured = {False: -1, True: -1}
        return self

    def all_counters(self, ctx: SelectionContext) -> list[TargetCounters] | None:
        """Every candidate's live counters, or None while one was never tried."""
        if self.counters is None:
            self.counters_of(ctx)
        return self.counters

    def counters_of(self, ctx: SelectionContext) -> Sequence[TargetCounters | None]:
        """Each candidate's live counters (None for one never tried yet)."""
        if self.counters is not None:
            return self.counters
        found = ctx.stats.targets([t.key for t in self.candidates])
        tried = [counters for counters in found if counters is not None]
        if len(tried) == len(found):
            self.counters = tried
        return found


def _first(candidates: Sequence[Target], i: int, j: int | None = None) -> list[Target]:
    """`candidates[i]` first, then `candidates[j]` (when given), then the rest in order."""
    rest = list(candidates)
    if j is None or j == i:
        return [rest.pop(i), *rest]
    head = [candidates[i], candidates[j]]
    del rest[max(i, j)]
    del rest[min(i, j)]
    return head + rest


class WeightedStrategy:
    """Random by `weight`; a target of weight 0 is only ever a fallback.

    The first target is drawn with probability weight / total; the others
    follow as fallbacks in config order.
    """

    name = "weighted"

    def __init__(self) -> None:
        self._memo = _Memo()

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        memo = self._memo.of(candidates)
        cumulative = memo.cumulative
        if cumulative is None:
            cumulative = memo.cumulative = list(accumulate(t.weight for t in candidates))
        total = cumulative[-1] if cumulative else 0.0
        if total <= 0:
            return Selection(list(candidates), "every weight is 0: config order")
        i = bisect(cumulative, ctx.rng.random() * total, hi=len(cumulative) - 1)
        ordered = memo.orders.get(i)
        if ordered is None:
            ordered = memo.orders[i] = _first(candidates, i)
        first = ordered[0]
        return Selection(
            ordered, lambda: f"weighted draw: {first.key} (weight {first.weight:g} of {total:g})"
        )


class RoundRobinStrategy:
    """Each request starts at the next target in turn (one counter per route)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0
        self._memo = _Memo()

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        count = len(candidates)
        if not count:
            return Selection([], "no candidates")
        start = self._next % count
        self._next += 1
        memo = self._memo.of(candidates)
        ordered = memo.orders.get(start)
        if ordered is None:
            ordered = memo.orders[start] = [*candidates[start:], *candidates[:start]]
        return Selection(ordered, lambda: f"round robin: turn {start + 1} of {count}")


class LeastBusyStrategy:
    """Fewest requests in flight first; ties keep config order."""

    name = "least_busy"

    def __init__(self) -> None:
        self._memo = _Memo()

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        memo = self._memo.of(candidates)
        busy = [0 if one is None else one.in_flight for one in memo.counters_of(ctx)]
        # a stable sort: ties keep config order
        # indexing in a comprehension: quicker than map(candidates.__getitem__), more so on
        # a route's own candidates, a tuple (whose __getitem__ has no fast method form)
        ordered = [candidates[i] for i in sorted(range(len(busy)), key=busy.__getitem__)]
        return Selection(
            ordered,
            lambda: (
                "least busy: "
                + ", ".join(f"{t.key}={n}" for t, n in zip(candidates, busy, strict=True))
            ),
        )


class LatencyStrategy:
    """Fastest expected first, by two random choices over a peak-sensitive EWMA.

    The latency compared is the time to first token for streams, and seconds
    per output token for non-streamed requests (whose total time mostly
    measures how long the answer was). Each score is the EWMA times (requests
    in flight + 1), so a fast target that is already busy looks slower, and
    it fades toward 0 while the target goes unmeasured (half-life: the
    router's `LiveStats.fade`, 2 minutes), so a target that recovers is
    found again.

    Two distinct candidates are drawn, each with probability proportional to
    1 / score; the one with the lower score goes first, the other second, and
    the rest follow in config order. Drawing two and comparing (power of two
    choices) spreads concurrent requests instead of sending every one to a
    single "best" target, while the 1 / score weights make the fastest target
    the usual winner. `LiveStats` keeps each target's 1 / score (its draw
    weight) current as answers arrive, so a selection only reads them: the
    weights are the one measure this strategy and the cost strategy's
    tie-break use.

    A target with no samples, or whose score has faded to nothing, is tried
    first (an optimistic prior: it gets explored), and with probability
    `explore` the first target is drawn uniformly, so every target keeps
    being measured.
    """

    name = "latency"

    def __init__(self, explore: float = 0.05) -> None:
        self._explore = explore
        self._memo = _Memo()

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        count = len(candidates)
        if count < 2:
            return Selection(list(candidates), "one candidate")
        rng, stream, stats = ctx.rng, ctx.stream, ctx.stats
        if not stats.scoring:
            stats.enable_scores(ctx.now)
        memo = self._memo.of(candidates)
        counters = memo.counters if memo.counters is not None else memo.counters_of(ctx)
        sums = _running_weights(memo, stream, stats) if memo.counters is not None else []
        if sums:
            weights: list[float] | None = None  # read from the sums if the reason is wanted
            if rng.random() < self._explore:
                i = j = rng.randrange(count)
                how = "exploring"
            else:
                i, j = _two_draws(rng, sums)
                if _share(sums, j) > _share(sums, i):  # the higher weight is the lower score
                    i, j = j, i
                how = "two choices"
        else:  # a candidate is unmeasured (never, or faded out): explore it
            weights = _weights(counters, stream)
            unexplored = [k for k, weight in enumerate(weights) if not weight]
            i = j = unexplored[rng.randrange(len(unexplored))]
            how = "unexplored first"
        # the winner, the other drawn, then the rest in config order
        ordered = memo.orders.get((i, j))
        if ordered is None:
            ordered = memo.orders[i, j] = _first(candidates, i, j)
        # the reason, made only if someone reads it (a partial costs less than a closure)
        why = partial(_latency_why, how, candidates, i, j, sums, weights, ctx, stats.origin)
        return Selection(ordered, why)


def _latency_why(
    how: str,
    candidates: Sequence[Target],
    i: int,
    j: int,
    sums: list[float],
    weights: list[float] | None,
    ctx: SelectionContext,
    origin: float,
) -> str:
    """Why the latency strategy put `candidates[i]` first: the scores its draw used."""
    if weights is None:
        weights = [_share(sums, k) for k in range(len(candidates))]
    score, now = ctx.stats.score, ctx.now
    unit = "ttft s" if ctx.stream else "s/token"
    return (
        f"{how} ({candidates[i].key} vs {candidates[j].key}); score ({unit} x busy): "
        + ", ".join(
            f"{t.key}={score(w, now, origin):.4g}" for t, w in zip(candidates, weights, strict=True)
        )
    )


def _weights(counters: Sequence[TargetCounters | None], stream: bool) -> list[float]:
    """Each candidate's latency draw weight (1 / score, up to a common factor); 0.0 while
    unmeasured."""
    if stream:
        return [0.0 if one is None else one.ttft_weight for one in counters]
    return [0.0 if one is None else one.token_weight for one in counters]


def _running_weights(memo: _Memo, stream: bool, stats: LiveStats) -> list[float]:
    """The running sums of the candidates' latency draw weights; [] while one is unmeasured."""
    assert memo.counters is not None
    total = 0.0
    if memo.measured[stream] == stats.epoch:
        # every target measured, and no weight faded out since: the common case
        if stream:
            return [total := total + one.ttft_weight for one in memo.counters]
        return [total := total + one.token_weight for one in memo.counters]
    weights = _weights(memo.counters, stream)
    if 0.0 in weights:
        return []
    memo.measured[stream] = stats.epoch  # a measured weight returns to 0 only on a rebase
    return list(accumulate(weights))


def _share(sums: list[float], k: int) -> float:
    """The `k`-th weight, from the running sums."""
    return sums[k] - sums[k - 1] if k else sums[0]


def _two_draws(rng: random.Random, cumulative: list[float]) -> tuple[int, int]:
    """Two distinct indices, each drawn with probability proportional to its weight
    (`cumulative` holds the running sums of the weights)."""
    last = len(cumulative) - 1
    total = cumulative[-1]
    i = bisect(cumulative, rng.random() * total, hi=last)
    # the second draw skips the first's share of the line
    start = cumulative[i - 1] if i else 0.0
    share = cumulative[i] - start
    point = rng.random() * (total - share)
    if point >= start:
        point += share
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
        self._memo = _Memo()

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        tokens_in = ctx.input_tokens
        memo = self._memo.of(candidates)
        lines = self._lines(memo, ctx) if memo.rates is not None else None
        if lines is not None:
            fast = lines.order(tokens_in)
            if fast is not None:  # the usual case: away from where two targets cost the same
                return Selection(fast, lambda: _costs_why(fast, lines, tokens_in))
            costs = lines.costs(tokens_in)
        else:
            cost = ctx.cost
            costs = []
            for target in candidates:
                value = cost(target)
                costs.append(_UNKNOWN if value is None else value)
            known = [r for r in map(ctx.rates, candidates) if r is not None]
            if len(known) == len(candidates):
                memo.rates = known
        # a stable sort: by cost, then config order; unknown prices last, in config order
        order = sorted(range(len(costs)), key=costs.__getitem__)
        if len(set(costs)) < len(costs):  # ties: the faster first (unmeasured ones first)
            if not ctx.stats.scoring:
                ctx.stats.enable_scores(ctx.now)
            weights = _weights(memo.counters_of(ctx), ctx.stream)
            scores = [1.0 / w if w else 0.0 for w in weights]  # score, up to a common factor
            order.sort(key=lambda i: (costs[i], scores[i] if costs[i] != _UNKNOWN else 0.0))
        ordered = [candidates[i] for i in order]

        def why() -> str:
            parts = [
                f"{candidates[i].key}="
                + ("unknown" if costs[i] == _UNKNOWN else f"${costs[i]:.6g}")
                for i in order
            ]
            return "expected USD: " + ", ".join(parts)

        return Selection(ordered, why)

    @staticmethod
    def _lines(memo: _Memo, ctx: SelectionContext) -> CostLines[Target] | None:
        """The cost lines for this request's expected outputs (every price is known)."""
        rates = memo.rates
        assert rates is not None
        outputs: int | tuple[int, ...]
        if ctx.output_tokens is not None:
            outputs = ctx.output_tokens
        else:
            counters = memo.all_counters(ctx)
            if counters is None:
                return None  # a target never tried: the general path prices it
            outputs = tuple([one.expected_output for one in counters])
        lines = memo.lines.get(outputs)
        if lines is None:
            expected = [outputs] * len(rates) if isinstance(outputs, int) else outputs
            lines = CostLines(
                memo.candidates,
                [r_in for r_in, _ in rates],
                [n * r_out for n, (_, r_out) in zip(expected, rates, strict=True)],
            )
            if len(memo.lines) >= _MAX_LINES:  # many output caps seen: start over
                memo.lines.clear()
            memo.lines[outputs] = lines
        return lines


def _costs_why(ordered: list[Target], lines: CostLines[Target], tokens_in: int) -> str:
    costs = dict(zip(lines.items, lines.costs(tokens_in), strict=True))
    return "expected USD: " + ", ".join(f"{t.key}=${costs[t]:.6g}" for t in ordered)


#: How many sets of cost lines a cost-ordered route keeps (one per output cap or
#: per set of observed mean outputs).
_MAX_LINES = 64


#: The built-in strategies by name: each route gets its own instance.
BUILT_IN: dict[str, Callable[[], Strategy]] = {
    "ordered": OrderedStrategy,
    "weighted": WeightedStrategy,
    "round_robin": RoundRobinStrategy,
    "least_busy": LeastBusyStrategy,
    "latency": LatencyStrategy,
    "cost": CostStrategy,
}

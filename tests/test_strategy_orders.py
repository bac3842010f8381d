"""Strategy orders against brute force, and the shortcuts that make selection cheap.

The strategies keep what they can between requests (orders built once, prices
looked up once, cost lines sorted once per range of prompt sizes, latency draw
weights kept current by the statistics as answers arrive); these tests check
the shortcuts give the same answers as the plain definitions.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute._config import PriceConfig
from llmroute._prices import PriceBook
from llmroute.routing import SelectionContext, Target
from llmroute.routing.stats import LiveStats
from llmroute.routing.strategies import (
    CostStrategy,
    LatencyStrategy,
    LeastBusyStrategy,
    RoundRobinStrategy,
    WeightedStrategy,
)


def targets(count: int, prices: list[tuple[int, int]] | None = None) -> list[Target]:
    made = []
    for i in range(count):
        price = None if prices is None else PriceConfig(input=prices[i][0], output=prices[i][1])
        provider: Any = None  # strategies never look at the provider
        made.append(Target(key=f"t{i}", provider=provider, model="m", weight=i + 1, price=price))
    return made


def context(
    stats: LiveStats, tokens_in: int = 0, tokens_out: int | None = 100, now: float = 0.0
) -> SelectionContext:
    # every target here has its own price: the book never asks genai-prices
    rates = PriceBook().target_rates
    return SelectionContext(False, tokens_in, tokens_out, now, stats, random.Random(7), rates)


@settings(max_examples=300, deadline=None)
@given(
    prices=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=6),
    answers=st.lists(st.integers(1, 400), min_size=6, max_size=6),
    requests=st.lists(
        st.tuples(st.integers(0, 5000), st.none() | st.integers(1, 5000)), min_size=1
    ),
)
def test_cost_order_is_the_brute_force_order(
    prices: list[tuple[int, int]], answers: list[int], requests: list[tuple[int, int | None]]
) -> None:
    """Cheapest first, ties in config order (no latency samples), for any prices and sizes,
    with the request's output cap or, without one, each target's observed mean output."""
    candidates = targets(len(prices), prices)
    strategy, stats = CostStrategy(), LiveStats()
    for i in range(len(prices)):  # target i answered twice: its mean output is known, and
        for n in (answers[i], answers[i] + i):  # every target is exactly as fast (2**-7 s
            stats.answered(f"t{i}", n / 128, n, 0.0)  # per token), so ties keep config order
    for tokens_in, tokens_out in requests:  # the same strategy: its memo carries over
        got = strategy.order(candidates, context(stats, tokens_in, tokens_out)).targets
        outputs = [tokens_out or round(answers[i] + i / 2) for i in range(len(prices))]
        # in USD per token, as the strategy computes it (exact ties are float ties)
        cost = [
            tokens_in * (p_in / 1e6) + outputs[i] * (p_out / 1e6)
            for i, (p_in, p_out) in enumerate(prices)
        ]
        expected = sorted(range(len(prices)), key=cost.__getitem__)
        assert [t.key for t in got] == [f"t{i}" for i in expected], (tokens_in, tokens_out)


def test_cost_order_flips_where_prices_cross() -> None:
    # t0: cheap input, dear output; t1 the reverse: the order depends on the request's shape
    candidates = targets(2, [(1, 10), (10, 1)])
    strategy, stats = CostStrategy(), LiveStats()
    long_prompt = strategy.order(candidates, context(stats, tokens_in=5000, tokens_out=10))
    long_answer = strategy.order(candidates, context(stats, tokens_in=10, tokens_out=5000))
    assert [t.key for t in long_prompt.targets] == ["t0", "t1"]
    assert [t.key for t in long_answer.targets] == ["t1", "t0"]
    reason = long_answer.reason
    assert callable(reason)
    assert reason() == "expected USD: t1=$0.0051, t0=$0.05001"


def test_cost_ties_go_to_the_faster_target() -> None:
    candidates = targets(3, [(2, 2), (1, 1), (1, 1)])
    stats = LiveStats()
    stats.answered("t1", 2.0, 100, 0.0)  # 0.02 s per token
    stats.answered("t2", 1.0, 100, 0.0)  # 0.01 s per token: the faster of the tie
    got = CostStrategy().order(candidates, context(stats, 100, 100)).targets
    assert [t.key for t in got] == ["t2", "t1", "t0"]


def test_weighted_and_round_robin_orders_are_the_definitions() -> None:
    candidates = targets(4)
    ctx = context(LiveStats())
    weighted, rr = WeightedStrategy(), RoundRobinStrategy()
    firsts: Counter[str] = Counter()
    for turn in range(400):
        drawn = weighted.order(candidates, ctx).targets
        firsts[drawn[0].key] += 1
        assert drawn[1:] == [t for t in candidates if t is not drawn[0]]  # rest in config order
        start = turn % 4
        assert rr.order(candidates, ctx).targets == candidates[start:] + candidates[:start]
    assert set(firsts) == {"t0", "t1", "t2", "t3"}
    assert firsts["t3"] > firsts["t0"]  # weights 4 and 1


def test_least_busy_sorts_by_in_flight_and_explains_with_the_counts_it_used() -> None:
    candidates = targets(3)
    stats = LiveStats()
    for key, busy in (("t0", 2), ("t1", 0), ("t2", 1)):
        for _ in range(busy):
            stats.started(key)
    strategy = LeastBusyStrategy()
    selection = strategy.order(candidates, context(stats))
    assert [t.key for t in selection.targets] == ["t1", "t2", "t0"]
    stats.started("t1")  # later changes do not rewrite why the choice was made
    stats.started("t1")
    assert callable(selection.reason)
    assert selection.reason() == "least busy: t0=2, t1=0, t2=1"
    assert [t.key for t in strategy.order(candidates, context(stats)).targets] == ["t2", "t0", "t1"]


def test_latency_follows_live_scores_and_busy_targets_look_slower() -> None:
    candidates = targets(2)
    stats = LiveStats()
    stats.answered("t0", 1.0, 100, 0.0)  # 0.01 s per token
    stats.answered("t1", 10.0, 100, 0.0)  # 0.1 s per token
    strategy = LatencyStrategy(explore=0.0)

    def firsts(now: float, n: int = 2000) -> Counter[str]:
        ctx = context(stats, now=now)
        return Counter(strategy.order(candidates, ctx).targets[0].key for _ in range(n))

    assert firsts(0.0) == Counter({"t0": 2000})  # two targets: both drawn, the faster wins
    stats.answered("t0", 100.0, 100, 0.005)  # a peak: t0's EWMA jumps to 1 s per token
    assert firsts(0.005) == Counter({"t1": 2000})  # the very next selection sees it
    for _ in range(30):  # busy targets look slower: 30 in flight on t1
        stats.started("t1")
    assert firsts(0.02) == Counter({"t0": 2000})
    for _ in range(30):
        stats.ended("t1")
    assert firsts(0.03) == Counter({"t1": 2000})


def test_latency_draws_in_proportion_to_one_over_score() -> None:
    candidates = targets(3)
    stats = LiveStats()
    for key, seconds in (("t0", 1.0), ("t1", 2.0), ("t2", 4.0)):
        stats.answered(key, seconds, 100, 0.0)
    strategy = LatencyStrategy(explore=0.0)
    ctx = context(stats, now=0.0)
    before = Counter(strategy.order(candidates, ctx).targets[0].key for _ in range(7000))
    # weights 4:2:1; the winner of a pair is the faster, so the slowest never goes first:
    # P(t0 first) = P(t0 is drawn) = 4/7 + 2/7 * 4/5 + 1/7 * 4/6 = 0.895
    assert abs(before["t0"] / 7000 - 0.895) < 0.02
    assert before["t2"] == 0
    for _ in range(10):  # t2 turns far the fastest: its EWMA is pulled down below t0's
        stats.answered("t2", 0.1, 100, 0.0)
    after = Counter(strategy.order(candidates, ctx).targets[0].key for _ in range(3000))
    assert after["t2"] > after["t0"]


def test_latency_scores_fade_while_a_target_goes_unmeasured() -> None:
    candidates = targets(2)
    stats = LiveStats()  # fade: the score halves every 120 s without a sample
    stats.answered("t1", 10.0, 100, 0.0)  # ten times slower, last measured at 0
    strategy = LatencyStrategy(explore=0.0)

    def first(now: float) -> str:
        stats.answered("t0", 1.0, 100, now)  # t0 is measured all along
        return strategy.order(candidates, context(stats, now=now)).targets[0].key

    assert first(60.0) == "t0"  # t1 faded to 10 * 0.5 ** 0.5 = 7.1 times t0
    assert first(300.0) == "t0"  # 10 * 0.5 ** 2.5 = 1.8 times
    assert first(420.0) == "t1"  # 10 * 0.5 ** 3.5 = 0.88 times: worth another look
    # days later the weights are rebased many times over without overflowing, and a score
    # faded to nothing counts as never measured: explored first
    assert first(86_400.0 * 30) == "t1"
    selection = strategy.order(candidates, context(stats, now=86_400.0 * 30))
    assert callable(selection.reason)
    assert selection.reason().startswith("unexplored first (t1 vs t1)")


def test_a_faded_out_target_stays_unmeasured_until_it_answers_again() -> None:
    """A score that faded to nothing counts as never measured; requests starting and ending
    there do not bring back a weight that would swamp the others' (nor break the reason)."""
    candidates = targets(2)
    stats = LiveStats()
    strategy = LatencyStrategy(explore=0.0)
    stats.answered("t0", 1.0, 100, 0.0)
    stats.answered("t1", 1.0, 100, 0.0)
    strategy.order(candidates, context(stats, now=0.0))  # scores kept from here on
    for hour in range(1, 37):  # t1 answers every hour for a day and a half; t0 never
        stats.answered("t1", 1.0, 100, hour * 3600.0)
    stats.started("t0")
    stats.ended("t0")
    state = stats.target("t0")
    assert state is not None and state.token_weight == 0.0
    selection = strategy.order(candidates, context(stats, now=36 * 3600.0))
    assert selection.targets[0].key == "t0"  # explored again
    assert callable(selection.reason)
    assert selection.reason().startswith("unexplored first")
    stats.answered("t0", 2.0, 100, 36 * 3600.0 + 1)  # measured again, slower than t1
    firsts = Counter(
        strategy.order(candidates, context(stats, now=36 * 3600.0 + 2)).targets[0].key
        for _ in range(200)
    )
    assert firsts == Counter({"t1": 200})  # compared on its new score, not a stale weight

"""`PriceBook` holds a flat price's rates until the model's prices may change: the costs it
gives are genai-prices' own at every instant, on either side of every change.

genai-prices prices a model by the request's time: a price that starts on a
date (from that UTC midnight), and DeepSeek's off-peak hours (a time-of-day
price, changing twice a day). The held rates must give way at those instants
and not a second later, nor hold when the wall clock goes back.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from genai_prices import data_snapshot
from genai_prices.types import StartDateConstraint, TimeOfDateConstraint
from hypothesis import given, settings
from hypothesis import strategies as st

import llmroute
from _helpers import genai_cost
from llmroute._prices import MAX_HELD_RATES, PriceBook
from llmroute._types import TokenUsage
from llmroute.observe.sqlite_writer import linear_cost
from llmroute.routing.model import Target

USAGE = TokenUsage(input=1_200, output=300, cache_read=200, reasoning=100)


class WallClock:
    """A wall clock the test sets (Unix seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _constraints(model: Any) -> list[Any]:
    found = [c.constraint for c in model.prices] if isinstance(model.prices, list) else []
    return found + [v.constraint for v in model.price_variants or ()]


def _models() -> list[tuple[str, str, list[Any]]]:
    """Every model genai-prices prices for `USAGE` at a fixed instant, with its constraints."""
    found = []
    at = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            try:
                genai_cost(provider.id, model.id, USAGE, at, None)
            except LookupError:  # a model known by a pattern, not by its id: not looked up so
                continue
            found.append((provider.id, model.id, _constraints(model)))
    return found


MODELS = _models()
CHANGING = [m for m in MODELS if m[2]]


def _utc(day: date, at: time) -> float:
    moment = datetime.combine(day, at)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.timestamp()


def _changes(constraints: list[Any]) -> list[float]:
    """The instants a model's prices may change at, over the days around its start dates
    and around 2026-06-01 (the test's own reading of the constraints)."""
    days = {date(2026, 6, 1) + timedelta(days=d) for d in (-1, 0, 1)}
    instants: set[float] = set()
    for constraint in constraints:
        if isinstance(constraint, StartDateConstraint):
            start = constraint.start_date
            instants.add(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
        elif isinstance(constraint, TimeOfDateConstraint):
            for day in days:
                instants.add(_utc(day, constraint.start_time))
                instants.add(_utc(day, constraint.end_time))
    return sorted(instants)


def test_the_snapshot_has_prices_that_change_by_date_and_by_time_of_day() -> None:
    kinds = {type(c) for _, _, constraints in CHANGING for c in constraints if c is not None}
    assert {StartDateConstraint, TimeOfDateConstraint} <= kinds
    assert len(MODELS) > 100


@pytest.mark.parametrize("tier", [None, "flex", "priority"])
def test_held_rates_give_way_at_each_change_of_price(tier: str | None) -> None:
    clock = WallClock()
    book = PriceBook(now=clock)
    for provider_id, model, constraints in CHANGING:
        for change in _changes(constraints):
            for at in (change - 1, change - 0.001, change, change + 1, change + 3600):
                clock.now = at
                held = book.cost(provider_id, model, USAGE, service_tier=tier)
                plain = genai_cost(provider_id, model, USAGE, at, tier)
                assert held == pytest.approx(plain, rel=1e-9, abs=1e-12), (
                    provider_id,
                    model,
                    datetime.fromtimestamp(at, tz=UTC),
                )


@settings(max_examples=200, deadline=None)
@given(
    picks=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=4),
    steps=st.lists(st.floats(min_value=-7200, max_value=3 * 86400), min_size=1, max_size=30),
    start=st.floats(min_value=datetime(2024, 1, 1).timestamp(), max_value=2e9),
    tier=st.sampled_from([None, "flex", "priority", "batch"]),
    tokens=st.tuples(*[st.integers(min_value=0, max_value=10**6)] * 3),
)
def test_costs_over_a_walk_of_the_wall_clock_are_genai_prices_own(
    picks: list[int], steps: list[float], start: float, tier: str | None, tokens: tuple[int, ...]
) -> None:
    """Models priced in turn while the wall clock moves on (and now and then back)."""
    clock = WallClock()
    clock.now = start
    book = PriceBook(now=clock)
    usage = TokenUsage(input=tokens[0] + tokens[1], cache_read=tokens[1], output=tokens[2])
    pool = CHANGING if picks[0] % 2 else MODELS
    for step in steps:
        clock.now += step
        for pick in picks:
            provider_id, model, _ = pool[pick % len(pool)]
            held = book.cost(provider_id, model, usage, service_tier=tier)
            plain = genai_cost(provider_id, model, usage, clock.now, tier)
            assert held == pytest.approx(plain, rel=1e-9, abs=1e-12)


def test_held_rates_are_not_used_before_they_were_looked_up() -> None:
    """A wall clock set back across a change of price (an NTP step) gets the earlier price."""
    clock = WallClock()
    book = PriceBook(now=clock)
    for provider_id, model, constraints in CHANGING:
        for change in _changes(constraints):
            for at in (change + 1, change - 1):
                clock.now = at
                held = book.cost(provider_id, model, USAGE)
                plain = genai_cost(provider_id, model, USAGE, at, None)
                assert held == pytest.approx(plain, rel=1e-9, abs=1e-12), (provider_id, model)


def test_made_up_service_tiers_hold_bounded_memory() -> None:
    """A request names its service tier: tiers without a price of their own cost the
    standard price, exactly, and however many there are, the rates held stay bounded."""
    import tracemalloc

    clock = WallClock()
    clock.now = datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp()
    book = PriceBook(now=clock)
    standard = genai_cost("openai", "gpt-4o", USAGE, clock.now, None)
    tiers = [f"tier-{n}" for n in range(8 * MAX_HELD_RATES)]
    book.cost("openai", "gpt-4o", USAGE, service_tier="warm-up")
    tracemalloc.start()
    try:
        for tier in tiers[: 2 * MAX_HELD_RATES]:
            book.cost("openai", "gpt-4o", USAGE, service_tier=tier)
        filled = tracemalloc.get_traced_memory()[0]
        for tier in tiers[2 * MAX_HELD_RATES :]:
            assert book.cost("openai", "gpt-4o", USAGE, service_tier=tier) == pytest.approx(
                standard, rel=1e-9
            )
        grown = tracemalloc.get_traced_memory()[0] - filled
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024  # six times as many tiers again: no more held


def test_a_model_without_a_price_costs_none_at_every_instant() -> None:
    """A model genai-prices does not know (a self-hosted one) is held as unpriced: its cost
    is None, whenever asked (the wall clock set back included), and a priced model of the
    same provider, asked between, keeps its own price."""
    clock = WallClock()
    book = PriceBook(now=clock)
    for at in (datetime(2026, 6, 1, tzinfo=UTC).timestamp(), 2e9, 1e9, 1.0):
        clock.now = at
        for _ in range(2):  # looked up, then held
            assert book.cost("openai", "self-hosted-llama", USAGE) is None
            assert book.cost("openai", "self-hosted-llama", USAGE, service_tier="flex") is None
            priced = book.cost("openai", "gpt-4o", USAGE)
            assert priced == pytest.approx(genai_cost("openai", "gpt-4o", USAGE, at, None))
        assert book.cost("no-such-provider", "gpt-4o", USAGE) is None


def _target(provider_id: str, model: str) -> Target:
    provider: Any = SimpleNamespace(name="p", adapter=SimpleNamespace(prices_id=provider_id))
    return Target(f"p/{model}", provider, model)


@settings(max_examples=300, deadline=None)
@given(
    pick=st.integers(0, 10_000), uncached=st.integers(0, 2_000_000),
    cache_read=st.integers(0, 500_000), cache_write=st.integers(0, 500_000),
    text=st.integers(0, 200_000), reasoning=st.integers(0, 100_000),
    tier=st.sampled_from([None, "flex", "priority"]),
)  # fmt: skip
def test_held_rates_give_a_store_the_cost_the_router_computes(
    pick: int, uncached: int, cache_read: int, cache_write: int, text: int, reasoning: int,
    tier: str | None,
) -> None:  # fmt: skip
    """`PriceBook.held_rates`: the flat rates a request log writes with a request, from which
    its store computes the cost (`linear_cost`), give the very float the router's pricer
    computes; none before the rates are held, for a tiered price, or once the wall clock
    has left their window."""
    clock = WallClock()
    clock.now = datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp()
    book = PriceBook(now=clock)
    provider_id, model, _ = MODELS[pick % len(MODELS)]
    usage = TokenUsage(uncached + cache_read + cache_write, text + reasoning, cache_read,
                       cache_write, reasoning)  # fmt: skip
    pricer = book.pricer(_target(provider_id, model), usage, service_tier=tier)
    assert pricer is not None
    assert book.held_rates(pricer) is None  # not looked up yet
    cost = pricer()
    rates = book.held_rates(pricer)
    if rates is None:  # a tiered price (or a constraint genai-prices has more of): computed
        return
    values = (usage.input, usage.output, usage.cache_read, usage.cache_write, usage.reasoning)
    assert linear_cost(rates, values) == cost
    clock.now = 2e9  # past any window held on 2026-06-01
    assert book.held_rates(pricer) is None


def test_held_rates_are_only_for_genai_prices_own_pricers() -> None:
    """A target's own price, or no target, is not priced from held rates."""
    book = PriceBook()
    usage = TokenUsage(1000, 200)
    book.cost("openai", "gpt-4o-mini", usage)
    priced = book.pricer(_target("openai", "gpt-4o-mini"), usage)
    assert priced is not None and book.held_rates(priced) is not None
    price = llmroute.TargetConfig.model_validate(
        {"provider": "p", "model": "gpt-4o-mini", "price": {"input": 2, "output": 8}}
    ).price
    own = book.pricer(Target("p/gpt-4o-mini", _target("openai", "x").provider, "gpt-4o-mini",
                             price=price), usage)  # fmt: skip
    assert own is not None and book.held_rates(own) is None
    unknown = book.pricer(None, usage)
    assert unknown is not None and book.held_rates(unknown) is None
    assert book.held_rates(PriceBook().pricer(_target("openai", "gpt-4o-mini"), usage)) is None

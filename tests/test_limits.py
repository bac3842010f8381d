"""Rate limits and budgets in memory, on fast-forwarded time (looptime): exact, fair, reconciled."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

import llmroute
from _helpers import HI, ask, sent
from llmroute import AsyncRouter
from llmroute._clock import SystemClock
from llmroute.limits.budget_store import Lease, MemoryBudgetStore, WindowKey
from llmroute.limits.windows import parse_budget

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

#: 2026-03-10 12:00 UTC: far from any day, week or month boundary.
NOON = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()


class LoopClock(SystemClock):
    """The loop's (virtual) time, with Unix timestamps that start at `start`."""

    def __init__(self, start: float = NOON) -> None:
        self.start = start

    def time(self) -> float:
        return self.start + asyncio.get_running_loop().time()


def now() -> float:
    return asyncio.get_running_loop().time()


def build(
    *,
    provider: dict[str, Any] | None = None,
    route: dict[str, Any] | None = None,
    clock: LoopClock | None = None,
    **top: Any,
) -> AsyncRouter:
    return AsyncRouter(
        {
            "providers": {"a": {"type": "mock", "text": "ok", **(provider or {})}},
            "routes": {"chat": {"targets": [{"provider": "a", "model": "m",
                                             "price": {"input": 1.0, "output": 2.0}}],
                                **(route or {})}},
            **top,
        },
        env={},
        clock=clock or LoopClock(),
    )  # fmt: skip


async def allowed(router: AsyncRouter, **extra: Any) -> bool:
    try:
        await ask(router, **extra)
    except llmroute.LocalRateLimitExceeded:
        return False
    return True


# ---------------------------------------------------------------- rate limits


async def hammer(router: AsyncRouter, workers: int, seconds: float) -> list[float]:
    """`workers` tasks asking as fast as the limiter lets them; when each request passed."""
    passed: list[float] = []

    async def worker() -> None:
        while now() < seconds:
            try:
                await ask(router)
            except llmroute.LocalRateLimitExceeded as refused:
                await asyncio.sleep(refused.retry_after)  # back exactly when there is room
            else:
                passed.append(now())

    await asyncio.gather(*(worker() for _ in range(workers)))
    return passed


def per_window(passed: list[float], period: float, rate: float) -> list[int]:
    """Counts per window of `period`, windows shifted by half an emission interval (so
    jitter at a boundary cannot move a request into its neighbour)."""
    shift = period / rate / 2
    counts = Counter(int((t + shift) // period) for t in passed)
    return [counts[k] for k in range(max(counts) + 1)]


@pytest.mark.parametrize(("burst", "first_window"), [(None, 39), (1, 20)])
async def test_two_hundred_workers_get_exactly_the_rate(
    burst: int | None, first_window: int
) -> None:
    rule: dict[str, Any] = {"per": "global", "requests": "20/s"}
    if burst is not None:
        rule["burst"] = burst
    async with build(rate_limits=[rule]) as router:
        passed = await hammer(router, 200, 5.0)
        counters = router.limit_stats().rate_limits
    windows = per_window(passed, 1.0, 20)
    print(f"\nmemory, 200 workers, 20/s, burst {burst or 20}: per window {windows}")
    # the bucket starts full: a burst, then exactly the rate
    assert windows[:5] == [first_window, 20, 20, 20, 20]
    assert counters is not None and counters.allowed == len(passed) == sent(router)
    assert counters.refused > 0


async def test_retry_after_is_the_exact_wait() -> None:
    async with build(rate_limits=[{"per": "user", "requests": "10/min", "burst": 1}]) as router:
        assert await allowed(router, llmroute={"user": "ann"})
        with pytest.raises(llmroute.LocalRateLimitExceeded) as refused:
            await ask(router, llmroute={"user": "ann"})
        assert refused.value.retry_after == pytest.approx(6.0)
        assert "10 requests/min for user 'ann'" in str(refused.value)
        await asyncio.sleep(5.9)
        assert not await allowed(router, llmroute={"user": "ann"})
        await asyncio.sleep(0.1)
        assert await allowed(router, llmroute={"user": "ann"})


async def test_each_subject_has_its_own_bucket() -> None:
    rules = [
        {"per": "user", "requests": "1/min"},
        {"per": "property:tenant", "requests": "2/min"},
    ]
    async with build(rate_limits=rules) as router:
        assert await allowed(router, llmroute={"user": "ann"})
        assert not await allowed(router, llmroute={"user": "ann"})
        assert await allowed(router, user="bob")  # the request body's user counts too
        assert await allowed(router)  # no user, no tenant: no rule applies
        assert await allowed(router)
        tenant = {"properties": {"tenant": "t1"}}
        assert await allowed(router, llmroute={**tenant, "user": "u1"})
        assert await allowed(router, llmroute={**tenant, "user": "u2"})
        assert not await allowed(router, llmroute={**tenant, "user": "u3"})
        # a refusal charges none of the rules: u3 still has its own request
        assert await allowed(router, llmroute={"user": "u3"})


@pytest.mark.parametrize("per", ["key", "team", "route", "global"])
async def test_every_kind_of_subject(per: str) -> None:
    options = {"key": "k1", "team": "t1"}
    async with build(rate_limits=[{"per": per, "requests": "1/min"}]) as router:
        assert await allowed(router, llmroute=options)
        assert not await allowed(router, llmroute=options)


async def test_tokens_are_reconciled_with_the_real_usage() -> None:
    limits = {"rules": [{"per": "global", "tokens": "1000/min"}], "output_estimate": 0}
    provider = {"prompt_tokens": 8, "completion_tokens": 400}
    async with build(provider=provider, rate_limits=limits) as router:
        # each request reserves ~8 tokens and uses 408: reconciled, the third overdraws
        results = [await allowed(router) for _ in range(4)]
        assert results == [True, True, True, False]
        with pytest.raises(llmroute.LocalRateLimitExceeded) as refused:
            await ask(router)
    # 3 x 408 = 1224 used; the next 8 fit once 1232 - 1000 tokens have flowed back
    assert refused.value.retry_after == pytest.approx((1224 + 8 - 1000) * 0.06, abs=0.01)


async def test_streams_are_reconciled_when_they_end() -> None:
    limits = {"rules": [{"per": "global", "tokens": "1000/min"}], "output_estimate": 0}
    async with build(provider={"completion_tokens": 600}, rate_limits=limits) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        assert await allowed(router)  # the stream's tokens are not known yet
        async for _ in stream:
            pass
        assert not await allowed(router)


async def test_requests_that_never_reached_a_provider_are_given_back() -> None:
    async with build(rate_limits=[{"per": "global", "requests": "2/min"}]) as router:
        for _ in range(5):
            with pytest.raises(llmroute.RequestError):
                await ask(router, llmroute={"targets": ["nowhere"]})
        assert [await allowed(router) for _ in range(3)] == [True, True, False]


async def test_failed_requests_count() -> None:
    provider = {"failure_rate": 1.0}
    route = {"retry": {"attempts": 1}}
    async with build(provider=provider, route=route,
                     rate_limits=[{"per": "global", "requests": "2/min"}]) as router:  # fmt: skip
        for _ in range(2):
            with pytest.raises(llmroute.AllTargetsFailed):
                await ask(router)
        assert not await allowed(router)


async def test_hedged_attempts_count_as_requests() -> None:
    config = {
        "providers": {"slow": {"type": "mock", "latency": "5s"},
                      "fast": {"type": "mock", "latency": "100ms"}},
        "routes": {"chat": {"targets": ["slow/m", "fast/m"], "hedge": {"after": "200ms"}}},
        "rate_limits": [{"per": "global", "requests": "3/min"}],
    }  # fmt: skip
    async with AsyncRouter(config, env={}) as router:
        reply = await ask(router)
        assert [a.kind for a in reply.llmroute.attempts] == ["first", "hedge"]
        assert await allowed(router)  # 1 + 1 hedge + 1 = 3 of 3 ...
        assert not await allowed(router)  # ... and that one hedged too: nothing left


async def test_cache_hits_are_free_of_limits_unless_checked_before_the_cache() -> None:
    rule = [{"per": "global", "requests": "1/min"}]
    async with build(cache={}, rate_limits=rule) as router:
        assert [await allowed(router) for _ in range(3)] == [True, True, True]  # 2 hits
        assert not await allowed(router, temperature=0)  # a miss: limited
    early = {"rules": rule, "before_cache": True}
    async with build(cache={}, rate_limits=early) as router:
        assert [await allowed(router) for _ in range(2)] == [True, False]


# ---------------------------------------------------------------- budgets


def cost_of(reply: llmroute.ChatCompletion) -> float:
    cost = reply.llmroute.cost_usd
    assert cost is not None and cost > 0
    return cost


async def test_a_spent_budget_refuses_before_any_provider_is_called() -> None:
    budgets = [{"per": "user", "usd": "0.00002/day"}]
    async with build(budgets=budgets) as router:
        first = await ask(router, llmroute={"user": "ann"})
        c = cost_of(first)  # 10 micro-dollars: two reach the 20
        await ask(router, llmroute={"user": "ann"})
        with pytest.raises(llmroute.BudgetExceeded, match=r"0\.00002 USD/day for user 'ann'"):
            await ask(router, llmroute={"user": "ann"})
        assert sent(router) == 2
        await ask(router, llmroute={"user": "bob"})
        (ann, bob) = sorted(await router.budgets(), key=lambda s: s.subject)
    assert (ann.subject, ann.per, ann.budget) == ("ann", "user", "0.00002 USD/day")
    assert ann.spent_usd == pytest.approx(2 * c)
    assert ann.remaining_usd == 0.0
    assert bob.spent_usd == pytest.approx(c)
    assert bob.remaining_usd == pytest.approx(0.00002 - c)
    assert ann.window_start == datetime(2026, 3, 10, tzinfo=UTC)
    assert ann.window_end == datetime(2026, 3, 11, tzinfo=UTC)
    counters = router.limit_stats().budgets
    assert counters is not None and (counters.allowed, counters.refused) == (3, 1)


async def test_two_hundred_at_once_overshoot_by_at_most_one_request() -> None:
    provider = {"latency": "1s", "prompt_tokens": 8, "completion_tokens": 4}
    async with build(
        provider=provider, budgets=[{"per": "global", "usd": "0.000168/day"}]
    ) as router:
        probe = await ask(router, messages=[{"role": "user", "content": "probe"}], max_tokens=4)
        c = cost_of(probe)  # 16 micro-dollars: the budget is 10.5 of them

        async def one(i: int) -> bool:
            try:
                await ask(router, messages=[{"role": "user", "content": f"q{i:03}"}], max_tokens=4)
            except llmroute.BudgetExceeded:
                return False
            return True

        results = await asyncio.gather(*(one(i) for i in range(200)))
        (status,) = await router.budgets()
        assert not await one(999)
    print(f"\nmemory budget, 200 at once: {sum(results)} admitted, spent {status.spent_usd / c:.2f}"
          f" request costs of a 10.5 budget")  # fmt: skip
    assert status.limit_usd <= status.spent_usd <= status.limit_usd + c + 1e-12
    assert sum(results) == 10  # 1 + 10 in flight reach 11 reservations
    assert status.reserved_usd == 0.0


async def test_the_window_is_calendar_aligned_in_its_zone() -> None:
    clock = LoopClock(datetime(2026, 1, 31, 22, 30, tzinfo=UTC).timestamp())
    budgets = {"rules": [{"per": "global", "usd": "0.00001/month"}], "timezone": "Europe/Paris"}
    async with build(budgets=budgets, clock=clock) as router:
        await ask(router)
        with pytest.raises(llmroute.BudgetExceeded, match="2026-02-01T00:00:00\\+01:00"):
            await ask(router)
        await asyncio.sleep(31 * 60)  # 23:01 UTC: midnight in Paris, a new month
        await ask(router)
        (status,) = await router.budgets()
    assert status.window_start.isoformat() == "2026-02-01T00:00:00+01:00"
    assert status.window_end.isoformat() == "2026-03-01T00:00:00+01:00"


async def test_unpriced_targets_are_refused_by_default() -> None:
    config = {"routes": {"chat": {"targets": ["mock/m"]}},
              "budgets": [{"per": "global", "usd": "1/day"}]}  # fmt: skip
    async with AsyncRouter(config, env={}, clock=LoopClock()) as router:
        with pytest.raises(llmroute.BudgetExceeded, match="no price is known for mock/m"):
            await ask(router)
        counters = router.limit_stats().budgets
    assert counters is not None and counters.refused == 1


async def test_unpriced_targets_allowed_count_nothing_and_are_counted(caplog: Any) -> None:
    config = {"routes": {"chat": {"targets": ["mock/m"]}},
              "budgets": {"rules": [{"per": "global", "usd": "1/day"}], "unpriced": "allow"}}  # fmt: skip
    async with AsyncRouter(config, env={}, clock=LoopClock()) as router:
        with caplog.at_level(logging.WARNING, logger="llmroute.limits"):
            await ask(router)
            await ask(router)
        (status,) = await router.budgets()
        counters = router.limit_stats().budgets
    assert status.spent_usd == 0.0
    assert counters is not None and counters.unpriced == 2
    assert sum("no price is known for mock/m" in r.message for r in caplog.records) == 1


async def test_unpriced_targets_count_at_the_configured_price() -> None:
    provider = {"prompt_tokens": 8, "completion_tokens": 4}
    config = {"providers": {"a": {"type": "mock", "text": "ok", **provider}},
              "routes": {"chat": {"targets": ["a/m"]}},
              "budgets": {"rules": [{"per": "global", "usd": "1/day"}],
                          "unpriced": {"input": 10.0, "output": 50.0}}}  # fmt: skip
    async with AsyncRouter(config, env={}, clock=LoopClock()) as router:
        await ask(router, max_tokens=4)
        (status,) = await router.budgets()
    assert status.spent_usd == pytest.approx((8 * 10.0 + 4 * 50.0) / 1e6)


async def in_flight_then_another(router: AsyncRouter, **first: Any) -> bool:
    """Whether a second request is admitted while `first` (slow) holds its reservation."""
    slow = asyncio.create_task(ask(router, **first))
    await asyncio.sleep(0.1)  # the first is admitted and waits on the provider
    try:
        await ask(router, max_tokens=1)
    except llmroute.BudgetExceeded:
        return False
    finally:
        await slow
    return True


async def test_the_estimate_counts_every_choice() -> None:
    rule = [{"per": "global", "usd": "0.0001/day"}]  # 100 micro-dollars
    provider = {"latency": "1s"}
    # one choice of 10 output tokens at 2 USD/M reserves 20 micro-dollars: room for more
    async with build(provider=provider, budgets=rule) as router:
        assert await in_flight_then_another(router, max_tokens=10)
    # ten choices reserve 200: the budget is taken while they are in flight
    async with build(provider=provider, budgets=rule) as router:
        assert not await in_flight_then_another(router, max_tokens=10, n=10)


async def test_budgets_and_the_cache() -> None:
    rule = [{"per": "global", "usd": "0.00001/day"}]
    async with build(cache={}, budgets=rule) as router:
        await ask(router)
        assert (await ask(router)).llmroute.cache == "hit"  # spent, but a hit costs nothing
        with pytest.raises(llmroute.BudgetExceeded):
            await ask(router, temperature=0)
    async with build(cache={}, budgets={"rules": rule, "before_cache": True}) as router:
        await ask(router)
        with pytest.raises(llmroute.BudgetExceeded):
            await ask(router)


async def test_leases_of_lost_requests_expire() -> None:
    store = MemoryBudgetStore()
    window = [WindowKey("global:1/1day", "*", 0.0, 86400.0, 100)]
    assert await store.reserve(window, Lease("r1", 100, until=10.0), now=1.0) is None
    assert await store.reserve(window, Lease("r2", 10, until=20.0), now=5.0) is not None
    assert await store.reserve(window, Lease("r2", 10, until=20.0), now=10.5) is None
    await store.release(window, Lease("r1", 100, until=10.0), cost=7)  # late: counted once
    ((_, _, usage),) = await store.usage([("global:1/1day", 0.0, 86400.0)])
    assert (usage.spent, usage.reserved) == (7, 10)


# ---------------------------------------------------------------- configuration


def test_budget_amounts() -> None:
    assert str(parse_budget("5/day")) == "5 USD/day"
    assert str(parse_budget("$100/months")) == "100 USD/month"
    assert str(parse_budget("2.5/12h")) == "2.5 USD/12 hours"
    for bad in ("5", "5/fortnight", "0/day", "5/2day", "x/day"):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad)


GOOD = {
    "rate_limits": {"backend": "redis://localhost:6379/0", "when_unavailable": "refuse",
                    "rules": [{"per": "user", "requests": "60/min", "tokens": "100k/min"},
                              {"per": "property:tenant", "requests": "10/s", "burst": 5}]},
    "budgets": [{"per": "team", "usd": "100/month"}, {"per": "global", "usd": "$5/day"}],
    "cache": {"backend": "redis://localhost:6379/1", "ttl": "1h", "max_size": "64MiB"},
    "routes": {"chat": {"targets": ["mock/m"], "cache": {"ttl": "10m", "enabled": True}}},
}  # fmt: skip


def test_good_sections_validate_against_the_schema_and_the_loader() -> None:
    jsonschema.validate(GOOD, llmroute.Config.model_json_schema())
    config = llmroute.Config.model_validate(GOOD)
    assert config.rate_limits is not None and config.rate_limits.rules[0].requests == (60, 60)
    assert config.budgets is not None and config.budgets.rules[1].usd.usd == 5.0


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"rate_limits": [{"per": "planet", "requests": "1/s"}]}, "rate_limits.rules.0.per"),
        ({"rate_limits": [{"per": "user", "requests": "0/s"}]}, "rate_limits.rules.0.requests"),
        ({"rate_limits": [{"per": "user"}]}, "rate_limits.rules.0"),
        ({"rate_limits": [{"per": "user", "tokens": "1/s", "burst": 2}]}, "rate_limits.rules.0"),
        ({"rate_limits": [{"per": "user", "requests": "1/s"}] * 2}, "rate_limits.rules"),
        ({"rate_limits": {"backend": "mysql://x", "rules": []}}, "rate_limits.backend"),
        ({"budgets": [{"per": "user", "usd": "5/fortnight"}]}, "budgets.rules.0.usd"),
        ({"budgets": {"timezone": "Mars/Olympus", "rules": []}}, "budgets.timezone"),
        ({"budgets": {"rules": [], "when_unavailable": "panic"}}, "budgets.when_unavailable"),
    ],
)
def test_bad_sections_name_their_path(document: dict[str, Any], where: str) -> None:
    with pytest.raises(llmroute.ConfigError) as caught:
        AsyncRouter(document, env={})
    assert caught.value.path == where


@pytest.mark.parametrize(
    "document",
    [
        {"rate_limits": [{"per": "planet", "requests": "1/s"}]},
        {"rate_limits": [{"per": "user", "requests": "often"}]},
        {"rate_limits": {"rules": [], "colour": "red"}},
        {"budgets": [{"per": "user", "usd": 5}]},
        {"budgets": {"rules": [], "when_unavailable": "panic"}},
        {"cache": {"max_size": "lots"}},
    ],
)
def test_the_schema_refuses_what_it_can_see(document: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, llmroute.Config.model_json_schema())
    with pytest.raises(llmroute.ConfigError):
        AsyncRouter(document, env={})


def test_redis_backends_need_the_extra_only_when_used() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import llmroute\n"
        "llmroute.AsyncRouter({'rate_limits': [{'per': 'user', 'requests': '1/s'}]}, env={})\n"
        "try:\n"
        "    llmroute.AsyncRouter({'cache': {'backend': 'redis://localhost:1/0'}}, env={})\n"
        "except llmroute.ConfigError as e:\n"
        "    print(e.path, 'llmroute[redis]' in str(e))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cache.backend", "True"]


def test_the_blocking_router_reports_budgets_and_counters() -> None:
    config = {
        "providers": {"a": {"type": "mock", "text": "ok"}},
        "routes": {"chat": {"targets": [{"provider": "a", "model": "m",
                                         "price": {"input": 1.0, "output": 2.0}}]}},
        "cache": {},
        "rate_limits": [{"per": "user", "requests": "1/min"}],
        "budgets": [{"per": "user", "usd": "1/day"}],
    }  # fmt: skip
    with llmroute.Router(config, env={}) as router:
        reply = router.chat.completions.create(model="chat", messages=HI, llmroute={"user": "ann"})
        router.chat.completions.create(model="chat", messages=HI, llmroute={"user": "ann"})  # hit
        with pytest.raises(llmroute.LocalRateLimitExceeded):
            router.chat.completions.create(
                model="chat", messages=HI, temperature=0, llmroute={"user": "ann"}
            )
        (status,) = router.budgets()
        limits, cache = router.limit_stats(), router.cache_stats()
    assert status.spent_usd == pytest.approx(reply.llmroute.cost_usd)
    assert limits.rate_limits is not None
    assert (limits.rate_limits.allowed, limits.rate_limits.refused) == (1, 1)
    assert limits.budgets is not None and limits.budgets.allowed == 1
    assert cache is not None and (cache.hits, cache.misses) == (1, 2)

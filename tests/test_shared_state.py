"""State shared through a real Redis: exact limits and budgets across processes, a shared cache,
and what happens when Redis cannot be reached (never a hang).

Every test here needs a real redis-server on a free port (skipped when absent, failing when
LLMROUTE_REQUIRE_REDIS=1): the behaviour tests run on `shared_redis`, so over one server, a
Redis Cluster and a master behind Sentinel in turn.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import llmroute
from _helpers import HI, sent, worker_results
from llmroute import AsyncRouter

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("_state_worker.py")
PRICED = [{"provider": "a", "model": "m", "price": {"input": 1.0, "output": 2.0}}]


def config(provider: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "mock", "text": "shared answer", **(provider or {})}},
        "routes": {"chat": {"targets": PRICED}},
        **top,
    }


def run_processes(jobs: list[dict[str, Any]], barrier: Path) -> list[dict[str, Any]]:
    """Run each job in its own Python process, started together; their JSON results."""
    barrier.mkdir()
    jobs = [{**job, "barrier": str(barrier), "parties": len(jobs)} for job in jobs]
    command = [sys.executable, str(WORKER)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    processes = [subprocess.Popen([*command, json.dumps(job)], **pipes) for job in jobs]
    return worker_results(processes)


# ---------------------------------------------------------------- across processes


@pytest.mark.parametrize("burst", [None, 1])
def test_two_processes_share_one_exact_rate_limit(
    shared_redis: str, burst: int | None, tmp_path: Path
) -> None:
    rate, seconds = 10, 3.4
    rule: dict[str, Any] = {"per": "global", "requests": f"{rate}/s"}
    if burst is not None:
        rule["burst"] = burst
    shared = config(rate_limits={"backend": shared_redis, "rules": [rule], "timeout": "5s"})
    job = {"kind": "rate", "config": shared, "seconds": seconds, "workers": 50}
    results = run_processes([job, job], tmp_path / "barrier")
    passed = sorted(t for r in results for t in r["passed"])
    # Redis admits the burst at t0, then one request per interval from t0 + interval. The
    # refills place t0 on the clients' clock (the median resists a late one; the burst's own
    # arrivals are spread by start-up)
    interval = 1.0 / rate
    first_refill = burst or rate
    t0 = statistics.median(t - (j + 1) * interval for j, t in enumerate(passed[first_refill:]))
    shift = interval / 2  # half an interval: client-side jitter cannot cross a boundary
    counts = Counter(int((t - t0 + shift) // 1.0) for t in passed)
    windows = [counts[k] for k in range(3)]
    per_process = [len(r["passed"]) for r in results]
    refused = sum(r["refused"] for r in results)
    print(f"\nredis, 2 processes x 50 workers, {rate}/s, burst {burst or rate}: "
          f"per window {windows}, per process {per_process}, {refused} refused")  # fmt: skip
    if burst is None:
        # a full bucket: the burst of 20 and 19 refills, then exactly the rate
        assert windows == [2 * rate - 1, rate, rate]
    else:
        # no burst: never more than the rate; a request that reaches Redis after its slot
        # opened does not get the lateness back, so busy clients may see a little less
        assert all(rate // 2 <= n <= rate for n in windows)
    assert all(n > 0 for n in per_process)  # both processes got some: one limit, shared
    assert refused > 10 * sum(per_process)  # they really were driven hard


def test_two_processes_share_one_budget(shared_redis: str, tmp_path: Path) -> None:
    c = (10 * 1.0 + 4 * 2.0) / 1e6  # 10 prompt tokens ("q000-0000") and 4 completion tokens
    limit = 200.5 * c
    provider = {"latency": "100ms", "completion_tokens": 4}
    shared = config(provider, budgets={"backend": shared_redis, "timeout": "5s",
                                       "rules": [{"per": "global", "usd": f"{limit!r}/day"}]})  # fmt: skip
    job = {"kind": "budget", "config": shared, "workers": 40}
    results = run_processes([job, job], tmp_path / "barrier")
    costs = [cost for r in results for cost in r["costs"]]
    assert costs and all(cost == pytest.approx(c) for cost in costs)

    async def spent() -> list[Any]:
        async with AsyncRouter(shared, env={}) as router:
            return await router.budgets()

    (status,) = asyncio.run(spent())
    print(f"\nredis budget, 2 processes x 40 workers: {len(costs)} admitted "
          f"{[len(r['costs']) for r in results]}, {sum(r['refused'] for r in results)} refused, "
          f"spent {status.spent_usd / c:.2f} request costs of a 200.5 budget")  # fmt: skip
    assert status.spent_usd == pytest.approx(sum(costs))
    assert limit <= status.spent_usd <= limit + 2 * c  # one in-flight request per process at most
    assert all(r["costs"] for r in results)  # both processes spent from the one budget
    assert status.reserved_usd == 0.0


def test_an_answer_from_one_process_is_a_hit_in_another(shared_redis: str, tmp_path: Path) -> None:
    shared = config({"echo": True}, cache={"backend": shared_redis})
    first = {"kind": "cache", "config": shared,
             "asks": [["plain question", False], ["streamed question", True]]}  # fmt: skip
    (written,) = run_processes([first], tmp_path / "first")
    second = {"kind": "cache", "config": shared,
              "asks": [["plain question", True], ["plain question", False],
                       ["streamed question", False], ["streamed question", True]]}  # fmt: skip
    (read,) = run_processes([second], tmp_path / "second")
    assert [status for status, _, _ in written["seen"]] == ["miss", "miss"]
    assert [status for status, _, _ in read["seen"]] == ["hit"] * 4
    answers = {text: usage for _, text, usage in written["seen"]}
    for _, text, usage in read["seen"]:
        assert answers[text] == usage  # same answer, same usage, streamed or not


# ---------------------------------------------------------------- in one process, through Redis


async def test_two_hundred_at_once_through_redis(shared_redis: str) -> None:
    # per hour: at 50/min a token comes back every 1.2 s, and 400 requests through Redis on a
    # loaded machine can take that long (then 51 pass); an hour's refill is 72 s
    rule = {"per": "global", "requests": "50/hour"}
    # a generous socket timeout: 200 requests at once on a loaded machine can take longer
    # than the default 250 ms per command, and a timeout would mean fail-open, not exactness
    shared = config({"echo": True}, cache={"backend": shared_redis, "timeout": "5s"},
                    rate_limits={"backend": shared_redis, "rules": [rule], "timeout": "5s"})  # fmt: skip
    async with AsyncRouter(shared, env={}) as router:

        async def one(i: int) -> str:
            messages = [{"role": "user", "content": f"prompt {i % 100}"}]
            try:
                reply = await router.chat.completions.create(model="chat", messages=messages)
            except llmroute.LocalRateLimitExceeded:
                return "refused"
            return f"{reply.llmroute.cache}:{reply.choices[0].message.content}"

        first = Counter(await asyncio.gather(*(one(i) for i in range(200))))
        await router.drain()
        second = Counter(await asyncio.gather(*(one(i) for i in range(200))))
        assert sent(router) == 50
    # 200 at once: the first lookups all miss, exactly 50 pass the limit
    assert first["refused"] == 150 and sum(first.values()) == 200
    # then the 50 answers stored are hits, free of the (now spent) limit
    assert sum(n for k, n in second.items() if k.startswith("hit:")) == 100
    assert second["refused"] == 100


async def test_tokens_are_reconciled_through_redis(shared_redis: str) -> None:
    limits = {"backend": shared_redis, "output_estimate": 0,
              "rules": [{"per": "user", "tokens": "1000/min"}]}  # fmt: skip
    shared = config({"prompt_tokens": 8, "completion_tokens": 400}, rate_limits=limits)
    async with AsyncRouter(shared, env={}) as router:
        for _ in range(3):
            await router.chat.completions.create(
                model="chat", messages=HI, llmroute={"user": "ann"}
            )
            await router.drain()
        with pytest.raises(llmroute.LocalRateLimitExceeded) as refused:
            await router.chat.completions.create(
                model="chat", messages=HI, llmroute={"user": "ann"}
            )
    # 3 x 408 tokens used, reserved 8 at a time: the fourth waits for 240 to flow back
    assert refused.value.retry_after == pytest.approx((1224 + 8 - 1000) * 0.06, abs=0.05)


async def test_budgets_report_from_redis(shared_redis: str) -> None:
    budgets = {"backend": shared_redis, "rules": [{"per": "team", "usd": "1/month"},
                                               {"per": "user", "usd": "0.5/day"}]}  # fmt: skip
    async with AsyncRouter(config(budgets=budgets), env={}) as router:
        reply = await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"team": "red", "user": "ann"}
        )
        await router.chat.completions.create(model="chat", messages=HI, llmroute={"team": "blue"})
        await router.drain()
        report = {(s.per, s.subject): s for s in await router.budgets()}
    cost = reply.llmroute.cost_usd
    assert set(report) == {("team", "red"), ("team", "blue"), ("user", "ann")}
    assert report["team", "red"].spent_usd == pytest.approx(cost)
    assert report["user", "ann"].remaining_usd == pytest.approx(0.5 - cost)  # type: ignore[operator]
    assert report["team", "red"].budget == "1 USD/month"


async def test_large_entries_are_compressed(redis_url: str) -> None:
    import redis.asyncio as aioredis

    big = "all work and no play " * 400
    async with AsyncRouter(config({"text": big}, cache={"backend": redis_url}), env={}) as router:
        await router.chat.completions.create(model="chat", messages=HI)
        await router.drain()
        hit = await router.chat.completions.create(model="chat", messages=HI)
    client = aioredis.Redis.from_url(redis_url)
    (key,) = await client.keys("llmroute:cache:*")
    stored = await client.get(key)
    ttl = await client.pttl(key)
    await client.aclose()
    assert hit.llmroute.cache == "hit" and hit.choices[0].message.content == big
    assert stored[:1] == b"z" and len(stored) < len(big) / 10
    assert 3_500_000 < ttl <= 3_600_000


async def test_check_reports_redis(shared_redis: str) -> None:
    async with AsyncRouter(config(cache={"backend": shared_redis}), env={}) as router:
        assert await router.check() == []


# ---------------------------------------------------------------- when Redis cannot be reached


@pytest.mark.parametrize("where", ["dead_redis", "silent_redis"])
async def test_fail_open_is_quick_logged_and_counted(
    where: str, request: pytest.FixtureRequest, caplog: Any
) -> None:
    url = request.getfixturevalue(where)
    fast = {"backend": url, "timeout": "100ms", "retry_interval": "10s"}
    shared = config(
        cache=fast,
        rate_limits={**fast, "rules": [{"per": "global", "requests": "1/min"}]},
        budgets={**fast, "when_unavailable": "allow", "rules": [{"per": "global", "usd": "1/day"}]},
    )
    async with AsyncRouter(shared, env={}) as router:
        started = time.monotonic()
        replies = [
            await router.chat.completions.create(model="chat", messages=HI) for _ in range(3)
        ]
        took = time.monotonic() - started
        problems = await router.check()
        stats, cache = router.limit_stats(), router.cache_stats()
    # three Redis timeouts of ~0.1-0.25 s at most (cache, limits, budgets), then Redis is
    # left alone: no request waits on it again (redis-py alone would retry for seconds)
    assert took < 2.0
    assert [r.llmroute.cache for r in replies] == ["bypass"] * 3
    assert stats.rate_limits is not None and stats.rate_limits.allowed_unavailable == 3
    assert stats.budgets is not None and stats.budgets.allowed_unavailable == 3
    assert stats.redis_failures >= 6
    assert cache is not None and cache.errors >= 3
    assert len(problems) == 3 and all("unavailable" in p for p in problems)
    unavailable = [r for r in caplog.records if "Redis is unavailable" in r.message]
    assert len(unavailable) == 3  # once per connection, not once per request


async def test_fail_closed_refuses(dead_redis: str) -> None:
    closed = {"backend": dead_redis, "when_unavailable": "refuse", "retry_interval": "2s"}
    shared = config(rate_limits={**closed, "rules": [{"per": "global", "requests": "9/s"}]})
    async with AsyncRouter(shared, env={}) as router:
        with pytest.raises(llmroute.LocalRateLimitExceeded) as refused:
            await router.chat.completions.create(model="chat", messages=HI)
        assert refused.value.retry_after == 2.0
        stats = router.limit_stats().rate_limits
        assert stats is not None and stats.refused_unavailable == 1
    # budgets fail closed without being told: money never passes unchecked
    shared = config(budgets={"backend": dead_redis, "rules": [{"per": "global", "usd": "9/day"}]})
    async with AsyncRouter(shared, env={}) as router:
        with pytest.raises(llmroute.BudgetExceeded, match="cannot be checked"):
            await router.chat.completions.create(model="chat", messages=HI)
        assert sent(router) == 0

"""Fault injection on fast-forwarded time: failover, Retry-After, circuits, streams, hedging, deadlines.

The event loop runs on virtual time (looptime): sleeps and timeouts take no
wall time, and llmroute's clock reads the loop's time, so "two seconds later"
is exact and instant.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

import llmroute
from _helpers import HI, ask
from _wire import Wire
from llmroute import AsyncRouter

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def now() -> float:
    return asyncio.get_running_loop().time()


def build(
    providers: dict[str, dict[str, Any]],
    route: dict[str, Any],
    transports: dict[str, Any] | None = None,
    **top: Any,
) -> AsyncRouter:
    return AsyncRouter(
        {
            "providers": {name: {"type": "mock", **p} for name, p in providers.items()},
            "routes": {"chat": route},
            **top,
        },
        env={},
        seed=11,
        transports=transports,
    )


async def test_flaky_primary_with_healthy_secondary_loses_nothing() -> None:
    router = build(
        {"a": {"failure_rate": 0.5, "seed": 5, "latency": "20ms"}, "b": {"latency": "30ms"}},
        {"targets": ["a/m", "b/m"]},
    )
    served: dict[str, int] = {}
    async with router:
        for _ in range(500):
            reply = await ask(router)  # raises on any failure
            served[reply.llmroute.provider or ""] = served.get(reply.llmroute.provider or "", 0) + 1
    assert sum(served.values()) == 500
    assert served["b"] > 0
    # the circuit opened on the 50% failures, so the secondary took most of the traffic
    assert router.health()["a/m"].requests < 500


async def test_retry_after_keeps_every_request_away_until_it_passes() -> None:
    router = build(
        {"a": {"script": [{"status": 429, "retry_after": 2}], "text": "from a"},
         "b": {"text": "from b"}},
        {"targets": ["a/m", "b/m"]},
    )  # fmt: skip
    served = []
    async with router:
        for at in (0.0, 0.5, 1.0, 1.5, 1.99, 2.01, 2.5):
            await anyio.sleep(at - now())
            reply = await ask(router)
            served.append(
                (at, reply.llmroute.provider, [a.target for a in reply.llmroute.attempts])
            )
    assert served[0] == (0.0, "b", ["a/m", "b/m"])  # the 429, then failover
    assert [p for at, p, _ in served if at < 2] == ["b"] * 5
    assert all(attempts == ["b/m"] for at, _, attempts in served[1:5])  # a was not even tried
    assert [p for at, p, _ in served if at > 2] == ["a", "a"]


async def test_a_later_longer_retry_after_wins_over_a_shorter_one() -> None:
    script = [{"status": 429, "retry_after": 1, "latency": "200ms"},
              {"status": 429, "retry_after": 5, "latency": "100ms"}]  # fmt: skip
    router = build({"a": {"script": script}, "b": {}}, {"targets": ["a/m", "b/m"]})
    async with router:
        async with anyio.create_task_group() as tg:  # both reach `a` before either answers
            tg.start_soon(ask, router)
            tg.start_soon(ask, router)
        await anyio.sleep(3 - now())
        assert (await ask(router)).llmroute.provider == "b"  # the 5 s cooldown still holds
        await anyio.sleep(5.2 - now())
        assert (await ask(router)).llmroute.provider == "a"


async def test_an_earlier_shorter_retry_after_is_not_extended_by_nothing() -> None:
    router = build({"a": {"script": [{"status": 429, "retry_after": 1}]}, "b": {}},
                   {"targets": ["a/m", "b/m"]})  # fmt: skip
    async with router:
        await ask(router)
        health = router.health()["a/m"]
        assert health.cooldown_remaining_s == pytest.approx(1.0, abs=0.01)
        assert health.state == "closed"
        await anyio.sleep(1.01)
        assert (await ask(router)).llmroute.provider == "a"


async def test_lone_target_is_waited_for_within_the_deadline() -> None:
    router = build({"a": {"script": [{"status": 429, "retry_after": 2}]}}, {"targets": ["a/m"]})
    async with router:
        reply = await ask(router)  # 429, then round 2 after the Retry-After
        assert now() == pytest.approx(2.0, abs=0.01)
        assert [a.outcome for a in reply.llmroute.attempts] == ["error", "ok"]
        # a second request during a fresh cooldown waits for it rather than failing
        router.cool_down("a/m", 3, "test")
        began = now()
        second = await ask(router)
        assert now() - began == pytest.approx(3.0, abs=0.01)
        assert second.llmroute.attempts[0].kind == "first"


async def test_wait_beyond_deadline_fails_fast_and_fail_policy_fails_at_once() -> None:
    router = build({"a": {}}, {"targets": ["a/m"], "timeout": "5s"},
                   health={"when_unavailable": "fail"})  # fmt: skip
    async with router:
        router.cool_down("a/m", 60, "RateLimited: test")
        with pytest.raises(llmroute.AllTargetsFailed, match="a/m: unavailable"):
            await ask(router)
        assert now() == 0.0
    waiting = build({"a": {}}, {"targets": ["a/m"], "timeout": "5s"})
    async with waiting:
        waiting.cool_down("a/m", 60, "RateLimited: test")
        with pytest.raises(llmroute.ProviderTimeout, match="deadline"):
            await ask(waiting)
        assert now() == 0.0  # the 60 s wait could not fit: no pointless sleeping


async def test_no_credit_left_fails_over_at_once_and_is_not_retried() -> None:
    """A 429 ``insufficient_quota`` says the account is out of credit: the request moves on
    and never comes back to that target, while a plain 429 is retried in a later round."""
    quota = {"status": 429, "code": "insufficient_quota", "error_type": "insufficient_quota"}
    for first, tries_of_a in ((quota, 1), ({"status": 429}, 2)):
        router = build(
            {"a": {"script": [first], "repeat_script": True},
             "b": {"script": [503, {"text": "from b"}]}},
            {"targets": ["a/m", "b/m"], "retry": {"attempts": 3, "initial": "10ms"}},
        )  # fmt: skip
        async with router:
            reply = await ask(router)
            sent_to_a = router.stats()["a/m"].requests
        assert reply.choices[0].message.content == "from b"
        assert sent_to_a == tries_of_a
    assert reply.llmroute.attempts[0].error_type == "RateLimited"
    router = build({"a": {"script": [quota], "repeat_script": True}},
                   {"targets": ["a/m"], "retry": {"attempts": 3}})  # fmt: skip
    async with router:
        with pytest.raises(llmroute.AllTargetsFailed) as failed:
            await ask(router)
        assert router.stats()["a/m"].requests == 1
        health = router.health()["a/m"]
        assert (health.requests, health.error_ratio) == (1, 1.0)  # counted against the target
        assert (health.last_error or "").startswith("QuotaExceeded")
    assert [type(e) for e in failed.value.errors] == [llmroute.QuotaExceeded]


async def test_circuit_opens_rests_probes_and_recovers() -> None:
    health = {"min_requests": 4, "error_threshold": 0.5, "window": "10s", "cooldown": "5s"}
    router = build(
        {"a": {"script": [500, 500, 500, 500], "text": "from a"}, "b": {"text": "from b"}},
        {"targets": ["a/m", "b/m"], "retry": {"attempts": 1}},
        health=health,
    )
    async with router:
        for _ in range(4):
            assert (await ask(router)).llmroute.provider == "b"
        assert router.health()["a/m"].state == "open"
        tried_a = []
        for _ in range(10):  # the cooldown: nothing goes to a
            await anyio.sleep(0.4)
            reply = await ask(router)
            tried_a.append(any(x.target == "a/m" for x in reply.llmroute.attempts))
        assert not any(tried_a)
        await anyio.sleep(5.0 - now() + 0.01)
        assert router.health()["a/m"].state == "half_open"
        probe = await ask(router)
        assert probe.llmroute.provider == "a"
        assert probe.llmroute.attempts[0].circuit == "half_open"
        assert router.health()["a/m"].state == "closed"
        assert (await ask(router)).llmroute.attempts[0].circuit == "closed"


async def test_all_targets_open_fails_fast_when_told() -> None:
    router = build({"a": {"script": [500] * 4}}, {"targets": ["a/m"], "retry": {"attempts": 1}},
                   health={"min_requests": 4, "when_unavailable": "fail"})  # fmt: skip
    async with router:
        for _ in range(4):
            with pytest.raises(llmroute.AllTargetsFailed):
                await ask(router)
        with pytest.raises(llmroute.AllTargetsFailed, match="circuit open") as caught:
            await ask(router)
    assert caught.value.attempts == ()


async def test_cut_after_content_stitches_in_continue_mode() -> None:
    b = Wire(text="gamma delta")
    router = build(
        {"a": {"text": "alpha beta gamma delta", "script": [{"cut_after": 2}]}, "b": {}},
        {"targets": ["a/m", "b/m"], "mid_stream": "continue"},
        transports={"b": b.transport},
    )
    async with router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    (continued,) = b.requests
    assert text == "alpha beta gamma delta"
    assert stream.seams == [len("alpha beta ")]
    assert [(a.target, a.outcome) for a in stream.llmroute.attempts] == [
        ("a/m", "error"), ("b/m", "ok"),
    ]  # fmt: skip
    assert continued["messages"][-2] == {"role": "assistant", "content": "alpha beta "}
    assert continued["messages"][-1]["role"] == "user"
    assert stream.llmroute.usage is not None
    assert stream.llmroute.usage.estimated  # two providers' usage cannot simply be added


async def test_cut_after_content_raises_in_error_mode() -> None:
    router = build(
        {"a": {"text": "alpha beta gamma delta", "script": [{"cut_after": 2}]}, "b": {}},
        {"targets": ["a/m", "b/m"]},
    )
    async with router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        with pytest.raises(llmroute.StreamInterrupted) as caught:
            async for _ in stream:
                pass
        assert router.stats()["b/m"].requests == 0
    assert caught.value.partial == "alpha beta "


async def test_stalled_stream_counts_as_interrupted() -> None:
    router = build(
        {"a": {"text": "one two three", "chunk_delay": "10s"}},
        {"targets": ["a/m"], "idle_timeout": "1s"},
    )
    async with router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        with pytest.raises(llmroute.StreamInterrupted) as caught:
            async for _ in stream:
                pass
    assert isinstance(caught.value.cause, Exception)
    assert now() == pytest.approx(1.0, abs=0.01)


async def test_deadline_shorter_than_upstream_raises_in_time_and_leaks_nothing() -> None:
    router = build({"a": {"latency": "30s"}}, {"targets": ["a/m"], "timeout": "2s"})
    baseline = len(asyncio.all_tasks())
    async with router:
        began = now()
        with pytest.raises(llmroute.ProviderTimeout):
            await ask(router)
        assert now() - began == pytest.approx(2.0, abs=0.01)
        await anyio.sleep(0)
        assert len(asyncio.all_tasks()) == baseline  # no attempt left running
        stream_router = build({"a": {"text": "a b c", "chunk_delay": "3s"}},
                              {"targets": ["a/m"], "timeout": "4s"})  # fmt: skip
        async with stream_router:
            stream = await stream_router.chat.completions.create(
                model="chat", messages=HI, stream=True
            )
            with pytest.raises(llmroute.StreamInterrupted, match="deadline"):
                async for _ in stream:
                    pass
            assert now() - began == pytest.approx(2.0 + 4.0, abs=0.01)


async def test_attempt_timeout_fails_over_and_gives_the_task_back_uncancelled() -> None:
    router = build({"a": {"latency": "5s"}, "b": {"latency": "100ms", "text": "from b"}},
                   {"targets": ["a/m", "b/m"], "attempt_timeout": "1s"})  # fmt: skip
    async with router:
        reply = await ask(router)
        assert now() == pytest.approx(1.1, abs=0.01)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # the timer's cancel was taken back
    assert [(a.target, a.outcome, a.error_type) for a in reply.llmroute.attempts] == [
        ("a/m", "error", "ProviderTimeout"), ("b/m", "ok", None),
    ]  # fmt: skip
    assert router.stats()["a/m"].in_flight == 0


async def test_a_callers_cancel_is_never_taken_for_an_attempt_timeout() -> None:
    router = build({"a": {"latency": "5s"}, "b": {}},
                   {"targets": ["a/m", "b/m"], "attempt_timeout": "1s"})  # fmt: skip
    async with router:
        for give_up in (0.5, 1.0):  # before the attempt timeout, and at the same instant
            began = now()
            with anyio.move_on_after(give_up) as scope:
                await ask(router)
            assert scope.cancelled_caught  # cancelled, not failed over to b nor a ProviderTimeout
            assert now() - began == pytest.approx(give_up, abs=0.01)
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
        assert router.stats()["b/m"].requests == 0
    assert router.stats()["a/m"].in_flight == 0


async def hedging_run(hedge: dict[str, Any] | None, n: int = 1000) -> tuple[float, int]:
    slow_tail = {"value": "100ms", "tail_rate": 0.1, "tail_factor": 20}
    route: dict[str, Any] = {"targets": ["a/m", "b/m"]}
    if hedge:
        route["hedge"] = hedge
    router = build({"a": {"latency": slow_tail, "seed": 1}, "b": {"latency": slow_tail, "seed": 2}},
                   route)  # fmt: skip
    latencies = []
    sent = 0
    async with router:
        for _ in range(n):
            began = now()
            reply = await ask(router)
            latencies.append(now() - began)
            sent += len(reply.llmroute.attempts)
    latencies.sort()
    return latencies[int(0.99 * n) - 1], sent - n


async def test_hedging_cuts_the_slow_tail() -> None:
    p99_plain, extra_plain = await hedging_run(None)
    p99_hedged, extra_hedged = await hedging_run({"after": "300ms"})
    print(f"\nhedging: p99 {p99_plain:.3f}s -> {p99_hedged:.3f}s, extra requests "
          f"{extra_plain} -> {extra_hedged} per 1000")  # fmt: skip
    assert p99_plain == pytest.approx(2.0, abs=0.01)
    assert p99_hedged <= 0.41
    assert 50 <= extra_hedged <= 150  # about the 10% slow share, not every request


async def test_hedge_loser_is_cancelled_and_recorded() -> None:
    router = build(
        {"a": {"latency": "5s", "text": "slow"}, "b": {"latency": "100ms", "text": "fast"}},
        {"targets": ["a/m", "b/m"], "hedge": {"after": "200ms"}},
    )
    baseline = len(asyncio.all_tasks())
    async with router:
        reply = await ask(router)
        assert now() == pytest.approx(0.3, abs=0.01)
        await anyio.sleep(0)
        assert len(asyncio.all_tasks()) == baseline
    assert reply.choices[0].message.content == "fast"
    outcomes = {(a.target, a.kind, a.outcome) for a in reply.llmroute.attempts}
    assert outcomes == {("a/m", "first", "cancelled"), ("b/m", "hedge", "ok")}
    assert router.stats()["a/m"].in_flight == 0


async def test_a_hedge_tie_names_the_target_whose_answer_is_delivered() -> None:
    """The first attempt and its hedge answer at the same instant: the answer delivered and
    the target named (provider, stats, price, headers) are the same one."""
    router = build(
        {"a": {"latency": "300ms", "text": "from a"}, "b": {"latency": "100ms", "text": "from b"}},
        {"targets": ["a/m", "b/m"], "hedge": {"after": "200ms"}},
    )
    async with router:
        reply = await ask(router)
    assert now() == pytest.approx(0.3, abs=0.01)
    assert {a.outcome for a in reply.llmroute.attempts} == {"ok"}  # both answered: a tie
    delivered = reply.choices[0].message.content
    assert delivered == f"from {reply.llmroute.provider}"
    served = reply.llmroute.served
    assert served is not None and served.target == reply.llmroute.target


async def test_context_window_skips_small_targets_and_failover_on_context_error() -> None:
    long = [{"role": "user", "content": "x" * 4000}]  # about 1000 tokens
    router = AsyncRouter(
        {
            "providers": {"small": {"type": "mock", "text": "small"},
                          "big": {"type": "mock", "text": "big"},
                          "liar": {"type": "mock", "script": [
                              {"status": 400, "code": "context_length_exceeded"}]}},
            "routes": {
                "chat": {"targets": [{"provider": "small", "model": "s", "context_window": 500},
                                     {"provider": "big", "model": "b", "context_window": 100000}]},
                "fits": {"targets": [{"provider": "liar", "model": "l", "context_window": 8000},
                                     {"provider": "small", "model": "s2", "context_window": 4000},
                                     {"provider": "big", "model": "b", "context_window": 100000}]},
            },
        },
        env={},
    )  # fmt: skip
    async with router:
        reply = await router.chat.completions.create(model="chat", messages=long)
        assert reply.llmroute.provider == "big"
        assert [a.target for a in reply.llmroute.attempts] == ["big/b"]
        reply = await router.chat.completions.create(model="fits", messages=long)
        # the context error moves on, past the smaller window, to the larger one
        assert [a.target for a in reply.llmroute.attempts] == ["liar/l", "big/b"]

"""Shadow traffic on a loopback upstream: a slow or failing shadow never delays or changes the
caller's answer; copies are recorded and priced, pass no limit and no cache, are bounded in
number, and end with the router."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from _helpers import HI
from _responses_upstream import answer as responses_answer
from _upstream import Upstream, chunk_body, completion_body, sse
from llmroute import AsyncRouter, RequestRecord
from llmroute.observe import SqliteStore

pytestmark = pytest.mark.anyio

SLOW = 2.0
PRICE = {"input": 1.0, "output": 2.0}


@pytest.fixture
def models(upstream: Upstream) -> Upstream:
    """Model ``slow`` answers after `SLOW` seconds, ``failing`` with a 500; the others at
    once (streamed when asked), with the model they were asked for."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = upstream.requests[-1]
        model = body.get("model")
        if model == "slow":
            await asyncio.sleep(SLOW)
        if model == "failing":
            return web.json_response({"error": {"message": "broken"}}, status=500)
        if request.path.endswith("/responses"):
            return await responses_answer(request)
        if body.get("stream"):
            return await sse(request, [chunk_body({"content": "hey"}), chunk_body({}, "stop"),
                                       "[DONE]"])  # fmt: skip
        return web.json_response(completion_body(text=f"from {model}", model=model))

    upstream.handler = handler
    return upstream


def config(
    upstream: Upstream, tmp_path: Path, shadow_model: str, *, fraction: float = 1.0, **more: Any
) -> dict[str, Any]:
    shadow = {"variant": "candidate", "fraction": fraction, **more.pop("shadow", {})}
    return {
        "providers": {"a": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"}},
        "routes": {
            "chat": {
                "targets": [{"provider": "a", "model": "base", "price": PRICE}],
                "retry": {"attempts": 1},
            },
            "plain": {"targets": ["a/base"]},
        },
        "experiments": {
            "e": {
                "route": "chat",
                "variants": {
                    "control": {"weight": 1},
                    "candidate": {
                        "weight": 0,
                        "params": {"temperature": 0.5},
                        "targets": [{"provider": "a", "model": shadow_model, "price": PRICE}],
                    },
                },
                "shadow": shadow,
            }
        },
        "logging": {"store": f"sqlite:///{tmp_path / 'log.db'}"},
        **more,
    }


async def settle(router: AsyncRouter, started: int) -> None:
    """Wait until `started` shadow copies have ended, then flush the records."""
    for _ in range(500):
        status = router.shadow_status()["e"]
        if status.started >= started and status.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    await router.flush()


def records(tmp_path: Path) -> list[RequestRecord]:
    return sorted(SqliteStore(tmp_path / "log.db").records(), key=lambda r: r.started_at)


async def test_a_slow_shadow_never_delays_the_caller(models: Upstream, tmp_path: Path) -> None:
    async with AsyncRouter(config(models, tmp_path, "slow"), env={}) as router:
        begun = time.monotonic()
        reply = await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"user": "u1"}
        )
        took = time.monotonic() - begun
        assert took < SLOW / 2, took
        assert reply.choices[0].message.content == "from base"
        assert router.shadow_status()["e"].in_flight == 1  # still waiting on the slow target
        await settle(router, 1)
    caller, copy = records(tmp_path)
    assert (caller.variant, caller.assignment, caller.model) == ("control", "sticky", "base")
    assert (copy.experiment, copy.variant, copy.assignment) == ("e", "candidate", "shadow")
    assert copy.properties == {"shadow_of": reply.llmroute.request_id}
    assert (copy.status, copy.model, copy.user) == ("ok", "slow", "u1")
    assert copy.latency_s is not None and copy.latency_s >= SLOW
    assert copy.cost_usd == pytest.approx((5 * 1.0 + 2 * 2.0) / 1e6)  # priced like any
    assert copy.sticky_key == caller.sticky_key and copy.request_id != caller.request_id
    shadow_body = models.requests[-1]
    assert (shadow_body["model"], shadow_body["temperature"]) == ("slow", 0.5)


async def test_a_failing_shadow_never_changes_the_callers_answer(
    models: Upstream, tmp_path: Path
) -> None:
    async with AsyncRouter(config(models, tmp_path, "failing"), env={}) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
        plain = await router.chat.completions.create(model="plain", messages=HI)
        await settle(router, 1)
        assert router.shadow_status()["e"].completed == 1  # ended its request: recorded
    assert reply.choices[0].message.content == plain.choices[0].message.content == "from base"
    assert reply.llmroute.attempts[0].outcome == "ok" and len(reply.llmroute.attempts) == 1
    copy = next(r for r in records(tmp_path) if r.assignment == "shadow")
    assert (copy.status, copy.error_type, copy.target) == ("error", "AllTargetsFailed", None)
    # the variant's own target only: no fallback to the route's
    assert [(a.target, a.status) for a in copy.attempts] == [("a/failing", 500)]


async def test_a_streamed_request_is_shadowed_by_its_non_streamed_equivalent(
    models: Upstream, tmp_path: Path
) -> None:
    async with AsyncRouter(config(models, tmp_path, "cand"), env={}) as router:
        stream = await router.chat.completions.create(
            model="chat", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await settle(router, 1)
    assert text == "hey"
    shadow_body = next(b for b in models.requests if b["model"] == "cand")
    assert "stream" not in shadow_body and "stream_options" not in shadow_body
    copy = next(r for r in records(tmp_path) if r.assignment == "shadow")
    assert (copy.stream, copy.status) == (False, "ok")


async def test_shadow_copies_pass_no_rate_limit_and_no_cache(
    models: Upstream, tmp_path: Path
) -> None:
    document = config(
        models,
        tmp_path,
        "cand",
        rate_limits=[{"per": "user", "requests": "2/min"}],
        cache={"backend": "memory://"},
    )
    async with AsyncRouter(document, env={}) as router:
        for text in ("one", "two"):  # two requests of the user's two: the copies take none
            await router.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": text}],
                llmroute={"user": "u1"},
            )  # fmt: skip
        await settle(router, 2)
        limits = router.limit_stats().rate_limits
        assert limits is not None
        assert (limits.allowed, limits.refused) == (2, 0)  # the callers' two only
        cache = router.cache_stats()
        assert cache is not None and (cache.misses, cache.stores) == (2, 2)  # the callers' only
        forced = await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "one"}],
            llmroute={"user": "u2", "variant": "e=candidate"},
        )  # fmt: skip
        assert forced.llmroute.cache == "miss"  # the copy of "one" stored nothing
    copies = [r for r in records(tmp_path) if r.assignment == "shadow"]
    assert [(c.status, c.cache, c.limit) for c in copies] == [("ok", None, None)] * 2


async def test_copies_beyond_max_in_flight_are_dropped_and_counted(
    models: Upstream, tmp_path: Path
) -> None:
    document = config(models, tmp_path, "slow", shadow={"max_in_flight": 1})
    async with AsyncRouter(document, env={}) as router:
        for _ in range(3):
            await router.chat.completions.create(model="chat", messages=HI)
        status = router.shadow_status()["e"]
        assert (status.in_flight, status.started, status.dropped) == (1, 1, 2)
        await settle(router, 1)
    assert sum(b["model"] == "slow" for b in models.requests) == 1


async def test_closing_the_router_cancels_the_copies_in_flight(
    models: Upstream, tmp_path: Path
) -> None:
    router = AsyncRouter(config(models, tmp_path, "slow"), env={})
    await router.chat.completions.create(model="chat", messages=HI)
    await asyncio.sleep(0.2)  # the copy is waiting on the slow target
    begun = time.monotonic()
    await router.aclose()
    assert time.monotonic() - begun < SLOW / 2
    status = router.shadow_status()["e"]
    assert (status.in_flight, status.cancelled) == (0, 1)
    copy = next(r for r in records(tmp_path) if r.assignment == "shadow")
    assert copy.status == "cancelled"


async def test_only_a_fraction_is_copied_and_never_forced_or_same_variant_requests(
    models: Upstream, tmp_path: Path
) -> None:
    async with AsyncRouter(
        config(models, tmp_path, "cand", fraction=0.25), env={}, seed=5
    ) as router:
        for _ in range(200):
            await router.chat.completions.create(model="chat", messages=HI)
        for forced in ("e=control", "e=candidate"):
            await router.chat.completions.create(
                model="chat", messages=HI, llmroute={"variant": forced}
            )
        await settle(router, 1)
        started = router.shadow_status()["e"].started
    assert 30 <= started <= 70  # a quarter of 200, drawn at random per request
    copies = [r for r in records(tmp_path) if r.assignment == "shadow"]
    assert len(copies) == started
    forced_ids = {r.request_id for r in records(tmp_path) if r.assignment == "forced"}
    assert not forced_ids & {c.properties["shadow_of"] for c in copies}


async def test_a_responses_request_is_shadowed_as_a_responses_request(
    models: Upstream, tmp_path: Path
) -> None:
    async with AsyncRouter(config(models, tmp_path, "cand"), env={}) as router:
        stream = await router.responses.create(model="chat", input="Hi", stream=True)
        async with stream:
            async for _ in stream:
                pass
        await settle(router, 1)
    copy = next(r for r in records(tmp_path) if r.assignment == "shadow")
    assert (copy.operation, copy.stream, copy.status, copy.model) == (
        "responses",
        False,
        "ok",
        "cand",
    )
    shadow_body = next(b for b in models.requests if b.get("model") == "cand")
    assert shadow_body["temperature"] == 0.5 and not shadow_body.get("stream")


async def test_a_router_without_shadow_traffic_reports_none() -> None:
    async with AsyncRouter({"logging": {"store": None}}, env={}) as router:
        assert router.shadow_status() == {}

"""Smart selection: strategies, constraints, rate-limit awareness, conditions, capabilities."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from typing import Any

import anyio
import pytest

import llmroute
from _helpers import HI, ask
from _wire import Wire
from llmroute import AsyncRouter
from llmroute._clock import SystemClock
from llmroute._prices import PriceBook
from llmroute._request import RequestOptions, validate_chat_request
from llmroute.providers import RateLimitState
from llmroute.routing import Selection, SelectionContext
from llmroute.routing.catalog import Catalog
from llmroute.routing.rate_limits import RateLimitBoard
from llmroute.routing.select import RequestFacts, Selector
from llmroute.routing.stats import LiveStats

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def router(providers: dict[str, dict[str, Any]], route: dict[str, Any], **kw: Any) -> AsyncRouter:
    config = {
        "providers": {n: {"type": "mock", **p} for n, p in providers.items()},
        "routes": {"chat": route},
        "logging": {"store": None},
    }
    return AsyncRouter(config, env={}, seed=kw.pop("seed", 3), **kw)


def selections(r: AsyncRouter, n: int, **request: Any) -> Counter[str]:
    """The first choice of `n` selections of the router's configuration, by a catalog and a
    selector of its own (nothing is sent)."""
    prices = PriceBook()
    route = Catalog(r.config, clock=SystemClock(), prices=prices, env={}).resolve("chat")
    facts = RequestFacts(
        validate_chat_request({"model": "chat", "messages": HI, **request}), RequestOptions(), False
    )
    selector = Selector(LiveStats(), prices, random.Random(3), RateLimitBoard())
    return Counter(selector.select(route, facts, 0.0).targets[0].key for _ in range(n))


# ---------------------------------------------------------------- the model and its state


def test_routes_and_targets_are_immutable_and_state_lives_beside_them() -> None:
    r = router({"a": {}, "b": {}}, {"targets": ["a/m", "b/m"]})
    prices = PriceBook()
    route = Catalog(r.config, clock=SystemClock(), prices=prices, env={}).resolve("chat")
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.targets[0].weight = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.fallbacks = ()  # type: ignore[misc]
    limits = RateLimitBoard()
    selector = Selector(LiveStats(), prices, random.Random(1), limits)
    facts = RequestFacts(
        validate_chat_request({"model": "chat", "messages": HI, "max_tokens": 10}),
        RequestOptions(),
        False,
    )
    fixed = selector.select(route, facts, 0.0)
    assert selector.select(route, facts, 0.0) is fixed  # ordered, nothing to filter: made once
    # a provider reports its tokens nearly spent: the route's next selection filters by it
    limits.saw(route.targets[0], RateLimitState(remaining_tokens=1, reset_tokens_s=60.0), 0.0)
    assert limits.state("a/m") == RateLimitState(remaining_tokens=1, reset_tokens_s=60.0)
    selection = selector.select(route, facts, 1.0)
    assert [t.key for t in selection.targets] == ["b/m"]
    assert callable(selection.reason)
    assert selection.reason() == "config order; skipped a/m (rate limit: 1 tokens left)"
    assert [t.key for t in selector.select(route, facts, 61.0).targets] == ["a/m", "b/m"]


def test_a_route_finds_its_targets_by_key_along_fallback_cycles() -> None:
    config = {
        "providers": {"a": {"type": "mock"}, "b": {"type": "mock"}},
        "routes": {
            "one": {"targets": ["a/m"], "fallbacks": ["two"]},
            "two": {"targets": ["b/m", "a/m"], "fallbacks": ["one"]},
        },
        "logging": {"store": None},
    }
    catalog = Catalog(
        llmroute.Config.model_validate(config), clock=SystemClock(), prices=PriceBook(), env={}
    )
    one, two = catalog.resolve("one"), catalog.resolve("two")
    assert one.chain() == (one, two) and two.chain() == (two, one)
    assert one.find_target("a/m") is one.targets[0]  # the first along the chain
    assert one.find_target("b/m") is two.targets[0]
    assert one.find_target("c/m") is None


# ---------------------------------------------------------------- simple strategies


async def test_weighted_splits_within_three_percent() -> None:
    r = router({"a": {}, "b": {}, "c": {}},
               {"strategy": "weighted", "targets": [{"provider": "a", "model": "m", "weight": 5},
                                                     {"provider": "b", "model": "m", "weight": 3},
                                                     {"provider": "c", "model": "m", "weight": 2}]})  # fmt: skip
    counts = selections(r, 10_000)
    for key, share in (("a/m", 0.5), ("b/m", 0.3), ("c/m", 0.2)):
        assert abs(counts[key] / 10_000 - share) <= 0.03, counts


async def test_weight_zero_is_only_a_fallback() -> None:
    r = router({"a": {"script": [503], "repeat_script": True}, "b": {}},
               {"strategy": "weighted", "targets": ["a/m", {"provider": "b", "model": "m",
                                                             "weight": 0}]})  # fmt: skip
    assert selections(r, 1000) == Counter({"a/m": 1000})
    async with r:
        reply = await ask(r)
    assert [a.target for a in reply.llmroute.attempts] == ["a/m", "b/m"]


async def test_round_robin_is_exact() -> None:
    r = router({"a": {}, "b": {}, "c": {}}, {"strategy": "round_robin",
                                             "targets": ["a/m", "b/m", "c/m"]})  # fmt: skip
    async with r:
        served = [(await ask(r)).llmroute.target for _ in range(9)]
    assert served == ["a/m", "b/m", "c/m"] * 3


async def test_least_busy_balances_requests_in_flight() -> None:
    r = router({"a": {"latency": "1s"}, "b": {"latency": "1s"}, "c": {"latency": "1s"}},
               {"strategy": "least_busy", "targets": ["a/m", "b/m", "c/m"]})  # fmt: skip
    async with r, anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(ask, r)
        await anyio.sleep(0.5)
        in_flight = {k: s.in_flight for k, s in r.stats().items()}
    assert in_flight == {"a/m": 10, "b/m": 10, "c/m": 10}


# ---------------------------------------------------------------- latency


async def latency_run(r: AsyncRouter, n: int) -> Counter[str]:
    served: Counter[str] = Counter()
    for _ in range(n):
        served[(await ask(r)).llmroute.target or ""] += 1
    return served


async def test_latency_prefers_the_fastest_probes_the_rest_and_follows_a_change() -> None:
    wires = {"fast": Wire(latency="50ms"), "mid": Wire(latency="100ms"),
             "slow": Wire(latency="200ms")}  # fmt: skip
    r = router({name: {} for name in wires},
               {"strategy": "latency", "targets": ["slow/m", "mid/m", "fast/m"]},
               transports={name: wire.transport for name, wire in wires.items()})  # fmt: skip
    async with r:
        await latency_run(r, 30)  # warm-up
        served = await latency_run(r, 500)
        assert served["fast/m"] / 500 >= 0.8, served
        assert served["mid/m"] > 0
        assert served["slow/m"] > 0  # still probed
        # the slow target becomes the fastest: count requests until it leads
        wires["slow"].answer_like(latency=0.01)
        window: list[str] = []
        switched_after = None
        for i in range(1, 400):
            window = [*window[-19:], (await ask(r)).llmroute.target or ""]
            if len(window) == 20 and window.count("slow/m") >= 15:
                switched_after = i
                break
    print(f"\nlatency: {served['fast/m'] / 5:.1f}% to the fastest; new fastest leads after "
          f"{switched_after} requests")  # fmt: skip
    assert switched_after is not None
    assert switched_after <= 200


async def test_latency_reason_explains_the_choice() -> None:
    r = router({"a": {"latency": "10ms"}, "b": {"latency": "30ms"}},
               {"strategy": "latency", "targets": ["a/m", "b/m"]})  # fmt: skip
    async with r:
        await latency_run(r, 10)
        reply = await ask(r)
    reason = reply.llmroute.reason or ""
    assert reason.startswith("latency: ")
    assert "a/m=" in reason
    assert "b/m=" in reason


async def test_stream_latency_uses_time_to_first_token() -> None:
    r = router({"a": {"ttft": "300ms", "latency": "10ms"}, "b": {"ttft": "20ms", "latency": "2s"}},
               {"strategy": "latency", "targets": ["a/m", "b/m"], "explore": 0})  # fmt: skip
    async with r:
        for _ in range(20):
            stream = await r.chat.completions.create(model="chat", messages=HI, stream=True)
            async for _ in stream:
                pass
        served = Counter()
        for _ in range(20):
            stream = await r.chat.completions.create(model="chat", messages=HI, stream=True)
            served[stream.llmroute.target] += 1
            await stream.aclose()
    assert served["b/m"] >= 18


# ---------------------------------------------------------------- cost


def priced_router(route: dict[str, Any], **wires: Wire) -> AsyncRouter:
    """OpenAI-typed providers (genai-prices knows their models) answered by mock wires."""
    providers = {"cheap": {"type": "openai", "api_key": "k"}, "dear": {"type": "openai", "api_key": "k"},
                 "local": {"type": "ollama"}}  # fmt: skip
    transports = {n: (wires.get(n) or Wire(text=n)).transport for n in providers}
    config = {"providers": providers, "routes": {"chat": route}, "logging": {"store": None}}
    return AsyncRouter(config, env={}, transports=transports, seed=1)


async def test_cost_picks_the_cheapest_by_genai_prices() -> None:
    r = priced_router({"strategy": "cost", "targets": ["dear/gpt-4o", "cheap/gpt-4o-mini"]})
    async with r:
        reply = await ask(r, max_tokens=100)
    assert reply.llmroute.target == "cheap/gpt-4o-mini"
    assert "cheap/gpt-4o-mini=$" in (reply.llmroute.reason or "")


async def test_cost_respects_price_overrides() -> None:
    r = priced_router({"strategy": "cost", "targets": [
        "cheap/gpt-4o-mini",
        {"provider": "dear", "model": "gpt-4o", "price": {"input": 0.01, "output": 0.01}}]})  # fmt: skip
    async with r:
        reply = await ask(r, max_tokens=100)
    assert reply.llmroute.target == "dear/gpt-4o"


async def test_unknown_price_is_an_explicit_choice() -> None:
    with pytest.raises(llmroute.ConfigError, match="local/llama3") as caught:
        priced_router({"strategy": "cost", "targets": ["local/llama3", "cheap/gpt-4o-mini"]})
    assert caught.value.path == "routes.chat.unknown_price"
    last = priced_router({"strategy": "cost", "unknown_price": "last",
                          "targets": ["local/llama3", "cheap/gpt-4o-mini"]})  # fmt: skip
    async with last:
        assert (await ask(last)).llmroute.target == "cheap/gpt-4o-mini"
    excluded = priced_router({"strategy": "cost", "unknown_price": "exclude",
                              "targets": ["local/llama3"], "retry": {"attempts": 1}})  # fmt: skip
    async with excluded:
        with pytest.raises(llmroute.AllTargetsFailed):
            await ask(excluded)


async def test_max_cost_per_request_skips_dear_targets() -> None:
    r = priced_router({"targets": ["dear/gpt-4o", "cheap/gpt-4o-mini"],
                       "max_cost_per_request": 0.0005})  # fmt: skip
    async with r:
        reply = await ask(r, max_tokens=100)
    assert reply.llmroute.target == "cheap/gpt-4o-mini"
    assert "dear/gpt-4o ($" in (reply.llmroute.reason or "")


async def test_cost_with_max_latency_skips_a_slow_cheap_target() -> None:
    r = priced_router({"strategy": "cost", "targets": ["cheap/gpt-4o-mini", "dear/gpt-4o"],
                       "max_latency": "1s"}, cheap=Wire(text="cheap", latency=3.0))  # fmt: skip
    async with r:
        for _ in range(3):  # the cheap target is slow: its p95 goes over the limit
            await ask(r, max_tokens=100)
        reply = await ask(r, max_tokens=100)
    assert reply.llmroute.target == "dear/gpt-4o"
    assert "p95 over max_latency" in (reply.llmroute.reason or "")


# ---------------------------------------------------------------- rate limits


async def test_zero_remaining_requests_skips_until_reset() -> None:
    limited = {"script": [{"headers": {"x-ratelimit-remaining-requests": "0",
                                       "x-ratelimit-reset-requests": "2s"}}], "text": "a"}  # fmt: skip
    r = router({"a": limited, "b": {"text": "b"}}, {"targets": ["a/m", "b/m"]})
    async with r:
        first = await ask(r)
        assert first.llmroute.target == "a/m"
        loop = asyncio.get_running_loop()
        for at in (0.5, 1.0, 1.9):
            await anyio.sleep(at - loop.time())
            assert (await ask(r)).llmroute.target == "b/m"
        await anyio.sleep(2.05 - loop.time())
        assert (await ask(r)).llmroute.target == "a/m"


async def test_token_budget_skips_only_requests_that_do_not_fit() -> None:
    budget = {"script": [{"headers": {"x-ratelimit-remaining-tokens": "200",
                                      "x-ratelimit-reset-tokens": "10s"}}]}  # fmt: skip
    r = router({"a": budget, "b": {}}, {"targets": ["a/m", "b/m"]})
    async with r:
        await ask(r)  # learns: 200 tokens left for 10 s
        small = await ask(r, max_tokens=50)
        big = await r.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x" * 2000}], max_tokens=50
        )
        assert r.stats()["a/m"].rate_limit is not None
    assert small.llmroute.target == "a/m"
    assert big.llmroute.target == "b/m"
    assert "a/m (rate limit: 200 tokens left)" in (big.llmroute.reason or "")


# ---------------------------------------------------------------- conditions and capabilities


async def test_when_conditions_route_by_properties_and_params() -> None:
    r = router(
        {"cheap": {"text": "cheap"}, "premium": {"text": "premium"}},
        {"targets": [
            {"provider": "cheap", "model": "m", "when": {"properties.tier": {"in": ["free", "trial"]}}},
            {"provider": "premium", "model": "m", "when": {"any": [
                {"properties.tier": "paid"}, {"params.max_tokens": {"gt": 1000}}]}},
        ]},
    )  # fmt: skip
    async with r:
        free = await ask(r, llmroute={"properties": {"tier": "free"}})
        paid = await ask(r, llmroute={"properties": {"tier": "paid"}})
        long = await ask(r, llmroute={"properties": {"tier": "free"}}, max_tokens=2000)
        with pytest.raises(llmroute.AllTargetsFailed, match="no target could be tried"):
            await ask(r)  # no tier, short: no target qualifies
    assert free.llmroute.target == "cheap/m"
    assert paid.llmroute.target == "premium/m"
    assert long.llmroute.target == "cheap/m"  # both qualify: config order


async def test_bad_condition_is_a_config_error_with_its_path() -> None:
    with pytest.raises(llmroute.ConfigError) as caught:
        router({"a": {}}, {"targets": [{"provider": "a", "model": "m",
                                        "when": {"user": {"regex": "("}}}]})  # fmt: skip
    assert caught.value.path == "routes.chat.targets.0.when.user.regex"


async def test_capabilities_filter_targets() -> None:
    r = router(
        {"text": {"text": "text only"}, "vision": {"text": "sees"}},
        {"targets": [{"provider": "text", "model": "m", "capabilities": ["tools"]},
                     {"provider": "vision", "model": "m", "capabilities": ["tools", "vision"]}]},
    )  # fmt: skip
    image = [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]  # fmt: skip
    async with r:
        plain = await ask(r)
        seen = await r.chat.completions.create(model="chat", messages=image)
    assert plain.llmroute.target == "text/m"
    assert seen.llmroute.target == "vision/m"


# ---------------------------------------------------------------- custom strategy


class Backwards:
    name = "backwards"

    def order(self, candidates: Any, ctx: SelectionContext) -> Selection:
        return Selection(list(reversed(candidates)), "reversed config order")


async def test_custom_strategy_plugs_in() -> None:
    r = router({"a": {}, "b": {}}, {"strategy": "backwards", "targets": ["a/m", "b/m"]},
               strategies={"backwards": Backwards()})  # fmt: skip
    async with r:
        reply = await ask(r)
    assert reply.llmroute.target == "b/m"
    assert reply.llmroute.reason == "backwards: reversed config order"


async def test_random_is_seeded_per_router() -> None:
    shape = (
        {"a": {}, "b": {}, "c": {}},
        {"strategy": "weighted", "targets": ["a/m", "b/m", "c/m"]},
    )

    async def served(seed: int) -> list[str | None]:
        async with router(*shape, seed=seed) as r:
            return [(await ask(r)).llmroute.target for _ in range(50)]

    assert await served(9) == await served(9)
    assert await served(9) != await served(10)


def test_when_conditions_see_nested_parameters_as_plain_values() -> None:
    """`params.*` values are what the request set, as plain JSON values (nested objects as
    mappings of the fields given), like the request's own JSON."""
    r = router({"a": {"text": "a"}, "b": {"text": "b"}}, {"targets": [
        {"provider": "a", "model": "m",
         "when": {"params.stream_options": {"in": [{"include_usage": True}]}}},
        "b/m"]})  # fmt: skip
    assert selections(r, 1, stream_options={"include_usage": True}) == Counter({"a/m": 1})
    assert selections(r, 1, stream_options={"include_usage": False}) == Counter({"b/m": 1})

"""The response cache in memory: keys, hits, replayed streams, what is stored, controls, bounds."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

import llmroute
from _helpers import HI, ask, sent
from _upstream import Upstream, chunk_body, completion_body, sse
from llmroute import AsyncRouter
from llmroute._request import validate_chat_request
from llmroute.cache import cache_key, chunks_to_completion, completion_to_chunks
from llmroute.cache.keys import key_digest, memory_key

pytestmark = pytest.mark.anyio

PRICE = {"input": 1.0, "output": 2.0}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


class ManualClock:
    """A clock tests move by hand (the memory backend's TTLs follow it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def build(
    cache: dict[str, Any] | None = None,
    route: dict[str, Any] | None = None,
    provider: dict[str, Any] | None = None,
    clock: ManualClock | None = None,
    **top: Any,
) -> AsyncRouter:
    config: dict[str, Any] = {
        "providers": {"a": {"type": "mock", "text": "the answer is 42", **(provider or {})}},
        "routes": {"chat": {"targets": [{"provider": "a", "model": "m", "price": PRICE}],
                            **(route or {})}},
        **top,
    }  # fmt: skip
    if cache is not None:
        config["cache"] = cache
    return AsyncRouter(config, env={}, clock=clock)


async def ask_stream(router: AsyncRouter, **extra: Any) -> tuple[Any, list[Any]]:
    extra.setdefault("messages", HI)
    stream = await router.chat.completions.create(model="chat", stream=True, **extra)
    return stream, [chunk async for chunk in stream]


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# ---------------------------------------------------------------- hits and misses


async def test_repeat_is_a_free_hit_that_reports_its_savings() -> None:
    async with build({}) as router:
        first = await ask(router)
        second = await ask(router)
        assert sent(router) == 1
    assert (first.llmroute.cache, second.llmroute.cache) == ("miss", "hit")
    assert second.model_dump() == first.model_dump()
    assert second is not first
    usage = first.llmroute.usage
    assert usage is not None
    assert first.llmroute.cost_usd == pytest.approx((usage.input * 1.0 + usage.output * 2.0) / 1e6)
    hit = second.llmroute
    assert hit.cost_usd == 0.0
    assert hit.usage is None
    assert hit.attempts == []
    assert hit.route == "chat"
    assert hit.saved_usd == first.llmroute.cost_usd
    assert hit.saved_tokens == first.llmroute.usage
    stats = router.cache_stats()
    assert stats is not None
    assert (stats.hits, stats.misses, stats.stores, stats.hit_rate) == (1, 1, 1, 0.5)
    assert stats.saved_usd == pytest.approx(first.llmroute.cost_usd)
    assert (stats.saved_input_tokens, stats.saved_output_tokens) == (usage.input, usage.output)


async def test_callers_cannot_change_the_cached_answer() -> None:
    async with build({}) as router:
        first = await ask(router)
        first.choices[0].message.content = "tampered"
        hit = await ask(router)
        hit.choices[0].message.content = "tampered again"
        again = await ask(router)
    assert again.choices[0].message.content == "the answer is 42"
    assert hit.llmroute is not again.llmroute


async def test_key_leaves_out_who_asked_and_how_it_is_delivered() -> None:
    async with build({}) as router:
        await ask(router)
        same = [
            await ask(router, user="u1", metadata={"a": "b"}, store=True, service_tier="default"),
            await ask(router, llmroute={"user": "ann", "session": "s", "properties": {"p": "1"}}),
            await ask(router, n=1, prompt_cache_key="k", temperature=None),
        ]
        assert [r.llmroute.cache for r in same] == ["hit"] * 3
        different = [
            await ask(router, temperature=0.5),
            await ask(router, max_tokens=10),
            await ask(router, messages=[{"role": "user", "content": "Hi!"}]),
            await ask(router, tools=TOOLS),
            await ask(router, seed=7),
            await ask(router, extra_body={"top_k": 3}),
        ]
        assert [r.llmroute.cache for r in different] == ["miss"] * 6
        assert sent(router) == 7


def test_key_is_canonical_over_the_order_of_mapping_keys() -> None:
    schema_a = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
    schema_b = {"required": ["x"], "properties": {"x": {"type": "string"}}, "type": "object"}

    def key(schema: dict[str, Any], **extra: Any) -> str:
        request = validate_chat_request(
            {"model": "chat", "messages": HI, **extra,
             "response_format": {"type": "json_schema",
                                 "json_schema": {"name": "r", "schema": schema}}}
        )  # fmt: skip
        return cache_key("chat", "chat|a/m", "", request)

    assert key(schema_a) == key(schema_b)
    assert key(schema_a) != key(schema_a, temperature=0)
    plain = validate_chat_request({"model": "chat", "messages": HI})
    assert cache_key("chat", "chat|a/m", "", plain) != cache_key("chat", "chat|b/m", "", plain)
    assert cache_key("chat", "chat|a/m", "", plain) != cache_key("chat", "chat|a/m", "t1", plain)
    assert cache_key("chat", "r", "", plain) != cache_key("embeddings", "r", "", plain)


async def test_no_caller_can_change_the_answer_another_hit_receives() -> None:
    router = AsyncRouter({"cache": {}, "providers": {"a": {"type": "mock", "text": "kept"}},
                          "routes": {"chat": {"targets": ["a/m"]}}}, env={})  # fmt: skip
    async with router:
        first = await ask(router)
        original = first.model_dump()
        hit = await ask(router)
        assert hit.llmroute.cache == "hit"
        assert hit.model_dump() == original
        # the caller changes everything it can reach, at every depth
        hit.id = "changed"
        hit.choices[0].message.content = "changed"
        hit.choices[0].message.tool_calls = []
        hit.choices.append(hit.choices[0])
        assert hit.usage is not None
        hit.usage.prompt_tokens = 0
        first.choices.clear()
        again = await ask(router)
    assert again.llmroute.cache == "hit"
    assert again.model_dump() == original
    assert again is not hit and again.choices[0] is not hit.choices[0]


def test_keys_of_plain_requests_and_conversations_with_tool_calls() -> None:
    """Every form of the canonical request (plain text, tool calls, free-form mappings) keeps
    equal requests together and different ones apart."""

    def key(**params: Any) -> str:
        return cache_key("chat", "chat|a/m", "", validate_chat_request(params))

    hi = [{"role": "user", "content": "Hi"}]
    assert key(model="chat", messages=hi, temperature=0.5) == key(
        temperature=0.5, messages=hi, model="chat"
    )  # the order parameters come in does not matter
    assert key(model="chat", messages=hi) == key(model="chat", messages=hi, n=1, user="u",
                                                 metadata={"a": "b"}, stream=True)  # fmt: skip
    named = [{"role": "user", "content": "Hi", "name": "ann"}]
    assert key(model="chat", messages=hi) != key(model="chat", messages=named)
    assert key(model="chat", messages=hi) != key(model="chat", messages=hi, max_tokens=5)
    assert key(model="chat", messages=hi) != key(model="chat", messages=hi, stop=["x"])

    def turn(arguments: str) -> list[dict[str, Any]]:
        call = {"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": arguments}}  # fmt: skip
        return [*hi, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]  # fmt: skip

    assert key(model="chat", messages=turn('{"x":1}')) == key(
        model="chat", messages=turn('{"x":1}')
    )
    assert key(model="chat", messages=turn('{"x":1}')) != key(
        model="chat", messages=turn('{"x":2}')
    )
    assert key(model="chat", messages=turn('{"x":1}')) != key(model="chat", messages=hi)


_TEXT = st.sampled_from(["", "a"])
#: Values of the parameters a plain request may set (a list `stop` and a `tool_choice`
#: mapping are keyed by their digests); None: not set.
_PLAIN_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.sampled_from([None, 0, 0.5]),
    "n": st.sampled_from([None, 1, 2]),
    "stop": st.one_of(st.none(), _TEXT, st.lists(_TEXT, max_size=1)),
    "user": st.one_of(st.none(), _TEXT),
    "stream": st.sampled_from([None, True]),
    "tool_choice": st.sampled_from([None, "auto", {"type": "function"}]),
}
_MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user"]), "content": _TEXT},
        optional={"name": st.just("ann")},
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": _TEXT},
        optional={"tool_calls": st.sampled_from([None, []])},
    ),
)


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_memory_keys_part_requests_as_digests_do(data: st.DataObject) -> None:
    """The memory backend's tuple keys keep together exactly the requests the digests do:
    pairs of requests that differ in at most one parameter or message."""

    def draw_request() -> dict[str, Any]:
        params = {name: data.draw(values) for name, values in _PLAIN_VALUES.items()}
        messages = data.draw(st.lists(_MESSAGE, min_size=1, max_size=2))
        return {"model": "chat", "messages": messages, **params}

    first = draw_request()
    second = {**first}
    changed = data.draw(st.sampled_from(["nothing", "messages", *_PLAIN_VALUES]))
    if changed == "messages":
        second["messages"] = [*first["messages"][:-1], data.draw(_MESSAGE)]
    elif changed != "nothing":
        second[changed] = data.draw(_PLAIN_VALUES[changed])
    keys = []
    for params in (first, second):
        request = validate_chat_request({k: v for k, v in params.items() if v is not None})
        digest = key_digest(b"head", request)
        memory = memory_key(b"head", request)
        keys.append((digest, memory or digest))
        hash(memory)  # always usable as a dictionary key
        assert memory is None or memory_key(b"other", request) != memory
    (digest_a, memory_a), (digest_b, memory_b) = keys
    assert (memory_a == memory_b) == (digest_a == digest_b)


async def test_an_empty_tool_calls_list_is_cached_not_a_crash() -> None:
    """An assistant turn with ``tool_calls: []`` (some SDKs and frameworks send it) is a
    plain text request: it must be looked up and stored, not fail on an unhashable key."""
    turn = [*HI, {"role": "assistant", "content": "Hello", "tool_calls": []},
            {"role": "user", "content": "Again"}]  # fmt: skip
    async with build({}) as router:
        await ask(router, messages=turn)
        again = await ask(router, messages=turn, llmroute={"user": "u"})  # the long path too
    assert again.llmroute.cache == "hit"


async def test_a_route_sending_elsewhere_does_not_serve_old_answers() -> None:
    shared = {"cache": {}, "providers": {"a": {"type": "mock", "text": "from a"},
                                         "b": {"type": "mock", "text": "from b"}}}  # fmt: skip
    router = AsyncRouter({**shared, "routes": {"chat": {"targets": ["a/m", "b/m"]}}}, env={})
    async with router:
        await ask(router)
        assert (await ask(router)).llmroute.cache == "hit"
        narrowed = await ask(router, llmroute={"targets": ["b"]})
        assert narrowed.llmroute.cache == "miss"
        assert narrowed.choices[0].message.content == "from b"


# ---------------------------------------------------------------- streams


async def test_a_stream_is_stored_once_complete_and_replayed_alike() -> None:
    provider = {"tool_calls": [{"name": "lookup", "arguments": {"city": "Paris", "days": 3}}]}
    async with build({}, provider=provider) as router:
        live, live_chunks = await ask_stream(
            router, tools=TOOLS, stream_options={"include_usage": True}
        )
        replay, replay_chunks = await ask_stream(
            router, tools=TOOLS, stream_options={"include_usage": True}
        )
        plain = await ask(router, tools=TOOLS)
        assert sent(router) == 1
    assert (live.llmroute.cache, replay.llmroute.cache, plain.llmroute.cache) == (
        "miss",
        "hit",
        "hit",
    )
    assert replay.completed
    live_answer, replayed = chunks_to_completion(live_chunks), chunks_to_completion(replay_chunks)
    assert replayed.model_dump(exclude={"id"}) == live_answer.model_dump(exclude={"id"})
    call = replayed.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "lookup", {"city": "Paris", "days": 3},
    )  # fmt: skip
    assert replayed.choices[0].finish_reason == "tool_calls"
    assert replay_chunks[-1].usage == live_chunks[-1].usage is not None
    assert plain.choices[0].message.tool_calls == replayed.choices[0].message.tool_calls
    assert replay.llmroute.saved_tokens == live.llmroute.usage


async def test_a_non_streamed_answer_replays_as_a_stream_without_unasked_usage() -> None:
    async with build({}) as router:
        first = await ask(router)
        stream, chunks = await ask_stream(router)
    assert stream.llmroute.cache == "hit"
    assert text_of(chunks) == first.choices[0].message.content
    assert all(c.choices for c in chunks)  # no usage chunk: it was not asked for
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("outcome", [{"cut_after": 2}, 503])
async def test_a_cut_or_failed_stream_is_not_stored(outcome: Any) -> None:
    provider = {"text": "one two three four five", "script": [outcome]}
    async with build({}, provider=provider, route={"retry": {"attempts": 1}}) as router:
        with pytest.raises(llmroute.LLMRouteError):
            await ask_stream(router)
        _, chunks = await ask_stream(router)
        assert sent(router) == 2
        assert text_of(chunks) == "one two three four five"
        assert router.cache_stats().not_stored == 1  # type: ignore[union-attr]


async def test_a_stream_closed_early_is_not_stored() -> None:
    async with build({}, provider={"text": "one two three four five"}) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        await stream.__anext__()
        await stream.aclose()
        again, _ = await ask_stream(router)
    assert again.llmroute.cache == "miss"


async def test_a_stitched_stream_is_not_stored() -> None:
    config = {
        "cache": {},
        "providers": {"a": {"type": "mock", "text": "one two three", "script": [{"cut_after": 1}]},
                      "b": {"type": "mock", "text": "two three"}},
        "routes": {"chat": {"targets": ["a/m", "b/m"], "mid_stream": "continue"}},
    }  # fmt: skip
    async with AsyncRouter(config, env={}) as router:
        first, _ = await ask_stream(router)
        assert first.seams
        again, _ = await ask_stream(router)
    assert again.llmroute.cache == "miss"


# ---------------------------------------------------------------- answers from a real upstream


def openai_router(upstream: Upstream, **cache: Any) -> AsyncRouter:
    return AsyncRouter(
        {"providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"}},
         "routes": {"chat": {"targets": ["up/up-model"], "retry": {"attempts": 1}}},
         "cache": cache},
        env={},
    )  # fmt: skip


def streams(upstream: Upstream, events: list[dict[str, Any] | str]) -> None:
    """Make `upstream` answer every request with a stream of `events`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, events)

    upstream.handler = handler


async def test_n_choices_are_kept_together(upstream: Upstream) -> None:
    body = completion_body("first")
    second = json.loads(json.dumps(body["choices"][0]))
    second.update(
        index=1, message={"role": "assistant", "content": "second"}, finish_reason="length"
    )
    body["choices"].append(second)
    body["choices"][0]["logprobs"] = {"content": [{"token": "first", "logprob": -0.1,
                                                   "bytes": None, "top_logprobs": []}]}  # fmt: skip

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    upstream.handler = handler
    async with openai_router(upstream) as router:
        live = await ask(router, n=2, logprobs=True)
        hit = await ask(router, n=2, logprobs=True)
        one = await ask(router, logprobs=True)
        stream, chunks = await ask_stream(router, n=2, logprobs=True)
    assert len(upstream.requests) == 2  # n=2 and n=1 are different questions
    assert (hit.llmroute.cache, one.llmroute.cache, stream.llmroute.cache) == ("hit", "miss", "hit")
    assert hit.model_dump() == live.model_dump()
    replayed = chunks_to_completion(chunks)
    assert [c.message.content for c in replayed.choices] == ["first", "second"]
    assert [c.finish_reason for c in replayed.choices] == ["stop", "length"]
    assert replayed.choices[0].logprobs["content"] == body["choices"][0]["logprobs"]["content"]


@pytest.mark.parametrize("finish", ["content_filter", None])
async def test_filtered_or_unfinished_answers_are_not_stored(
    upstream: Upstream, finish: Any
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = completion_body("partial")
        body["choices"][0]["finish_reason"] = finish
        return web.json_response(body)

    upstream.handler = handler
    async with openai_router(upstream) as router:
        await ask(router)
        again = await ask(router)
    assert again.llmroute.cache == "miss"
    assert len(upstream.requests) == 2


async def test_a_stream_without_usage_is_replayed_with_the_usage_its_caller_saw(
    upstream: Upstream,
) -> None:
    events: list[dict[str, Any] | str] = [
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi there"},
                      "finish_reason": "stop"}]},
        "[DONE]",
    ]  # fmt: skip

    streams(upstream, events)
    async with openai_router(upstream) as router:
        _, live = await ask_stream(router, stream_options={"include_usage": True})
        _, replayed = await ask_stream(router, stream_options={"include_usage": True})
    assert live[-1].usage is not None and live[-1].usage.total_tokens > 0
    assert replayed[-1].usage == live[-1].usage


#: An answer with a vendor's reasoning beside OpenAI's fields: the text, the signed
#: blocks, and a Gemini call's thought signature (each needed again on the next turn).
REASONED = {
    "role": "assistant", "reasoning_content": "Paris first.",
    "thinking_blocks": [{"type": "thinking", "thinking": "Paris first.", "signature": "ANT"}],
    "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "lookup", "arguments": '{"city": "Paris"}'},
                    "extra_content": {"google": {"thought_signature": "GEM"}}}],
}  # fmt: skip


async def test_a_cached_answer_replays_as_a_stream_with_its_reasoning(upstream: Upstream) -> None:
    body = completion_body()
    body["choices"][0].update(message=REASONED, finish_reason="tool_calls")

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    upstream.handler = handler
    async with openai_router(upstream) as router:
        live = await ask(router, tools=TOOLS)
        stream, chunks = await ask_stream(router, tools=TOOLS)
    assert stream.llmroute.cache == "hit" and len(upstream.requests) == 1
    first = chunks[0].choices[0].delta.model_extra or {}
    assert first["reasoning_content"] == "Paris first."  # with the text, before the calls
    assert first["thinking_blocks"] == REASONED["thinking_blocks"]
    fragment = chunks[1].choices[0].delta.tool_calls[0]  # type: ignore[index]
    assert (fragment.model_extra or {})["extra_content"] == {"google": {"thought_signature": "GEM"}}
    replayed = chunks_to_completion(chunks).choices[0].message
    assert replayed.model_dump() == live.choices[0].message.model_dump()
    assert live.choices[0].message.model_dump(exclude_none=True) == REASONED


async def test_a_streamed_answer_is_stored_with_its_reasoning(upstream: Upstream) -> None:
    call = REASONED["tool_calls"][0]  # type: ignore[index]
    events: list[dict[str, Any] | str] = [
        chunk_body({"role": "assistant", "reasoning_content": "Paris "}),
        chunk_body({"reasoning_content": "first.", "thinking_blocks": [REASONED["thinking_blocks"][0]]}),  # type: ignore[index]
        chunk_body({"tool_calls": [{"index": 0, **call, "function": {"name": "lookup", "arguments": ""}}]}),
        chunk_body({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]}),
        chunk_body({}, "tool_calls"),
        "[DONE]",
    ]  # fmt: skip

    streams(upstream, events)
    async with openai_router(upstream) as router:
        await ask_stream(router, tools=TOOLS)
        hit = await ask(router, tools=TOOLS)
    assert hit.llmroute.cache == "hit" and len(upstream.requests) == 1
    assert hit.choices[0].message.model_dump(exclude_none=True) == REASONED


# ---------------------------------------------------------------- controls


async def test_ttls_global_route_and_request() -> None:
    clock = ManualClock()
    async with build({"ttl": "1h"}, route={"cache": {"ttl": "10m"}}, clock=clock) as router:
        await ask(router)
        await ask(router, temperature=0, llmroute={"cache": {"ttl": 5}})
        clock.now += 6
        assert (await ask(router)).llmroute.cache == "hit"
        assert (await ask(router, temperature=0)).llmroute.cache == "miss"
        clock.now += 600
        assert (await ask(router)).llmroute.cache == "miss"  # the route's 10 minutes, not 1 hour


async def test_no_cache_no_store_and_both() -> None:
    async with build({}) as router:
        fresh = await ask(router, llmroute={"cache": {"no_cache": True}})
        assert fresh.llmroute.cache == "bypass"
        assert (await ask(router)).llmroute.cache == "hit"  # no_cache still stored its answer
        await ask(router, temperature=0, llmroute={"cache": {"no_store": True}})
        assert (await ask(router, temperature=0)).llmroute.cache == "miss"
        both = await ask(router, llmroute={"cache": {"no_cache": True, "no_store": True}})
        assert both.llmroute.cache == "bypass"
        assert sent(router) == 4
        assert router.cache_stats().bypasses == 2  # type: ignore[union-attr]


async def test_namespaces_keep_tenants_apart() -> None:
    async with build({"namespace": "app"}) as router:
        await ask(router, llmroute={"cache": {"namespace": "tenant-1"}})
        other = await ask(router, llmroute={"cache": {"namespace": "tenant-2"}})
        none = await ask(router)
        same = await ask(router, llmroute={"cache": {"namespace": "tenant-1"}})
    assert [other.llmroute.cache, none.llmroute.cache, same.llmroute.cache] == [
        "miss",
        "miss",
        "hit",
    ]


async def test_buckets_keep_several_answers_and_pick_among_them() -> None:
    script = [{"text": "one"}, {"text": "two"}, {"text": "three"}]
    async with build({}, provider={"script": script, "repeat_script": True}) as router:
        first = [(await ask(router, llmroute={"cache": {"buckets": 3}})) for _ in range(3)]
        assert [r.llmroute.cache for r in first] == ["miss"] * 3
        later = [(await ask(router, llmroute={"cache": {"buckets": 3}})) for _ in range(30)]
        assert sent(router) == 3
    assert {r.llmroute.cache for r in later} == {"hit"}
    assert {r.choices[0].message.content for r in later} == {"one", "two", "three"}


async def test_only_deterministic_requests_when_asked() -> None:
    async with build({"only_deterministic": True}) as router:
        assert (await ask(router)).llmroute.cache == "bypass"
        await ask(router, temperature=0)
        assert (await ask(router, temperature=0)).llmroute.cache == "hit"
        await ask(router, seed=3, temperature=1)
        assert (await ask(router, seed=3, temperature=1)).llmroute.cache == "hit"


async def test_routes_opt_out_and_in() -> None:
    config = {
        "providers": {"a": {"type": "mock"}},
        "routes": {"cached": {"targets": ["a/m"], "cache": {"ttl": "1m"}},
                   "plain": {"targets": ["a/m"]}},
    }  # fmt: skip
    async with AsyncRouter(config, env={}) as router:  # no top-level cache: only "cached"
        for _ in range(2):
            hit = await router.chat.completions.create(model="cached", messages=HI)
            plain = await router.chat.completions.create(model="plain", messages=HI)
        assert (hit.llmroute.cache, plain.llmroute.cache) == ("hit", None)
    config["routes"]["cached"]["cache"] = {"enabled": False}  # type: ignore[index]
    async with AsyncRouter({**config, "cache": {}}, env={}) as router:
        for _ in range(2):
            off = await router.chat.completions.create(model="cached", messages=HI)
            on = await router.chat.completions.create(model="plain", messages=HI)
        assert (off.llmroute.cache, on.llmroute.cache) == (None, "hit")


async def test_embeddings_are_cached_unless_told_not_to() -> None:
    for enabled, expected in ((True, "hit"), (False, None)):
        config = {"cache": {"embeddings": enabled}, "routes": {"e": {"targets": ["mock/emb"]}}}
        async with AsyncRouter(config, env={}) as router:
            first = await router.embeddings.create(model="e", input=["a", "b"])
            again = await router.embeddings.create(model="e", input=["a", "b"])
        assert again.llmroute.cache == expected
        assert again.model_dump() == first.model_dump()


async def test_size_bounds() -> None:
    big = "x" * 5000
    async with build({"max_entry_size": "4kb"}, provider={"text": big}) as router:
        await ask(router)
        assert (await ask(router)).llmroute.cache == "miss"
    async with build({"max_size": "3kb"}) as router:
        for i in range(12):  # each entry is about 600 bytes: a handful fit
            await ask(router, messages=[{"role": "user", "content": f"question {i}"}])
        assert router.cache is not None
        assert 2 <= (router.cache.entries or 0) <= 5
        last = await ask(router, messages=[{"role": "user", "content": "question 11"}])
        first = await ask(router, messages=[{"role": "user", "content": "question 0"}])
    assert (last.llmroute.cache, first.llmroute.cache) == ("hit", "miss")
    async with build({"max_size": "16kb"}) as router:  # long prompts: keys count too
        for i in range(10):
            await ask(router, messages=[{"role": "user", "content": f"{i} " + "y" * 6000}])
        assert router.cache is not None
        assert 1 <= (router.cache.entries or 0) <= 2


# ---------------------------------------------------------------- concurrency


async def test_two_hundred_at_once() -> None:
    async with build({}, provider={"echo": True}) as router:

        async def one(i: int, streamed: bool) -> tuple[str | None, str]:
            messages = [{"role": "user", "content": f"prompt {i}"}]
            if streamed:
                stream, chunks = await ask_stream(router, messages=messages)
                return stream.llmroute.cache, text_of(chunks)
            reply = await ask(router, messages=messages)
            return reply.llmroute.cache, reply.choices[0].message.content or ""

        first = await asyncio.gather(*(one(i, i % 2 == 0) for i in range(200)))
        second = await asyncio.gather(*(one(i, i % 3 == 0) for i in range(200)))
        assert sent(router) == 200
    assert {status for status, _ in first} == {"miss"}
    assert {status for status, _ in second} == {"hit"}
    assert [text for _, text in second] == [f"prompt {i}" for i in range(200)]


# ---------------------------------------------------------------- conversions and config


def test_completion_and_chunks_round_trip() -> None:
    completion = llmroute.ChatCompletion.model_validate({
        "id": "c", "created": 5, "model": "m", "system_fingerprint": "fp",
        "choices": [
            {"index": 0, "finish_reason": "tool_calls",
             "message": {"role": "assistant", "content": None, "tool_calls": [
                 {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
                 {"id": "t2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}},
            {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": "", "refusal": "no"}},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    })  # fmt: skip
    chunks = completion_to_chunks(completion)
    assert chunks[-1].choices == [] and chunks[-1].usage == completion.usage
    assert all(c.system_fingerprint == "fp" for c in chunks)
    assert chunks_to_completion(chunks).model_dump() == completion.model_dump()


def test_fragments_accumulate_as_the_sdk_does() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> llmroute.ChatCompletionChunk:
        return llmroute.ChatCompletionChunk.model_validate(
            {"id": "c", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        )  # fmt: skip

    head = {
        "index": 0,
        "id": "t",
        "type": "function",
        "function": {"name": "look", "arguments": ""},
    }
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [head]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "up", "arguments": '{"q"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "x"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    message = chunks_to_completion(chunks).choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    assert (message.tool_calls[0].function.name, message.tool_calls[0].function.arguments) == (
        "lookup", '{"q": "x"}',
    )  # fmt: skip


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"backend": "memcached://x"}, "cache.backend"),
        ({"ttl": "soon"}, "cache.ttl"),
        ({"max_size": "lots"}, "cache.max_size"),
        ({"buckets": 0}, "cache.buckets"),
        ({"colour": "red"}, "cache.colour"),
    ],
)
def test_bad_cache_config_names_its_path(section: dict[str, Any], where: str) -> None:
    with pytest.raises(llmroute.ConfigError) as caught:
        AsyncRouter({"cache": section}, env={})
    assert caught.value.path == where


async def test_bad_cache_controls_are_refused() -> None:
    async with build({}) as router:
        with pytest.raises(llmroute.RequestError, match="buckets"):
            await ask(router, llmroute={"cache": {"buckets": 0}})
    with pytest.raises(llmroute.ConfigError):
        AsyncRouter({"routes": {"c": {"targets": ["a/m"], "cache": {"ttl": 0}}}}, env={})

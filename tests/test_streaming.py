"""Streamed chat completions: chunks, usage, early close, failover before first content, cuts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import llmroute
from _helpers import HI
from _wire import Wire
from llmroute import AsyncRouter

pytestmark = pytest.mark.anyio


def routed(*targets: str, **providers: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": {name: {"type": "mock", **opts} for name, opts in providers.items()},
        "routes": {"chat": {"targets": list(targets), "retry": {"attempts": 1}}},
    }


async def collect(
    stream: llmroute.AsyncChatStream,
) -> tuple[str, list[llmroute.ChatCompletionChunk]]:
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


async def test_stream_yields_chunks_and_final_metadata() -> None:
    async with AsyncRouter(routed("a/m", a={"text": "one two three"})) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        text, chunks = await collect(stream)
    assert text == "one two three"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    # the caller did not ask for usage: the usage-only chunk llmroute requested is not shown
    assert all(c.choices for c in chunks)
    info = stream.llmroute
    assert info.stream and info.provider == "a"
    assert info.usage is not None and not info.usage.estimated
    assert info.ttft_s is not None and info.latency_s is not None
    assert info.ttft_s <= info.latency_s
    assert stream.completed


async def test_usage_chunk_is_shown_when_asked_for() -> None:
    async with AsyncRouter(routed("a/m", a={"text": "x y"})) as router:
        stream = await router.chat.completions.create(
            model="chat", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        _, chunks = await collect(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == stream.llmroute.usage.output  # type: ignore[union-attr]


async def test_early_close_releases_and_marks_the_attempt() -> None:
    words = " ".join(f"w{i}" for i in range(50))
    async with AsyncRouter(routed("a/m", a={"text": words})) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content == "w2 ":
                    break
        assert not stream.completed
        assert stream.llmroute.attempts[-1].outcome == "cancelled"
        assert stream.text == "w0 w1 w2 "
        # the closed stream ends; iterating again yields nothing
        assert [c async for c in stream] == []
        await stream.aclose()  # idempotent


async def test_cut_before_first_content_fails_over() -> None:
    cfg = routed("a/m", "b/m", a={"script": [{"cut_after": 0}]}, b={"text": "from b"})
    async with AsyncRouter(cfg) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        text, _ = await collect(stream)
    assert text == "from b"
    assert [(a.target, a.outcome) for a in stream.llmroute.attempts] == [
        ("a/m", "error"),
        ("b/m", "ok"),
    ]


async def test_http_error_before_stream_fails_over() -> None:
    cfg = routed("a/m", "b/m", a={"script": [429]}, b={"text": "ok"})
    async with AsyncRouter(cfg) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        text, _ = await collect(stream)
    assert text == "ok"
    assert stream.llmroute.attempts[0].status == 429


async def test_cut_after_content_raises_stream_interrupted_with_partial() -> None:
    cfg = routed(
        "a/m", "b/m", a={"text": "alpha beta gamma delta", "script": [{"cut_after": 2}]}, b={}
    )
    async with AsyncRouter(cfg) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        with pytest.raises(llmroute.StreamInterrupted) as caught:
            await collect(stream)
    assert caught.value.partial == "alpha beta "
    assert isinstance(caught.value.__cause__, Exception)
    assert stream.llmroute.attempts[-1].outcome == "error"
    assert stream.llmroute.usage is not None and stream.llmroute.usage.estimated
    assert not stream.completed


async def test_stream_with_tool_calls_reassembles() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    cfg = routed("a/m", a={"tool_calls": [{"name": "lookup", "arguments": {"q": "weather"}}]})
    async with AsyncRouter(cfg) as router:
        stream = await router.chat.completions.create(
            model="chat", messages=HI, stream=True, tools=tools
        )
        _, chunks = await collect(stream)
    arguments = "".join(
        call.function.arguments or ""
        for c in chunks
        for call in (c.choices[0].delta.tool_calls or [])
        if call.function
    )
    assert arguments == '{"q": "weather"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_provider_without_stream_usage_gets_an_estimate() -> None:
    """A service that ignores include_usage: usage is estimated and marked so."""
    cfg = routed("a/m", a={"text": "twelve chars", "stream_usage": False})
    async with AsyncRouter(cfg) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        await collect(stream)
    usage = stream.llmroute.usage
    assert usage is not None and usage.estimated
    assert usage.output == 3  # 12 characters, about 4 per token


async def test_usage_chunk_is_supplied_when_the_provider_sends_none() -> None:
    """Asked for include_usage on a service that rejects it: llmroute adds the chunk."""
    cfg = routed("a/m", a={"stream_usage": False})
    a = Wire(text="abcd efgh")
    async with AsyncRouter(cfg, transports={"a": a.transport}) as router:
        stream = await router.chat.completions.create(
            model="chat", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        _, chunks = await collect(stream)
    (sent,) = a.requests
    assert "stream_options" not in sent
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 3  # "abcd efgh": 9 characters, estimated
    assert [c for c in chunks if not c.choices] == [last]


async def test_events_of_one_network_read_arrive_before_an_error_among_them() -> None:
    """Lines are decoded a network read at a time: content that arrived in the same read as a
    provider's error event is delivered first, then the error interrupts the stream."""
    from _upstream import one_read_router

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    body = (
        event({"role": "assistant", "content": "Hello"})
        + event({"content": " world"})
        + b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    )

    async with one_read_router(body, {"retry": {"attempts": 1}}) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        received: list[str | None] = []

        async def read_all() -> None:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content)

        with pytest.raises(llmroute.StreamInterrupted) as caught:
            await read_all()
    assert received == ["Hello", " world"]
    assert caught.value.partial == "Hello world"
    assert "overloaded" in str(caught.value)


async def test_a_stream_whose_end_arrives_in_one_read_is_complete_and_cached() -> None:
    """The last chunks, the usage and ``[DONE]`` usually come in one network read: the stream
    ends only after those chunks are delivered, so the stages see the whole answer (the
    cache stores it and the next request is a hit)."""
    from llmroute import HttpRequest, HttpResponse, Timeouts, Transport

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    usage = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                      "total_tokens": 5}}  # fmt: skip
    reads = [
        event({"role": "assistant", "content": "Hello"}),
        event({"content": " there"}) + event({}, "stop")
        + b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n",
    ]  # fmt: skip

    class TwoReads(HttpResponse):
        status, headers = 200, {"content-type": "text/event-stream"}

        async def read(self) -> bytes:
            return b"".join(reads)

        def aiter_lines(self) -> AsyncIterator[bytes]:
            raise AssertionError("streams are read in batches")

        async def aiter_bytes(self) -> AsyncIterator[bytes]:
            for part in reads:
                yield part

        async def aclose(self) -> None:
            return None

    class Upstream(Transport):
        sent = 0

        async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
            Upstream.sent += 1
            return TwoReads()

        async def aclose(self) -> None:
            return None

    config = {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://up.invalid/v1"}},
        "routes": {"chat": {"targets": ["a/m"]}},
        "logging": {"store": None},
        "cache": {"backend": "memory://"},
    }
    async with AsyncRouter(config, env={}, transports={"a": Upstream()}) as router:
        first = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        text, _ = await collect(first)
        second = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        again, _ = await collect(second)
        stats = router.cache_stats()
    assert text == again == "Hello there"
    assert first.completed and first.llmroute.cache == "miss"
    assert second.llmroute.cache == "hit"
    assert first.llmroute.usage is not None and first.llmroute.usage.output == 2
    assert (stats.stores, stats.not_stored, Upstream.sent) == (1, 0, 1)

"""Oracle tests of whole streams read through the OpenAI wire fast path
(`AsyncChatStream.wire_events`, a stream the gateway opens for the wire).

A whole stream read as events must give the bytes, text, usage and ending that reading
it chunk by chunk gives; a stream opened for the wire (`stream_from_body`) must open,
fail to open and read, as events or typed, as one opened typed. The chunk-level oracles
are in ``test_wire_chunks.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmroute import (
    AsyncRouter,
    HttpRequest,
    HttpResponse,
    LLMRouteError,
    StreamInterrupted,
    Timeouts,
    Transport,
)
from llmroute._request import RequestOptions
from llmroute._types import ChatCompletionChunk, validator
from llmroute._wire import chunk_event, wire_chunk

_typed = validator(ChatCompletionChunk)


class _Pieces(HttpResponse):
    status, headers = 200, {"content-type": "text/event-stream"}

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def read(self) -> bytes:
        return b"".join(self._pieces)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece

    async def aclose(self) -> None:
        return None


class _Scripted(Transport):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        return _Pieces(self.pieces)

    async def aclose(self) -> None:
        return None


def _router(pieces: list[bytes]) -> AsyncRouter:
    config = {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://up.invalid/v1"}},
        "routes": {"chat": {"targets": ["a/m"]}},
        "logging": {"store": None},
    }
    return AsyncRouter(config, env={}, transports={"a": _Scripted(pieces)})


def _event(value: Any) -> bytes:
    return b"data: " + (value if isinstance(value, bytes) else json.dumps(value).encode()) + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **more}  # fmt: skip


_USAGE = {"id": "c1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
          "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}  # fmt: skip
_TOOL = _chunk({"tool_calls": [{"index": 0, "id": "t", "type": "function",
                                "function": {"name": "f", "arguments": "{}"}}]})  # fmt: skip
_EVENTS = [
    _event(_chunk({"role": "assistant", "content": ""})),
    _event(_chunk({"content": "Hel"})),
    b": a comment\n\n",
    _event(_chunk({"content": 'lo\u00e9 \\" '}, system_fingerprint="fp")),
    _event(_chunk({"content": "x"}, created="1700000000")),  # lax: the typed path, re-encoded
    _event(_TOOL),
    _event(_chunk({"content": " there"})),
    _event(_chunk({}, "stop")),
    _event(_USAGE),
    b"data: [DONE]\n\n",
]


async def _typed_read(pieces: list[bytes], usage: bool) -> tuple[bytes, Any]:
    async with _router(pieces) as router:
        extra = {"stream_options": {"include_usage": True}} if usage else {}
        stream = await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True, **extra
        )
        out, failure = [], None
        try:
            async for chunk in stream:
                out.append(chunk_event(chunk))
        except StreamInterrupted as exc:
            failure = (str(exc), exc.partial)
        return b"".join(out), (stream.text, stream.completed, stream.llmroute.usage, failure)


async def _wire_read(pieces: list[bytes], usage: bool) -> tuple[bytes, Any]:
    async with _router(pieces) as router:
        extra = {"stream_options": {"include_usage": True}} if usage else {}
        stream = await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True, **extra
        )
        events = stream.wire_events()
        assert events is not None
        out, failure = [], None
        try:
            async for data in events:
                out.append(data)
        except StreamInterrupted as exc:
            failure = (str(exc), exc.partial)
        return b"".join(out), (stream.text, stream.completed, stream.llmroute.usage, failure)


def _cut(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(range(1, len(_EVENTS) - 1)), max_size=12),
    st.lists(st.integers(0, 3000), max_size=6),
    st.booleans(),
    st.sampled_from(["done", "no-done", "cut", "error", "garbage"]),
)
def test_a_stream_read_as_events_is_the_stream_read_chunk_by_chunk(
    middle: list[int], cuts: list[int], usage: bool, ending: str
) -> None:
    events = [_EVENTS[0], _EVENTS[1], *(_EVENTS[i] for i in middle)]
    if ending in ("done", "no-done"):
        events += [_EVENTS[-3], _EVENTS[-2]] + ([_EVENTS[-1]] if ending == "done" else [])
    elif ending == "error":
        events.append(_event({"error": {"message": "overloaded", "type": "server_error"}}))
    elif ending == "garbage":
        events.append(_event(b'{"id": 1, "choices": "no"}'))
    body = b"".join(events)
    typed = asyncio.run(_typed_read(_cut(body, cuts), usage))
    wire = asyncio.run(_wire_read(_cut(body, cuts), usage))
    assert wire == typed


#: What may come before a stream's first content, and its first content.
_OPENINGS = [
    _event(_chunk({"role": "assistant", "content": ""})),
    _event(_chunk({"role": "assistant"})),
    b": a comment\n\n",
    _event(_chunk({"content": "Hel"})),
    _event(_chunk({"refusal": "I cannot"})),
    _event(_chunk({"content": None})),
    _event(
        {
            **_chunk({}),
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": None},
                {"index": 1, "delta": {"content": "b"}, "finish_reason": None},
            ],
        }
    ),
    _event(_chunk({}, "stop")),
    _event(_chunk({"content": "x"}, created="1700000000")),  # lax: the typed path
    _event(_TOOL),
    _event(_USAGE),
    _event({"error": {"message": "overloaded", "type": "server_error"}}),
    b"data: [DONE]\n\n",
]


async def _read_from_body(pieces: list[bytes], usage: bool, typed: bool) -> tuple[bytes, Any]:
    """The gateway's way in (`stream_from_body`), its stream read typed or as events."""
    async with _router(pieces) as router:
        body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        if usage:
            body["stream_options"] = {"include_usage": True}
        try:
            stream = await router.chat.completions.stream_from_body(body, RequestOptions())
        except LLMRouteError as exc:
            return b"", ("unopened", type(exc), str(exc))
        out, failure = [], None
        try:
            if typed:
                async for chunk in stream:
                    out.append(chunk_event(chunk))
            else:
                events = stream.wire_events()
                assert events is not None
                async for data in events:
                    out.append(data)
        except StreamInterrupted as exc:
            failure = (str(exc), exc.partial)
        return b"".join(out), (stream.text, stream.completed, stream.llmroute.usage, failure)


async def _read_created(pieces: list[bytes], usage: bool) -> tuple[bytes, Any]:
    try:
        return await _typed_read(pieces, usage)
    except LLMRouteError as exc:
        return b"", ("unopened", type(exc), str(exc))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_OPENINGS), min_size=1, max_size=5),
    st.lists(st.integers(0, 2000), max_size=4),
    st.booleans(),
)
def test_a_stream_opened_for_the_wire_reads_as_one_opened_typed(
    opening: list[bytes], cuts: list[int], usage: bool
) -> None:
    """A stream the gateway opens to relay (`stream_from_body`: its opening's plain chunks
    kept as their JSON) opens, fails to open, and reads, as events or typed, as a stream
    `create()` opened typed does."""
    rest = [_EVENTS[1], _EVENTS[-3], _EVENTS[-2], _EVENTS[-1]]
    pieces = _cut(b"".join([*opening, *rest]), cuts)
    typed = asyncio.run(_read_created(pieces, usage))
    assert asyncio.run(_read_from_body(pieces, usage, typed=False)) == typed
    assert asyncio.run(_read_from_body(pieces, usage, typed=True)) == typed


@pytest.mark.anyio
async def test_a_stream_whose_stages_keep_its_chunks_has_no_wire_events() -> None:
    config = {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://up.invalid/v1"}},
        "routes": {"chat": {"targets": ["a/m"]}},
        "cache": {"backend": "memory://"},
        "logging": {"store": None},
    }
    body = b"".join([_EVENTS[0], _EVENTS[1], _EVENTS[-3], _EVENTS[-1]])
    async with AsyncRouter(config, env={}, transports={"a": _Scripted([body])}) as router:
        stream = await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert stream.wire_events() is None
        assert [c.choices[0].delta.content async for c in stream if c.choices] == ["", "Hel", None]


@pytest.mark.parametrize("text", ["a", 'é\\n"', ""])
def test_a_wire_chunks_event_is_its_data_line(text: str) -> None:
    data = json.dumps(_chunk({"content": text})).encode()
    chunk = wire_chunk(data)
    assert chunk is not None and chunk_event(chunk) == b"data: " + data + b"\n\n"


def test_a_service_tier_of_another_type_takes_the_typed_path() -> None:
    data = json.dumps(_chunk({"content": "x"}, service_tier=5)).encode()
    assert wire_chunk(data) is None
    with pytest.raises(ValidationError):
        _typed.validate_json(data)


class _FailingCleanup(_Pieces):
    """A custom engine's body whose generator fails as it is closed (its body never ends)."""

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            for piece in self._pieces:
                yield piece
            yield b": keep-alive\n\n"
        finally:
            raise OSError("cleanup failed")


@pytest.mark.anyio
async def test_a_body_whose_cleanup_fails_still_ends_the_stream_and_accounts_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = b"".join([_EVENTS[0], _EVENTS[1], _EVENTS[-3], _EVENTS[-2], _EVENTS[-1]])

    class Failing(_Scripted):
        async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
            return _FailingCleanup(self.pieces)

    config = {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://up.invalid/v1"}},
        "routes": {"chat": {"targets": ["a/m"]}},
        "logging": {"store": None},
    }
    async with AsyncRouter(config, env={}, transports={"a": Failing([body])}) as router:
        stream = await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert [c.choices[0].delta.content async for c in stream if c.choices] == ["", "Hel", None]
        assert stream.completed and stream.llmroute.usage is not None
    assert "closing a finished stream's body failed" in caplog.text

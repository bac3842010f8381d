"""The relay's fast paths: the `start` trampoline, and ready chunks batched into one write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from _upstream import chunk_body
from llmroute import LLMRouteError
from llmroute._types import ChatCompletionChunk
from llmroute.server.relay import MAX_BATCH, Pending, has_content, relay, start

pytestmark = pytest.mark.anyio

#: In a script: the stream has to wait (for the network) before its next chunk.
WAIT = "wait"


def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(chunk_body(delta, finish))


ROLE = chunk({"role": "assistant"})


def text(value: str) -> ChatCompletionChunk:
    return chunk({"content": value})


async def stream(script: list[Any]) -> AsyncIterator[ChatCompletionChunk]:
    """The chunks of `script`; at `WAIT`, a wait on the event loop; an exception is raised."""
    for item in script:
        if item == WAIT:
            await asyncio.sleep(0)
        elif isinstance(item, Exception):
            raise item
        else:
            yield item


def encode(item: ChatCompletionChunk) -> bytes:
    """A chunk's text, ``.`` for one without content, then ``|``."""
    choice = item.choices[0]
    return (choice.delta.content or ("!" if choice.finish_reason else ".")).encode() + b"|"


async def relayed(script: list[Any], encoder: Any = encode) -> tuple[list[bytes], Any]:
    writes: list[bytes] = []

    async def write(data: bytes) -> None:
        writes.append(data)

    failure = await relay(stream(script), encoder, write)
    return writes, failure


# ---------------------------------------------------------------- start and Pending


async def test_start_returns_a_ready_result_or_a_pending_one() -> None:
    async def ready() -> int:
        return 1

    assert start(ready()) == 1
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def waits() -> int:
        return await future + 1

    pending = start(waits())
    assert isinstance(pending, Pending) and pending.waiting is future
    asyncio.get_running_loop().call_later(0.01, future.set_result, 41)
    assert await pending == 42


async def test_a_pending_read_is_cancelled_with_its_task() -> None:
    cleaned = asyncio.Event()

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.set()

    async def runner() -> None:
        pending = start(waits())
        assert isinstance(pending, Pending)
        await pending

    task = asyncio.create_task(runner())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()
    pending = start(waits())
    assert isinstance(pending, Pending)
    cleaned.clear()
    pending.close()
    assert cleaned.is_set()


# ---------------------------------------------------------------- batching


async def test_the_first_content_goes_out_at_once_then_what_is_ready_goes_together() -> None:
    script = [ROLE, text("a"), text("b"), text("c"), WAIT, text("d"), chunk({}, "stop")]
    writes, failure = await relayed(script)
    assert writes == [b".|a|", b"b|c|", b"d|!|"]
    assert failure is None


async def test_a_chunk_that_has_to_wait_flushes_what_is_ready_first() -> None:
    writes, _ = await relayed([WAIT, ROLE, WAIT, text("a"), WAIT, text("b"), WAIT])
    assert writes == [b".|", b"a|", b"b|"]


async def test_a_long_burst_is_cut_into_batches() -> None:
    burst = [text(str(i)) for i in range(MAX_BATCH + 8)]
    writes, _ = await relayed(burst)
    assert [len(w.split(b"|")) - 1 for w in writes] == [1, MAX_BATCH, 7]
    assert b"".join(writes) == b"".join(encode(c) for c in burst)


async def test_an_error_ends_the_relay_after_what_came_before_it() -> None:
    failure = LLMRouteError("cut")
    writes, returned = await relayed([ROLE, text("a"), text("b"), failure])
    assert writes == [b".|a|", b"b|"]
    assert returned is failure


async def test_chunks_without_events_write_nothing() -> None:
    def content_only(item: ChatCompletionChunk) -> bytes:
        return (item.choices[0].delta.content or "").encode()

    writes, _ = await relayed([ROLE, WAIT, chunk({}, "stop"), WAIT, text("a")], content_only)
    assert writes == [b"a"]


def test_content_is_text_a_tool_call_a_refusal_or_a_finish() -> None:
    call = {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    assert not has_content(ROLE)
    assert not has_content(text(""))
    assert has_content(text("a"))
    assert has_content(chunk({"tool_calls": [call]}))
    assert has_content(chunk({"refusal": "no"}))
    assert has_content(chunk({}, "length"))

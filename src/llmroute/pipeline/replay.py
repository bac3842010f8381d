"""A stage's answer to a streamed request (a cached answer) delivered as a stream.

`replay` hands the chunks to the same `AsyncChatStream` a provider's stream
uses, so a replayed stream behaves as a live one (usage chunk, `kept`
chunks, `completed`, closing): it stands in a response with nothing left to
read and a decoder that has already finished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from .._transports import HttpResponse
from .._types import ChatCompletionChunk, CompletionUsage, RouteInfo
from ..providers import StreamDecoder
from .exchange import OpenedStream
from .session import StreamSession
from .stream import AsyncChatStream

__all__ = ["ReplayedResponse", "replay"]


class ReplayedResponse(HttpResponse):
    """The stand-in response of a replayed stream: nothing left to read."""

    status = 200
    headers: dict[str, str] = {}  # noqa: RUF012 - never mutated

    async def read(self) -> bytes:
        return b""

    async def aiter_lines(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:
        return None


class _ReplayDecoder(StreamDecoder):
    """A finished decoder holding the replayed stream's usage."""

    def __init__(self, usage: CompletionUsage | None) -> None:
        self.done = True
        self.usage = usage

    def feed(self, line: bytes) -> list[ChatCompletionChunk]:
        return []


def replay(
    chunks: list[ChatCompletionChunk],
    info: RouteInfo,
    *,
    hide_usage_chunk: bool,
    session: StreamSession,
    keep: bool = False,
) -> AsyncChatStream:
    """A stream that delivers `chunks` (a cached answer), as a live stream would."""
    usage = next((c.usage for c in reversed(chunks) if c.usage is not None), None)
    response = ReplayedResponse()
    opened = OpenedStream(
        response, response.aiter_line_batches(), _ReplayDecoder(usage), deque(chunks)
    )
    return AsyncChatStream(
        opened, info, hide_usage_chunk=hide_usage_chunk, session=session, keep=keep
    )

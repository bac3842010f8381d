"""Framing of response bodies: bytes into lines, lines into server-sent events.

Both are on the per-chunk path of every stream, so they do the minimum: one
split per network read, no per-line awaits (`line_batches`), and an event
decoder fed one line at a time with no regular expressions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["SseDecoder", "SseEvent", "line_batches", "split_lines"]


async def line_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Turn a byte stream into batches of lines (without ``\\n`` / ``\\r\\n``): the lines
    each chunk completes."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\n" not in chunk:
            continue
        *lines, buffer = buffer.split(b"\n")
        yield [line[:-1] if line.endswith(b"\r") else line for line in lines]
    if buffer:
        yield [buffer[:-1] if buffer.endswith(b"\r") else buffer]


async def split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Turn a byte stream into lines (without ``\\n`` / ``\\r\\n``), one at a time."""
    async for batch in line_batches(chunks):
        for line in batch:
            yield line


@dataclass(slots=True)
class SseEvent:
    """One dispatched event: its type (``message`` when unnamed) and data."""

    event: str
    data: bytes


class SseDecoder:
    """A server-sent events decoder that collects fields line by line and returns an
    `SseEvent` at each blank line.

    Follows the WHATWG event-stream rules that LLM providers rely on: ``event:``
    and ``data:`` fields, several ``data:`` lines joined by newlines, comments
    (lines starting with ``:``) ignored, an event dispatched at a blank line.
    """

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, line: bytes) -> SseEvent | None:
        """Take one line (without its line ending); return an event when one completes."""
        if not line:
            return self._dispatch()
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
            return None
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        if name == b"event":
            self._event = (value[1:] if value.startswith(b" ") else value).decode()
        return None

    def feed_data(self, line: bytes) -> bytes | None:
        """`feed` for a reader of the events' data alone (the event name is not kept): the
        data of the event `line` completes, if it completes one."""
        if line:
            if line.startswith(b"data: "):
                self._data.append(line[6:])
            else:
                self.feed(line)  # another field, a comment, or ``data:`` without its space
            return None
        data = self._data
        self._event = ""
        if not data:
            return None
        self._data = []
        return data[0] if len(data) == 1 else b"\n".join(data)

    def flush(self) -> SseEvent | None:
        """The event left when the stream ends without a final blank line, if any."""
        return self._dispatch()

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self._event = ""
        if not data:
            return None
        self._data = []
        return SseEvent(event or "message", data[0] if len(data) == 1 else b"\n".join(data))

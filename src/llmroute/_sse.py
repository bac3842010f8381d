"""A server-sent events decoder, fed one line at a time.

Follows the WHATWG event-stream rules that LLM providers rely on: ``event:``
and ``data:`` fields, several ``data:`` lines joined by newlines, comments
(lines starting with ``:``) ignored, an event dispatched at a blank line.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseDecoder", "SseEvent"]


@dataclass(slots=True)
class SseEvent:
    """One dispatched event: its type (``message`` when unnamed) and data."""

    event: str
    data: bytes


class SseDecoder:
    """Collects fields line by line and returns an `SseEvent` at each blank line."""

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

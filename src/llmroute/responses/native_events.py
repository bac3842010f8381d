"""`NativeEventDecoder`: a native upstream's Responses stream, its SSE lines read as events.

Its events are kept as sent; only the id of the response the lifecycle events carry
becomes llmroute's. The other two sources of events are in `llmroute.responses.events`.
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import from_json

from .._errors import MalformedResponse
from .._types import validator
from .types import TERMINAL_EVENTS, Response, ResponseStreamEvent, event_class

__all__ = ["NativeEventDecoder"]

_setattr = object.__setattr__

#: The events that carry the whole response (its id is rewritten).
_WITH_RESPONSE = frozenset({
    "response.created", "response.in_progress", "response.queued", "response.completed",
    "response.failed", "response.incomplete",
})  # fmt: skip


class NativeEventDecoder:
    """A native upstream's Responses stream (SSE lines, one at a time) as events.

    Events are kept as the upstream sent them, sequence numbers included, except the id
    of the response the lifecycle events carry, which becomes `response_id` (llmroute's,
    under which the conversation is stored). An ``error`` event or ``response.failed``
    raises nothing: it is an event like the others. After a terminal event `done` is
    true and `response` is the final `Response`.
    """

    __slots__ = ("_data", "_name", "_response_id", "done", "response")

    def __init__(self, *, response_id: str) -> None:
        self._response_id = response_id
        self._data: list[bytes] = []
        self._name = ""
        self.done = False
        self.response: Response | None = None

    def feed(self, line: bytes) -> list[ResponseStreamEvent]:
        """Take one line (without its line ending); the event it completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            self._name = line[6:].strip().decode()
        return []  # comments, id:, retry:

    def finish(self) -> list[ResponseStreamEvent]:
        """The event left when the stream ends without a final blank line, if any."""
        return self._dispatch()

    def _dispatch(self) -> list[ResponseStreamEvent]:
        data, name = self._data, self._name
        self._name = ""
        if not data:
            return []
        self._data = []
        raw = data[0] if len(data) == 1 else b"\n".join(data)
        return [self._decode(raw, name)]

    def _decode(self, raw: bytes, name: str) -> ResponseStreamEvent:
        cls = event_class(name) if name else None
        try:
            if cls is None or cls is ResponseStreamEvent:  # no event: line, or an unknown one
                parsed = from_json(raw)
                cls = event_class(parsed.get("type", "") if isinstance(parsed, dict) else "")
                event: ResponseStreamEvent = validator(cls).validate_python(parsed)
            else:
                event = validator(cls).validate_json(raw)
        except ValueError as exc:  # pydantic's ValidationError is one
            detail = exc.errors(include_url=False)[0]["msg"] if isinstance(
                exc, ValidationError) else str(exc)  # fmt: skip
            raise MalformedResponse(f"unexpected Responses stream event: {detail}",
                                    status=200, body=raw) from exc  # fmt: skip
        kind = event.type
        if kind in _WITH_RESPONSE:
            response: Response = event.response  # type: ignore[attr-defined]
            _setattr(response, "id", self._response_id)
            if kind in TERMINAL_EVENTS:
                self.done = True
                self.response = response
        return event

"""Answers as every endpoint sends them: a JSON body, or a stream of server-sent events.

A routed answer (one the router produced) carries the ``x-llmroute-*``
headers of its `RouteInfo` (and the provider's headers the gateway forwards:
``server.forward_provider_headers``) and is counted in the metrics, once it
has been sent; a stream is counted when it ends, however it ends (499: the client
went away). What differs between endpoints is only the format of their
events (`StreamEvents`): OpenAI's ``data:`` lines, Anthropic's event
sequence.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, TypeVar

from .headers import forwarded_headers, route_headers
from .relay import relay

if TYPE_CHECKING:
    from .._errors import LLMRouteError
    from .._types import RouteInfo
    from .request import GatewayRequest
    from .scrub import ErrorText
    from .types import Headers

__all__ = ["JSON", "SSE_HEADERS", "StreamEvents", "answer", "send_json", "send_stream"]

logger = logging.getLogger("llmroute.server")

#: The ``content-type`` of JSON answers.
JSON = b"application/json"
#: The headers of every event stream (before the request's id and route headers).
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


class StreamEvents(Protocol[T_contra]):
    """An endpoint's stream format: the events of each chunk, and of the stream's end."""

    def chunk(self, chunk: T_contra) -> bytes:
        """The events of one chunk (possibly none)."""
        ...

    def content(self, chunk: T_contra) -> bool:
        """Whether a chunk carries content (the first one is written at once)."""
        ...

    def end(self) -> bytes:
        """The last events of a stream that ended well."""
        ...

    def error(self, failure: LLMRouteError, request_id: str, text: ErrorText) -> bytes:
        """The last event of a stream that failed after it started (`text` filters what came
        from upstream)."""
        ...


async def send_json(
    request: GatewayRequest, body: bytes, *, status: int = 200, headers: Headers | None = None
) -> None:
    """Send `body` as a whole JSON response."""
    await request.respond(status, body, headers or [], JSON)


async def answer(request: GatewayRequest, endpoint: str, body: bytes, info: RouteInfo) -> None:
    """Send the router's answer as JSON with its route headers, and count it."""
    request.request_id = info.request_id
    headers = route_headers(info, final=True)
    headers += forwarded_headers(info, request.gateway.forwarded)
    await request.respond(200, body, headers, JSON)
    metrics = request.gateway.metrics
    if metrics is not None:
        metrics.answered(endpoint, info, key=request.key)


class RelayedStream(Protocol[T_co]):
    """What `send_stream` relays: an async iterator of chunks (or events) with its
    `RouteInfo` and `aclose()` (`AsyncChatStream`, a Responses event stream)."""

    def __aiter__(self) -> AsyncIterator[T_co]:
        """The stream itself."""
        ...

    async def __anext__(self) -> T_co:
        """The next chunk or event."""
        ...

    @property
    def llmroute(self) -> RouteInfo:
        """The request's routing metadata."""
        ...

    async def aclose(self) -> None:
        """Stop reading and release the connection."""
        ...


async def send_stream(
    request: GatewayRequest, endpoint: str, stream: RelayedStream[T], events: StreamEvents[T]
) -> None:
    """Send `stream` as server-sent events in the format of `events`, and count it; a failure
    after the start ends it with `events.error` instead of `events.end`."""
    info = stream.llmroute
    send = request.send
    metrics = request.gateway.metrics

    async def write(data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    try:
        request.started = True
        request.request_id = info.request_id
        headers = [*SSE_HEADERS, *request.id_headers()]
        headers += route_headers(info, final=False)
        headers += forwarded_headers(info, request.gateway.forwarded)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        failure = await relay(stream, events.chunk, write, events.content)
    finally:
        await stream.aclose()
        if request.gone and metrics is not None:
            metrics.answered(endpoint, info, status=499, key=request.key)
    request.finished = True
    if failure is not None:
        logger.warning("stream %s failed after its first chunk: %s", info.request_id, failure)
        last = events.error(failure, info.request_id, request.gateway.error_text)
    else:
        last = events.end()
    await send({"type": "http.response.body", "body": last})
    if metrics is not None:
        metrics.answered(endpoint, info, key=request.key)

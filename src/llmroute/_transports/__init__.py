"""The HTTP seam between the pipeline and the network, laid out as httpx's.

- `base`: the contract (`Transport`, `HttpRequest`, `HttpResponse`, `Timeouts`,
  the `TransportError` tree);
- `lines`: body framing (lines, server-sent events);
- `aiohttp`: the default engine; `httpx`: a user's httpx/httpx2 client;
- `handler`: `HandlerTransport`, a user function as the wire (for tests).
"""

from __future__ import annotations

from .aiohttp import AiohttpTransport
from .base import (
    ConnectFailed,
    ConnectionLost,
    HttpRequest,
    HttpResponse,
    TimedOut,
    Timeouts,
    Transport,
    TransportError,
)
from .handler import Handler, HandlerResponse, HandlerTransport
from .httpx import HttpxTransport, transport_from_client
from .lines import SseDecoder, SseEvent, close_iterator, line_batches, split_lines

__all__ = [
    "AiohttpTransport",
    "ConnectFailed",
    "ConnectionLost",
    "Handler",
    "HandlerResponse",
    "HandlerTransport",
    "HttpRequest",
    "HttpResponse",
    "HttpxTransport",
    "SseDecoder",
    "SseEvent",
    "TimedOut",
    "Timeouts",
    "Transport",
    "TransportError",
    "close_iterator",
    "line_batches",
    "split_lines",
    "transport_from_client",
]

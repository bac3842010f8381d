"""`HandlerTransport`: a provider's wire answered by your own function (httpx's
``MockTransport`` twin).

For tests that want to see exactly what llmroute sends and decide exactly what
comes back, without a socket::

    from llmroute import AsyncRouter, HandlerResponse, HandlerTransport

    seen = []

    def handler(request):
        seen.append(request)
        return HandlerResponse(200, json={"id": "c1", "object": "chat.completion", ...})

    router = AsyncRouter(config, transports={"openai": HandlerTransport(handler)})

The handler may be sync or async, may raise a `TransportError` subclass to
play a failed connection, and may return any `HttpResponse` (another
transport's, for instance).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from multidict import CIMultiDict
from pydantic_core import to_json

from .base import HttpRequest, HttpResponse, Timeouts, Transport

__all__ = ["Handler", "HandlerResponse", "HandlerTransport"]

#: What `HandlerTransport` calls: a request in, a response out (sync or async).
Handler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]


class HandlerResponse(HttpResponse):
    """A response made from a status, headers and a body: bytes, JSON, or an async
    iterator of byte chunks (a stream, delivered chunk by chunk as it is produced).

    Headers are case-insensitive. `json` sets the body and, unless given, the
    ``content-type``. An iterator that raises a `TransportError` plays a
    connection lost mid-body.
    """

    __slots__ = ("_closed", "_content", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] = b"",
        *,
        json: Any = None,
    ) -> None:
        self.status = status
        self.headers = CIMultiDict(headers or {})
        if json is not None:
            content = to_json(json)
            self.headers.setdefault("content-type", "application/json")
        self._content = content
        self._closed = False

    async def read(self) -> bytes:
        content = self._content
        if isinstance(content, bytes):
            return content
        return b"".join([chunk async for chunk in content])

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        content = self._content
        if isinstance(content, bytes):
            yield content
            return
        async for chunk in content:
            if self._closed:
                return
            yield chunk

    async def aclose(self) -> None:
        self._closed = True
        content = self._content
        # a generator suspended mid-read belongs to its reader; it ends with it
        closer = getattr(content, "aclose", None)
        if closer is not None and not getattr(content, "ag_running", False):
            await closer()


class HandlerTransport(Transport):
    """A transport that calls `handler` with each request and returns its response.

    It records nothing and adds nothing: the handler sees the request exactly as
    the provider's adapter built it (URL, headers, body bytes) and owns the
    answer. The attempt's timeouts are not passed on: deadlines are enforced
    around the call, as for any engine.
    """

    __slots__ = ("_handler",)

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        response = self._handler(request)
        if inspect.isawaitable(response):
            response = await response
        return response

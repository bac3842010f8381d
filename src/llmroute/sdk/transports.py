"""httpx2 transports that serve each request by the router's gateway application, in process.

`AsyncInProcessTransport` runs the application on the caller's event loop;
`InProcessTransport` (blocking) runs it on the blocking `Router`'s own loop
thread. Both hand the response back as soon as its head is sent and stream
its body as the application writes it; closing a response early tells the
application its client has gone. The httpx 0.28 twins are in
`llmroute.sdk.httpx_transports`.

Timeouts set on the client do not apply: no socket is opened, and the router's
deadlines (a route's ``deadline``, the ``x-llmroute-timeout`` header) bound a
request instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import httpx2

from ._exchange import AppFailed, Exchange
from .gateway import GatewayClosed, InProcessGateway

__all__ = [
    "AsyncInProcessTransport", "InProcessTransport", "PortalCall", "open_exchange", "request_parts",
]  # fmt: skip

T = TypeVar("T")


class PortalCall(Protocol):
    """Runs a coroutine function on an event loop in another thread and returns its result
    (as ``anyio.from_thread.BlockingPortal.call``)."""

    def __call__(self, func: Callable[..., Coroutine[Any, Any, T]], /, *args: Any) -> T: ...


class _URL(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def raw_path(self) -> bytes: ...
    @property
    def query(self) -> bytes: ...


def request_parts(
    method: str, url: _URL, raw_headers: list[tuple[bytes, bytes]]
) -> tuple[str, str, bytes, bytes, list[tuple[bytes, bytes]]]:
    """The method, path, raw path, query and lower-cased headers of an httpx or httpx2 request."""
    return (
        method,
        url.path,
        url.raw_path.partition(b"?")[0],
        url.query,
        [(name.lower(), value) for name, value in raw_headers],
    )


class AsyncInProcessTransport(httpx2.AsyncBaseTransport):
    """An ``httpx2.AsyncBaseTransport`` that serves requests by a router's gateway application
    in this process (no socket). Get a client with ``router.http_client()``.

    Errors: `httpx2.ConnectError` once the router is closed;
    `httpx2.RemoteProtocolError` if the application fails (a bug: it answers
    errors with their HTTP status).
    """

    def __init__(self, gateway: InProcessGateway) -> None:
        self.gateway = gateway

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        gateway = self.gateway
        scope = gateway.scope(*request_parts(request.method, request.url, request.headers.raw))
        try:
            body: bytes | None = request.content
            chunks = None
        except httpx2.RequestNotRead:
            body, chunks = None, _chunks(request.stream)
        try:
            exchange = await gateway.open(scope, body, chunks)
        except GatewayClosed as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        except AppFailed as exc:
            raise httpx2.RemoteProtocolError(str(exc), request=request) from exc
        if exchange.complete:
            return httpx2.Response(
                exchange.status, headers=exchange.headers, content=exchange.take()
            )
        return httpx2.Response(
            exchange.status, headers=exchange.headers, stream=_AsyncBody(exchange, request)
        )


async def _chunks(stream: object) -> AsyncIterator[bytes]:
    assert isinstance(stream, httpx2.AsyncByteStream)
    async for chunk in stream:
        yield chunk


class _AsyncBody(httpx2.AsyncByteStream):
    __slots__ = ("_exchange", "_request")

    def __init__(self, exchange: Exchange, request: httpx2.Request) -> None:
        self._exchange = exchange
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = self._exchange.read
        while True:
            try:
                data = await read()
            except AppFailed as exc:
                raise httpx2.RemoteProtocolError(str(exc), request=self._request) from exc
            if data is None:
                return
            yield data

    async def aclose(self) -> None:
        await self._exchange.aclose()


class InProcessTransport(httpx2.BaseTransport):
    """An ``httpx2.BaseTransport`` (blocking) that serves requests by a router's gateway
    application on the router's own event-loop thread. Get a client with the blocking
    ``Router.http_client()``.

    Args:
        gateway: the router's in-process gateway.
        call: runs a coroutine function on the router's loop thread and returns its result.
    """

    def __init__(self, gateway: InProcessGateway, call: PortalCall) -> None:
        self.gateway = gateway
        self._call = call

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        gateway = self.gateway
        if gateway.closed:
            raise httpx2.ConnectError("the router is closed", request=request)
        body = request.read()
        parts = request_parts(request.method, request.url, request.headers.raw)
        try:
            exchange, data = self._call(open_exchange, gateway, parts, body)
        except GatewayClosed as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        except AppFailed as exc:
            raise httpx2.RemoteProtocolError(str(exc), request=request) from exc
        if data is not None:
            return httpx2.Response(exchange.status, headers=exchange.headers, content=data)
        return httpx2.Response(
            exchange.status,
            headers=exchange.headers,
            stream=_SyncBody(exchange, self._call, request),
        )


async def open_exchange(
    gateway: InProcessGateway,
    parts: tuple[str, str, bytes, bytes, list[tuple[bytes, bytes]]],
    body: bytes,
) -> tuple[Exchange, bytes | None]:
    """Open the exchange on the loop thread; with its whole body if it is complete already
    (one trip between threads for an answer that is not streamed)."""
    exchange = await gateway.open(gateway.scope(*parts), body)
    return exchange, exchange.take() if exchange.complete else None


class _SyncBody(httpx2.SyncByteStream):
    __slots__ = ("_call", "_exchange", "_request")

    def __init__(self, exchange: Exchange, call: PortalCall, request: httpx2.Request) -> None:
        self._exchange = exchange
        self._call = call
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        exchange, call = self._exchange, self._call
        while True:
            try:
                data = call(exchange.read)
            except AppFailed as exc:
                raise httpx2.RemoteProtocolError(str(exc), request=self._request) from exc
            if data is None:
                return
            yield data

    def close(self) -> None:
        if not self._exchange.complete:  # else the application ends on its own
            self._call(self._exchange.aclose)

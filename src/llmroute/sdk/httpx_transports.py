"""The httpx 0.28 twins of `llmroute.sdk.transports`, for SDK versions built on httpx.

Same behaviour as the httpx2 transports (see that module); httpx is imported
when this module is, so it is only needed by those who use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx

from ._exchange import AppFailed, Exchange
from .gateway import GatewayClosed, InProcessGateway
from .transports import PortalCall, open_exchange, request_parts

__all__ = ["AsyncInProcessTransport", "InProcessTransport"]


class AsyncInProcessTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that serves requests by a router's gateway application
    in this process (no socket). Get a client with ``router.http_client()``.

    Errors: `httpx.ConnectError` once the router is closed;
    `httpx.RemoteProtocolError` if the application fails (a bug: it answers
    errors with their HTTP status).
    """

    def __init__(self, gateway: InProcessGateway) -> None:
        self.gateway = gateway

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        gateway = self.gateway
        scope = gateway.scope(*request_parts(request.method, request.url, request.headers.raw))
        try:
            body: bytes | None = request.content
            chunks = None
        except httpx.RequestNotRead:
            body, chunks = None, _chunks(request.stream)
        try:
            exchange = await gateway.open(scope, body, chunks)
        except GatewayClosed as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except AppFailed as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        if exchange.complete:
            return httpx.Response(
                exchange.status, headers=exchange.headers, content=exchange.take()
            )
        return httpx.Response(
            exchange.status, headers=exchange.headers, stream=_AsyncBody(exchange, request)
        )


async def _chunks(stream: object) -> AsyncIterator[bytes]:
    assert isinstance(stream, httpx.AsyncByteStream)
    async for chunk in stream:
        yield chunk


class _AsyncBody(httpx.AsyncByteStream):
    __slots__ = ("_exchange", "_request")

    def __init__(self, exchange: Exchange, request: httpx.Request) -> None:
        self._exchange = exchange
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = self._exchange.read
        while True:
            try:
                data = await read()
            except AppFailed as exc:
                raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
            if data is None:
                return
            yield data

    async def aclose(self) -> None:
        await self._exchange.aclose()


class InProcessTransport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` (blocking) that serves requests by a router's gateway
    application on the router's own event-loop thread. Get a client with the blocking
    ``Router.http_client()``.

    Args:
        gateway: the router's in-process gateway.
        call: runs a coroutine function on the router's loop thread and returns its result.
    """

    def __init__(self, gateway: InProcessGateway, call: PortalCall) -> None:
        self.gateway = gateway
        self._call = call

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        gateway = self.gateway
        if gateway.closed:
            raise httpx.ConnectError("the router is closed", request=request)
        body = request.read()
        parts = request_parts(request.method, request.url, request.headers.raw)
        try:
            exchange, data = self._call(open_exchange, gateway, parts, body)
        except GatewayClosed as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except AppFailed as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        if data is not None:
            return httpx.Response(exchange.status, headers=exchange.headers, content=data)
        return httpx.Response(
            exchange.status,
            headers=exchange.headers,
            stream=_SyncBody(exchange, self._call, request),
        )


class _SyncBody(httpx.SyncByteStream):
    __slots__ = ("_call", "_exchange", "_request")

    def __init__(self, exchange: Exchange, call: PortalCall, request: httpx.Request) -> None:
        self._exchange = exchange
        self._call = call
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        exchange, call = self._exchange, self._call
        while True:
            try:
                data = call(exchange.read)
            except AppFailed as exc:
                raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
            if data is None:
                return
            yield data

    def close(self) -> None:
        if not self._exchange.complete:  # else the application ends on its own
            self._call(self._exchange.aclose)

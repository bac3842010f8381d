"""The in-process transports, written once for httpx2 and httpx.

`llmroute.sdk.transports` (httpx2) and `llmroute.sdk.httpx_transports` (httpx
0.28) each subclass these with their library's base classes and name the
library in `http`; everything else (serving a request by the gateway,
streaming its body, mapping the gateway's failures to the library's
exceptions) is here. Nothing here imports either library: the two have the
same names for what is used (``Response``, ``ConnectError``,
``RemoteProtocolError``, ``RequestNotRead``), reached through `http`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import ModuleType
from typing import Any, Protocol, TypeVar

from ._exchange import AppFailed, Exchange
from .gateway import GatewayClosed, InProcessGateway

__all__ = [
    "AsyncBody", "AsyncServing", "PortalCall", "Serving", "SyncBody", "body_classes",
    "open_exchange", "request_parts",
]  # fmt: skip

T = TypeVar("T")

#: What an ASGI request needs of an httpx or httpx2 request: method, path, raw path,
#: query and lower-cased headers.
RequestParts = tuple[str, str, bytes, bytes, list[tuple[bytes, bytes]]]


class PortalCall(Protocol):
    """Runs a coroutine function on an event loop in another thread and returns its result
    (as ``anyio.from_thread.BlockingPortal.call``)."""

    def __call__(self, func: Callable[..., Coroutine[Any, Any, T]], /, *args: Any) -> T: ...


def request_parts(request: Any) -> RequestParts:
    """The method, path, raw path, query and lower-cased headers of an httpx or httpx2 request."""
    url = request.url
    return (
        request.method,
        url.path,
        url.raw_path.partition(b"?")[0],
        url.query,
        [(name.lower(), value) for name, value in request.headers.raw],
    )


async def open_exchange(
    gateway: InProcessGateway, parts: RequestParts, body: bytes
) -> tuple[Exchange, bytes | None]:
    """Open the exchange on the loop thread; with its whole body if it is complete already
    (one trip between threads for an answer that is not streamed)."""
    exchange = await gateway.open(gateway.scope(*parts), body)
    return exchange, exchange.take() if exchange.complete else None


class AsyncBody:
    """A streamed response body, read from the exchange as the application writes it."""

    __slots__ = ("_exchange", "_request")
    http: ModuleType

    def __init__(self, exchange: Exchange, request: Any) -> None:
        self._exchange = exchange
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = self._exchange.read
        while True:
            try:
                data = await read()
            except AppFailed as exc:
                raise self.http.RemoteProtocolError(str(exc), request=self._request) from exc
            if data is None:
                return
            yield data

    async def aclose(self) -> None:
        await self._exchange.aclose()


def body_classes(http: ModuleType) -> tuple[type[AsyncBody], type[SyncBody]]:
    """`AsyncBody` and `SyncBody` as byte streams of `http` (httpx or httpx2), whose
    responses take nothing else as a stream."""
    namespace = {"__slots__": (), "http": http}
    async_body = type("AsyncBody", (AsyncBody, http.AsyncByteStream), dict(namespace))
    sync_body = type("SyncBody", (SyncBody, http.SyncByteStream), dict(namespace))
    return async_body, sync_body


class AsyncServing:
    """``handle_async_request``: the request served by the gateway application on the
    caller's event loop."""

    http: ModuleType
    body: type[AsyncBody]

    def __init__(self, gateway: InProcessGateway) -> None:
        self.gateway = gateway

    async def handle_async_request(self, request: Any) -> Any:
        http, gateway = self.http, self.gateway
        scope = gateway.scope(*request_parts(request))
        try:
            body: bytes | None = request.content
            chunks = None
        except http.RequestNotRead:
            body, chunks = None, _chunks(request.stream)
        try:
            exchange = await gateway.open(scope, body, chunks)
        except GatewayClosed as exc:
            raise http.ConnectError(str(exc), request=request) from exc
        except AppFailed as exc:
            raise http.RemoteProtocolError(str(exc), request=request) from exc
        if exchange.complete:
            return http.Response(exchange.status, headers=exchange.headers, content=exchange.take())
        return http.Response(
            exchange.status, headers=exchange.headers, stream=self.body(exchange, request)
        )


async def _chunks(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


class SyncBody:
    """A streamed response body, each read a call onto the loop thread."""

    __slots__ = ("_call", "_exchange", "_request")
    http: ModuleType

    def __init__(self, exchange: Exchange, call: PortalCall, request: Any) -> None:
        self._exchange = exchange
        self._call = call
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        exchange, call = self._exchange, self._call
        while True:
            try:
                data = call(exchange.read)
            except AppFailed as exc:
                raise self.http.RemoteProtocolError(str(exc), request=self._request) from exc
            if data is None:
                return
            yield data

    def close(self) -> None:
        if not self._exchange.complete:  # else the application ends on its own
            self._call(self._exchange.aclose)


class Serving:
    """``handle_request`` (blocking): the request served by the gateway application on the
    router's loop thread, through `call`."""

    http: ModuleType
    body: type[SyncBody]

    def __init__(self, gateway: InProcessGateway, call: PortalCall) -> None:
        self.gateway = gateway
        self._call = call

    def handle_request(self, request: Any) -> Any:
        http, gateway = self.http, self.gateway
        if gateway.closed:
            raise http.ConnectError("the router is closed", request=request)
        body = request.read()
        try:
            exchange, data = self._call(open_exchange, gateway, request_parts(request), body)
        except GatewayClosed as exc:
            raise http.ConnectError(str(exc), request=request) from exc
        except AppFailed as exc:
            raise http.RemoteProtocolError(str(exc), request=request) from exc
        if data is not None:
            return http.Response(exchange.status, headers=exchange.headers, content=data)
        return http.Response(
            exchange.status,
            headers=exchange.headers,
            stream=self.body(exchange, self._call, request),
        )

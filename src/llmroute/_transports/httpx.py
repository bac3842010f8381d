"""An engine over a user's own ``httpx.AsyncClient`` or ``httpx2.AsyncClient``.

For proxies, client certificates, custom httpx transports or respx in tests:
the client keeps its own settings, and its package (httpx or httpx2, the same
API) is found from the client itself.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

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
from .drains import DRAIN_BYTES, DRAIN_SECONDS, Drains

__all__ = ["HttpxTransport", "transport_from_client"]

_log = logging.getLogger("llmroute.transport")


class _HttpxErrors:
    """The exception types of one client's package (httpx or httpx2), and `map_errors`,
    the one place that turns them into `TransportError`s."""

    __slots__ = ("connect", "timeout", "timeout_cls", "transport")

    def __init__(self, module: Any) -> None:
        self.connect: type[BaseException] = module.ConnectError
        self.timeout: type[BaseException] = module.TimeoutException
        self.transport: type[BaseException] = module.TransportError
        self.timeout_cls: Any = module.Timeout

    def map_errors(self, phase: tuple[str, str], url: str = "") -> _map_errors:
        """A context manager that raises the `TransportError` for any of these types."""
        return _map_errors(self, phase, url)


class _map_errors:
    """Used as ``with errors.map_errors(PHASE, url):``; messages formatted only on failure."""

    __slots__ = ("_errors", "_phase", "_url")

    def __init__(self, errors: _HttpxErrors, phase: tuple[str, str], url: str) -> None:
        self._errors = errors
        self._phase = phase
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        errors, url = self._errors, self._url
        timed_out, lost = self._phase
        # httpx's ConnectTimeout is a timeout, not a ConnectError: TimedOut, as before
        if isinstance(exc, errors.connect):
            raise ConnectFailed(f"cannot connect to {url}: {exc}") from exc
        if isinstance(exc, errors.timeout):
            raise TimedOut(timed_out.format(url=url)) from exc
        if isinstance(exc, errors.transport):
            raise ConnectionLost(f"{lost.format(url=url)}: {exc}") from exc


#: What `_map_errors` says when each phase fails: (timed out, connection lost).
_SENDING = ("timed out waiting for {url}", "connection to {url} failed")
_READING = ("timed out reading the response body", "connection lost while reading the body")
_STREAMING = ("no data from the provider within the read timeout", "connection lost mid-stream")


class _HttpxResponse(HttpResponse):
    __slots__ = ("_chunks", "_drains", "_errors", "_response", "headers", "status")

    def __init__(self, response: Any, errors: _HttpxErrors, drains: Drains) -> None:
        self._response = response
        self._errors = errors
        self._drains = drains
        self._chunks: AsyncIterator[bytes] | None = None
        self.status = int(response.status_code)
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            with self._errors.map_errors(_READING):
                body: bytes = await self._response.aread()
            return body
        finally:
            await self._response.aclose()

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        self._chunks = self._iter_bytes()
        return self._chunks

    async def _iter_bytes(self) -> AsyncIterator[bytes]:
        with self._errors.map_errors(_STREAMING):
            async for chunk in self._response.aiter_bytes():
                yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()

    async def release(self) -> None:
        await self._drains.run(self._drain())

    async def _drain(self) -> None:
        # httpx returns a connection to its pool when a fully read response is closed
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                if self._chunks is None:
                    await self._response.aread()
                else:  # the body is being streamed: read on to its end
                    seen = 0
                    async for chunk in self._chunks:
                        seen += len(chunk)
                        if seen > DRAIN_BYTES:
                            break
        except (TimeoutError, self._errors.transport, TransportError) as exc:
            # the answer is complete; only the connection's reuse is lost
            _log.debug("connection not reused after a finished stream: %s", exc)
        finally:
            # fully read: back to the pool; cut short by a timeout or error: discarded
            await self._response.aclose()


class HttpxTransport(Transport):
    """An engine over a user's ``httpx.AsyncClient`` or ``httpx2.AsyncClient``.

    The client keeps its own settings (proxies, certificates, event hooks,
    transports). llmroute does not close a client it was given.
    """

    __slots__ = ("_client", "_drains", "_errors")

    def __init__(self, client: Any) -> None:
        package = type(client).__module__.split(".")[0]
        self._client = client
        self._drains = Drains()
        self._errors = _HttpxErrors(importlib.import_module(package))

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        errors = self._errors
        timeout = errors.timeout_cls(timeouts.read, connect=timeouts.connect)
        built = self._client.build_request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.body,
            timeout=timeout,
        )
        with errors.map_errors(_SENDING, request.url):
            response = await self._client.send(built, stream=True)
        return _HttpxResponse(response, errors, self._drains)

    async def aclose(self) -> None:
        """Stops pending connection drains; the client belongs to the caller: it stays open."""
        await self._drains.cancel()


def transport_from_client(client: object) -> Transport:
    """A `Transport` for `client`: a Transport as is, or an httpx/httpx2 AsyncClient wrapped."""
    if isinstance(client, Transport):
        return client
    package = type(client).__module__.split(".")[0]
    if package in ("httpx", "httpx2") and hasattr(client, "send"):
        return HttpxTransport(client)
    raise TypeError(
        f"expected an llmroute Transport or an httpx/httpx2 AsyncClient, got {type(client).__name__}"
    )

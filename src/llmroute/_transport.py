"""The HTTP seam between the pipeline and the network.

A `Transport` sends one `HttpRequest` and returns an `HttpResponse` whose body
is read on demand (whole, or line by line for event streams). Provider adapters
never see which engine is used. Two engines ship:

- `AiohttpTransport`, the default: the fastest well-kept client measured on
  our benchmark machine (see docs/benchmarks.md).
- `HttpxTransport`, which wraps a user's own ``httpx.AsyncClient`` or
  ``httpx2.AsyncClient`` (proxies, mTLS, custom transports, respx in tests).

Engines raise the `TransportError` subclasses below, never their own
exception types, so the pipeline classifies failures in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "AiohttpTransport",
    "ConnectFailed",
    "ConnectionLost",
    "HttpRequest",
    "HttpResponse",
    "HttpxTransport",
    "Timeouts",
    "TimedOut",
    "Transport",
    "TransportError",
    "transport_from_client",
]


_log = logging.getLogger("llmroute.transport")


class TransportError(Exception):
    """A request could not be completed at the HTTP level."""


class ConnectFailed(TransportError):
    """The connection could not be established."""


class TimedOut(TransportError):
    """Connecting or reading took longer than allowed."""


class ConnectionLost(TransportError):
    """The connection dropped before the response was complete."""


@dataclass(slots=True, frozen=True)
class Timeouts:
    """Per-attempt limits, in seconds: `connect` to establish, `read` between bytes.

    `read` is None when no per-read limit is wanted (a non-streamed attempt is
    bounded as a whole by its deadline, which is cheaper than re-arming a
    timer on every packet).
    """

    connect: float
    read: float | None


@dataclass(slots=True)
class HttpRequest:
    """One HTTP request, as an adapter builds it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


class HttpResponse(ABC):
    """A response whose status and headers have arrived; the body is read on demand.

    `headers` is a case-insensitive mapping. Call `aclose()` when done (it is
    safe to call twice); reading the whole body with `read()` releases the
    connection by itself.
    """

    status: int
    headers: Mapping[str, str]

    @abstractmethod
    async def read(self) -> bytes:
        """The whole body."""

    @abstractmethod
    def aiter_lines(self) -> AsyncIterator[bytes]:
        """The body line by line, without line endings."""

    @abstractmethod
    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive."""

    def aiter_line_batches(self) -> AsyncIterator[list[bytes]]:
        """The body's lines (without line endings) in batches: each batch holds the lines
        one network read completed, so a reader waits once per read, not once per line."""
        return line_batches(self.aiter_bytes())

    @abstractmethod
    async def aclose(self) -> None:
        """Release the connection, abandoning any unread body."""

    async def release(self) -> None:
        """After a complete answer: give the connection back to the pool for the next
        request, once what is left of the body has arrived (the end of a chunked stream
        comes just after its last event). Waits at most a few milliseconds: the caller
        has its answer. Engines without a pool just close."""
        await self.aclose()


#: How long `release()` waits for the rest of a finished body before giving up on reuse.
_DRAIN_SECONDS = 1.0
#: How much of a finished body `release()` reads before giving up on reuse.
_DRAIN_BYTES = 65_536
#: How long `release()` itself waits before leaving the rest to the background.
_DRAIN_INLINE_SECONDS = 0.05


class _Drains:
    """Tasks that read the last bytes of finished bodies so their connections can be
    reused; owned by a transport, cancelled when it closes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, drain: Coroutine[Any, Any, None]) -> None:
        """Run `drain` briefly in line (the end of a body usually follows its last event
        at once, so the next request can reuse the connection), then in the background."""
        task = asyncio.get_running_loop().create_task(drain)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({task}, timeout=_DRAIN_INLINE_SECONDS)

    async def cancel(self) -> None:
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Transport(ABC):
    """Sends requests. One instance per provider, so each provider has its own pool."""

    @abstractmethod
    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        """Send `request` and return once the status and headers have arrived."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the connection pool."""


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


# ---------------------------------------------------------------- aiohttp


class _AiohttpResponse(HttpResponse):
    __slots__ = ("_drains", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, drains: _Drains) -> None:
        self._response = response
        self._drains = drains
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        import aiohttp

        try:
            return await self._response.read()
        except aiohttp.ServerTimeoutError as exc:  # a TimeoutError and a connection error
            raise TimedOut("timed out reading the response body") from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise ConnectionLost(f"connection lost while reading the body: {exc}") from exc
        except TimeoutError as exc:
            raise TimedOut("timed out reading the response body") from exc
        finally:
            self._response.release()

    def aiter_lines(self) -> AsyncIterator[bytes]:
        # Split ourselves rather than use StreamReader.readline, which refuses
        # lines longer than its buffer (a large tool-call argument can be one).
        return split_lines(self.aiter_bytes())

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        import aiohttp

        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ServerTimeoutError as exc:  # a TimeoutError and a connection error
            raise TimedOut("no data from the provider within the read timeout") from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise ConnectionLost(f"connection lost mid-stream: {exc}") from exc
        except TimeoutError as exc:
            raise TimedOut("no data from the provider within the read timeout") from exc

    async def aclose(self) -> None:
        # close(), not release(): an abandoned stream must not return a
        # half-read connection to the pool.
        if not self._response.closed:
            self._response.close()

    async def release(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            await self._drains.run(self._drain())

    async def _drain(self) -> None:
        import aiohttp

        response = self._response
        reusable = False
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                left = await response.content.read(_DRAIN_BYTES)
            # more than the end of the body left over: not worth keeping
            reusable = not left or response.content.at_eof()
        except (TimeoutError, aiohttp.ClientError) as exc:
            _log.debug("connection not reused after a finished stream: %s", exc)
        finally:  # cancelled (the transport is closing) or not reusable: close it
            if reusable:
                response.release()
            else:
                response.close()


class AiohttpTransport(Transport):
    """The default engine: one aiohttp session (and connection pool) per provider.

    The session is created lazily inside the running event loop, so a router
    can be built outside any loop.
    """

    def __init__(self, *, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[Timeouts, Any] = {}
        self._proxies: dict[str, str | None] = {}
        self._last_proxy: tuple[str, str | None] = ("", None)
        self._drains = _Drains()

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
        # trust_env would re-read ~/.netrc and the proxy variables in worker threads on
        # every request (twice the latency); proxies are resolved once per host instead.
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, trust_env=False
        )
        return self._session

    def _proxy(self, url: str) -> str | None:
        """The proxy for `url` from the standard proxy variables (looked up once per origin)."""
        last = self._last_proxy
        if last[0] == url:  # a provider sends most requests to one URL
            return last[1]
        proxy = self._origin_proxy(url)
        self._last_proxy = (url, proxy)
        return proxy

    def _origin_proxy(self, url: str) -> str | None:
        origin = url.split("/", 3)
        key = "/".join(origin[:3])
        if key in self._proxies:
            return self._proxies[key]
        import urllib.request
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
            proxy = None
        self._proxies[key] = proxy
        return proxy

    def _client_timeout(self, timeouts: Timeouts) -> Any:
        cached = self._timeouts.get(timeouts)
        if cached is None:
            import aiohttp

            cached = aiohttp.ClientTimeout(
                total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
            )
            self._timeouts[timeouts] = cached
        return cached

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        import aiohttp

        session = self._session or self._open_session()
        try:
            response = await session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._client_timeout(timeouts),
                proxy=self._proxy(request.url),
            )
        except aiohttp.ServerTimeoutError as exc:  # a TimeoutError and a connection error
            raise TimedOut(f"timed out waiting for {request.url}: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(f"cannot connect to {request.url}: {exc}") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise ConnectionLost(f"connection to {request.url} dropped: {exc}") from exc
        except aiohttp.ClientConnectionError as exc:
            raise ConnectionLost(f"connection to {request.url} failed: {exc}") from exc
        except TimeoutError as exc:
            raise TimedOut(f"timed out waiting for {request.url}") from exc
        return _AiohttpResponse(response, self._drains)

    async def aclose(self) -> None:
        await self._drains.cancel()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


# ---------------------------------------------------------------- httpx / httpx2


class _HttpxResponse(HttpResponse):
    __slots__ = ("_chunks", "_drains", "_errors", "_response", "headers", "status")

    def __init__(self, response: Any, errors: _HttpxErrors, drains: _Drains) -> None:
        self._response = response
        self._errors = errors
        self._drains = drains
        self._chunks: AsyncIterator[bytes] | None = None
        self.status = int(response.status_code)
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            body: bytes = await self._response.aread()
            return body
        except self._errors.timeout as exc:
            raise TimedOut("timed out reading the response body") from exc
        except self._errors.transport as exc:
            raise ConnectionLost(f"connection lost while reading the body: {exc}") from exc
        finally:
            await self._response.aclose()

    def aiter_lines(self) -> AsyncIterator[bytes]:
        return split_lines(self.aiter_bytes())

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        self._chunks = self._iter_bytes()
        return self._chunks

    async def _iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except self._errors.timeout as exc:
            raise TimedOut("no data from the provider within the read timeout") from exc
        except self._errors.transport as exc:
            raise ConnectionLost(f"connection lost mid-stream: {exc}") from exc

    async def aclose(self) -> None:
        await self._response.aclose()

    async def release(self) -> None:
        await self._drains.run(self._drain())

    async def _drain(self) -> None:
        # httpx returns a connection to its pool when a fully read response is closed
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                if self._chunks is None:
                    await self._response.aread()
                else:  # the body is being streamed: read on to its end
                    seen = 0
                    async for chunk in self._chunks:
                        seen += len(chunk)
                        if seen > _DRAIN_BYTES:
                            break
        except (TimeoutError, self._errors.transport, TransportError) as exc:
            # the answer is complete; only the connection's reuse is lost
            _log.debug("connection not reused after a finished stream: %s", exc)
        finally:
            # fully read: back to the pool; cut short by a timeout or error: discarded
            await self._response.aclose()


@dataclass(slots=True, frozen=True)
class _HttpxErrors:
    connect: type[BaseException]
    timeout: type[BaseException]
    transport: type[BaseException]
    timeout_cls: Any


class HttpxTransport(Transport):
    """An engine over a user's ``httpx.AsyncClient`` or ``httpx2.AsyncClient``.

    The client keeps its own settings (proxies, certificates, event hooks,
    transports). llmroute does not close a client it was given.
    """

    def __init__(self, client: Any) -> None:
        package = type(client).__module__.split(".")[0]
        module = importlib.import_module(package)
        self._client = client
        self._drains = _Drains()
        self._errors = _HttpxErrors(
            connect=module.ConnectError,
            timeout=module.TimeoutException,
            transport=module.TransportError,
            timeout_cls=module.Timeout,
        )

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
        try:
            response = await self._client.send(built, stream=True)
        except errors.connect as exc:
            raise ConnectFailed(f"cannot connect to {request.url}: {exc}") from exc
        except errors.timeout as exc:
            raise TimedOut(f"timed out waiting for {request.url}") from exc
        except errors.transport as exc:
            raise ConnectionLost(f"connection to {request.url} failed: {exc}") from exc
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

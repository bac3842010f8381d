"""The default engine: aiohttp, the fastest well-kept client measured on our benchmark
machine (see docs/benchmarks.md).

aiohttp itself is imported on first use, not with llmroute, so ``import llmroute``
stays cheap for those who never send a request.

A session is closed by `AiohttpTransport.aclose` (the router's ``aclose``), and
otherwise by itself, as an ``openai.AsyncOpenAI()`` left open is: when its
transport is garbage-collected (the router was dropped), or when the event loop
it was opened on ends with it still open (`llmroute._release`). Either way the
session is closed on its own loop, so aiohttp has nothing to warn about
("Unclosed client session").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._release import Held, hold
from .base import (
    ConnectFailed,
    ConnectionLost,
    HttpRequest,
    HttpResponse,
    TimedOut,
    Timeouts,
    Transport,
)
from .drains import DRAIN_BYTES, DRAIN_SECONDS, Drains

if TYPE_CHECKING:
    import aiohttp
    import yarl

__all__ = ["AiohttpTransport"]

_log = logging.getLogger("llmroute.transport")


def _raise_mapped(exc: Exception, phase: tuple[str, str], url: str = "") -> None:
    """Raise the `TransportError` for aiohttp's `exc` in `phase` (from `exc`); return when
    `exc` is none of aiohttp's, for the caller to re-raise it as it is. The one place that
    knows aiohttp's exceptions.

    Called from an ``except`` clause, not a context manager: a ``try`` costs nothing while
    no exception is raised, where entering and leaving a context manager cost three calls
    per use, two uses per request (see docs/performance.md). The messages are formatted
    only on failure.
    """
    import aiohttp

    timed_out, lost = phase
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        detail = f": {exc}" if url and str(exc) else ""
        raise TimedOut(timed_out.format(url=url) + detail) from exc
    if isinstance(exc, aiohttp.ClientConnectorError):
        raise ConnectFailed(f"cannot connect to {url}: {exc}") from exc
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError):
        raise ConnectionLost(f"{lost.format(url=url)}: {exc}") from exc


#: What `_raise_mapped` says when each phase fails: (timed out, connection lost).
_SENDING = ("timed out waiting for {url}", "connection to {url} failed")
_READING = ("timed out reading the response body", "connection lost while reading the body")
_STREAMING = ("no data from the provider within the read timeout", "connection lost mid-stream")


class _AiohttpResponse(HttpResponse):
    __slots__ = ("_drains", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, drains: Drains) -> None:
        self._response = response
        self._drains = drains
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except Exception as exc:
            _raise_mapped(exc, _READING)
            raise
        finally:
            self._response.release()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            _raise_mapped(exc, _STREAMING)
            raise

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
            async with asyncio.timeout(DRAIN_SECONDS):
                left = await response.content.read(DRAIN_BYTES)
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

    __slots__ = (
        "__weakref__", "_drains", "_held", "_last_proxy", "_last_timeouts", "_last_url",
        "_max_connections", "_proxies", "_session", "_timeouts",
    )  # fmt: skip

    def __init__(self, *, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._held: Held | None = None  # the session's release, if this transport is dropped
        self._timeouts: dict[Timeouts, Any] = {}
        self._last_timeouts: tuple[Timeouts, Any] | None = None
        self._proxies: dict[str, str | None] = {}
        self._last_proxy: tuple[str, str | None] = ("", None)
        self._last_url: tuple[str, yarl.URL] | None = None
        self._drains = Drains()

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
        # trust_env would re-read ~/.netrc and the proxy variables in worker threads on
        # every request (twice the latency); proxies are resolved once per host instead.
        # No cookie jar: the pool serves every caller of the router (every gateway key), so a
        # cookie a provider set in answer to one request must not ride along the next one's
        # (an API needs none); not filtering and storing them saves ~6k instructions a request.
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._forget_session()
        self._session = session
        self._held = hold(self, session.close)
        return session

    def _forget_session(self) -> aiohttp.ClientSession | None:
        """Take the session out of this transport and out of the closers' sight."""
        session, self._session = self._session, None
        held, self._held = self._held, None
        if held is not None:
            held.detach()
        return session

    def _proxy(self, url: str) -> str | None:
        """The proxy for `url` from the standard proxy variables (looked up once per origin).

        Fast path: 0.06 µs per request against 520 µs for urllib's lookup each time
        (timeit, 2026-12). Oracle: tests/test_fast_paths.py.
        """
        last = self._last_proxy
        if last[0] == url:  # a provider sends most requests to one URL
            return last[1]
        proxy = self._origin_proxy(url)
        self._last_proxy = (url, proxy)
        return proxy

    def _url(self, url: str) -> yarl.URL:
        """`url` parsed as aiohttp parses a string it is given (`yarl.URL`), once for a
        run of requests to one URL (a provider sends most to one); URLs are immutable.

        Fast path: 2.8k instructions a request less (callgrind, bench_core's client, 634.7k
        -> 631.9k, 2026-12-03). Oracle:
        tests/test_fast_paths.py (``test_the_engine_parses_urls_as_aiohttp_does``).
        """
        last = self._last_url
        if last is not None and last[0] == url:
            return last[1]
        import yarl

        parsed = yarl.URL(url)
        self._last_url = (url, parsed)
        return parsed

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
        """aiohttp's timeout object for `timeouts`, built once per distinct value (a
        provider has two: streamed and whole attempts); the last one asked for is known by
        identity, without hashing the (frozen) `Timeouts` again."""
        last = self._last_timeouts
        if last is not None and last[0] is timeouts:
            return last[1]
        cached = self._timeouts.get(timeouts)
        if cached is None:
            import aiohttp

            cached = aiohttp.ClientTimeout(
                total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
            )
            self._timeouts[timeouts] = cached
        self._last_timeouts = (timeouts, cached)
        return cached

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        session = self._session
        if session is None or session.closed:  # closed: its event loop ended
            session = self._open_session()
        url = request.url
        try:
            response = await session.request(
                request.method,
                self._url(url),
                data=request.body,
                headers=request.headers,
                timeout=self._client_timeout(timeouts),
                proxy=self._proxy(url),
            )
        except Exception as exc:
            _raise_mapped(exc, _SENDING, url)
            raise
        return _AiohttpResponse(response, self._drains)

    async def aclose(self) -> None:
        """Stop pending drains and close the session (and its pool)."""
        await self._drains.cancel()
        session = self._forget_session()
        if session is not None:
            await session.close()

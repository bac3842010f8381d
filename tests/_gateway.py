"""Gateways for tests: in process (httpx's ASGI transport), or uvicorn on a loopback port.

Most server tests need no socket: `in_process_gateway` calls the app
directly from the clients' transports, with its lifespan run as uvicorn
would. `running_gateway` serves the app on 127.0.0.1 in the test's loop, for
what only a socket shows: hostile clients, disconnects, the SDKs over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import uvicorn

from llmroute import AsyncRouter
from llmroute.server import GatewayApp, ServerConfig, create_app

USER = [{"role": "user", "content": "hello"}]
#: A key and its stored form, for tests with authentication.
KEY = "test-gateway-key-0123456789abcdef"
OTHER_KEY = "test-gateway-key-other-987654321"


#: The in-process gateway's address (any host reaches the app through its transport).
IN_PROCESS = "http://gateway.test"


@dataclass
class Gateway:
    """A gateway under test: its app and router, and clients of it; `server` and `port` are
    uvicorn's when it is served on a socket (`running_gateway`), else None and 0."""

    root: str
    app: GatewayApp
    router: AsyncRouter
    server: uvicorn.Server | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def client(self, api_key: str = "none", **options: Any) -> openai.AsyncOpenAI:
        """An openai SDK client of this gateway (no retries unless asked)."""
        options.setdefault("max_retries", 0)
        if self.server is None:
            options.setdefault("http_client", self._sdk_http())
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, **options)

    def anthropic(self, api_key: str | None = "none", **options: Any) -> anthropic.AsyncAnthropic:
        """An anthropic SDK client of this gateway (no retries unless asked; None: no
        ``x-api-key``, for a client that sends its key as ``auth_token``)."""
        options.setdefault("max_retries", 0)
        if self.server is None:
            options.setdefault("http_client", self._sdk_http())
        return anthropic.AsyncAnthropic(base_url=self.root, api_key=api_key, **options)

    def http(self) -> httpx.AsyncClient:
        """A plain HTTP client that reaches this gateway (give it absolute URLs)."""
        if self.server is None:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))
        return httpx.AsyncClient()

    def _sdk_http(self) -> httpx2.AsyncClient:
        # the SDKs speak httpx2: its own ASGI transport
        return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app))


@contextlib.asynccontextmanager
async def in_process_gateway(
    config: Mapping[str, Any],
    *,
    server: Mapping[str, Any] | None = None,
    router: AsyncRouter | None = None,
) -> AsyncIterator[Gateway]:
    """`config` (a router config) served in process until the block ends, then shut down."""
    router = router or AsyncRouter(dict(config))
    app = create_app(router, ServerConfig.model_validate(dict(server or {})))
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)
    )
    try:
        await to_app.put({"type": "lifespan.startup"})
        assert (await from_app.get())["type"] == "lifespan.startup.complete"
        yield Gateway(IN_PROCESS, app, router)
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await lifespan


@contextlib.asynccontextmanager
async def running_gateway(
    config: Mapping[str, Any],
    *,
    server: Mapping[str, Any] | None = None,
    http: str = "auto",
    router: AsyncRouter | None = None,
) -> AsyncIterator[Gateway]:
    """Serve `config` (a router config) on 127.0.0.1 until the block ends, then shut down."""
    router = router or AsyncRouter(dict(config))
    app = create_app(router, ServerConfig.model_validate(dict(server or {})))
    settings = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", ws="none", http=http,  # type: ignore[arg-type]
        log_level="warning", timeout_graceful_shutdown=5,
    )  # fmt: skip
    uv = uvicorn.Server(settings)
    task = asyncio.create_task(uv.serve())
    try:
        while not uv.started:
            if task.done():
                task.result()  # raises what stopped it
            await asyncio.sleep(0.005)
        port = uv.servers[0].sockets[0].getsockname()[1]
        yield Gateway(f"http://127.0.0.1:{port}", app, router, uv, port)
    finally:
        uv.should_exit = True
        await task


async def raw_request(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send `data` as is on a fresh connection; return everything the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP response."""
    return int(response.split(b" ", 2)[1])

"""A real gateway on a loopback port for tests: uvicorn serving `create_app` in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import openai
import uvicorn

from llmroute import AsyncRouter
from llmroute.server import GatewayApp, ServerConfig, create_app

USER = [{"role": "user", "content": "hello"}]
#: A key and its stored form, for tests with authentication.
KEY = "test-gateway-key-0123456789abcdef"
OTHER_KEY = "test-gateway-key-other-987654321"


@dataclass
class Gateway:
    """A running gateway: its URLs, app, router and uvicorn server."""

    host: str
    port: int
    app: GatewayApp
    router: AsyncRouter
    server: uvicorn.Server

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, api_key: str = "none", **options: Any) -> openai.AsyncOpenAI:
        """An openai SDK client of this gateway (no retries unless asked)."""
        options.setdefault("max_retries", 0)
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, **options)


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
        yield Gateway("127.0.0.1", port, app, router, uv)
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

"""`InProcessGateway`: a router's gateway application, served to HTTP clients in the same process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ._exchange import Exchange, Scope

if TYPE_CHECKING:
    from .._router import AsyncRouter
    from ..server import GatewayApp

__all__ = ["GatewayClosed", "InProcessGateway"]

#: The host the in-process clients name in their URLs (nothing resolves it: no request
#: leaves the process).
HOST = "llmroute.local"
_ASGI = {"version": "3.0", "spec_version": "2.3"}


class GatewayClosed(Exception):
    """The router (and so its in-process gateway) is closed."""


class InProcessGateway:
    """The gateway application (`llmroute.server.create_app`) of one router, served in process.

    Made by `AsyncRouter.gateway` on first use and closed with the router: the
    application is built once, on the first request, and started and stopped
    as an ASGI server's lifespan would (`GatewayApp.startup` then, its
    `shutdown` at `aclose`). Those are called directly rather than through the
    lifespan protocol, whose coroutine would wait in a task for as long as the
    router lives: a task that holds the router (through the application), so
    that a router dropped unclosed would be collected with a pending task.
    Its metrics endpoint is off (nothing scrapes an in-process gateway, and
    counting costs time on every request); keys, limits and everything else
    follow the router's ``server`` configuration.

    Each request runs the application in a task on the running event loop
    (the router's own loop thread for the blocking `Router`).
    """

    def __init__(self, router: AsyncRouter) -> None:
        self.router = router
        self._app: GatewayApp | None = None
        self._running: set[Exchange] = set()
        self.closed = False

    def app(self) -> GatewayApp:
        """The application, built and started on first use."""
        app = self._app
        if app is None:
            if self.closed:
                raise GatewayClosed("the router is closed")
            app = self._app = self._start()
        return app

    def _start(self) -> GatewayApp:
        from ..server import ServerConfig, create_app

        config = self.router.config.server or ServerConfig()
        app = create_app(
            self.router, config.model_copy(update={"metrics": "off"}), close_router=False
        )
        app.startup()
        return app

    def scope(
        self,
        method: str,
        path: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> Scope:
        """An ASGI ``http`` scope for a request (header names must be lower case)."""
        scope: Scope = {
            "type": "http", "asgi": _ASGI, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": raw_path, "query_string": query,
            "root_path": "", "headers": headers, "server": (HOST, 80), "client": None,
        }  # fmt: skip
        return scope

    async def open(
        self, scope: Scope, body: bytes | None, chunks: AsyncIterator[bytes] | None = None
    ) -> Exchange:
        """Send a request to the application; return the exchange once its response has started.

        Raises `GatewayClosed` once the router is closed, and
        `llmroute.sdk.AppFailed` if the application fails before it answers.
        """
        app = self._app or self.app()
        if self.closed:
            raise GatewayClosed("the router is closed")
        exchange = Exchange(app, scope, body, chunks)
        running = self._running
        running.add(exchange)
        try:
            task = await exchange.start()
        except BaseException:
            running.discard(exchange)
            raise
        if task.done():
            running.discard(exchange)
        else:
            task.add_done_callback(lambda _: running.discard(exchange))
        return exchange

    async def aclose(self) -> None:
        """Close every open response (their clients have gone, for the application), then
        shut the application down. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        running = list(self._running)
        self._running.clear()
        if running:
            await asyncio.gather(*(exchange.aclose() for exchange in running))
        app = self._app
        if app is not None:
            await app.shutdown()  # the router is not its to close: it only drains

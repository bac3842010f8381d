"""`InProcessGateway`: a router's gateway application, served to HTTP clients in the same process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ._exchange import App, Exchange, Message, Scope

if TYPE_CHECKING:
    from .._router import AsyncRouter

__all__ = ["GatewayClosed", "InProcessGateway"]

logger = logging.getLogger("llmroute.sdk")

#: The host the in-process clients name in their URLs (nothing resolves it: no request
#: leaves the process).
HOST = "llmroute.local"
_ASGI = {"version": "3.0", "spec_version": "2.3"}


class GatewayClosed(Exception):
    """The router (and so its in-process gateway) is closed."""


class InProcessGateway:
    """The gateway application (`llmroute.server.create_app`) of one router, served in process.

    Made by `AsyncRouter.gateway` on first use and closed with the router: the
    application is built once, on the first request, and runs its ASGI
    lifespan (startup then, shutdown at `aclose`) like under an ASGI server.
    Its metrics endpoint is off (nothing scrapes an in-process gateway, and
    counting costs time on every request); keys, limits and everything else
    follow the router's ``server`` configuration.

    Each request runs the application in a task on the running event loop
    (the router's own loop thread for the blocking `Router`).
    """

    def __init__(self, router: AsyncRouter) -> None:
        self.router = router
        self._app: App | None = None
        self._starting: asyncio.Future[App] | None = None
        self._lifespan: _Lifespan | None = None
        self._state: dict[str, Any] | None = None
        self._running: set[Exchange] = set()
        self.closed = False

    async def app(self) -> App:
        """The application, built and started on first use."""
        app = self._app
        if app is not None:
            return app
        if self.closed:
            raise GatewayClosed("the router is closed")
        starting = self._starting
        if starting is None:  # the first caller starts it; others wait for the same start
            starting = self._starting = asyncio.get_running_loop().create_future()
            try:
                app = await self._start()
            except BaseException as exc:
                self._starting = None
                starting.set_exception(exc)
                starting.exception()  # retrieved: the first caller raises it
                raise
            self._app = app
            starting.set_result(app)
            return app
        return await asyncio.shield(starting)

    async def _start(self) -> App:
        from ..server import ServerConfig, create_app

        config = self.router.config.server or ServerConfig()
        app: App = create_app(
            self.router, config.model_copy(update={"metrics": "off"}), close_router=False
        )
        lifespan = _Lifespan(app)
        self._state = await lifespan.startup()
        self._lifespan = lifespan
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
        if self._state:
            scope["state"] = dict(self._state)
        return scope

    async def open(
        self, scope: Scope, body: bytes | None, chunks: AsyncIterator[bytes] | None = None
    ) -> Exchange:
        """Send a request to the application; return the exchange once its response has started.

        Raises `GatewayClosed` once the router is closed, and
        `llmroute.sdk.AppFailed` if the application fails before it answers.
        """
        app = self._app or await self.app()
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
        """Close every open response (their clients have gone, for the application), then run
        the application's lifespan shutdown. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        running = list(self._running)
        self._running.clear()
        if running:
            await asyncio.gather(*(exchange.aclose() for exchange in running))
        lifespan = self._lifespan
        if lifespan is not None:
            self._lifespan = None
            await lifespan.shutdown()


class _Lifespan:
    """The application's ASGI lifespan, run as an ASGI server runs it (as uvicorn's ``auto``:
    an application that does not take lifespan events is served without)."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> dict[str, Any]:
        """Start the application; the lifespan state it set (empty if none)."""
        state: dict[str, Any] = {}
        scope = {"type": "lifespan", "asgi": _ASGI, "state": state}
        self._inbox.put_nowait({"type": "lifespan.startup"})
        task = self._task = asyncio.get_running_loop().create_task(self._run(scope))
        # The task waits for the shutdown message for as long as the router lives, and it
        # holds the router (through the application). A router dropped unclosed is
        # collected with it, still waiting: that is its end, not a lost task, so asyncio
        # is told not to report it ("Task was destroyed but it is pending!"), as it does
        # for its own such tasks. Nothing outside the router can hold the task without
        # keeping the router alive for ever.
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        reply = await self._reply(task)
        if reply is None:  # no lifespan support: serve without it
            self._task = None
            return state
        if reply["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the gateway application failed to start: {reply.get('message')}")
        return state

    async def shutdown(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        reply = await self._reply(task)
        if reply is not None and reply["type"] != "lifespan.shutdown.complete":
            logger.warning("the gateway application failed to stop: %s", reply.get("message"))
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, scope: Scope) -> None:
        try:
            await self._app(scope, self._inbox.get, self._replies.put)
        except Exception:
            logger.debug("the gateway application does not take lifespan events", exc_info=True)

    async def _reply(self, task: asyncio.Task[None]) -> Message | None:
        """The application's next lifespan message, or None if it ended without one."""
        getting = asyncio.ensure_future(self._replies.get())
        await asyncio.wait((getting, task), return_when=asyncio.FIRST_COMPLETED)
        if getting.done():
            return getting.result()
        getting.cancel()
        return None

"""uvicorn's httptools protocol with the gateway's `HeadBounds` (see `llmroute.server.protocol`).

A module of its own because httptools is optional: `llmroute serve` imports it
only when httptools is installed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .protocol import HeadGuard, bounds_of

__all__ = ["BoundedHttpToolsProtocol"]


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `HeadBounds`: httptools buffers a header it has not
    seen the end of, so the bytes of an incomplete head are counted as they arrive."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = HeadGuard(bounds_of(config), self.loop, self)
        self.head_pending = True  # the next bytes belong to a request head

    def awaiting_head(self) -> bool:
        return self.head_pending

    def answering(self) -> bool:
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.opened(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        guard = self.guard
        self.limit_concurrency = guard.busy_limit(len(self.tasks))
        if not self.head_pending:
            super().data_received(data)
            return
        guard.receiving(data)
        super().data_received(data)
        if self.head_pending and not self.transport.is_closing():
            guard.too_large()

    def on_headers_complete(self) -> None:
        self.head_pending = False
        self.guard.head_done()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head_pending = True

    def send_400_response(self, msg: str) -> None:
        if not self.guard.too_large():
            super().send_400_response(msg)

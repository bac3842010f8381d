"""Bounds on a connection before the gateway sees a request: uvicorn's HTTP protocols, bounded.

uvicorn 0.54 reads a request head without a size limit with httptools (h11 stops
at 16 KiB, with a 400), never times out a connection that has not finished its
head (its keep-alive timer stops at the first byte), and counts every open
connection, silent ones too, against ``limit_concurrency``. `llmroute serve`
runs uvicorn with a subclass of each of its two HTTP protocols
(`BoundedH11Protocol` here, ``BoundedHttpToolsProtocol`` in
`llmroute.server.protocol_httptools`), which adds, per connection, before any
request reaches the app:

- **head size**: the bytes that arrive while a request head is incomplete are
  counted as they arrive; past `HeadBounds.max_size` the client gets a 431 and
  the connection is closed, so an unterminated head never holds more than the
  limit (plus one network read). A head that arrives whole is measured again by
  the app, with the number of headers (`GatewayRequest.screen`).
- **head deadline**: a connection must complete its first request head within
  `HeadBounds.timeout` of being accepted, and each later head within it of its
  first byte (before that first byte, uvicorn's keep-alive timeout closes an
  idle connection); else it is closed, with a 408 if part of a head had arrived.
- **busy limit**: `HeadBounds.max_busy` (``server.max_connections``) counts the
  requests being answered, not the open connections: a connection still sending
  its head, or idle between requests, cannot lock real clients out.

The settings travel in `BoundedConfig`, uvicorn's ``Config`` with a `HeadBounds`
(it is pickled to the worker processes of ``--workers N``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from .config import DEFAULT_MAX_HEAD_SIZE

__all__ = ["BoundedConfig", "BoundedH11Protocol", "HeadBounds", "HeadGuard", "bounds_of"]


@dataclass(frozen=True, slots=True)
class HeadBounds:
    """What a connection may do before it has sent a complete request head.

    Attributes:
        max_size: the most bytes of an incomplete head (431 beyond).
        timeout: seconds to complete a head (see the module's docstring).
        max_busy: requests being answered at once (503 beyond); None: no limit.
    """

    max_size: int = DEFAULT_MAX_HEAD_SIZE
    timeout: float = 10.0
    max_busy: int | None = None


class BoundedConfig(uvicorn.Config):
    """uvicorn's settings with the gateway's `HeadBounds` for the bounded protocols."""

    def __init__(self, app: Any, *, bounds: HeadBounds, **settings: Any) -> None:
        super().__init__(app, **settings)
        self.bounds = bounds


def bounds_of(config: uvicorn.Config) -> HeadBounds:
    """The bounds `config` carries (a plain uvicorn ``Config``: the defaults)."""
    return config.bounds if isinstance(config, BoundedConfig) else HeadBounds()


class BoundedConnection(Protocol):
    """What `HeadGuard` asks of the protocol it guards."""

    def awaiting_head(self) -> bool:
        """Whether the next bytes from the client belong to a request head."""

    def answering(self) -> bool:
        """Whether a request is being answered (or waits its turn) on the connection."""


def _response(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP response with an OpenAI-shaped error body, closing the connection."""
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None,
                   "code": code}}
    ).encode()  # fmt: skip
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadGuard:
    """One connection's bounds: counts the bytes of its incomplete head, keeps its deadline,
    and answers 431 or 408 (then closes) when one is passed."""

    __slots__ = ("bounds", "connection", "loop", "size", "timer", "transport")

    def __init__(
        self, bounds: HeadBounds, loop: asyncio.AbstractEventLoop, connection: BoundedConnection
    ) -> None:
        self.bounds = bounds
        self.loop = loop
        self.connection = connection
        self.transport: asyncio.Transport | None = None
        self.size = 0  # bytes received of the head being read
        self.timer: asyncio.TimerHandle | None = None

    def opened(self, transport: asyncio.Transport) -> None:
        """The connection was accepted: its first head is due within the timeout."""
        self.transport = transport
        self._arm()

    def busy_limit(self, answering: int) -> int | None:
        """uvicorn's ``limit_concurrency`` for the next head: 0 (answer 503) when `answering`
        requests are as many as `HeadBounds.max_busy`, else None (no limit). uvicorn counts
        open connections too; the requests being answered alone are what is busy."""
        limit = self.bounds.max_busy
        return 0 if limit is not None and answering >= limit else None

    def receiving(self, data: bytes) -> None:
        """`data` arrives while a head is awaited: count it up to the end of the head, if it
        is there (what follows is body); a later head's first bytes start its deadline."""
        end = data.find(b"\r\n\r\n")
        self.size += len(data) if end < 0 else end + 4
        if self.timer is None:
            self._arm()

    def head_done(self) -> None:
        """A complete head arrived: the next one is counted, and timed, from its first byte."""
        self.size = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def too_large(self) -> bool:
        """Answer 431 and close if the incomplete head passed the limit; whether it did."""
        if self.size <= self.bounds.max_size:
            return False
        self._close(
            _response(
                431,
                "Request Header Fields Too Large",
                "request_header_fields_too_large",
                f"the request head is larger than the limit of {self.bounds.max_size} bytes "
                "(server.max_head_size)",
            )
        )
        return True

    def closed(self) -> None:
        """The connection is gone."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm(self) -> None:
        self.timer = self.loop.call_later(self.bounds.timeout, self._expired)

    def _expired(self) -> None:
        self.timer = None
        connection = self.connection
        if not connection.awaiting_head():
            return
        if connection.answering():  # the client sent part of its next head early: wait
            self._arm()
            return
        timeout = self.bounds.timeout
        self._close(
            _response(
                408,
                "Request Timeout",
                "request_timeout",
                f"the request head did not arrive within {timeout:g}s (server.head_timeout)",
            )
            if self.size
            else b""
        )

    def _close(self, answer: bytes) -> None:
        self.closed()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if answer:
            transport.write(answer)
        transport.close()


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with `HeadBounds` (see the module's docstring)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = HeadGuard(bounds_of(config), self.loop, self)
        # h11 refuses a longer incomplete head itself: `send_400_response` makes that a 431
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.guard.bounds.max_size)

    def awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def answering(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.opened(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        guard = self.guard
        self.limit_concurrency = guard.busy_limit(len(self.tasks))
        if self.conn.their_state is not h11.IDLE:
            super().data_received(data)
            return
        guard.receiving(data)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            guard.head_done()
        elif not self.transport.is_closing():
            guard.too_large()

    def send_400_response(self, msg: str) -> None:
        if not self.guard.too_large():
            super().send_400_response(msg)

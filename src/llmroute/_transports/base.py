"""The transport contract: what the pipeline hands an engine and what it gets back.

A `Transport` sends one `HttpRequest` and returns an `HttpResponse` whose body
is read on demand (whole, or line by line for event streams). Provider
adapters build the requests and never see which engine sends them.

Engines raise the `TransportError` subclasses below, never their own
exception types, so the pipeline classifies failures in one place::

    TransportError
    ├── ConnectFailed     the connection could not be established
    ├── TimedOut          connecting or reading took longer than allowed
    └── ConnectionLost    the connection dropped before the response was complete

Both abstract bases declare empty ``__slots__``, so an engine's own
``__slots__`` take effect (a response object is made per request).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from .lines import line_batches, split_lines

__all__ = [
    "ConnectFailed",
    "ConnectionLost",
    "HttpRequest",
    "HttpResponse",
    "TimedOut",
    "Timeouts",
    "Transport",
    "TransportError",
]


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
    connection by itself. An engine implements `read`, `aiter_bytes` and
    `aclose`; the line readers and `release` have defaults it may override
    when it can do better.
    """

    __slots__ = ()

    status: int
    headers: Mapping[str, str]

    @abstractmethod
    async def read(self) -> bytes:
        """The whole body."""

    @abstractmethod
    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the connection, abandoning any unread body."""

    def aiter_lines(self) -> AsyncIterator[bytes]:
        """The body line by line, without line endings."""
        # Split here rather than use an engine's readline, which may refuse lines
        # longer than its buffer (a large tool-call argument can be one line).
        return split_lines(self.aiter_bytes())

    def aiter_line_batches(self) -> AsyncIterator[list[bytes]]:
        """The body's lines (without line endings) in batches: each batch holds the lines
        one network read completed, so a reader waits once per read, not once per line."""
        return line_batches(self.aiter_bytes())

    async def release(self) -> None:
        """After a complete answer: give the connection back to the pool for the next
        request, once what is left of the body has arrived (the end of a chunked stream
        comes just after its last event). Waits at most a few milliseconds: the caller
        has its answer. Engines without a pool just close."""
        await self.aclose()


class Transport(ABC):
    """Sends requests. One instance per provider, so each provider has its own pool.

    `send` is the one method an engine must write; `aclose` (called when the
    router closes) does nothing unless the engine holds something to release.
    """

    __slots__ = ()

    @abstractmethod
    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        """Send `request` and return once the status and headers have arrived.

        Failures at the HTTP level are raised as `TransportError` subclasses;
        an HTTP error status is a response like any other.
        """

    async def aclose(self) -> None:
        """Release what the engine holds (a connection pool); nothing by default."""
        return None

"""One HTTP request served by an ASGI application in the same process, with no socket.

The application runs in its own task, as under an ASGI server. The response
head is handed back as soon as the application sends ``http.response.start``;
the body is handed on chunk by chunk as the application sends it (a stream's
events arrive as they are written, not when the stream ends). Closing the
response before its end tells the application the client has gone
(``http.disconnect``), as a socket's close would, and the application's task
is cancelled if it does not end soon after.

Nothing here knows httpx or httpx2: `llmroute.sdk.transports` wraps an
`Exchange` in each library's transport interface.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

__all__ = ["App", "AppFailed", "Exchange", "Message", "Scope"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Coroutine[Any, Any, None],
]

#: How long a closed exchange's application may take to end before its task is cancelled.
CLOSE_GRACE = 1.0
#: Response bytes held for a reader that is slower than the application, beyond which the
#: application's ``send`` waits (as a full socket buffer would make it wait).
HIGH_WATER = 1 << 20
_BODY_END = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT = {"type": "http.disconnect"}


class AppFailed(Exception):
    """The application failed, or ended without completing its response."""


class Exchange:
    """One request through an ASGI application: `start` it, then read the body as it comes.

    Args:
        app: the ASGI application.
        scope: the request's ``http`` scope.
        body: the whole request body, when it is at hand (the usual case for an SDK).
        chunks: else the request body as it is produced.
    """

    __slots__ = (
        "_app", "_body", "_buffered", "_chunks", "_closed", "_complete", "_drained",
        "_failure", "_head", "_listeners", "_loop", "_parts", "_reader", "_scope", "_task",
        "headers", "status",
    )  # fmt: skip

    def __init__(
        self,
        app: App,
        scope: Scope,
        body: bytes | None,
        chunks: AsyncIterator[bytes] | None = None,
    ) -> None:
        self._app = app
        self._scope = scope
        self._body = body
        self._chunks = chunks
        self._loop = asyncio.get_running_loop()
        self._head: asyncio.Future[None] = self._loop.create_future()
        self._listeners: list[asyncio.Future[None]] = []  # receive() calls waiting for the end
        self._parts: deque[bytes] = deque()
        self._buffered = 0
        self._reader: asyncio.Future[None] | None = None  # read() waiting for a part
        self._drained: asyncio.Future[None] | None = None  # send() waiting for read()
        self._complete = False  # the application has sent its last body part
        self._closed = False  # the client has gone (closed the response early)
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        #: The response status and raw headers, once `start` has returned.
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []

    # -------------------------------------------------------------- the client's side

    async def start(self) -> asyncio.Task[None]:
        """Run the application until it starts its response; return its task.

        Raises `AppFailed` if the application ends (or fails) without starting
        one. If the caller is cancelled while waiting, the application is told
        the client has gone.
        """
        task = self._loop.create_task(self._app(self._scope, self._receive, self._send))
        self._task = task
        task.add_done_callback(self._ended)
        try:
            await self._head
        except asyncio.CancelledError:
            self._abandon()
            raise
        return task

    @property
    def complete(self) -> bool:
        """Whether the application has sent its whole response."""
        return self._complete

    def take(self) -> bytes:
        """Every body part received and not yet read, at once."""
        parts = self._parts
        data = parts.popleft() if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self._buffered = 0
        drained = self._drained
        if drained is not None:
            self._drained = None
            if not drained.done():
                drained.set_result(None)
        return data

    async def read(self) -> bytes | None:
        """The body received since the last read (waiting for some), or None at its end."""
        while True:
            if self._parts:
                return self.take()
            if self._complete:
                return None
            if self._failure is not None:
                raise AppFailed("the gateway application failed mid-response") from self._failure
            waiter = self._reader = self._loop.create_future()
            try:
                await waiter
            except asyncio.CancelledError:
                self._abandon()
                raise

    async def aclose(self) -> None:
        """Stop reading: the application sees ``http.disconnect``; its task ends or is cancelled."""
        if self._complete:
            return  # the application ends on its own
        task = self._task
        self._abandon()
        if task is not None and not task.done():
            await asyncio.wait((task,), timeout=CLOSE_GRACE)
            task.cancel()  # a no-op if it has ended

    def _abandon(self) -> None:
        """The client has gone: wake the application's ``receive()`` with a disconnect."""
        self._closed = True
        self._parts.clear()
        self._notify_end()
        task = self._task
        if task is not None and not task.done():
            # an application that never listens for the disconnect is cancelled all the same
            self._loop.call_later(CLOSE_GRACE, task.cancel)

    # -------------------------------------------------------------- the application's side

    async def _receive(self) -> Message:
        body = self._body
        if body is not None:
            self._body = None
            return {"type": "http.request", "body": body, "more_body": False}
        chunks = self._chunks
        if chunks is not None:
            try:
                part = await chunks.__anext__()
            except StopAsyncIteration:
                self._chunks = None
                return dict(_BODY_END)
            return {"type": "http.request", "body": part, "more_body": True}
        if not (self._closed or self._complete):
            # each call waits on its own future: cancelling one waiter leaves the others
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._listeners.append(waiter)
            await waiter
        return dict(_DISCONNECT)

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self._closed or self._complete:
                return  # the client has gone; an ASGI server drops it too
            body = message.get("body", b"")
            if body:
                self._parts.append(body)
                self._buffered += len(body)
            more = message.get("more_body", False)
            if not more:
                self._complete = True
                self._notify_end()
            reader = self._reader
            if reader is not None:
                self._reader = None
                if not reader.done():
                    reader.set_result(None)
            if more and self._buffered > HIGH_WATER:
                drained = self._drained = self._loop.create_future()
                await drained
        elif kind == "http.response.start":
            if self._head.done():
                raise RuntimeError("the application started its response twice")
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            self._head.set_result(None)
        # other messages (trailers, extensions the client did not ask for) are not for us

    def _notify_end(self) -> None:
        """Wake every ``receive()`` waiting for the response's end or the client's leaving."""
        listeners = self._listeners
        if listeners:
            self._listeners = []
            for waiter in listeners:
                if not waiter.done():
                    waiter.set_result(None)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The application's task has ended: fail whoever still waits for its response."""
        failure = asyncio.CancelledError() if task.cancelled() else task.exception()
        head = self._head
        if not head.done():
            error = AppFailed("the gateway application ended without a response")
            if failure is not None:
                error.__cause__ = failure
            head.set_exception(error)
            return
        if self._complete or self._closed:
            return
        self._failure = failure or AppFailed("the gateway application ended mid-response")
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)

"""The event-loop thread every blocking `Router` of a process runs on, and each router's way onto it.

One loop thread for all routers, not one each: a thread and an event loop (three
descriptors) per router is what made routers made and dropped pile up, as
``openai.OpenAI()`` clients do not. The routers share the loop, never state: each
keeps its own pools, statistics and stages, as before. What they share is time on
one thread: a hook or stage that blocks the loop holds up every router's requests,
not just its own (hooks and stages should not block; sinks run in a worker thread).

The thread is a daemon, started on first use, so a script that never closes its
routers still exits; at exit, the routers still open are closed on it (their
pools, the in-process gateway, the recorder's sinks), then the loop stops. After
``os.fork()`` the child starts its own thread on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from ._route_info import RouteInfo

__all__ = ["AsyncStream", "BlockingStream", "LoopThread", "RouterClosed", "RouterPortal",
           "loop_thread"]  # fmt: skip

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
logger = logging.getLogger("llmroute")


class RouterClosed(RuntimeError):
    """The router is closed (like the openai SDK's closed client, a `RuntimeError`)."""

    def __init__(self) -> None:
        super().__init__("this router is closed: make a new one to send more requests")


class LoopThread:
    """A blocking portal on a daemon thread, started on first use; stopped at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closers: weakref.WeakSet[RouterPortal] = weakref.WeakSet()
        self._exit_registered = False

    @property
    def started(self) -> bool:
        return self._portal is not None

    def portal(self) -> BlockingPortal:
        portal = self._portal
        if portal is None:
            with self._lock:
                if self._portal is None:
                    self._start()
                portal = self._portal
                assert portal is not None
        return portal

    def _start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            async with BlockingPortal() as portal:
                self._loop = asyncio.get_running_loop()
                self._portal = portal
                ready.set()
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve)
            except BaseException as exc:  # reported to the thread that started us
                failure.append(exc)
                ready.set()

        thread = threading.Thread(target=run, name="llmroute-loop", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            raise RuntimeError("llmroute could not start its event-loop thread") from failure[0]
        self._thread = thread
        if not self._exit_registered:
            self._exit_registered = True
            atexit.register(self.stop)

    def on_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()

    def run_soon(self, func: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Start `func()` on the loop, from any thread, without waiting for it."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: _keep(loop.create_task(func())))

    def track(self, portal: RouterPortal) -> None:
        self._closers.add(portal)

    def stop(self) -> None:
        """Close the routers still open, then stop the loop and wait for the thread."""
        for closer in list(self._closers):
            try:
                closer.close()
            except Exception:
                logger.exception("llmroute: a router failed to close at exit")
        portal = self._portal
        if portal is not None:  # routers dropped just before: let their closing finish
            portal.call(_finish_closing)  # (after the callbacks that start it: FIFO)
        with self._lock:
            portal, thread = self._portal, self._thread
            self._portal = self._thread = self._loop = None
        if portal is not None:
            portal.call(portal.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def forget(self) -> None:
        """In a forked child: the parent's thread does not exist here."""
        self._lock = threading.Lock()
        self._portal = self._thread = self._loop = None
        self._closers = weakref.WeakSet()


_CLOSING: set[asyncio.Task[object]] = set()


def _keep(task: asyncio.Task[object]) -> None:
    """Hold a fire-and-forget task until it ends (the loop keeps only weak references)."""
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


async def _finish_closing() -> None:
    await asyncio.gather(*_CLOSING, return_exceptions=True)


_LOOP = LoopThread()
os.register_at_fork(after_in_child=_LOOP.forget)


def loop_thread() -> LoopThread:
    """The process's loop thread (started on first use)."""
    return _LOOP


def _close_dropped(aclose: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """A router nobody holds any more: close it on the loop, without waiting (the garbage
    collector may run this in any thread, even one the closing would wait for)."""
    if _LOOP.started:
        _LOOP.run_soon(aclose)


class RouterPortal:
    """One router's calls onto the shared loop thread; refuses them once the router is closed.

    `close()` runs the router's ``aclose`` on the loop once, and waits for it. When
    nothing references the portal any more (the `Router`, its streams and its SDK
    clients all hold it), the closing is started by itself; at exit, the routers
    still open are closed.
    """

    __slots__ = ("__weakref__", "_finalizer", "closed")

    def __init__(self, aclose: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.closed = False
        self._finalizer = weakref.finalize(self, _close_dropped, aclose)
        self._finalizer.atexit = False  # the loop thread closes it at exit, before stopping
        _LOOP.track(self)

    @property
    def started(self) -> bool:
        """Whether the loop thread runs (if not, this router has sent nothing yet)."""
        return _LOOP.started

    def call(self, func: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
        """``await func(*args)`` on the loop thread; the result, or what it raised."""
        if self.closed:
            raise RouterClosed()
        result: T = _LOOP.portal().call(func, *args)
        return result

    def run(self, func: Callable[..., T], *args: object) -> T:
        """`func(*args)` on the loop thread if it runs, so that it never reads or changes
        state while a request does; directly when no loop thread has started or the router
        is closed (then nothing else touches the router)."""
        if self.closed or not _LOOP.started:
            return func(*args)

        async def run() -> T:
            return func(*args)

        result: T = _LOOP.portal().call(run)
        return result

    def close(self) -> None:
        """Close the router on the loop thread, waiting for it (once; later calls do
        nothing). From the loop thread itself, the closing is started, not awaited."""
        self.closed = True
        detached = self._finalizer.detach()
        if detached is None or not _LOOP.started:
            return  # closed already, or nothing ever ran (no pool was opened)
        aclose = detached[2][0]
        if _LOOP.on_loop_thread():
            _LOOP.run_soon(aclose)
        else:
            _LOOP.portal().call(aclose)


class AsyncStream(Protocol[T_co]):
    """What `BlockingStream` drives: an async iterator that says how it was routed and
    releases its connection on `aclose`."""

    @property
    def llmroute(self) -> RouteInfo: ...

    async def __anext__(self) -> T_co: ...

    async def aclose(self) -> None: ...


S = TypeVar("S", bound=AsyncStream[Any])
_END = object()


class BlockingStream(Generic[S, T]):
    """An async stream `S` of `T` read from a blocking caller, each step on the loop thread,
    like the openai SDK's ``Stream``: iterate it, close it early with `close()` or a
    ``with`` block to release the connection. `ChatStream` and the Responses API's
    ``ResponseEventStream`` are its two kinds."""

    def __init__(self, stream: S, portal: RouterPortal) -> None:
        self._stream = stream
        self._portal = portal

    @property
    def llmroute(self) -> RouteInfo:
        """What llmroute did for this request (final once the stream has ended)."""
        return self._stream.llmroute

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item = self._portal.call(self._next)
        if item is _END:
            raise StopIteration
        return item  # type: ignore[return-value]

    async def _next(self) -> T | object:
        try:
            item: T = await self._stream.__anext__()
        except StopAsyncIteration:
            return _END
        return item

    def close(self) -> None:
        """Stop reading and release the connection; safe to call more than once."""
        self._portal.call(self._stream.aclose)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""What an object opened on an event loop, released if the object is dropped unclosed or
the loop ends first: as an ``openai.AsyncOpenAI()`` left open releases its connections.

`hold(owner, aclose)` registers `aclose`, a coroutine function that releases something
`owner` opened on the running loop (an aiohttp session, a Redis client's connections).
It runs on that loop, once:

- when `owner` is garbage-collected (the router was dropped): started from whichever
  thread collected it, never awaited there (that thread may be the loop's own, or one the
  closing would wait for);
- when the loop ends with it still held: ``asyncio.run`` (and ``asyncio.Runner``,
  anyio's runners) cancel every task before closing their loop, and one task per loop
  waits for that, then awaits each closer.

Either way the thing is closed on its own loop, so its library has nothing to warn about
("Unclosed client session", "unclosed Connection"). `Held.detach()` forgets it: for the
owner's own closing, which must not run it again. `aclose` must not reference `owner`
(a bound method of the session, not of its owner), or the owner is never collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Held", "hold"]

logger = logging.getLogger("llmroute")

Closer = Callable[[], Coroutine[Any, Any, object]]


class _LoopWatch:
    """The closers held on one loop, run when the loop ends with them still held.

    Its task waits for nothing until it is cancelled, as every task is when
    ``asyncio.run`` ends.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.closers: dict[int, Closer] = {}
        self.task = loop.create_task(self._watch(loop), name="llmroute-release")

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await loop.create_future()
        finally:
            closers, self.closers = list(self.closers.values()), {}
            for aclose in closers:
                try:
                    await aclose()
                except Exception:  # nothing to tell anyone: the loop is ending
                    logger.debug("llmroute: releasing at the loop's end failed", exc_info=True)


_WATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatch] = (
    weakref.WeakKeyDictionary()
)
#: Closings started for dropped owners, held until they end (the loop keeps only weak
#: references to its tasks).
_CLOSING: set[asyncio.Task[object]] = set()
_KEYS = itertools.count()


def _watch(loop: asyncio.AbstractEventLoop) -> _LoopWatch:
    watch = _WATCHES.get(loop)
    if watch is None or watch.task.done():
        watch = _WATCHES[loop] = _LoopWatch(loop)
    return watch


def _dropped(aclose: Closer, loop: asyncio.AbstractEventLoop, key: int) -> None:
    """The owner was garbage-collected (in any thread): run `aclose` on its loop."""
    watch = _WATCHES.get(loop)
    if watch is not None:
        watch.closers.pop(key, None)
    if loop.is_closed():
        return  # the loop's end released it already, or nothing can now

    def start() -> None:
        task = loop.create_task(aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(start)


class Held:
    """One release registered by `hold`: runs at most once, unless detached first."""

    __slots__ = ("_finalizer", "_key", "_loop")

    def __init__(self, owner: object, aclose: Closer, loop: asyncio.AbstractEventLoop) -> None:
        key = next(_KEYS)
        _watch(loop).closers[key] = aclose
        self._key, self._loop = key, loop
        self._finalizer = weakref.finalize(owner, _dropped, aclose, loop, key)

    def detach(self) -> None:
        """Forget the release (its owner closes the thing itself, or has already)."""
        self._finalizer.detach()
        watch = _WATCHES.get(self._loop)
        if watch is not None:
            watch.closers.pop(self._key, None)


def hold(owner: object, aclose: Closer) -> Held:
    """Run `aclose` on the running loop when `owner` is garbage-collected or the loop ends,
    whichever comes first (see the module)."""
    return Held(owner, aclose, asyncio.get_running_loop())

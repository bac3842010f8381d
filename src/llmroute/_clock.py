"""Time, injectable: the pipeline and the mock provider read the clock through this."""

from __future__ import annotations

import time
from asyncio import AbstractEventLoop, BaseEventLoop, get_running_loop
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of time: `monotonic` for intervals, `time` for timestamps, and `sleep`."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...


class SystemClock:
    """The real clock: `monotonic` is the system's monotonic clock (``time.monotonic``) at
    its full resolution, or, inside an event loop whose class keeps time of its own (a
    test loop that fast-forwards time, such as the class looptime gives a loop), that
    loop's ``time()``, so virtual time moves llmroute's clock with it.

    asyncio's loops keep ``time.monotonic`` itself, and uvloop's a rounding of
    it to whole milliseconds (libuv's clock): read through uvloop's
    ``loop.time()``, every latency and time to first token that `llmroute
    serve` (on uvloop) records would be rounded to a millisecond. A ``time``
    replaced on one loop object, rather than on its class, is not followed.
    """

    def monotonic(self) -> float:
        try:
            loop = get_running_loop()
        except RuntimeError:
            return time.monotonic()
        kind = type(loop)
        if kind in _SYSTEM_TIME or _keeps_system_time(kind):
            return time.monotonic()
        return loop.time()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


#: The event-loop classes met that keep the system's monotonic clock, and those that keep
#: time of their own.
_SYSTEM_TIME: set[type[AbstractEventLoop]] = set()
_OWN_TIME: set[type[AbstractEventLoop]] = set()


def _keeps_system_time(loop_class: type[AbstractEventLoop]) -> bool:
    """Whether `loop_class`'s ``time()`` is asyncio's (``time.monotonic``) or uvloop's
    (libuv's monotonic clock, ``CLOCK_MONOTONIC`` as ``time.monotonic``, in milliseconds),
    not one of its own; remembered in `_SYSTEM_TIME` or `_OWN_TIME`."""
    if loop_class in _OWN_TIME:
        return False
    for cls in loop_class.__mro__:
        if "time" in cls.__dict__:
            if cls is BaseEventLoop or (cls.__module__, cls.__name__) == ("uvloop.loop", "Loop"):
                _SYSTEM_TIME.add(loop_class)
                return True
            break
    _OWN_TIME.add(loop_class)
    return False

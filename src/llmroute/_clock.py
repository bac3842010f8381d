"""Time, injectable: the pipeline and the mock provider read the clock through this."""

from __future__ import annotations

import time
from asyncio import get_running_loop
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
    """The real clock, on the running event loop's time scale.

    Inside a loop, `monotonic` is the loop's own time, so deadlines computed
    from it agree with the loop's timers (and a test loop that fast-forwards
    time moves llmroute's clock with it).
    """

    def monotonic(self) -> float:
        try:
            return get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

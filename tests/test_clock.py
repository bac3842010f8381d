"""`SystemClock`: the system's monotonic clock at full resolution, or a loop's own time.

`llmroute serve` runs on uvloop, whose ``loop.time()`` counts whole
milliseconds; the clock the router measures latencies and times to first
token with must not round them to that. A test loop whose class keeps time
of its own (fast-forwarded, as looptime makes it) must still move the clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from llmroute import SystemClock

BUSY = 0.0003  # seconds of busy-waiting between two readings: under a millisecond


def loops() -> list[Any]:
    """Runners of a coroutine on each kind of stock event loop installed."""
    runners: list[Any] = [pytest.param(asyncio.run, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with the dev extra on CPython
        runners.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip("no uvloop")))
    else:
        runners.append(pytest.param(uvloop.run, id="uvloop"))
    return runners


def reading_error(clock: SystemClock) -> float:
    """How far the clock's reading of a sub-millisecond busy wait is from the wait itself,
    timed by ``time.perf_counter`` inside the two readings (the best of five tries, so a
    preemption between a reading and its timer does not count)."""
    errors = []
    for _ in range(5):
        before = clock.monotonic()
        started = time.perf_counter()
        while time.perf_counter() - started < BUSY:
            pass
        waited = time.perf_counter() - started
        errors.append(abs(clock.monotonic() - before - waited))
    return min(errors)


async def reading_error_in_a_loop() -> float:
    return reading_error(SystemClock())


@pytest.mark.parametrize("run", loops())
def test_the_clock_measures_under_a_millisecond_on_a_stock_loop(
    run: Callable[[Coroutine[Any, Any, float]], float],
) -> None:
    # uvloop's loop.time() would read 0 or 1 ms for this 0.3 ms wait (an error >= 0.3 ms)
    assert run(reading_error_in_a_loop()) < 0.0001


def test_the_clock_measures_under_a_millisecond_outside_a_loop() -> None:
    assert reading_error(SystemClock()) < 0.0001


class OwnTimeLoop(asyncio.SelectorEventLoop):
    """A loop that keeps time of its own, as a virtual-time test loop does."""

    def time(self) -> float:
        return 1234.5


async def clock_reading() -> float:
    return SystemClock().monotonic()


def test_the_clock_follows_a_loop_that_keeps_its_own_time() -> None:
    loop = OwnTimeLoop()
    try:
        assert loop.run_until_complete(clock_reading()) == 1234.5
    finally:
        loop.close()


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_the_clock_moves_with_fast_forwarded_time() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await asyncio.sleep(60)
    assert clock.monotonic() - before == pytest.approx(60)


def test_the_clock_follows_a_uvloop_class_that_keeps_its_own_time() -> None:
    uvloop = pytest.importorskip("uvloop")

    class OwnTimeUvloop(uvloop.Loop):  # type: ignore[misc,name-defined]
        def time(self) -> float:
            return 4321.0

    loop = OwnTimeUvloop()
    try:
        assert loop.run_until_complete(clock_reading()) == 4321.0
    finally:
        loop.close()

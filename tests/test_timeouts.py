"""The task-cancelling timeouts behave as `asyncio.timeout` does, case by case.

Each case runs a body under `asyncio.timeout` and under the class being
tested, in a task of its own, with the same outside events (an outer
cancellation, an outer timeout), and compares how the task ended and how
many cancellations it still has pending. Virtual time (looptime): exact and
instant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from llmroute._timeouts import AttemptTimer, StreamDeadline, TaskInterrupt

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

Body = Callable[[], Awaitable[None]]
Bound = Callable[[float, Body], Awaitable[str]]


async def with_asyncio(limit: float, body: Body) -> str:
    try:
        async with asyncio.timeout(limit):
            await body()
    except TimeoutError:
        return "timeout"
    return "ok"


async def with_attempt_timer(limit: float, body: Body) -> str:
    timer = AttemptTimer(limit)
    try:
        await body()
    except BaseException as exc:
        if timer.stop(exc):
            return "timeout"
        raise
    timer.stop(None)
    return "ok"


async def with_stream_deadline(limit: float, body: Body) -> str:
    deadline = StreamDeadline(limit)
    deadline.start_read()
    try:
        await body()
    except BaseException as exc:
        if deadline.end_read(exc):
            return "timeout"
        raise
    finally:
        deadline.cancel()
    deadline.end_read(None)
    return "ok"


async def outcome(
    bound: Bound, limit: float, body: Body, *, cancel_at: float | None = None
) -> tuple[str, int, float]:
    """How the bounded task ended, its pending cancellations after, and when it ended."""
    loop = asyncio.get_running_loop()
    pending = -1

    async def run() -> str:
        nonlocal pending
        result = await bound(limit, body)
        pending = asyncio.current_task().cancelling()  # type: ignore[union-attr]
        await asyncio.sleep(10)  # a timer left armed would cancel this
        return result

    task = loop.create_task(run())
    if cancel_at is not None:
        loop.call_at(cancel_at, task.cancel)
    try:
        result = await task
    except asyncio.CancelledError:
        result = "cancelled"
    return result, pending, loop.time()


def sleeping(seconds: float) -> Body:
    async def body() -> None:
        await asyncio.sleep(seconds)

    return body


def swallowing(seconds: float) -> Body:
    """A body that catches its cancellation and returns (bad manners, but it happens)."""

    async def body() -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            return

    return body


CASES = {
    "the deadline passes": (1.0, sleeping(5), None),
    "the body ends in time": (1.0, sleeping(0.5), None),
    "an outer cancellation first": (1.0, sleeping(5), 0.5),
    "an outer cancellation with the deadline": (1.0, sleeping(5), 1.0),
    "an outer cancellation after": (1.0, sleeping(0.5), 0.7),
    "a deadline already past": (0.0, sleeping(5), None),
    "a negative deadline": (-1.0, sleeping(5), None),
    "the body swallows the deadline": (1.0, swallowing(5), None),
}


@pytest.mark.parametrize("bound", [with_attempt_timer, with_stream_deadline])
@pytest.mark.parametrize("case", list(CASES))
async def test_a_timer_ends_a_task_as_asyncio_timeout_does(bound: Bound, case: str) -> None:
    limit, body, cancel_at = CASES[case]
    expected = await outcome(with_asyncio, limit, body, cancel_at=cancel_at)
    start = asyncio.get_running_loop().time()
    shifted = None if cancel_at is None else start + cancel_at
    got = await outcome(bound, limit, body, cancel_at=shifted)
    assert (got[0], got[1], got[2] - start) == pytest.approx(expected)


async def test_an_outer_timeout_is_never_taken_for_the_inner_one() -> None:
    async def inner() -> str:
        return await with_attempt_timer(5.0, sleeping(10))

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await inner()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_stream_deadline_between_reads_only_flags_it() -> None:
    deadline = StreamDeadline(1.0)
    deadline.start_read()
    await asyncio.sleep(0.5)
    assert not deadline.end_read(None)
    await asyncio.sleep(1.0)  # passes while nothing reads: no task is cancelled
    assert deadline.expired
    deadline.start_read()
    await asyncio.sleep(0.1)
    assert not deadline.end_read(None)
    deadline.cancel()


async def test_a_stream_deadline_interrupts_the_task_that_reads_now() -> None:
    deadline = StreamDeadline(1.0)
    loop = asyncio.get_running_loop()

    async def read(seconds: float) -> str:
        deadline.start_read()
        try:
            await asyncio.sleep(seconds)
        except BaseException as exc:
            return "interrupted" if deadline.end_read(exc) else "cancelled"
        deadline.end_read(None)
        return "read"

    assert await loop.create_task(read(0.5)) == "read"
    assert await loop.create_task(read(5.0)) == "interrupted"
    assert loop.time() == pytest.approx(1.0)


async def test_an_interrupt_claims_its_own_cancellation_only() -> None:
    loop = asyncio.get_running_loop()

    async def waiting(also_cancelled: bool) -> tuple[str, int]:
        task = asyncio.current_task()
        assert task is not None
        interrupt = TaskInterrupt(task)
        loop.call_later(1.0, interrupt.fire)
        loop.call_later(1.0, interrupt.fire)  # a second fire does nothing
        if also_cancelled:
            loop.call_later(1.0, task.cancel)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError as exc:
            if interrupt.claim(exc):
                return "interrupted", task.cancelling()
            raise
        return "slept", task.cancelling()

    assert await loop.create_task(waiting(False)) == ("interrupted", 0)
    with pytest.raises(asyncio.CancelledError):
        await loop.create_task(waiting(True))


async def test_an_interrupt_not_fired_claims_nothing() -> None:
    task = asyncio.current_task()
    assert task is not None
    interrupt = TaskInterrupt(task)
    assert not interrupt.claim(asyncio.CancelledError())
    assert task.cancelling() == 0


async def _endings(
    runs: dict[str, tuple[Bound, float, float, float]],
) -> dict[str, tuple[str, float]]:
    """How and when each run ended: a name's bound, limit, work and delay before it starts,
    all running at once."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended: dict[str, tuple[str, float]] = {}

    async def run(name: str, bound: Bound, limit: float, work: float, delay: float) -> None:
        await asyncio.sleep(delay)
        result = await bound(limit, lambda: asyncio.sleep(work))
        ended[name] = (result, round(loop.time() - started, 6))

    await asyncio.gather(*(run(name, *given) for name, given in runs.items()))
    return ended


async def test_attempt_timers_sharing_one_loop_timer_each_expire_at_their_own_deadline() -> None:
    """Attempt timers share one loop timer (armed at the earliest deadline): each attempt
    still times out at its own deadline, not earlier or later, whatever order they start
    in, whichever stop early, and however a deadline earlier than the armed one arrives."""
    attempt = with_attempt_timer
    ended = await _endings({
        "late": (attempt, 10.0, 100.0, 0.0),  # armed first, at 10
        "early": (attempt, 3.0, 100.0, 1.0),  # earlier than the armed one: re-arms at 4
        "done": (attempt, 2.0, 0.5, 0.0),  # stops before its deadline: never cancelled
        "gone": (attempt, 1.5, 1.0, 2.0),  # the earliest deadline (3.5), gone by 3: fires early
        "same": (attempt, 3.0, 100.0, 1.0),  # the same deadline as "early"
        "after": (attempt, 6.0, 5.0, 4.0),  # started after the first expiry: ends at 9, in time
        "later": (attempt, 1.0, 100.0, 20.0),  # after every other one ended: armed again at 21
    })  # fmt: skip
    assert ended == {
        "late": ("timeout", 10.0),
        "early": ("timeout", 4.0),
        "done": ("ok", 0.5),
        "gone": ("ok", 3.0),
        "same": ("timeout", 4.0),
        "after": ("ok", 9.0),
        "later": ("timeout", 21.0),
    }


async def test_stream_deadlines_and_attempt_timers_share_one_keeper() -> None:
    """A stream's deadline joins its loop's attempt timers (one loop timer for all): each
    still ends at its own deadline, a stream deadline cancelled early never fires, and one
    that passes between reads only flags the stream."""
    idle = StreamDeadline(2.5)  # read by no one when it passes
    disarmed = StreamDeadline(1.5)
    disarmed.cancel()  # the stream ended: it never expires
    attempt, stream = with_attempt_timer, with_stream_deadline
    ended = await _endings({
        "attempt": (attempt, 10.0, 100.0, 0.0),  # armed first, at 10
        "stream": (stream, 3.0, 100.0, 1.0),  # re-arms at 4
        "read": (stream, 2.0, 0.5, 0.0),  # cancelled at 0.5
        "early": (attempt, 1.0, 100.0, 2.0),  # the earliest: 3
        "late": (stream, 5.0, 100.0, 20.0),  # armed again at 25
    })  # fmt: skip
    assert ended == {
        "attempt": ("timeout", 10.0),
        "stream": ("timeout", 4.0),
        "read": ("ok", 0.5),
        "early": ("timeout", 3.0),
        "late": ("timeout", 25.0),
    }
    assert idle.expired
    assert not disarmed.expired
    idle.cancel()


def test_a_loop_that_bounded_attempts_is_collected_once_it_is_gone() -> None:
    """The loops' deadline keepers hold their loops weakly: a script that runs
    `asyncio.run()` again and again leaves no loop behind."""
    import gc
    import weakref

    async def bounded() -> None:
        await with_attempt_timer(5.0, lambda: asyncio.sleep(0))

    loop = asyncio.new_event_loop()
    loop.run_until_complete(bounded())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    other = asyncio.new_event_loop()  # the next loop's keeper takes the last one's place
    other.run_until_complete(bounded())
    other.close()
    gc.collect()
    assert gone() is None

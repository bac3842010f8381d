"""Cancelling a task from a timer or a callback: the only code that calls `Task.uncancel()`.

`asyncio.timeout` cancels the task it bounds when its deadline passes, and
on the way out turns that cancellation, and only that one, into a
`TimeoutError`: it calls `uncancel()` and compares the task's count of
pending cancellations with the count it saw on entry. A cancellation that
came from anywhere else (the caller gave up, the server is shutting down)
stays a `CancelledError`; it is never swallowed.

The classes here follow those rules without `asyncio.timeout`'s async
context manager, which costs two coroutines and a state machine on every
use (an attempt's bound was 346k -> 308k instructions per request for the
whole of commit 032c8f4, which introduced the attempt timer):

- `TaskInterrupt` cancels a given task from a callback (a client that went
  away) and tells its own cancellation apart from any other;
- `AttemptTimer` bounds one attempt of the driver, in the task that runs it;
- `StreamDeadline` bounds a whole stream across its reads, which may each
  run in a different task (the caller's, or a portal thread's).

`tests/test_timeouts.py` checks each against `asyncio.timeout` itself.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from asyncio import CancelledError
from typing import Protocol

__all__ = ["AttemptTimer", "StreamDeadline", "TaskInterrupt"]


def _current_task() -> asyncio.Task[object]:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("a timeout must run in a task")
    return task


def _claim(task: asyncio.Task[object], cancelling: int, error: BaseException | None) -> bool:
    """Balance the one `cancel()` a timer made; whether `error` is that cancellation alone.

    `cancelling` is the task's count of pending cancellations when the timer
    started: above it after `uncancel()`, someone else cancelled the task too,
    and their cancellation must go on.
    """
    return task.uncancel() <= cancelling and type(error) is CancelledError


class TaskInterrupt:
    """Cancels `task` when `fire()` is called, and claims that cancellation alone.

    For a watcher that ends a request from a callback (the gateway's client
    disconnect): the task catches `CancelledError` and asks `claim()` whether
    it was this interrupt's doing (then it may end quietly) or someone else's
    (then it must re-raise).
    """

    __slots__ = ("_cancelling", "_task", "fired")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self._task, self._cancelling, self.fired = task, task.cancelling(), False

    def fire(self) -> None:
        """Cancel the task (once; later calls do nothing)."""
        if not self.fired:
            self.fired = True
            self._task.cancel()

    def claim(self, error: BaseException | None) -> bool:
        """Whether `error` is this interrupt's cancellation and no other (then it is
        consumed: the task is no longer cancelling because of it). Call it once, with
        what the task caught, or None when it caught nothing."""
        if not self.fired:
            return False
        self.fired = False
        return _claim(self._task, self._cancelling, error)


class _Deadline(Protocol):
    """What a loop's `_Deadlines` keeps: an `AttemptTimer` or a `StreamDeadline`."""

    deadline: float

    def expire(self) -> None: ...


class _Deadlines:
    """One loop timer for every `AttemptTimer` and `StreamDeadline` on a loop, armed at the
    earliest deadline.

    A timer of its own per attempt cost a `TimerHandle`, its heap push (compared by a
    Python ``__lt__``), its cancel and its later pop from the loop's heap: 19.5k
    instructions of a request's ~300k (callgrind, with a transport that answers at
    once). Here an attempt adds itself to a set and removes itself when it stops;
    the loop timer stays armed at or before the earliest deadline in the set (an
    earlier deadline re-arms it; one that leaves only makes it fire early, and then
    it expires what is due and re-arms at the earliest left), so with deadlines of
    seconds it fires about once per deadline, not once per attempt. A loop timer an
    earlier deadline superseded is left to fire and do nothing (cancelling it would
    mean keeping its handle). A loop closed with attempts still pending (its tasks
    never finished, which `asyncio.run` never leaves) is kept with them. A stream's
    deadline joins the set the same way (its loop timer was the same cost per stream).
    """

    __slots__ = ("_armed_at", "_generation", "loop", "timers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: Its loop, weakly; nor does it keep its loop timer's handle (which holds the
        #: loop): either would keep the loop, a key of the weak `_deadlines`, alive for good.
        self.loop = weakref.ref(loop)
        self._generation = 0  # of the loop timer armed last: an older one does nothing
        self._armed_at = math.inf
        #: The attempt timers and stream deadlines under way, each removed when it stops
        #: (or is cancelled) or expires.
        self.timers: set[_Deadline] = set()

    def add(self, timer: _Deadline) -> None:
        self.timers.add(timer)
        if timer.deadline < self._armed_at:
            self._arm(timer.deadline)

    def _arm(self, when: float) -> None:
        loop = self.loop()
        assert loop is not None  # armed by an attempt running on it, or by its own timer
        self._armed_at = when
        self._generation += 1  # a later loop timer armed before is superseded
        loop.call_at(when, self._fire, self._generation)

    def _fire(self, generation: int) -> None:
        if generation != self._generation:
            return  # superseded by an earlier deadline, which fired before
        loop = self.loop()
        assert loop is not None  # it is running this
        # the loop runs a timer once its time is within the clock's resolution: what it
        # was armed for is due, whatever time() says now
        due_by = max(loop.time(), self._armed_at)
        self._armed_at = math.inf
        timers = self.timers
        due = [timer for timer in timers if timer.deadline <= due_by]
        timers.difference_update(due)
        for timer in due:
            timer.expire()
        if timers:
            self._arm(min(timer.deadline for timer in timers))


#: Each loop's `_Deadlines` (weakly: a loop that is gone takes its own with it), and the
#: last one asked for, which is the one asked for next almost always.
_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)
_last: _Deadlines | None = None


def _deadlines_of(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _last
    last = _last  # one read: another thread may replace it (its own loop)
    if last is not None and last.loop() is loop:
        return last
    found = _deadlines.get(loop)
    if found is None:
        found = _deadlines[loop] = _Deadlines(loop)
    _last = found
    return found


class AttemptTimer:
    """`asyncio.timeout(limit)` for one attempt, without its coroutines and state machine.

    Made in the task it bounds; `stop()` disarms it and says whether the
    attempt's error is the timer's own cancellation (the attempt timed out).
    A `limit` of zero or less expires on the loop's next turn, as
    `asyncio.timeout` does with a deadline already past. The loop's `_Deadlines`
    keeps the time (one loop timer for all of them).
    """

    __slots__ = ("_cancelling", "_expired", "_keeper", "_task", "deadline")

    def __init__(self, limit: float) -> None:
        loop = asyncio.get_running_loop()
        task = _current_task()
        self._task, self._cancelling, self._expired = task, task.cancelling(), False
        self._keeper: _Deadlines | None
        if limit > 0:
            self.deadline = loop.time() + limit
            keeper = self._keeper = _deadlines_of(loop)
            keeper.add(self)
        else:
            self.deadline, self._keeper = -math.inf, None
            loop.call_soon(self.expire)

    def expire(self) -> None:
        """Cancel the task (its keeper calls this when the deadline passes)."""
        if not self._expired:
            self._expired = True
            self._task.cancel()

    def stop(self, error: BaseException | None) -> bool:
        """Disarm the timer; whether `error` (what the attempt raised, None if it returned)
        is the timer's cancellation. Call it once."""
        keeper = self._keeper
        if keeper is not None:
            keeper.timers.discard(self)
        if not self._expired:
            self._expired = True  # a call_soon expiry still pending does nothing now
            return False
        return _claim(self._task, self._cancelling, error)


class StreamDeadline:
    """A stream's request deadline, which interrupts the read in progress when it passes.

    The stream brackets each read with `start_read()` and `end_read()`; when
    the deadline passes during a read, the reading task is cancelled and
    `end_read()` claims that cancellation (the caller turns it into a timeout
    error). Past the deadline between reads, `expired` tells the stream to
    stop before reading again.
    """

    __slots__ = ("_cancelling", "_interrupted", "_keeper", "_reader", "deadline", "expired")

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._reader: asyncio.Task[object] | None = None
        self._interrupted = False
        self._cancelling = 0
        # kept by the loop's `_Deadlines` with the attempts' timers, not a loop timer of its
        # own: the gateway's own work per 1-chunk stream 791.0k -> 782.2k instructions
        # (callgrind, ``count_gateway.py --kinds own-stream --chunks 1``, 2026-12-03)
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + seconds
        keeper = self._keeper = _deadlines_of(loop)
        keeper.add(self)

    def expire(self) -> None:
        """The deadline has passed (its keeper calls this): interrupt the read under way."""
        self.expired = True
        reader = self._reader
        if reader is not None:
            self._interrupted = True
            reader.cancel()

    def start_read(self) -> None:
        """A read begins in the current task: the deadline may interrupt it."""
        task = self._reader = _current_task()
        self._cancelling = task.cancelling()

    def end_read(self, error: BaseException | None) -> bool:
        """The read ended with `error` (None if it returned): whether that is the
        deadline's own cancellation. Call it once per `start_read()`."""
        task, self._reader = self._reader, None
        if not self._interrupted or task is None:
            return False
        self._interrupted = False
        return _claim(task, self._cancelling, error)

    def cancel(self) -> None:
        """Disarm the deadline (the stream has ended)."""
        self._keeper.timers.discard(self)

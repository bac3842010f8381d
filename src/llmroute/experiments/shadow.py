"""The background tasks of shadow traffic: bounded, counted, and ended with the router.

A shadow copy runs in a task of its own, apart from the caller's, so that
nothing it does (waiting on a slow target, failing) reaches the caller. At
most `max_in_flight` copies of one experiment run at once: a copy beyond
that is dropped and counted, never queued (a queue would grow without bound
while the shadow target is slow, which is when copies pile up). Closing the
router cancels the copies still running and waits for them to end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass

__all__ = ["ShadowPool", "ShadowStatus"]

_log = logging.getLogger("llmroute")


@dataclass(frozen=True, slots=True)
class ShadowStatus:
    """One experiment's shadow copies so far.

    Attributes:
        in_flight: copies running now.
        started: copies started.
        completed: copies whose request ended (answered or failed: each is
            recorded either way).
        dropped: copies not started because `max_in_flight` were running (or
            the router was closing).
        cancelled: copies cancelled by the router's close.
        crashed: copies that raised instead of ending their request (a bug:
            each is logged with its traceback).
    """

    in_flight: int
    started: int
    completed: int
    dropped: int
    cancelled: int
    crashed: int


class ShadowPool:
    """Runs one experiment's shadow copies in the background, at most `limit` at once."""

    __slots__ = ("_cancelled", "_closed", "_completed", "_crashed", "_dropped", "_started",
                 "_tasks", "limit", "name")  # fmt: skip

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._started = self._completed = self._dropped = self._cancelled = self._crashed = 0

    def launch(self, copy: Coroutine[None, None, None]) -> bool:
        """Start `copy` in the background; False (and `copy` closed unstarted) when
        `limit` copies are running or the pool is closed."""
        if self._closed or len(self._tasks) >= self.limit:
            copy.close()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1_000 == 0:
                _log.warning(
                    "llmroute: experiment %r dropped %d shadow request(s) so far (%d in flight "
                    "at most: shadow.max_in_flight)", self.name, self._dropped, self.limit,
                )  # fmt: skip
            return False
        task = asyncio.get_running_loop().create_task(copy, name=f"llmroute-shadow-{self.name}")
        self._started += 1
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return True

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self._cancelled += 1
            return
        error = task.exception()
        if error is None:
            self._completed += 1
            return
        self._crashed += 1
        _log.error("llmroute: a shadow request of experiment %r crashed", self.name, exc_info=error)

    def status(self) -> ShadowStatus:
        """The counters."""
        return ShadowStatus(
            len(self._tasks), self._started, self._completed, self._dropped, self._cancelled,
            self._crashed,
        )  # fmt: skip

    async def aclose(self) -> None:
        """Refuse new copies, cancel the running ones, and wait for them to end (those of
        this event loop; those of another are cancelled through their own loop)."""
        self._closed = True
        loop = asyncio.get_running_loop()
        here = []
        for task in list(self._tasks):
            owner = task.get_loop()
            if owner is loop:
                task.cancel()
                here.append(task)
            elif not owner.is_closed():
                owner.call_soon_threadsafe(task.cancel)
        if here:
            await asyncio.wait(here)

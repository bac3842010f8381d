"""Work a stage starts off the request's path (a round trip to Redis), held until it ends.

The loop keeps only weak references to its tasks, so a stage that starts one and returns
must hold it; `Background` does, drops each as it ends, and `drain` waits for those still
running (the stage's ``drain()``, before the router closes its stores).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]


class Background:
    """The tasks a stage started off the request's path, until each ends."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task of the running loop, held until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __len__(self) -> int:
        """The tasks not yet dropped (one that has just ended may still count)."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until none is running, those started meanwhile included; raise what one
        that ended meanwhile raised.

        Only the tasks not yet done are awaited. A task that has ended stays in the set
        until its done callback runs on a later turn of the loop, and on Python 3.12 and
        later awaiting ``gather`` of tasks that are all done returns without giving the
        loop that turn: waiting "until the set is empty" spun there for ever, at full CPU,
        in the router's ``aclose()``.
        """
        while True:
            running = [task for task in self._tasks if not task.done()]
            if not running:
                return
            await asyncio.gather(*running)

"""Reading the last bytes of finished bodies so that their connections can be reused.

A stream's last event usually arrives a moment before the end of its chunked
body; closing the response at once would throw the connection away. Both pooled
engines hand that tail to `Drains` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

__all__ = ["DRAIN_BYTES", "DRAIN_SECONDS", "Drains"]

#: How long a drain waits for the rest of a finished body before giving up on reuse.
DRAIN_SECONDS = 1.0
#: How much of a finished body a drain reads before giving up on reuse.
DRAIN_BYTES = 65_536
#: How long `release()` itself waits before leaving the rest to the background.
_DRAIN_INLINE_SECONDS = 0.05


class Drains:
    """Tasks that read the last bytes of finished bodies so their connections can be
    reused; owned by a transport, cancelled when it closes."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, drain: Coroutine[Any, Any, None]) -> None:
        """Run `drain` briefly in line (the end of a body usually follows its last event
        at once, so the next request can reuse the connection), then in the background."""
        task = asyncio.get_running_loop().create_task(drain)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({task}, timeout=_DRAIN_INLINE_SECONDS)

    async def cancel(self) -> None:
        """Stop every pending drain (their connections are closed, not reused)."""
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""The recorder's worker thread offers the GIL back to the event loop's thread.

A sink's and the recorder's Python work runs in a worker thread. Without
pauses, each time the event loop's thread released the GIL (at every socket
wait) it would wait up to the interpreter's switch interval (5 ms) to get it
back from this thread, which costs requests far more than the recording
itself. `time.sleep(0)` releases the GIL and lets a waiting thread take it.
This module is the one place that does it: the recorder's batch loop, the
JSON Lines sink and the SQLite store all go through `gil_friendly`.

Not yet isolated by a measurement of its own; oracle: tests/test_fast_paths.py (the same items, the GIL
offered once `hold` has passed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["HOLD", "gil_friendly", "offer_gil"]

T = TypeVar("T")

#: The longest the worker computes before offering the GIL (seconds).
HOLD = 0.0002


def offer_gil() -> None:
    """Let another thread (the event loop's) take the GIL now, if it waits for it."""
    time.sleep(0)


def gil_friendly(items: Iterable[T], hold: float = HOLD) -> Iterator[T]:
    """`items`, offering the GIL to other threads every `hold` seconds of work."""
    clock = time.perf_counter
    held = clock()
    for item in items:
        if clock() - held > hold:
            offer_gil()
            held = clock()
        yield item

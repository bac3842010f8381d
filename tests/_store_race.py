"""A store read beside a writer: each read must see every committed batch whole (a
request with all its attempts) or not at all, whichever store it is."""

from __future__ import annotations

import threading
from collections.abc import Callable

from llmroute.observe import RequestRecord, SqliteStore
from llmroute.observe.postgres import PostgresStore

BATCHES, PER_BATCH = 400, 5


def reads_beside_a_writer(
    open_store: Callable[[], SqliteStore | PostgresStore], record: Callable[..., RequestRecord]
) -> None:
    """Read `records()` over and over while another thread writes `BATCHES` batches of
    requests of one attempt each (started earlier and earlier, so they sort first and
    every read spans old and new rows); every request read has its attempt."""
    first = open_store()
    first.write([record(0)])
    done = threading.Event()

    def write() -> None:
        writer = open_store()
        try:
            for n in range(1, BATCHES):
                batch = range(n * PER_BATCH, (n + 1) * PER_BATCH)
                writer.write([record(i, started_at=first_started - n) for i in batch])
        finally:
            writer.close()
            done.set()

    first_started = first.records()[0].started_at
    thread = threading.Thread(target=write)
    thread.start()
    reads = 0
    try:
        while not done.is_set() or reads == 0:
            assert all(len(r.attempts) == 1 for r in first.records())
            reads += 1
    finally:
        thread.join()
    assert len(first.records()) == 1 + (BATCHES - 1) * PER_BATCH
    first.close()

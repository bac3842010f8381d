"""The recorder's counters, as `AsyncRouter.recording` and ``/metrics`` report them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RecorderStatus"]


@dataclass(frozen=True, slots=True)
class RecorderStatus:
    """What the recorder has done so far.

    Attributes:
        queued: records waiting to be written.
        recorded: records built and handed to the sinks.
        dropped: requests not recorded because the queue was full (or the
            router closed).
        failed: records lost to an error while building or redacting them.
        sink_errors: batches a sink failed to write.
        hook_errors: hook calls that raised.
        store_waiting: records a PostgreSQL store keeps while its server is
            unreachable (0 for a SQLite store).
        store_outages: times a PostgreSQL store's server became unreachable.
        store_dropped: records a PostgreSQL store dropped, its backlog full.
    """

    queued: int
    recorded: int
    dropped: int
    failed: int
    sink_errors: int
    hook_errors: int
    store_waiting: int = 0
    store_outages: int = 0
    store_dropped: int = 0

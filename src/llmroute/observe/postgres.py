"""The PostgreSQL log store: the request log of a fleet, in a database it shares.

``logging.store: postgresql://user:password@host:5432/database`` keeps the
same tables as `SqliteStore` (``requests``, ``attempts``, ``properties``,
``feedback``, ``experiment_stops`` and the rollups of
`llmroute.observe.rollup`), so that the analytics, the dashboard and the
experiment reports ask both the same questions (`llmroute.observe.dialect`).

Writing. The recorder hands each batch to `write` in its worker thread (never
on the event loop). A batch is copied (``COPY``) into temporary tables, then
inserted in one transaction: rows whose request id is stored already are
skipped (``ON CONFLICT DO NOTHING``), and the rollups add the rows actually
inserted, in key order (concurrent writers of a fleet take their locks in one
order). The session commits with ``synchronous_commit = off`` (SQLite's
``synchronous=NORMAL``: a server crash may lose the last moments, never
consistency). A batch the server refuses as data (a NUL character, which
text columns cannot hold) is written again with NULs replaced by U+FFFD. The
driver is psycopg 3, through its blocking API: the writer already runs in its
own thread, and an asynchronous connection would have to run on the router's
event loop, the request path.

Outages. When the server cannot be reached (a connection error, a server
shutting down, a deadlock or serialisation failure), the batch is kept in a
bounded backlog, the outage is logged once and counted, and writing is tried
again after a pause that doubles up to `RETRY_MAX` seconds; every kept record
is written, oldest first, when the server returns. When the backlog holds
``backlog`` records, the oldest are dropped and counted (`status`). Any other
error (a record the server refuses) is raised to the recorder, which logs and
counts it, and that batch is not retried.

Schema. ``llmroute_schema`` holds the schema version (SQLite's
``user_version``); opening a database migrates it in one transaction under an
advisory lock (processes starting together migrate once). A database with a
``requests`` table but no ``llmroute_schema`` is not an llmroute store and is
refused; a newer version is refused. The first step creates the schema of
SQLite's version 7; later steps follow SQLite's numbering (`pg_schema`).

Retention. With ``retention`` set, the writer deletes, at most once every
`PRUNE_EVERY` seconds, the requests (their attempts and properties), the
feedback and the minute rollups and latency histograms older than it; the hour
and day ones are kept, so long-range charts still cover what the raw rows no
longer do.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError, RequestError
from . import histogram, rollup
from ._worker import gil_friendly
from .dialect import POSTGRES, Dialect, StoreUnavailable
from .feedback import ExperimentStop, Feedback
from .pg_schema import SCHEMA_VERSION, migrate
from .record import RequestRecord
from .rows import (
    ATTEMPT_COLUMNS,
    FEEDBACK_COLUMNS,
    MAX_FEEDBACK_PER_REQUEST,
    MAX_FEEDBACK_PER_STICKY_KEY,
    PROPERTY_COLUMNS,
    PRUNE_EVERY,
    REQUEST_COLUMNS,
    attempt_rows,
    property_rows,
    prune_statements,
    read_feedback,
    read_records,
    read_stop,
    request_row,
    stop_row,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "BACKLOG",
    "IDLE_READERS",
    "RETRY_MAX",
    "PostgresStore",
    "PostgresStoreStatus",
]

logger = logging.getLogger("llmroute.observe")

#: Records kept while the server is unreachable, at most (then the oldest are dropped).
BACKLOG = 100_000
#: The longest pause between two attempts to reach the server again (seconds).
RETRY_MAX = 30.0
#: The first pause after a failed attempt (seconds); it doubles up to `RETRY_MAX`.
RETRY_FIRST = 0.5
#: The longest a connection attempt waits (seconds).
CONNECT_TIMEOUT = 5
#: Reader connections kept open between uses, at most.
IDLE_READERS = 4
#: Records written in one transaction at most when a backlog is caught up.
CHUNK = 5_000

_NEW = "llmroute_new_"
_TEMP_TABLES = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_NEW}requests (LIKE requests) ON COMMIT DELETE ROWS",
    f"CREATE TEMP TABLE IF NOT EXISTS {_NEW}attempts (LIKE attempts) ON COMMIT DELETE ROWS",
    f"CREATE TEMP TABLE IF NOT EXISTS {_NEW}properties (LIKE properties) ON COMMIT DELETE ROWS",
    f"CREATE TEMP TABLE IF NOT EXISTS {_NEW}ids (request_id TEXT NOT NULL) ON COMMIT DELETE ROWS",
)


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


#: The rows of ``requests r`` a batch inserted.
_INSERTED = f"r.request_id IN (SELECT request_id FROM {_NEW}ids)"  # noqa: S608
_INSERT = (
    f"WITH ins AS (INSERT INTO requests ({_quoted(REQUEST_COLUMNS)}) "  # noqa: S608
    f"SELECT {_quoted(REQUEST_COLUMNS)} FROM {_NEW}requests "
    "ON CONFLICT (request_id) DO NOTHING RETURNING request_id) "
    f"INSERT INTO {_NEW}ids SELECT request_id FROM ins",
    f"INSERT INTO attempts ({_quoted(ATTEMPT_COLUMNS)}) "  # noqa: S608
    f"SELECT {_quoted(ATTEMPT_COLUMNS)} FROM {_NEW}attempts "
    f"WHERE request_id IN (SELECT request_id FROM {_NEW}ids) ON CONFLICT DO NOTHING",
    f"INSERT INTO properties ({_quoted(PROPERTY_COLUMNS)}) "  # noqa: S608
    f"SELECT {_quoted(PROPERTY_COLUMNS)} FROM {_NEW}properties "
    f"WHERE request_id IN (SELECT request_id FROM {_NEW}ids) ON CONFLICT DO NOTHING",
    *rollup.batch_statements(POSTGRES, _INSERTED),
    *histogram.batch_statements(POSTGRES, _INSERTED),
)


def _clean(row: Sequence[Any]) -> tuple[Any, ...]:
    """`row` with NUL characters replaced (PostgreSQL's text cannot hold them; SQLite's can)."""
    return tuple(v.replace("\x00", "\ufffd") if type(v) is str and "\x00" in v else v for v in row)


@dataclass(frozen=True, slots=True)
class PostgresStoreStatus:
    """What the PostgreSQL writer has done so far.

    Attributes:
        waiting: records kept for the server to come back (the backlog).
        written: records handed to the server in committed transactions.
        outages: times the server became unreachable.
        dropped: records dropped because the backlog was full.
        failed: records in batches the server refused (not retried).
    """

    waiting: int
    written: int
    outages: int
    dropped: int
    failed: int


class _Connection:
    """A psycopg connection whose ``execute`` takes ``?`` placeholders (see `Dialect.sql`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self._conn.execute(POSTGRES.sql(sql), parameters)


class PostgresStore:
    """A PostgreSQL database of request records: a `Sink`, and a store the analytics read.

    Args:
        url: ``postgresql://user:password@host:port/database`` (libpq's URL; query
            parameters such as ``sslmode`` or ``options=-csearch_path%3Dllmroute`` pass
            through).
        retention: delete what is older than this many seconds (None: keep everything).
        backlog: records kept at most while the server is unreachable.
    """

    def __init__(self, url: str, *, retention: float | None = None, backlog: int = BACKLOG) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"expected a 'postgresql://...' URL, got {_redacted(url)!r}")
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError(
                "the PostgreSQL store needs psycopg: pip install 'llmroute[postgres]'"
            ) from exc
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"invalid PostgreSQL URL {_redacted(url)!r}: {exc}") from exc
        if retention is not None and retention <= 0:
            raise ConfigError(f"retention must be positive, got {retention!r}")
        if backlog < 1:
            raise ConfigError(f"backlog must be at least 1, got {backlog!r}")
        self.url = url
        self.retention = retention
        self._backlog_max = backlog
        self._backlog: deque[RequestRecord] = deque()
        self._writer: psycopg.Connection[Any] | None = None
        self._close_writer: weakref.finalize[..., PostgresStore] | None = None
        self._lock = threading.Lock()
        #: Readers kept open between uses (`connect`), closed by `close` or when the store
        #: is dropped unclosed.
        self._idle: list[psycopg.Connection[Any]] = []
        self._idle_lock = threading.Lock()
        self._close_idle = weakref.finalize(self, _close_all, self._idle)
        self._retry_at = 0.0
        self._pause = RETRY_FIRST
        self._down = False
        self._pruned_at = float("-inf")  # never: monotonic time starts near 0 at boot
        self._written = self._outages = self._dropped = self._failed = 0

    def __repr__(self) -> str:
        return f"PostgresStore({_redacted(self.url)!r})"

    @property
    def dialect(self) -> Dialect:
        """PostgreSQL's SQL (`llmroute.observe.dialect`)."""
        return POSTGRES

    @property
    def location(self) -> str:
        """Where the store is, for messages: its URL without the password."""
        return _redacted(self.url)

    def exists(self) -> bool:
        """Always true: a database answers for itself (connecting may still fail)."""
        return True

    # -------------------------------------------------------------- connections

    def _open(self) -> psycopg.Connection[Any]:
        import psycopg
        from psycopg.types.numeric import FloatLoader

        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        try:
            # SUM over integers is NUMERIC: read it as a float, as SQLite's sums are
            conn.adapters.register_loader("numeric", FloatLoader)
            migrate(conn, _redacted(self.url))
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[_Connection]:
        """A connection for reading (the schema migrated first), in autocommit mode.
        `read_only`: its reads share one snapshot (a repeatable-read transaction: a batch
        committed meanwhile is seen whole or not at all) and refuse writes. `ConfigError`
        when the server cannot be reached.

        Up to `IDLE_READERS` connections are kept open between uses (a dashboard page asks
        several questions; connecting costs milliseconds): each is checked with a round
        trip (reading the schema version, which must still be this version's) before it is
        used again, and one left in a transaction or by an error is closed instead."""
        import psycopg

        conn = self._checkout()
        kept = False
        try:
            mode = "READ ONLY" if read_only else "READ WRITE"
            conn.execute(f"SET SESSION CHARACTERISTICS AS TRANSACTION {mode}")
            if read_only:  # one snapshot for all its reads (a batch is seen whole or not)
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            yield _Connection(conn)
            if read_only:
                conn.execute("COMMIT")
            kept = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        except psycopg.OperationalError as exc:
            state = exc.sqlstate  # None: the connection was lost on this side
            if state == "57014" or (state is not None and not state.startswith(("08", "57"))):
                raise  # not the connection or the server going away (a query canceled, ...)
            raise StoreUnavailable(
                f"lost the PostgreSQL store {self.location} during a query: {exc}"
            ) from exc
        finally:
            if kept:
                with self._idle_lock:
                    kept = len(self._idle) < IDLE_READERS
                    if kept:
                        self._idle.append(conn)
            if not kept:
                conn.close()

    def _checkout(self) -> psycopg.Connection[Any]:
        """An idle reader that still answers, or a new connection."""
        import psycopg

        while True:
            with self._idle_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            try:  # it still answers, and the schema is still this version's
                row = conn.execute("SELECT version FROM llmroute_schema").fetchone()
            except psycopg.Error:
                row = None
            if row is not None and row[0] == SCHEMA_VERSION:
                return conn
            conn.close()  # a new connection migrates, or refuses a newer schema
        try:
            return self._open()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"cannot reach the PostgreSQL store {self.location}: {exc}"
            ) from exc

    def _writing(self) -> psycopg.Connection[Any]:
        """The writing connection, opened on first use; call it with `_lock` held."""
        conn = self._writer
        if conn is None or conn.closed:
            conn = self._writer = self._open()
            # SQLite's synchronous=NORMAL, in PostgreSQL's terms: a commit is acknowledged
            # before its WAL reaches the disk, so a crash of the server (not of this process)
            # may lose the last fraction of a second of batches; never the database's
            # consistency. The server's setting stays for every other session.
            conn.execute("SET synchronous_commit = off")
            for sql in _TEMP_TABLES:
                conn.execute(sql)
            self._close_writer = weakref.finalize(self, conn.close)
        return conn

    def _drop_writer(self) -> None:
        if self._close_writer is not None:
            self._close_writer()
        self._close_writer = self._writer = None

    # -------------------------------------------------------------- the sink

    def write(self, records: Sequence[RequestRecord]) -> None:
        """Store a batch (a request id already stored is skipped), after any records kept
        from an outage; keep it when the server cannot be reached (see the module's
        docstring). Raises what the server refuses other than by being unreachable."""
        with self._lock:
            self._keep(records)
            if time.monotonic() >= self._retry_at:
                self._catch_up()

    def _keep(self, records: Sequence[RequestRecord]) -> None:
        backlog = self._backlog
        backlog.extend(records)
        over = len(backlog) - self._backlog_max
        if over > 0:
            for _ in range(over):
                backlog.popleft()
            before = self._dropped
            self._dropped += over
            if before == 0 or before // 10_000 != self._dropped // 10_000:
                logger.error(
                    "llmroute PostgreSQL store: %d record(s) dropped so far, the backlog of "
                    "%d kept during the outage being full", self._dropped, self._backlog_max,
                )  # fmt: skip

    def _catch_up(self) -> None:
        """Write the backlog, oldest first, a chunk per transaction."""
        backlog = self._backlog
        import psycopg

        operational = psycopg.OperationalError
        while backlog:
            chunk = [backlog[i] for i in range(min(len(backlog), CHUNK))]
            try:
                try:
                    self._transaction(chunk)
                except psycopg.DataError:
                    # most likely a NUL character, which text columns cannot hold: again,
                    # with them replaced (checking every value up front costs 5% of a write)
                    self._transaction(chunk, clean=True)
            except operational as exc:
                self._drop_writer()
                self._unreachable(exc)
                return
            except BaseException:
                self._failed += len(chunk)
                for _ in chunk:
                    backlog.popleft()
                self._drop_writer()
                raise
            for _ in chunk:
                backlog.popleft()
            self._written += len(chunk)
            if self._down:
                self._down = False
                logger.warning(
                    "llmroute PostgreSQL store %s reachable again; writing the records kept",
                    _redacted(self.url),
                )
        self._pause = RETRY_FIRST
        if self.retention is not None and time.monotonic() - self._pruned_at >= PRUNE_EVERY:
            self._prune()

    def _unreachable(self, exc: Exception) -> None:
        if not self._down:
            self._down = True
            self._outages += 1
            logger.error(
                "llmroute PostgreSQL store %s unreachable (%s): keeping records (%d now, at "
                "most %d) and retrying", _redacted(self.url), str(exc).strip() or type(exc).__name__,
                len(self._backlog), self._backlog_max,
            )  # fmt: skip
        self._retry_at = time.monotonic() + self._pause
        self._pause = min(self._pause * 2, RETRY_MAX)

    def _transaction(self, records: list[RequestRecord], *, clean: bool = False) -> None:
        conn = self._writing()
        with conn.transaction(), conn.cursor() as cur:
            self._copy(cur, "requests", REQUEST_COLUMNS,
                       [request_row(r) for r in gil_friendly(records)], clean)  # fmt: skip
            self._copy(cur, "attempts", ATTEMPT_COLUMNS, attempt_rows(records), clean)
            self._copy(cur, "properties", PROPERTY_COLUMNS, property_rows(records), clean)
            with conn.pipeline():  # the statements sent at once, not a round trip each
                for sql in _INSERT:
                    cur.execute(sql)

    @staticmethod
    def _copy(
        cur: psycopg.Cursor[Any],
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        clean: bool,
    ) -> None:
        if not rows:
            return
        with cur.copy(f"COPY {_NEW}{table} ({_quoted(columns)}) FROM STDIN") as copy:
            for row in gil_friendly(rows):
                copy.write_row(_clean(row) if clean else row)

    def _prune(self) -> None:
        assert self.retention is not None
        cutoff = time.time() - self.retention
        import psycopg

        conn = self._writing()
        try:
            with conn.transaction():
                for sql in prune_statements():
                    conn.execute(POSTGRES.sql(sql), (cutoff,))
        except psycopg.OperationalError as exc:
            self._drop_writer()
            self._unreachable(exc)
            return
        self._pruned_at = time.monotonic()

    def status(self) -> PostgresStoreStatus:
        """The writer's counters."""
        return PostgresStoreStatus(
            len(self._backlog), self._written, self._outages, self._dropped, self._failed
        )

    def close(self) -> None:
        """Write what is kept (one attempt), then close the writing connection; records the
        server still cannot take are counted as dropped and logged. The kept readers are
        closed too."""
        try:
            with self._lock:
                if self._backlog:
                    self._retry_at = 0.0
                    self._catch_up()
                if self._backlog:
                    lost = len(self._backlog)
                    self._dropped += lost
                    self._backlog.clear()
                    logger.error(
                        "llmroute PostgreSQL store %s closed unreachable: %d kept record(s) "
                        "lost", _redacted(self.url), lost,
                    )  # fmt: skip
                self._drop_writer()
        finally:
            with self._idle_lock:
                _close_all(self._idle)

    # -------------------------------------------------------------- feedback, stops

    def add_feedback(self, feedback: Feedback, *, scope: str | None = None) -> bool:
        """Store `feedback` if what it is about is recorded (see `SqliteStore.add_feedback`:
        the same rules and bounds), on the writing connection. The count and the insert
        run in one transaction holding an advisory lock on the subject, so that concurrent
        processes respect the bound too."""
        if feedback.request_id is not None:
            about, params = "request_id = ?", [feedback.request_id]
            subject, bound = "request_id = ?", [feedback.request_id]
            most, what, param = MAX_FEEDBACK_PER_REQUEST, "request", "request_id"
        elif feedback.experiment is not None and feedback.sticky_key is not None:
            about = subject = "experiment = ? AND sticky_key = ?"
            params = [feedback.experiment, feedback.sticky_key]
            bound = list(params)
            most, what, param = MAX_FEEDBACK_PER_STICKY_KEY, "sticky key", "sticky_key"
        else:
            raise ValueError("feedback is about a request, or an experiment's sticky key")
        if scope is not None:
            about += " AND key = ?"
            params.append(scope)
        row = _clean([getattr(feedback, name) for name in FEEDBACK_COLUMNS])
        # fixed clauses; every value is a bound parameter
        known = f"SELECT 1 FROM requests WHERE {about} LIMIT 1"  # noqa: S608
        count = f"SELECT count(*) FROM feedback WHERE {subject}"  # noqa: S608
        insert = (
            f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(FEEDBACK_COLUMNS))})"
        )
        import psycopg

        with self._lock:
            try:
                raw = self._writing()
                conn = _Connection(raw)
                if conn.execute(known, params).fetchone() is None:
                    return False
                with raw.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", ["|".join(bound)])
                    if _one(conn.execute(count, bound)) >= most:
                        raise RequestError(
                            f"this {what} has {most} feedback entries already, the most kept",
                            param=param,
                        )
                    conn.execute(insert, row)
            except psycopg.OperationalError as exc:
                self._drop_writer()
                raise StoreUnavailable(
                    f"cannot store feedback in the PostgreSQL store {self.location}: {exc}"
                ) from exc
        return True

    def stop_experiment(self, stop: ExperimentStop) -> ExperimentStop:
        """Store that `stop.experiment` stopped, unless a stop is stored already (another
        process decided first); return the stop stored."""
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO experiment_stops (experiment, winner, stopped_at, probability, "
                "metric, samples) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                stop_row(stop),
            )
            stored = read_stop(conn, stop.experiment)
        assert stored is not None  # inserted, or there already
        return stored

    # -------------------------------------------------------------- reading

    def experiment_stop(self, experiment: str) -> ExperimentStop | None:
        """When and why adaptive experiment `experiment` stopped (None: it has not)."""
        with self.connect() as conn:
            return read_stop(conn, experiment)

    def feedback(self, *, since: float | None = None) -> list[Feedback]:
        """Stored feedback, oldest first, given at `since` (Unix seconds) or later."""
        with self.connect() as conn:
            return read_feedback(conn, since=since)

    def schema_version(self) -> int:
        """The database's schema version (after migrating)."""
        with self.connect() as conn:
            return int(_one(conn.execute("SELECT version FROM llmroute_schema")))

    def records(
        self, *, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> list[RequestRecord]:
        """Stored records, oldest first, started in ``[since, until)`` (Unix seconds)."""
        with self.connect(read_only=True) as conn:
            return read_records(conn, since=since, until=until, limit=limit)


def _close_all(connections: list[psycopg.Connection[Any]]) -> None:
    """Close and forget `connections`."""
    while connections:
        connections.pop().close()


def _one(cursor: psycopg.Cursor[Any]) -> Any:
    """The first value of the one row a statement returns."""
    row = cursor.fetchone()
    assert row is not None  # an aggregate, or a table of one row
    return row[0]


def _redacted(url: str) -> str:
    """`url` without its password (for logs and errors)."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, auth = head.partition("://")
    user = auth.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{tail}" if ":" in auth else url

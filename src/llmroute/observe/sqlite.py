"""The SQLite log store: WAL mode, batched writes, a versioned schema with migrations.

One file holds these tables: ``requests`` (one row per record), ``attempts``
(one row per attempt, keyed by request id and position), ``properties``
(one row per request property with its request's start, indexed by key, value
and start for filtering over a time range, and grouping), ``feedback`` (one row per feedback given, on a request or on an
experiment's sticky key), ``experiment_stops`` (one row per adaptive
experiment that stopped with a winner), and the rollups of ``requests`` per
minute, hour and day with their latency histograms (see `llmroute.observe.rollup`
and `llmroute.observe.histogram`), updated in each batch's transaction.

The schema version is SQLite's ``user_version``; opening a store
written by an older llmroute migrates it in place, step by step, in one
transaction. A store from a newer llmroute is refused.

Writes come from the recorder's worker thread, one transaction per batch
(`llmroute.observe.sqlite_writer.write_batch`), run there (``writer="inline"``)
or in a writer process (``writer="process"``, a router's default: the SQLite
work then costs the router's process nothing but the rows' marshalling), in
WAL mode with ``synchronous=NORMAL``: a committed batch survives the process
being killed, and readers (`query`, ``llmroute stats``) never block the writer.
Feedback is written through the same connection, under the same lock, from
whichever thread gives it: one writer connection per store, so the process
never competes with itself for SQLite's write lock (other processes sharing
the file wait for it up to the busy timeout, 10 s).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Literal

from .._errors import ConfigError, RequestError
from ..stores.sqlite import create_private, enable_wal
from . import histogram, rollup
from ._worker import gil_friendly
from .dialect import SQLITE, Dialect
from .feedback import ExperimentStop, Feedback
from .record import RequestRecord
from .rows import (
    ATTEMPT_COLUMNS,
    FEEDBACK_COLUMNS,
    MAX_FEEDBACK_PER_REQUEST,
    MAX_FEEDBACK_PER_STICKY_KEY,
    PROPERTY_COLUMNS,
    PRUNE_EVERY,
    REQUEST_COLUMNS,
    encode_record,
    prune_statements,
    read_feedback,
    read_records,
    read_stop,
    stop_row,
)
from .sqlite_writer import Encoded, Plan, WriterProcess, decode_rows, write_batch

__all__ = ["FEEDBACK_COLUMNS", "MIGRATIONS", "PLAN", "SCHEMA_VERSION", "SqliteStore", "Writer"]

#: Where a store's batches are written: in the calling thread, or in a child process.
Writer = Literal["inline", "process"]

logger = logging.getLogger("llmroute.observe")

#: Marks a database as an llmroute store (SQLite's ``application_id``): "LRT1".
APPLICATION_ID = 0x4C525431

#: Each step takes the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    # 1: requests, attempts, properties
    """
    CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        operation TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        request_model TEXT NOT NULL,
        route TEXT,
        strategy TEXT,
        target TEXT,
        provider TEXT,
        model TEXT,
        response_model TEXT,
        response_id TEXT,
        stream INTEGER NOT NULL,
        status TEXT NOT NULL,
        latency_s REAL,
        ttft_s REAL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cache_read_tokens INTEGER,
        cache_write_tokens INTEGER,
        reasoning_tokens INTEGER,
        tokens_estimated INTEGER,
        cost_usd REAL,
        cache TEXT,
        answered_by TEXT,
        limit_type TEXT,
        error_type TEXT,
        error TEXT,
        finish_reasons TEXT,
        user TEXT,
        session TEXT,
        properties TEXT,
        prompt TEXT,
        completion TEXT
    );
    CREATE INDEX requests_started ON requests (started_at);
    CREATE INDEX requests_provider ON requests (provider, started_at);
    CREATE INDEX requests_model ON requests (model, started_at);
    CREATE INDEX requests_route ON requests (route, started_at);
    CREATE INDEX requests_user ON requests (user, started_at);
    CREATE TABLE attempts (
        request_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        target TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        kind TEXT NOT NULL,
        outcome TEXT NOT NULL,
        status INTEGER,
        error_type TEXT,
        error TEXT,
        started_s REAL NOT NULL,
        latency_s REAL NOT NULL,
        PRIMARY KEY (request_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE properties (
        request_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (request_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX properties_key ON properties (key, value);
    """,
    # 2: experiments and cache savings
    """
    ALTER TABLE requests ADD COLUMN experiment TEXT;
    ALTER TABLE requests ADD COLUMN variant TEXT;
    ALTER TABLE requests ADD COLUMN saved_usd REAL;
    CREATE INDEX requests_experiment ON requests (experiment, variant);
    """,
    # 3: the gateway key's name and the team (earlier rows: NULL)
    """
    ALTER TABLE requests ADD COLUMN key TEXT;
    ALTER TABLE requests ADD COLUMN team TEXT;
    CREATE INDEX requests_key ON requests (key, started_at);
    CREATE INDEX requests_team ON requests (team, started_at);
    """,
    # 4: how an experiment's variant was chosen, the sticky key's digest, failovers
    # out of the variant (earlier rows: NULL, NULL, 0)
    """
    ALTER TABLE requests ADD COLUMN assignment TEXT;
    ALTER TABLE requests ADD COLUMN sticky_key TEXT;
    ALTER TABLE requests ADD COLUMN off_variant INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX requests_sticky ON requests (experiment, sticky_key);
    """,
    # 5: feedback, on a request or on an experiment's sticky key (its digest)
    """
    CREATE TABLE feedback (
        feedback_id TEXT PRIMARY KEY,
        request_id TEXT,
        experiment TEXT,
        sticky_key TEXT,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        kind TEXT NOT NULL,
        comment TEXT,
        key TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX feedback_request ON feedback (request_id);
    CREATE INDEX feedback_sticky ON feedback (experiment, sticky_key);
    """,
    # 6: adaptive experiments that stopped with a winner (one row each: the first kept)
    """
    CREATE TABLE experiment_stops (
        experiment TEXT PRIMARY KEY,
        winner TEXT NOT NULL,
        stopped_at REAL NOT NULL,
        probability REAL NOT NULL,
        metric TEXT NOT NULL,
        samples TEXT NOT NULL
    );
    """,
    # 7: the rollup tables, filled from the rows
    rollup.MIGRATION,
    # 8: the rollups' latency histograms, filled from the rows
    histogram.MIGRATION,
    # 9: each property's request start, so that a property filter over a time range reads
    # the index, not every request of the range
    """
    ALTER TABLE properties ADD COLUMN started_at REAL;
    UPDATE properties SET started_at = (
        SELECT r.started_at FROM requests r WHERE r.request_id = properties.request_id);
    CREATE INDEX properties_time ON properties (key, value, started_at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: A batch's transaction (`llmroute.observe.sqlite_writer.write_batch`): the inserts, then
#: the rollups' and latency histograms' statements (over the rows past the rowid before it).
PLAN = Plan(
    REQUEST_COLUMNS, ATTEMPT_COLUMNS, PROPERTY_COLUMNS,
    tuple((sql, sql.count("?")) for sql in rollup.batch_sql() + histogram.batch_sql()),
    prune_statements(),
)  # fmt: skip


#: How long opening the store waits for other processes opening, migrating or
#: writing it (SQLite's busy timeout, and the wait to turn a new file to WAL).
_OPEN_TIMEOUT = 10.0
#: Prepared statements a connection keeps (the sqlite3 module's default is 128). The
#: writer's multi-row INSERTs differ in text from batch to batch (their row count and
#: which columns are literal NULLs), so they rarely hit the cache, and each cached one
#: is a compiled program of up to a few hundred kB: 128 of them held 38 MB more after
#: 20,000 requests (benchmarks/bench_memory.py, sqlite3_memory_used).
_CACHED_STATEMENTS = 16


class SqliteStore:
    """A SQLite file of request records: a `Sink`, and the store `query` reads.

    Args:
        path: the database file (created, with its folder, on first write).
        retention: delete what is older than this many seconds, at most every
            `PRUNE_EVERY` seconds, in a write's transaction: requests with their
            attempts and properties, feedback, minute rollups (None: keep everything).
        writer: where `write` runs a batch's transaction: ``inline`` (in the calling
            thread) or ``process`` (in a child process, `WriterProcess`, started on the
            first write: the SQLite work costs this process nothing; a router's store
            uses it, see ``logging.writer``). If no process can be started, the store
            writes inline (logged once).
    """

    def __init__(
        self, path: str | Path, *, retention: float | None = None, writer: Writer = "inline"
    ) -> None:
        if retention is not None and retention <= 0:
            raise ConfigError(f"retention must be positive, got {retention!r}")
        if writer not in ("inline", "process"):
            raise ConfigError(f"writer must be 'inline' or 'process', got {writer!r}")
        self.path = Path(path)
        self.retention = retention
        self.writer: Writer = writer
        self._pruned_at = float("-inf")  # never: monotonic time starts near 0 at boot
        self._writer: sqlite3.Connection | None = None
        #: Closes the writing connection: once, by `close`, or when the store is dropped
        #: unclosed (its router was), whichever comes first.
        self._close_writer: weakref.finalize[..., SqliteStore] | None = None
        self._process: WriterProcess | None = None
        self._close_process: weakref.finalize[..., SqliteStore] | None = None
        self._lock = threading.Lock()

    # -------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=_OPEN_TIMEOUT, isolation_level=None,
                               check_same_thread=False,
                               cached_statements=_CACHED_STATEMENTS)  # fmt: skip
        try:
            enable_wal(conn, _OPEN_TIMEOUT)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            histogram.register_ln(conn)  # the latency bins' SQL needs ln()
            _migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def dialect(self) -> Dialect:
        """SQLite's SQL (`llmroute.observe.dialect`)."""
        return SQLITE

    @property
    def location(self) -> str:
        """Where the store is, for messages: its path."""
        return str(self.path)

    def exists(self) -> bool:
        """Whether the file exists (nothing was ever stored when it does not)."""
        return self.path.exists()

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for reading (migrates an older store first); closed afterwards.
        `read_only`: it refuses writes (browsing a store never changes it), and its reads
        share one snapshot (a transaction: a batch committed meanwhile is seen whole or not
        at all, never requests without their attempts)."""
        if not self.path.exists():
            raise ConfigError(f"no llmroute store at {self.path}")
        with closing(self._connect()) as conn:
            if read_only:
                conn.execute("PRAGMA query_only = ON")
                conn.execute("BEGIN")
            yield conn
            if read_only:
                conn.execute("COMMIT")

    # -------------------------------------------------------------- the sink

    def _writing(self) -> sqlite3.Connection:
        """The writing connection, opened (and the file created) on first use; call it
        with `_lock` held."""
        conn = self._writer
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)
            conn = self._writer = self._connect()
            self._close_writer = weakref.finalize(self, conn.close)
        return conn

    def write(self, records: Sequence[RequestRecord]) -> None:
        """Store a batch in one transaction (`write_batch`), here or in the writer process;
        a request id already stored is skipped. Returns once the batch is committed."""
        self.write_encoded([encode_record(r) for r in gil_friendly(records)])

    def write_encoded(self, items: Sequence[Encoded]) -> None:
        """`write` for records already encoded (`llmroute.observe.rows.encode_record`: the
        recorder encodes a request's record at its end when this store is all that reads
        it)."""
        with self._lock:
            conn = self._writing()
            cutoff = None
            if self.retention is not None and time.monotonic() - self._pruned_at >= PRUNE_EVERY:
                cutoff = time.time() - self.retention
            process = self._writer_process()
            if process is None:
                write_batch(conn, PLAN, *decode_rows(items, PLAN), cutoff)
            else:
                process.write(items, cutoff)
            if cutoff is not None:
                self._pruned_at = time.monotonic()

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id while one runs (None: none runs, or the store writes
        inline)."""
        process = self._process
        return None if process is None else process.pid

    def _writer_process(self) -> WriterProcess | None:
        """The writer process (None: write inline); call it with `_lock` held."""
        if self.writer != "process":
            return None
        process = self._process
        if process is None:
            process = self._process = WriterProcess(
                self.path, PLAN, timeout=_OPEN_TIMEOUT, cached_statements=_CACHED_STATEMENTS
            )
            self._close_process = weakref.finalize(self, process.close)
        if process.pid is None:
            try:
                process.start()
            except OSError:
                logger.warning("llmroute: cannot start a writer process for %s; writing it "
                               "in this process", self.path, exc_info=True)  # fmt: skip
                self.writer = "inline"
                return None
        return process

    def add_feedback(self, feedback: Feedback, *, scope: str | None = None) -> bool:
        """Store `feedback` if what it is about is recorded: its request, or a request of
        its experiment under its sticky key; with `scope`, only a request made with that
        gateway key counts. Returns whether it was stored (looked up on a read connection,
        then counted and written in one transaction). Raises `RequestError` when what it
        is about has `MAX_FEEDBACK_PER_REQUEST` (or `MAX_FEEDBACK_PER_STICKY_KEY`)
        entries already."""
        if feedback.request_id is not None:
            about, params = "request_id = ?", [feedback.request_id]
        elif feedback.experiment is not None and feedback.sticky_key is not None:
            about, params = "experiment = ? AND sticky_key = ?", [
                feedback.experiment, feedback.sticky_key,
            ]  # fmt: skip
        else:
            raise ValueError("feedback is about a request, or an experiment's sticky key")
        if scope is not None:
            about += " AND key = ?"
            params.append(scope)
        if not self.path.exists():
            return False  # nothing was ever recorded here
        # fixed clauses; every value is a bound parameter
        sql = f"SELECT 1 FROM requests WHERE {about} LIMIT 1"  # noqa: S608
        with self.connect() as reader:  # an unknown id costs a read, not the write lock
            if reader.execute(sql, params).fetchone() is None:
                return False
        if feedback.request_id is not None:
            subject, bound = "request_id = ?", [feedback.request_id]
            most, what = MAX_FEEDBACK_PER_REQUEST, "request"
        else:
            subject, bound = "experiment = ? AND sticky_key = ?", params[:2]
            most, what = MAX_FEEDBACK_PER_STICKY_KEY, "sticky key"
        row = [getattr(feedback, name) for name in FEEDBACK_COLUMNS]
        with self._lock:
            conn = self._writing()
            conn.execute("BEGIN IMMEDIATE")
            try:
                count = f"SELECT count(*) FROM feedback WHERE {subject}"  # noqa: S608
                if conn.execute(count, bound).fetchone()[0] >= most:
                    raise RequestError(
                        f"this {what} has {most} feedback entries already, the most kept",
                        param="request_id" if feedback.request_id is not None else "sticky_key",
                    )
                marks = ", ".join("?" * len(FEEDBACK_COLUMNS))
                conn.execute(
                    f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) "  # noqa: S608
                    f"VALUES ({marks})",
                    row,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return True

    def stop_experiment(self, stop: ExperimentStop) -> ExperimentStop:
        """Store that `stop.experiment` stopped, unless a stop is stored already (another
        process decided first); return the stop stored."""
        row = stop_row(stop)
        with self._lock:
            conn = self._writing()
            conn.execute(
                "INSERT OR IGNORE INTO experiment_stops (experiment, winner, stopped_at, "
                "probability, metric, samples) VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
            stored = read_stop(conn, stop.experiment)
        assert stored is not None  # inserted, or there already
        return stored

    def experiment_stop(self, experiment: str) -> ExperimentStop | None:
        """When and why adaptive experiment `experiment` stopped (None: it has not, or
        nothing was ever stored)."""
        if not self.path.exists():
            return None
        with self.connect() as conn:
            return read_stop(conn, experiment)

    def feedback(self, *, since: float | None = None) -> list[Feedback]:
        """Stored feedback, oldest first, given at `since` (Unix seconds) or later."""
        with self.connect() as conn:
            return read_feedback(conn, since=since)

    def close(self) -> None:
        """Close the writing connection (the file stays; a later write opens it again)."""
        with self._lock:
            if self._close_process is not None:
                self._close_process()  # the child commits each batch before answering
                self._close_process = self._process = None
            if self._close_writer is not None:
                self._close_writer()
                self._close_writer = self._writer = None

    # -------------------------------------------------------------- reading

    def schema_version(self) -> int:
        """The store's schema version (after migrating)."""
        with self.connect() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[RequestRecord]:
        """Stored records, oldest first, started in ``[since, until)`` (Unix seconds)."""
        with self.connect(read_only=True) as conn:
            return read_records(conn, since=since, until=until, limit=limit)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to `SCHEMA_VERSION`, one step per transaction."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        return
    app = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app not in (0, APPLICATION_ID):
        raise ConfigError(f"{path} is a SQLite database, but not an llmroute store")
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path} was written by a newer llmroute (schema version {version}; "
            f"this version reads up to {SCHEMA_VERSION})"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        # another process may have migrated it meanwhile
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

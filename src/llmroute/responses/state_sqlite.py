"""Responses kept in a SQLite file, shared by the processes of one machine.

One table, ``stored_responses``: a row per response keyed by ``(scope, id)``,
with its ``expires_at`` (indexed) and ``previous_response_id`` in columns and
the JSON document every store keeps (`dump_stored`) in ``body``. Its schema
version is the one row of ``stored_responses_schema`` (not SQLite's
``user_version``, which belongs to the request log: both may share a file);
opening a file written by an older llmroute migrates it, step by step, in one
transaction that other processes wait for; a newer one is refused.

The file is in WAL mode with ``synchronous=NORMAL``: readers never wait for a
writer, writers of several processes take turns (each waits up to `timeout`
for the lock, then the operation fails with `ResponseStoreUnavailable`). It is
created readable by its owner only, as it holds conversations.

SQLite runs on a thread of the store's own, with its own connection: the
event loop only awaits. Expired rows are never read (every query compares
``expires_at`` with the clock), and are deleted in batches after a `put`, at
most once a minute per store object; a conversation is read in one query
(a recursive one over ``previous_response_id``).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .._clock import Clock, SystemClock
from .._errors import ConfigError, ResponseNotFound
from ..stores.sqlite import create_private, enable_wal
from .config import DEFAULT_RETENTION
from .state_base import (
    MAX_ID_LENGTH,
    ResponseNotStored,
    ResponseStore,
    ResponseStoreUnavailable,
    StoredResponse,
    check_chain,
    dump_stored,
    load_stored,
    logger,
    unreadable,
)

__all__ = [
    "MIGRATIONS",
    "PURGE_BATCH",
    "PURGE_INTERVAL",
    "SCHEMA_VERSION",
    "WALK_QUERY",
    "SqliteResponseStore",
]

T = TypeVar("T")

#: Each step takes the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    # 1: the responses, and the index the purge of expired ones uses
    """
    CREATE TABLE stored_responses (
        scope TEXT NOT NULL,
        id TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        previous_response_id TEXT,
        model TEXT NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (scope, id)
    );
    CREATE INDEX stored_responses_expires ON stored_responses (expires_at)
        WHERE expires_at IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: Expired rows are deleted at most this often by one store object (seconds)...
PURGE_INTERVAL = 60.0
#: ...this many in each transaction, so that other writers wait little.
PURGE_BATCH = 500

_LIVE = "(expires_at IS NULL OR expires_at > :now)"
_GET = f"SELECT body FROM stored_responses WHERE scope = :scope AND id = :id AND {_LIVE}"  # noqa: S608
_DELETE = f"DELETE FROM stored_responses WHERE scope = :scope AND id = :id AND {_LIVE}"  # noqa: S608

#: A conversation, newest first, in one query: each step a primary-key lookup within the scope.
WALK_QUERY = f"""
WITH RECURSIVE chain(n, previous_response_id, body) AS (
    SELECT 1, previous_response_id, body FROM stored_responses
     WHERE scope = :scope AND id = :id AND {_LIVE}
    UNION ALL
    SELECT chain.n + 1, r.previous_response_id, r.body
      FROM chain JOIN stored_responses AS r
        ON r.scope = :scope AND r.id = chain.previous_response_id
     WHERE chain.n < :limit AND (r.expires_at IS NULL OR r.expires_at > :now)
)
SELECT body FROM chain ORDER BY n
"""  # noqa: S608 - fixed text; every value is a bound parameter


class SqliteResponseStore(ResponseStore):
    """Responses in a SQLite file (see the module docstring).

    Args:
        path: the database file (created, with its folder, on first use). It may
            be the request log's file: the tables do not meet.
        clock: the time source of expiry (its `time`).
        retention: how long a new response is kept (`expires_at`).
        max_entry_size: a larger response is refused (`ResponseNotStored`).
        timeout: how long an operation waits for another writer's lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        retention: float | None = DEFAULT_RETENTION,
        max_entry_size: int = 16 * 1_048_576,
        timeout: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.retention = retention
        self.max_entry_size = max_entry_size
        self.timeout = timeout
        self._clock = clock or SystemClock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="llmroute-responses-sqlite")
        #: The connection; used on `_thread` only.
        self._conn: sqlite3.Connection | None = None
        self._next_purge = float("-inf")
        self._closed = False

    # -------------------------------------------------------------- on the store's thread

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                enable_wal(conn, self.timeout)
                conn.execute("PRAGMA synchronous=NORMAL")
                _migrate(conn, self.path)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return conn

    def _put(self, stored: StoredResponse, body: bytes) -> None:
        self._connection().execute(
            "INSERT OR REPLACE INTO stored_responses (scope, id, created_at, expires_at, "
            "previous_response_id, model, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (stored.scope, stored.id, stored.created_at, stored.expires_at,
             stored.previous_response_id, stored.model, body),
        )  # fmt: skip

    def _get(self, scope: str, response_id: str, now: float) -> bytes | None:
        parameters = {"scope": scope, "id": response_id, "now": now}
        row = self._connection().execute(_GET, parameters).fetchone()
        return None if row is None else bytes(row[0])

    def _delete(self, scope: str, response_id: str, now: float) -> bool:
        parameters = {"scope": scope, "id": response_id, "now": now}
        return self._connection().execute(_DELETE, parameters).rowcount > 0

    def _walk(self, scope: str, response_id: str, limit: int, now: float) -> list[bytes]:
        rows = self._connection().execute(
            WALK_QUERY, {"scope": scope, "id": response_id, "limit": limit, "now": now}
        )
        return [bytes(row[0]) for row in rows]

    def _purge(self, now: float) -> int:
        """Delete the rows expired at `now`, `PURGE_BATCH` per transaction."""
        conn, removed = self._connection(), 0
        while True:
            cursor = conn.execute(
                "DELETE FROM stored_responses WHERE rowid IN (SELECT rowid FROM "
                "stored_responses WHERE expires_at <= ? LIMIT ?)",
                (now, PURGE_BATCH),
            )
            removed += cursor.rowcount
            if cursor.rowcount < PURGE_BATCH:
                return removed

    def _purge_quietly(self, now: float) -> None:
        try:
            self._purge(now)
        except (sqlite3.Error, OSError, ConfigError) as exc:
            logger.warning("llmroute responses: deleting expired responses failed: %s", exc)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -------------------------------------------------------------- from the event loop

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise ResponseStoreUnavailable(f"responses: the SQLite store {self.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, functools.partial(call, *args))
        except (sqlite3.Error, OSError, ConfigError) as exc:
            raise ResponseStoreUnavailable(
                f"responses: the SQLite store {self.path} cannot be used: {exc}"
            ) from exc

    async def put(self, stored: StoredResponse) -> None:
        if len(stored.id) > MAX_ID_LENGTH or len(stored.scope) > MAX_ID_LENGTH:
            raise ResponseNotStored(f"response id or scope longer than {MAX_ID_LENGTH}")
        body = dump_stored(stored)
        if len(body) > self.max_entry_size:
            raise ResponseNotStored(
                f"response {stored.id!r} is {len(body)} bytes as JSON, over the store's "
                f"{self.max_entry_size} (responses.max_entry_size)"
            )
        await self._run(self._put, stored, body)
        now = self._clock.time()
        if now >= self._next_purge and not self._closed:
            self._next_purge = now + PURGE_INTERVAL
            # queued behind this put on the store's thread; nobody waits for it
            self._thread.submit(self._purge_quietly, now)

    def _load(self, body: bytes, where: str) -> StoredResponse | None:
        try:
            return load_stored(body)
        except ValueError as exc:
            unreadable(f"{self.path} {where}", exc)
            return None

    async def get(self, scope: str, response_id: str) -> StoredResponse | None:
        if len(response_id) > MAX_ID_LENGTH or len(scope) > MAX_ID_LENGTH:
            return None
        body = await self._run(self._get, scope, response_id, self._clock.time())
        if body is None:
            return None
        stored = self._load(body, repr(response_id))
        if stored is None or stored.id != response_id or stored.scope != scope:
            return None
        return stored

    async def delete(self, scope: str, response_id: str) -> bool:
        if len(response_id) > MAX_ID_LENGTH or len(scope) > MAX_ID_LENGTH:
            return False
        return await self._run(self._delete, scope, response_id, self._clock.time())

    async def walk(self, scope: str, response_id: str, limit: int) -> list[StoredResponse]:
        """As `ResponseStore.walk`, in one query."""
        if len(response_id) > MAX_ID_LENGTH or len(scope) > MAX_ID_LENGTH:
            raise ResponseNotFound(response_id)
        now = self._clock.time()
        chain: list[StoredResponse] = []
        for body in await self._run(self._walk, scope, response_id, limit, now):
            stored = self._load(body, f"in the chain of {response_id!r}")
            if stored is None:
                break  # the chain is broken here: check_chain names the missing id
            chain.append(stored)
        return check_chain(chain, scope, response_id, limit, now)

    async def purge(self) -> int:
        """Delete the expired rows now; how many were deleted."""
        return await self._run(self._purge, self._clock.time())

    async def check(self) -> str | None:
        try:
            await self._run(self._get, "", "", 0.0)
        except ResponseStoreUnavailable as exc:
            return str(exc)
        return None

    async def aclose(self) -> None:
        """Close the connection (after what is queued on the store's thread) and the thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._close)
        finally:
            self._thread.shutdown(wait=False)


def _version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stored_responses_schema'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT version FROM stored_responses_schema").fetchone()
    return 0 if row is None else int(row[0])


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to `SCHEMA_VERSION`, in one transaction."""
    version = _version(conn)
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: its stored responses were written by a newer llmroute (schema version "
            f"{version}; this version reads up to {SCHEMA_VERSION})"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn)  # another process may have migrated it meanwhile
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{path}: stored responses of a newer llmroute ({version})")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS stored_responses_schema (version INTEGER NOT NULL)"
        )
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute("DELETE FROM stored_responses_schema")
        conn.execute("INSERT INTO stored_responses_schema (version) VALUES (?)", (SCHEMA_VERSION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

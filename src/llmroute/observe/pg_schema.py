"""The PostgreSQL store's schema: its versions and the migration.

Versions follow SQLite's (`llmroute.observe.sqlite.SCHEMA_VERSION`): the
first step takes an empty database to version 7 at once (the first version
PostgreSQL stores have), each later step to the next version (8: the
rollups' latency histograms, `llmroute.observe.histogram`; 9: each property's
request start, indexed with its key and value). The version
lives in ``llmroute_schema`` (one row); `migrate` runs the steps in one
transaction holding an advisory lock, so processes opening a new database
together migrate it once.

Types: text stays ``TEXT``, SQLite's ``INTEGER`` becomes ``BIGINT`` and
``REAL`` becomes ``DOUBLE PRECISION``; times stay Unix seconds (as in SQLite),
so every query reads the same values. ``user`` is quoted: it is a reserved
word in PostgreSQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from . import histogram, rollup
from .dialect import POSTGRES

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

_REQUESTS = """
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
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
    latency_s DOUBLE PRECISION,
    ttft_s DOUBLE PRECISION,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cache_read_tokens BIGINT,
    cache_write_tokens BIGINT,
    reasoning_tokens BIGINT,
    tokens_estimated INTEGER,
    cost_usd DOUBLE PRECISION,
    cache TEXT,
    answered_by TEXT,
    limit_type TEXT,
    error_type TEXT,
    error TEXT,
    finish_reasons TEXT,
    "user" TEXT,
    session TEXT,
    properties TEXT,
    prompt TEXT,
    completion TEXT,
    experiment TEXT,
    variant TEXT,
    saved_usd DOUBLE PRECISION,
    key TEXT,
    team TEXT,
    assignment TEXT,
    sticky_key TEXT,
    off_variant INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX requests_started ON requests (started_at);
CREATE INDEX requests_provider ON requests (provider, started_at);
CREATE INDEX requests_model ON requests (model, started_at);
CREATE INDEX requests_route ON requests (route, started_at);
CREATE INDEX requests_user ON requests ("user", started_at);
CREATE INDEX requests_key ON requests (key, started_at);
CREATE INDEX requests_team ON requests (team, started_at);
CREATE INDEX requests_experiment ON requests (experiment, variant);
CREATE INDEX requests_sticky ON requests (experiment, sticky_key);
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
    started_s DOUBLE PRECISION NOT NULL,
    latency_s DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (request_id, idx)
);
CREATE TABLE properties (
    request_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (request_id, key)
);
CREATE INDEX properties_key ON properties (key, value);
CREATE TABLE feedback (
    feedback_id TEXT PRIMARY KEY,
    request_id TEXT,
    experiment TEXT,
    sticky_key TEXT,
    name TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    comment TEXT,
    key TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX feedback_request ON feedback (request_id);
CREATE INDEX feedback_sticky ON feedback (experiment, sticky_key);
CREATE INDEX feedback_created ON feedback (created_at);
CREATE TABLE experiment_stops (
    experiment TEXT PRIMARY KEY,
    winner TEXT NOT NULL,
    stopped_at DOUBLE PRECISION NOT NULL,
    probability DOUBLE PRECISION NOT NULL,
    metric TEXT NOT NULL,
    samples TEXT NOT NULL
)
"""

#: (the version a step brings the schema to, its statements separated by ``;``).
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (7, _REQUESTS + ";\n" + rollup.migration(POSTGRES)),
    # the rollups' latency histograms, filled from the rows
    (8, histogram.migration(POSTGRES)),
    # each property's request start, so that a property filter over a time range reads the
    # index, not every request of the range
    (
        9,
        """
        ALTER TABLE properties ADD COLUMN started_at DOUBLE PRECISION;
        UPDATE properties SET started_at = (
            SELECT r.started_at FROM requests r WHERE r.request_id = properties.request_id);
        CREATE INDEX properties_time ON properties (key, value, started_at)
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

#: A key for ``pg_advisory_xact_lock``: "LRT1" (SQLite's application id for the store).
_LOCK = 0x4C525431


def _has_table(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether the schema new tables go to has table `name`. A query of the catalog, not
    ``to_regclass``: that reads a catalog snapshot which may predate the migration another
    process committed while this one waited for the lock."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name = %s)",
        (name,),
    ).fetchone()
    return bool(row and row[0])


def _version(conn: psycopg.Connection[Any]) -> int | None:
    """The stored version (None: no ``llmroute_schema`` table)."""
    if not _has_table(conn, "llmroute_schema"):
        return None
    row = conn.execute("SELECT version FROM llmroute_schema").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: psycopg.Connection[Any], where: str) -> None:
    """Bring the schema up to `SCHEMA_VERSION` (the connection is in autocommit mode)."""
    if _version(conn) == SCHEMA_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        version = _version(conn)  # another process may have migrated it meanwhile
        if version is None:
            if _has_table(conn, "requests"):
                raise ConfigError(
                    f"{where} has a 'requests' table but is not an llmroute store "
                    "(no llmroute_schema table): use another database or schema"
                )
            conn.execute(
                "CREATE TABLE llmroute_schema (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE "
                "CHECK (only_row), version INTEGER NOT NULL)"
            )
            conn.execute("INSERT INTO llmroute_schema (version) VALUES (0)")
            version = 0
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{where} was written by a newer llmroute (schema version {version}; "
                f"this version reads up to {SCHEMA_VERSION})"
            )
        for target, step in MIGRATIONS:
            if target <= version:
                continue
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("UPDATE llmroute_schema SET version = %s", (target,))

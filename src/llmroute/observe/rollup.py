"""Rollup tables: the request log summed per minute, hour and day, for fast long ranges.

Each of ``rollup_minute``, ``rollup_hour`` and ``rollup_day`` holds, per time
bucket and per combination of `DIMENSIONS` (operation, route, target,
provider, model, status, error type, refusing limit, cache outcome), the
`MEASURES` of the requests that started in it: counts, errors, tokens, cost,
cache hits and misses, savings. A missing dimension (NULL in ``requests``) is
stored as ``''``, so that the primary key, and the upsert on it, see it as one
value. ``rollup_total_minute``, ``_hour`` and ``_day`` hold one row per
bucket, every dimension ``''``: an unfiltered view reads as many rows as it
has buckets.

The store keeps them in the writer's transaction (`batch_sql`): after a batch's
rows are inserted, one ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO
UPDATE`` per grain adds the batch's sums, reading back only the rows just
written (by rowid). The migration that creates the tables fills them from the
rows already stored (`migration`; SQLite's is `MIGRATION`).

Readers (`rollup_series`, `rollup_totals`) cover a range ``[since, until)``
with whole days, then whole hours, then whole minutes, and read the raw rows
for the seconds left at either end, so the figures are exactly those of the
raw rows. A rollup serves only the filters among its dimensions (`rollup_read.covers`):
a user, key, team, session, experiment or property filter reads the raw rows.
Every bucket start is computed from the integer second (the store's
`Dialect.integer` of ``started_at``: truncated in both databases), so a row is
in the same bucket in every grain and in the raw edges. The SQL is written
once for SQLite and PostgreSQL (`llmroute.observe.dialect`); the PostgreSQL
store runs `batch_statements` over the ids of the rows its batch inserted.
"""

from __future__ import annotations

from .dialect import SQLITE, Dialect, count_if, total

__all__ = [
    "DIMENSIONS",
    "FILTER_DIMENSIONS",
    "GRAINS",
    "INTEGER_MEASURES",
    "TOTAL_GRAINS",
    "MEASURES",
    "MIGRATION",
    "batch_sql",
    "batch_statements",
    "migration",
]

#: The columns of ``requests`` a rollup keeps apart (and so can filter and group by).
DIMENSIONS = ("operation", "route", "target", "provider", "model", "status", "error_type",
              "limit_type", "cache")  # fmt: skip
#: Each measure and the SQL that sums it over ``requests r`` (the same in every dialect).
MEASURES = {
    "requests": "COUNT(*)",
    "errors": count_if("r.status = 'error'"),
    "input_tokens": total("r.input_tokens"),
    "output_tokens": total("r.output_tokens"),
    "cache_read_tokens": total("r.cache_read_tokens"),
    "cache_write_tokens": total("r.cache_write_tokens"),
    "reasoning_tokens": total("r.reasoning_tokens"),
    "cost_usd": total("r.cost_usd"),
    "cost_unknown": count_if("r.cost_usd IS NULL"),
    "cache_hits": count_if("r.cache = 'hit'"),
    "cache_misses": count_if("r.cache = 'miss'"),
    "saved_usd": total("r.saved_usd"),
}
#: The measures that are counts (summed as integers).
INTEGER_MEASURES = frozenset(MEASURES) - {"cost_usd", "saved_usd"}
#: Table and width in seconds of each grain, coarsest first.
GRAINS = (("rollup_day", 86400), ("rollup_hour", 3600), ("rollup_minute", 60))
#: The same without dimensions (each ``''``): one row per bucket, for the unfiltered views.
TOTAL_GRAINS = (("rollup_total_day", 86400), ("rollup_total_hour", 3600),
                ("rollup_total_minute", 60))  # fmt: skip

#: The dimensions a filter may name (the refusing limit is not a filter).
FILTER_DIMENSIONS = frozenset(DIMENSIONS) - {"limit_type"}


def _bucket(dialect: Dialect, grain: int) -> str:
    return f"{dialect.integer('r.started_at')} / {grain} * {grain}"


def _table_sql(dialect: Dialect, table: str, *, keyed: bool = True) -> str:
    dims = ", ".join(f"{d} TEXT NOT NULL" for d in DIMENSIONS)
    measures = ", ".join(
        f"{m} {dialect.integer_type if m in INTEGER_MEASURES else dialect.real_type} NOT NULL"
        for m in MEASURES
    )
    bucket = f"bucket {dialect.integer_type} NOT NULL"
    if not keyed:
        return f"CREATE TEMP TABLE IF NOT EXISTS {table} ({bucket}, {dims}, {measures})"
    return (
        f"CREATE TABLE {table} ({bucket}, {dims}, {measures}, "
        f"PRIMARY KEY (bucket, {', '.join(DIMENSIONS)})){dialect.keyed_table_suffix}"
    )


def _sums_sql(dialect: Dialect, table: str, grain: int, where: str, *, upsert: bool = True) -> str:
    """``INSERT`` the sums of the rows of ``requests r`` matching `where` into `table`,
    adding them to a bucket's row already there."""
    apart = table not in dict(TOTAL_GRAINS)
    dims = ", ".join(f"COALESCE(r.{d}, '')" if apart else "''" for d in DIMENSIONS)
    positions = ", ".join(str(i) for i in range(1, len(DIMENSIONS) + 2))
    return (
        f"INSERT INTO {table} (bucket, {', '.join(DIMENSIONS)}, {', '.join(MEASURES)}) "  # noqa: S608
        f"SELECT {_bucket(dialect, grain)}, {dims}, {', '.join(MEASURES.values())} "
        f"FROM requests r WHERE {where} GROUP BY {positions}" + (_upsert(table) if upsert else "")
    )


def _upsert(table: str) -> str:
    return f" ON CONFLICT (bucket, {', '.join(DIMENSIONS)}) DO UPDATE SET " + ", ".join(
        f"{m} = {table}.{m} + excluded.{m}" for m in MEASURES
    )


def _merge_sql(table: str, grain: int) -> str:
    """``INSERT`` the sums of `_BATCH` (a batch summed per minute) into `table`, adding them
    to a bucket's row already there; in key order, so that concurrent writers take the
    rows' locks in one order."""
    apart = table not in dict(TOTAL_GRAINS)
    dims = ", ".join(d if apart else "''" for d in DIMENSIONS)
    positions = ", ".join(str(i) for i in range(1, len(DIMENSIONS) + 2))
    return (
        f"INSERT INTO {table} (bucket, {', '.join(DIMENSIONS)}, {', '.join(MEASURES)}) "  # noqa: S608
        f"SELECT bucket / {grain} * {grain}, {dims}, "
        f"{', '.join(f'SUM({m})' for m in MEASURES)} FROM {_BATCH} "
        f"WHERE 1 = 1 GROUP BY {positions} ORDER BY {positions}{_upsert(table)}"
    )


def migration(dialect: Dialect) -> str:
    """The schema step that creates the rollup tables and fills them from the stored rows.
    It stands alone (no other step refers to it), so it may move to any later position."""
    return ";\n".join(
        [_table_sql(dialect, table) for table, _ in GRAINS + TOTAL_GRAINS]
        + [_sums_sql(dialect, table, grain, "1 = 1") for table, grain in GRAINS + TOTAL_GRAINS]
    )


#: SQLite's rollup step (schema version 7).
MIGRATION = migration(SQLITE)

#: A batch summed per minute and dimensions, once; every rollup is then summed from it.
_BATCH = "rollup_batch"
_MERGES = tuple(_merge_sql(table, grain) for table, grain in GRAINS + TOTAL_GRAINS)


def batch_statements(dialect: Dialect, where: str) -> tuple[str, ...]:
    """The statements that add the rows of ``requests r`` matching `where` (a batch just
    inserted, in the same transaction) to every rollup: summed per minute and dimensions
    into a temporary table, then from it into each rollup, one ``INSERT ... ON CONFLICT
    DO UPDATE`` each."""
    return (
        _table_sql(dialect, _BATCH, keyed=False),
        f"DELETE FROM {_BATCH}",  # noqa: S608
        _sums_sql(dialect, _BATCH, 60, where, upsert=False),
        *_MERGES,
    )


_SQLITE_BATCH = batch_statements(SQLITE, "r.rowid > ?")


def batch_sql() -> tuple[str, ...]:
    """SQLite's `batch_statements` over the rows of ``requests`` past a rowid (the one
    ``?``: the largest rowid before the batch), in the order the writer runs them."""
    return _SQLITE_BATCH

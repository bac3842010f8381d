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

The store keeps them in the writer's transaction (`update`): after a batch's
rows are inserted, one ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO
UPDATE`` per grain adds the batch's sums, reading back only the rows just
written (by rowid). The migration that creates the tables fills them from the
rows already stored (`MIGRATION`).

Readers (`rollup_series`, `rollup_totals`) cover a range ``[since, until)``
with whole days, then whole hours, then whole minutes, and read the raw rows
for the seconds left at either end, so the figures are exactly those of the
raw rows. A rollup serves only the filters among its dimensions (`rollup_read.covers`):
a user, key, team, session, experiment or property filter reads the raw rows.
Every bucket start is computed from the integer second, ``CAST(started_at AS
INTEGER)``, so a row is in the same bucket in every grain and in the raw edges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "DIMENSIONS",
    "FILTER_DIMENSIONS",
    "GRAINS",
    "INTEGER_MEASURES",
    "TOTAL_GRAINS",
    "MEASURES",
    "MIGRATION",
    "last_rowid",
    "update",
]

#: The columns of ``requests`` a rollup keeps apart (and so can filter and group by).
DIMENSIONS = ("operation", "route", "target", "provider", "model", "status", "error_type",
              "limit_type", "cache")  # fmt: skip
#: Each measure and the SQL that sums it over ``requests r``.
MEASURES = {
    "requests": "COUNT(*)",
    "errors": "TOTAL(r.status = 'error')",
    "input_tokens": "TOTAL(r.input_tokens)",
    "output_tokens": "TOTAL(r.output_tokens)",
    "cache_read_tokens": "TOTAL(r.cache_read_tokens)",
    "cache_write_tokens": "TOTAL(r.cache_write_tokens)",
    "reasoning_tokens": "TOTAL(r.reasoning_tokens)",
    "cost_usd": "TOTAL(r.cost_usd)",
    "cost_unknown": "TOTAL(r.cost_usd IS NULL)",
    "cache_hits": "TOTAL(r.cache = 'hit')",
    "cache_misses": "TOTAL(r.cache = 'miss')",
    "saved_usd": "TOTAL(r.saved_usd)",
}
#: The measures that are counts (summed as integers).
INTEGER_MEASURES = frozenset(MEASURES) - {"cost_usd", "saved_usd"}
#: Table and width in seconds of each grain, coarsest first.
GRAINS = (("rollup_day", 86400), ("rollup_hour", 3600), ("rollup_minute", 60))
#: The same without dimensions (each ``''``): one row per bucket, for the unfiltered views.
TOTAL_GRAINS = (("rollup_total_day", 86400), ("rollup_total_hour", 3600),
                ("rollup_total_minute", 60))  # fmt: skip

_BUCKET = "CAST(r.started_at AS INTEGER) / {g} * {g}"
#: The dimensions a filter may name (the refusing limit is not a filter).
FILTER_DIMENSIONS = frozenset(DIMENSIONS) - {"limit_type"}


def _table_sql(table: str, *, keyed: bool = True) -> str:
    dims = ", ".join(f"{d} TEXT NOT NULL" for d in DIMENSIONS)
    measures = ", ".join(
        f"{m} {'INTEGER' if m in INTEGER_MEASURES else 'REAL'} NOT NULL" for m in MEASURES
    )
    if not keyed:
        return (
            f"CREATE TEMP TABLE IF NOT EXISTS {table} (bucket INTEGER NOT NULL, {dims}, {measures})"
        )
    return (
        f"CREATE TABLE {table} (bucket INTEGER NOT NULL, {dims}, {measures}, "
        f"PRIMARY KEY (bucket, {', '.join(DIMENSIONS)})) WITHOUT ROWID"
    )


def _sums_sql(table: str, grain: int, where: str, *, upsert: bool = True) -> str:
    """``INSERT`` the sums of the rows of ``requests r`` matching `where` into `table`,
    adding them to a bucket's row already there."""
    apart = table not in dict(TOTAL_GRAINS)
    dims = ", ".join(f"IFNULL(r.{d}, '')" if apart else "''" for d in DIMENSIONS)
    sums = ", ".join(f"CAST({s} AS INTEGER)" if m in INTEGER_MEASURES else s
                     for m, s in MEASURES.items())  # fmt: skip
    return (
        f"INSERT INTO {table} (bucket, {', '.join(DIMENSIONS)}, {', '.join(MEASURES)}) "  # noqa: S608
        f"SELECT {_BUCKET.format(g=grain)} AS b, {dims}, {sums} FROM requests r "
        f"WHERE {where} GROUP BY b, {', '.join(DIMENSIONS)}" + (_UPSERT if upsert else "")
    )


_UPSERT = " ON CONFLICT DO UPDATE SET " + ", ".join(f"{m} = {m} + excluded.{m}" for m in MEASURES)


def _merge_sql(table: str, grain: int) -> str:
    """``INSERT`` the sums of `_BATCH` (a batch summed per minute) into `table`, adding them
    to a bucket's row already there."""
    apart = table not in dict(TOTAL_GRAINS)
    dims = ", ".join(d if apart else "''" for d in DIMENSIONS)
    return (
        f"INSERT INTO {table} (bucket, {', '.join(DIMENSIONS)}, {', '.join(MEASURES)}) "  # noqa: S608
        f"SELECT bucket / {grain} * {grain} AS b, {dims}, "
        f"{', '.join(f'SUM({m})' for m in MEASURES)} FROM {_BATCH} "
        f"WHERE 1 GROUP BY b, {', '.join(DIMENSIONS)}{_UPSERT}"
    )


#: The schema step that creates the rollup tables and fills them from the stored rows.
#: It stands alone (no other step refers to it), so it may move to any later position.
MIGRATION = ";\n".join(
    [_table_sql(table) for table, _ in GRAINS + TOTAL_GRAINS]
    + [_sums_sql(table, grain, "1") for table, grain in GRAINS + TOTAL_GRAINS]
)

#: A batch summed per minute and dimensions, once; every rollup is then summed from it.
_BATCH = "temp.rollup_batch"
_BATCH_STEPS = (
    _table_sql(_BATCH, keyed=False),
    f"DELETE FROM {_BATCH}",  # noqa: S608
    _sums_sql(_BATCH, 60, "r.rowid > ?", upsert=False),
)
_MERGES = tuple(_merge_sql(table, grain) for table, grain in GRAINS + TOTAL_GRAINS)


def update(conn: sqlite3.Connection, after_rowid: int) -> None:
    """Add the rows of ``requests`` past `after_rowid` (a batch just inserted, in the same
    transaction) to every rollup: summed per minute and dimensions into a temporary table,
    then from it into each rollup, one ``INSERT ... ON CONFLICT DO UPDATE`` each."""
    create, empty, fill = _BATCH_STEPS
    conn.execute(create)
    conn.execute(empty)
    conn.execute(fill, (after_rowid,))
    for sql in _MERGES:
        conn.execute(sql)


def last_rowid(conn: sqlite3.Connection) -> int:
    """The largest rowid of ``requests`` (0 when empty): a batch inserted next comes after it."""
    return int(conn.execute("SELECT IFNULL(MAX(rowid), 0) FROM requests").fetchone()[0])

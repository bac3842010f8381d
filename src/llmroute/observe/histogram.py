"""Latency histograms in the rollups: log-spaced bins, summed per minute, hour and day.

Percentiles cannot be summed, but counts per bin can. Every latency and time
to first token falls in one bin of a fixed, log-spaced scale (`bin_of`,
`BIN_SQL`): `BINS_PER_DOUBLING` bins for every doubling from `LOWEST_S` (1
µs) up, bin 0 below it and bin `TOP_BIN` for everything from about 11 days
up. Because the boundaries are fixed, the bins of any rows, grains and
dimensions add up, and a percentile read off the summed bins (`latency.percentiles`)
is within `RELATIVE_ERROR` (2.9%) of the exact one, for values from 1 µs to
the top bin.

``rollup_latency_minute``, ``_hour`` and ``_day`` hold, per time bucket and
per combination of the rollups' dimensions (`rollup.DIMENSIONS`), how many
latencies (``kind`` `LATENCY`) and times to first token (`TTFT`) fell in each
bin: a row per doubling with any (``octave``), its 12 bins in columns
`COUNTS` (one row per bin took five times the rows to read and twice the
time to write). ``rollup_latency_total_*`` hold the same without dimensions.
The writer keeps them in each batch's transaction (`batch_sql`), as the rollups:
the batch's bins summed per minute and dimensions into a temporary table,
then added to each table with an upsert, all in SQL (the writer thread runs
no Python per row and keeps the GIL released). The migration that creates
them fills them from the stored rows (`MIGRATION`).

The bin is computed in SQL with ``ln()``, one of SQLite's math functions;
`register_ln` supplies Python's ``math.log`` on a SQLite built without them
(the same C function: the same bins). PostgreSQL has its own ``ln()`` (C's
``log`` too); the SQL is written once for both (`llmroute.observe.dialect`):
the PostgreSQL store runs `batch_statements` and `migration` in its dialect.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence

from . import rollup
from .dialect import SQLITE, Dialect, count_if

__all__ = [
    "BINS_PER_DOUBLING",
    "BIN_SQL",
    "COUNTS",
    "LATENCY",
    "LOWEST_S",
    "MIGRATION",
    "RELATIVE_ERROR",
    "TABLES",
    "TOP_BIN",
    "TOTAL_TABLES",
    "TTFT",
    "batch_sql",
    "batch_statements",
    "bin_of",
    "bin_sql",
    "binned_sql",
    "bounds",
    "estimate",
    "migration",
    "register_ln",
    "unpack",
]

#: Bins per doubling of the value: each bin's upper bound is 2 ** (1/12) (5.9%) above its
#: lower bound.
BINS_PER_DOUBLING = 12
#: The lower bound of bin 1, in seconds; bin 0 holds every value below it.
LOWEST_S = 1e-6
#: The last bin: every value from ``LOWEST_S * 2 ** ((TOP_BIN - 1) / 12)`` (about 11 days) up.
TOP_BIN = 12 * 40
_GAMMA = 2.0 ** (1 / BINS_PER_DOUBLING)
#: The largest relative difference between a value of a bin (1 to ``TOP_BIN - 1``) and the
#: bin's estimate (`estimate`): (g - 1) / (g + 1) with g = 2 ** (1/12), about 2.9%.
RELATIVE_ERROR = (_GAMMA - 1) / (_GAMMA + 1)
#: Bins per unit of ``ln(seconds / LOWEST_S)``.
_SCALE = BINS_PER_DOUBLING / math.log(2)


def bin_sql(dialect: Dialect, value: str) -> str:
    """The bin of `value` (an SQL expression, in seconds; NULL stays NULL) in `dialect`: the
    value in µs, its natural logarithm, scaled, truncated."""
    scaled = dialect.integer(f"ln({value} * 1000000.0) * {_SCALE!r}")
    # NULL first: PostgreSQL's LEAST skips a NULL where SQLite's MIN returns it
    return (
        f"CASE WHEN {value} IS NULL THEN NULL WHEN {value} * 1000000.0 < 1.0 THEN 0 "
        f"ELSE {dialect.least(f'{scaled} + 1', str(TOP_BIN))} END"
    )


#: `bin_sql` in SQLite, with ``{0}`` for the value's expression.
BIN_SQL = bin_sql(SQLITE, "{0}")


def bin_of(seconds: float) -> int:
    """The bin of a value, as `BIN_SQL` computes it."""
    micros = seconds * 1000000.0
    if micros < 1.0:
        return 0
    return min(int(math.log(micros) * _SCALE) + 1, TOP_BIN)


def bounds(index: int) -> tuple[float, float]:
    """The values bin `index` holds: ``[low, high)`` (bin 0 from 0, the top bin to infinity)."""
    if not 0 <= index <= TOP_BIN:
        raise ValueError(f"no bin {index}: bins go from 0 to {TOP_BIN}")
    if index == 0:
        return 0.0, LOWEST_S
    high = LOWEST_S * _GAMMA**index if index < TOP_BIN else math.inf
    return LOWEST_S * _GAMMA ** (index - 1), high


def estimate(index: int) -> float:
    """The value a bin stands for: within `RELATIVE_ERROR` of every value of bins 1 to
    ``TOP_BIN - 1`` (``2 * low * high / (low + high)``); half of `LOWEST_S` for bin 0, the
    lower bound for the top bin."""
    low, high = bounds(index)
    if index == 0:
        return LOWEST_S / 2
    if index == TOP_BIN:
        return low
    return 2 * low * high / (low + high)


def register_ln(conn: sqlite3.Connection, *, force: bool = False) -> None:
    """Give `conn` an ``ln()`` if its SQLite was built without math functions (or, with
    `force`, in any case): Python's ``math.log``, NULL for a value that is not positive, as
    SQLite's own."""
    if not force:
        try:
            conn.execute("SELECT ln(1)")
        except sqlite3.OperationalError as exc:
            if "no such function" not in str(exc):
                raise  # not the missing function: a real error, for the caller
        else:
            return
    conn.create_function("ln", 1, _ln, deterministic=True)


def _ln(value: float | None) -> float | None:
    if value is None or value <= 0:
        return None
    return math.log(value)


# ---------------------------------------------------------------- the tables

#: Table and width in seconds of each grain, coarsest first, by dimensions ...
TABLES = (("rollup_latency_day", 86400), ("rollup_latency_hour", 3600),
          ("rollup_latency_minute", 60))  # fmt: skip
#: ... and without (every dimension ``''``).
TOTAL_TABLES = (("rollup_latency_total_day", 86400), ("rollup_latency_total_hour", 3600),
                ("rollup_latency_total_minute", 60))  # fmt: skip
#: What a row counts (its ``kind``): latencies, or times to first token.
LATENCY, TTFT = 0, 1
#: A row's counts: those of the `BINS_PER_DOUBLING` bins of one doubling (its ``octave``):
#: bin ``octave * 12 + i`` in column ``c{i}``.
COUNTS = tuple(f"c{i}" for i in range(BINS_PER_DOUBLING))
_DIMS = ", ".join(rollup.DIMENSIONS)
_KEY = f"{_DIMS}, kind, octave"
_COLUMNS = f"bucket, {_KEY}, {', '.join(COUNTS)}"


def _upsert(table: str) -> str:
    return f" ON CONFLICT (bucket, {_KEY}) DO UPDATE SET " + ", ".join(
        f"{c} = {table}.{c} + excluded.{c}" for c in COUNTS
    )


def _table_sql(dialect: Dialect, table: str, *, keyed: bool = True) -> str:
    integer = dialect.integer_type
    dims = ", ".join(f"{d} TEXT NOT NULL" for d in rollup.DIMENSIONS)
    counts = ", ".join(f"{c} {integer} NOT NULL" for c in COUNTS)
    columns = (
        f"bucket {integer} NOT NULL, {dims}, kind INTEGER NOT NULL, octave INTEGER NOT NULL, "
        f"{counts}"
    )
    if not keyed:
        return f"CREATE TEMP TABLE IF NOT EXISTS {table} ({columns})"
    return f"CREATE TABLE {table} ({columns}, PRIMARY KEY (bucket, {_KEY})){dialect.keyed_table_suffix}"


def binned_sql(keys: Mapping[str, str], where: str, dialect: Dialect = SQLITE) -> str:
    """A ``SELECT`` of each of `keys` (alias: SQL over ``requests r``), ``kind``, ``octave``
    and the `COUNTS` of the latencies (kind `LATENCY`) and times to first token (`TTFT`) of
    the rows matching `where` (bind its parameters twice), per keys, kind and octave. A time
    to first token counts only with its latency, as in an exact report."""
    columns = ", ".join(f"{expr} AS {alias}" for alias, expr in keys.items())
    names = ", ".join(keys)
    counts = ", ".join(count_if(f"bin % {BINS_PER_DOUBLING} = {i}") for i in range(len(COUNTS)))
    latency, ttft = bin_sql(dialect, "r.latency_s"), bin_sql(dialect, "r.ttft_s")
    values = (  # a compound subquery: each row's bin computed once
        f"SELECT {columns}, {LATENCY} AS kind, {latency} AS bin "  # noqa: S608
        f"FROM requests r WHERE {where} AND r.latency_s IS NOT NULL UNION ALL "
        f"SELECT {columns}, {TTFT}, {ttft} FROM requests r "
        f"WHERE {where} AND r.latency_s IS NOT NULL AND r.ttft_s IS NOT NULL"
    )
    return (
        f"SELECT {names}, kind, bin / {BINS_PER_DOUBLING} AS octave, {counts} "  # noqa: S608
        f"FROM ({values}) AS v WHERE 1 = 1 GROUP BY {names}, kind, octave"
    )


def _binned_sql(dialect: Dialect, table: str, where: str) -> str:
    """``INSERT`` into `table` (by dimensions, per minute) the bins of the rows of
    ``requests r`` matching `where` (with one ``?`` at most: bound twice)."""
    keys = {"b": f"{dialect.integer('r.started_at')} / 60 * 60"}
    keys.update({d: f"COALESCE(r.{d}, '')" for d in rollup.DIMENSIONS})
    return f"INSERT INTO {table} ({_COLUMNS}) " + binned_sql(keys, where, dialect)


def _merged_sql(table: str, grain: int, source: str, *, grouped: bool = True) -> str:
    """``INSERT`` into `table` the counts of `source` (a finer grain, by dimensions) per
    bucket of `grain` (and dimensions, unless `table` has none), adding them to a row already
    there: summed first (in key order, so that concurrent writers lock rows in one order)
    when `grouped`, else one upsert per row of `source` (cheaper when most rows of `source`
    are a row of `table` already: sorting them to sum them costs more; SQLite only, as
    PostgreSQL refuses an insert that updates one row twice)."""
    total = table in dict(TOTAL_TABLES)
    dims = ", ".join("''" for _ in rollup.DIMENSIONS) if total else _DIMS
    if grouped:
        sums = ", ".join(f"SUM({c})" for c in COUNTS)
        order = "1, kind, octave" if total else f"1, {_KEY}"
        keys = f" GROUP BY {order} ORDER BY {order}"
    else:
        sums, keys = ", ".join(COUNTS), ""
    return (
        f"INSERT INTO {table} ({_COLUMNS}) "  # noqa: S608
        f"SELECT bucket / {grain} * {grain} AS b, {dims}, kind, octave, {sums} "
        f"FROM {source} WHERE 1 = 1{keys}{_upsert(table)}"
    )


_MINUTE = TABLES[-1][0]


def migration(dialect: Dialect) -> str:
    """The schema step that creates the tables and fills them from the stored rows: the
    minute grain from the rows, every other from it (the same sums, from fewer rows)."""
    return ";\n".join(
        [_table_sql(dialect, table) for table, _ in TABLES + TOTAL_TABLES]
        + [_binned_sql(dialect, _MINUTE, "1 = 1")]
        + [_merged_sql(table, grain, _MINUTE) for table, grain in TABLES[:-1] + TOTAL_TABLES]
    )


#: SQLite's step (schema version 8).
MIGRATION = migration(SQLITE)

#: A batch's bins summed per minute and dimensions, once; every table is then summed from it.
_BATCH = "rollup_latency_batch"


def batch_statements(dialect: Dialect, where: str) -> tuple[str, ...]:
    """The statements that add the bins of the rows of ``requests r`` matching `where` (a
    batch just inserted, in the same transaction; one ``?`` at most, bound twice) to every
    latency table: summed per minute and dimensions into a temporary table, then into each
    table. Into SQLite's tables by dimensions, a row of the batch each; into the totals
    (and every PostgreSQL table), summed first (a batch has fewer minutes than minutes and
    dimensions)."""
    each = dialect.name == "sqlite"
    return (
        _table_sql(dialect, _BATCH, keyed=False),
        f"DELETE FROM {_BATCH}",  # noqa: S608
        _binned_sql(dialect, _BATCH, where),
        *(_merged_sql(table, grain, _BATCH, grouped=not each) for table, grain in TABLES),
        *(_merged_sql(table, grain, _BATCH) for table, grain in TOTAL_TABLES),
    )


_SQLITE_BATCH = batch_statements(SQLITE, "r.rowid > ?")


def batch_sql() -> tuple[str, ...]:
    """SQLite's `batch_statements` over the rows of ``requests`` past a rowid (each ``?``:
    the largest rowid before the batch), in the order the writer runs them."""
    return _SQLITE_BATCH


def unpack(octave: int, counts: Sequence[int]) -> Iterator[tuple[int, int]]:
    """The bins and counts of a row's `COUNTS` (those that are not 0)."""
    first = octave * BINS_PER_DOUBLING
    for i, count in enumerate(counts):
        if count:
            yield first + i, count

"""Latency and time-to-first-token percentiles over a store: from the rollups' histograms
when they cover the query, else exact from the rows.

`latency_report` answers in all, per group (provider, model, ...) and per time
bucket. Over long ranges, reading every matching row to sort its latency is
what costs (about 1 s a week on a million requests); the rollups keep every
latency's bin per minute, hour and day (`llmroute.observe.histogram`), so a
report whose filters, groups and buckets the rollups serve sums bins instead,
and reads each percentile off them, within `histogram.RELATIVE_ERROR` (2.9%)
of the exact value. ``exact=True``, or a filter or group the rollups do not
keep (user, key, team, property, ...), reads the rows: the same figures as
`query_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import histogram, rollup
from .analytics import Filters, Percentiles, group_expressions, where_clause
from .dialect import Dialect, count_if
from .rollup_read import covers, pieces

if TYPE_CHECKING:
    from .dialect import Connection, LogStore

__all__ = [
    "LatencyBucket",
    "LatencyReport",
    "latency_report",
    "percentiles",
    "served_by_rollups",
]


@dataclass(slots=True)
class LatencyBucket:
    """Latency and time-to-first-token percentiles of the requests of one time bucket
    (`requests`: those with a latency)."""

    start: float
    requests: int
    latency: Percentiles
    ttft: Percentiles


@dataclass(slots=True)
class LatencyReport:
    """Latency and TTFT percentiles of the requests matching some filters: over them all
    (`latency`, `ttft`), per group (`groups`: the group's values, ``requests``, ``errors``,
    ``latency`` and ``ttft``; busiest first) and per time bucket (`series`). `exact`: read
    from the rows; else from the rollups' histograms, each percentile within
    `histogram.RELATIVE_ERROR` of the exact one."""

    latency: Percentiles
    ttft: Percentiles
    groups: list[dict[str, Any]]
    series: list[LatencyBucket]
    exact: bool = True


def served_by_rollups(filters: Filters, *, by: Sequence[str], origin: float, width: float) -> bool:
    """Whether the rollups' histograms can answer: the filters among their dimensions
    (`rollup_read.covers`), a range set, one or more groups, each a dimension, buckets of
    whole seconds."""
    return (
        covers(filters)
        and filters.since is not None
        and filters.until is not None
        and bool(by)
        and all(b in rollup.DIMENSIONS for b in by)
        and width == int(width)
        and origin == int(origin)
    )


def latency_report(
    store: LogStore,
    filters: Filters,
    *,
    by: Sequence[str],
    origin: float,
    width: float,
    exact: bool = False,
) -> LatencyReport:
    """Latency and TTFT percentiles in all, per group of `by` (group keys of `query_stats`)
    and per bucket of `width` seconds from `origin`: from the rollups' histograms when they
    serve the query (`served_by_rollups`) unless `exact`, else from one read of the
    matching rows' few columns (the percentiles are then those of `query_stats`)."""
    if not exact and served_by_rollups(filters, by=by, origin=origin, width=width):
        with store.connect(read_only=True) as conn:
            return _binned_report(conn, store.dialect, filters, by, int(origin), int(width))
    return _exact_report(store, filters, by, origin, width)


def _sorted_groups(rows: list[dict[str, Any]], by: Sequence[str]) -> list[dict[str, Any]]:
    rows.sort(key=lambda r: (-r["requests"], tuple((r[k] is None, r[k] or "") for k in by)))
    return rows


# ---------------------------------------------------------------- from the rows


def _exact_report(
    store: LogStore, filters: Filters, by: Sequence[str], origin: float, width: float
) -> LatencyReport:
    expr = store.dialect.integer("(r.started_at - ?) / ?")
    exprs, joins, join_params = group_expressions(by, store.dialect)
    where, where_params = where_clause(filters)
    selected = ", ".join([expr, *exprs, "r.status", "r.latency_s", "r.ttft_s"])
    sql = f"SELECT {selected} FROM requests r {' '.join(joins)} WHERE {where}"  # noqa: S608
    latencies: list[float] = []
    ttfts: list[float] = []
    groups: dict[tuple[Any, ...], list[Any]] = {}  # requests, errors, latencies, ttfts
    buckets: dict[int, tuple[list[float], list[float]]] = {}
    n = len(exprs)
    with store.connect(read_only=True) as conn:
        for row in conn.execute(sql, [origin, width, *join_params, *where_params]):
            b, key, (status, latency, ttft) = row[0], row[1 : n + 1], row[n + 1 :]
            group = groups.get(key)
            if group is None:
                group = groups[key] = [0, 0, [], []]
            group[0] += 1
            group[1] += status == "error"
            if latency is None:
                continue
            in_bucket = buckets.get(b)
            if in_bucket is None:
                in_bucket = buckets[b] = ([], [])
            latencies.append(latency)
            group[2].append(latency)
            in_bucket[0].append(latency)
            if ttft is not None:
                ttfts.append(ttft)
                group[3].append(ttft)
                in_bucket[1].append(ttft)
    rows = [
        {
            **dict(zip(by, key, strict=True)),
            "requests": g[0],
            "errors": g[1],
            "latency": Percentiles.of(g[2]),
            "ttft": Percentiles.of(g[3]),
        }
        for key, g in groups.items()
    ]
    return LatencyReport(
        Percentiles.of(latencies),
        Percentiles.of(ttfts),
        _sorted_groups(rows, by),
        [
            LatencyBucket(origin + b * width, len(lat), Percentiles.of(lat), Percentiles.of(tt))
            for b, (lat, tt) in sorted(buckets.items())
        ],
    )


# ---------------------------------------------------------------- from the histograms


def percentiles(counts: Mapping[int, int]) -> Percentiles:
    """p50, p90, p95 and p99 of the values counted per bin, each interpolated between the
    estimates of the two closest ranks as `analytics.percentile` does between values."""
    ordered = sorted((b, n) for b, n in counts.items() if n)
    total = sum(n for _, n in ordered)
    if not total:
        return Percentiles()
    ranks = {}
    for p in (50, 90, 95, 99):
        rank = (total - 1) * p / 100
        low = math.floor(rank)
        ranks[p] = (rank, low, min(low + 1, total - 1))
    wanted = sorted({r for _, low, high in ranks.values() for r in (low, high)})
    at = dict(zip(wanted, _estimates_at(ordered, wanted), strict=True))
    return Percentiles(
        *(at[low] + (at[high] - at[low]) * (rank - low) for rank, low, high in ranks.values())
    )


def _estimates_at(ordered: Iterable[tuple[int, int]], ranks: list[int]) -> list[float]:
    """The estimate of the value at each of `ranks` (ascending, 0-based) of the counted bins."""
    found: list[float] = []
    seen = 0
    wanted = iter(ranks)
    rank = next(wanted, None)
    for index, count in ordered:
        seen += count
        while rank is not None and rank < seen:
            found.append(histogram.estimate(index))
            rank = next(wanted, None)
        if rank is None:
            break
    return found


_Bins = dict[int, int]
_ERROR = "r.status = 'error'"


def _binned_report(
    conn: Connection,
    dialect: Dialect,
    filters: Filters,
    by: Sequence[str],
    origin: int,
    width: int,
) -> LatencyReport:
    dims = {d: getattr(filters, d) for d in sorted(rollup.FILTER_DIMENSIONS)
            if getattr(filters, d) is not None}  # fmt: skip
    read = _Reader(conn, dialect, filters, dims)

    series: dict[int, tuple[_Bins, _Bins]] = {}
    tables = histogram.TABLES if dims else histogram.TOTAL_TABLES
    bucket = (f"({dialect.integer('r.started_at')} - {origin}) / {width}",
              f"(bucket - {origin}) / {width}")  # fmt: skip
    for (b,), kind, octave, counts in read.bins([bucket], [t for t in tables if width % t[1] == 0]):
        _add(series.setdefault(b, ({}, {})), kind, octave, counts)

    keys = [(f"NULLIF(r.{b}, '')", f"NULLIF({b}, '')") for b in by]
    groups: dict[tuple[Any, ...], list[Any]] = {  # requests, errors, latency and TTFT bins
        group: [n, errors, {}, {}] for group, (n, errors) in read.counts(keys).items()
    }
    total: tuple[_Bins, _Bins] = ({}, {})
    for group, kind, octave, counts in read.bins(keys, histogram.TABLES):
        _add(groups[group][2:], kind, octave, counts)
        _add(total, kind, octave, counts)

    rows = [
        {
            **dict(zip(by, group, strict=True)),
            "requests": g[0],
            "errors": g[1],
            "latency": percentiles(g[2]),
            "ttft": percentiles(g[3]),
        }
        for group, g in groups.items()
    ]
    return LatencyReport(
        percentiles(total[0]),
        percentiles(total[1]),
        _sorted_groups(rows, by),
        [
            LatencyBucket(
                origin + b * width,
                sum(lat.values()),
                percentiles(lat),
                percentiles(tt),
            )
            for b, (lat, tt) in sorted(series.items())
            if lat
        ],
        exact=False,
    )


def _add(into: Sequence[_Bins], kind: int, octave: int, counts: Sequence[int]) -> None:
    bins = into[kind]
    for index, count in histogram.unpack(octave, counts):
        bins[index] = bins.get(index, 0) + count


class _Reader:
    """Sums over ``[since, until)`` of the requests matching some dimensions' values: from
    the rollups' whole days, hours and minutes, and the rows for the seconds at either end.
    Each key is a pair of SQL expressions: over ``requests r``, and over a rollup table."""

    def __init__(
        self, conn: Connection, dialect: Dialect, filters: Filters, dims: dict[str, Any]
    ) -> None:
        assert filters.since is not None and filters.until is not None
        self.conn, self.since, self.until = conn, filters.since, filters.until
        self.dialect = dialect
        raw_where, self.raw_params = where_clause(Filters(**dims))
        self.raw_where = raw_where + " AND r.started_at >= ? AND r.started_at < ?"
        self.rolled_where = " AND ".join([*(f"{d} = ?" for d in dims), "bucket >= ?",
                                          "bucket < ?"])  # fmt: skip
        self.rolled_params = list(dims.values())

    def _pieces(self, grains: Iterable[tuple[str, int]]) -> Iterator[tuple[str | None, list[Any]]]:
        for table, lo, hi in pieces(self.since, self.until, tuple(grains)):
            yield table, [*(self.rolled_params if table else self.raw_params), lo, hi]

    def bins(
        self, keys: Sequence[tuple[str, str]], grains: Iterable[tuple[str, int]]
    ) -> Iterator[tuple[tuple[Any, ...], int, int, tuple[int, ...]]]:
        """(keys, kind, octave, counts) per keys, kind and octave, of each piece of the range
        (so the same keys, kind and octave may come more than once)."""
        n = len(keys)
        rolled = ", ".join(f"{k} AS k{i}" for i, (_, k) in enumerate(keys))
        grouped = ", ".join(f"k{i}" for i in range(n))
        sums = ", ".join(f"CAST(SUM({c}) AS BIGINT)" for c in histogram.COUNTS)
        for table, params in self._pieces(grains):
            if table is None:
                sql = histogram.binned_sql({f"k{i}": k for i, (k, _) in enumerate(keys)},
                                           self.raw_where, self.dialect)  # fmt: skip
                params += params  # the rows with a latency, then those with a TTFT
            else:
                sql = (
                    f"SELECT {rolled}, kind, octave, {sums} FROM {table} "  # noqa: S608
                    f"WHERE {self.rolled_where} GROUP BY {grouped}, kind, octave"
                )
            for row in self.conn.execute(sql, params):
                yield row[:n], row[n], row[n + 1], row[n + 2 :]

    def counts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[Any, ...], list[int]]:
        """Requests and errors per keys, over the whole range."""
        n = len(keys)
        raw = ", ".join(f"{k} AS k{i}" for i, (k, _) in enumerate(keys))
        rolled = ", ".join(f"{k} AS k{i}" for i, (_, k) in enumerate(keys))
        grouped = ", ".join(f"k{i}" for i in range(n))
        summed: dict[tuple[Any, ...], list[int]] = {}
        for table, params in self._pieces(rollup.GRAINS):
            if table is None:
                sql = (
                    f"SELECT {raw}, COUNT(*), {count_if(_ERROR)} FROM requests r "  # noqa: S608
                    f"WHERE {self.raw_where} GROUP BY {grouped}"
                )
            else:
                sql = (
                    f"SELECT {rolled}, SUM(requests), SUM(errors) FROM {table} "  # noqa: S608
                    f"WHERE {self.rolled_where} GROUP BY {grouped}"
                )
            for row in self.conn.execute(sql, params):
                sums = summed.setdefault(row[:n], [0, 0])
                sums[0] += int(row[n])
                sums[1] += int(row[n + 1])
        return summed

"""Queries for browsing a store: figures per time bucket, error breakdowns, request pages.

`query_stats` (in `llmroute.observe.analytics`) answers per group, reading
every matching row to compute exact percentiles. What a dashboard draws over
long ranges needs less per row and more rows: `series` sums per time bucket
in SQL (no row reaches Python), `error_breakdown` counts failed attempts and
failed requests, and `request_page` / `request_detail` page through the raw
rows. Every function takes the same `Filters`; every value is a bound
parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import rollup
from .analytics import Filters, group_expressions, where_clause
from .dialect import SQLITE, Cursor, Dialect, count_if, total
from .rollup_read import covers as rollups_cover
from .rollup_read import pieces

if TYPE_CHECKING:
    from .dialect import Connection, LogStore

__all__ = [
    "Bucket",
    "ErrorBreakdown",
    "RequestPage",
    "error_breakdown",
    "experiment_counts",
    "request_detail",
    "request_page",
    "rollup_sums",
    "rollups_cover",
    "series",
    "totals_by",
]

#: The columns a request list shows, in order.
LIST_COLUMNS = (
    "request_id", "started_at", "operation", "route", "request_model", "provider", "model",
    "status", "error_type", "limit_type", "cache", "stream", "latency_s", "ttft_s",
    "input_tokens", "output_tokens", "cost_usd", "user", "key", "team",
)  # fmt: skip
#: The columns of `LIST_COLUMNS` a search looks in (a substring, case-insensitive).
SEARCH_COLUMNS = ("request_id", "route", "request_model", "model", "user", "key", "team",
                  "error_type", "error")  # fmt: skip
#: The most characters of captured content a request's detail carries, per field.
MAX_CONTENT_CHARS = 100_000


@dataclass(slots=True)
class Bucket:
    """The requests that started in ``[start, start + width)``."""

    start: float
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    saved_usd: float = 0.0


@dataclass(slots=True)
class ErrorBreakdown:
    """Failed attempts by provider, target and error type; failed requests by error type and
    the limit that refused them (``limit``: None when no rate limit or budget did)."""

    attempts: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class RequestPage:
    """One page of requests, newest first; `total` counts every match."""

    total: int
    rows: list[dict[str, Any]]


def _bucket_expr(dialect: Dialect, origin: float, width: float) -> tuple[str, list[Any]]:
    return dialect.integer("(r.started_at - ?) / ?"), [origin, width]


def series(
    store: LogStore,
    filters: Filters,
    *,
    origin: float,
    width: float,
    use_rollups: bool = True,
) -> list[Bucket]:
    """Requests, errors, tokens, cost and cache outcomes per bucket of `width` seconds from
    `origin`, summed in SQL; buckets without requests are left out.

    From the rollups (unless `use_rollups` is false) when they cover the filters
    (`rollups_cover`), the range is set and the buckets are whole seconds; from the raw
    rows otherwise. The figures are the same (a cost summed in another order may differ
    in its last bits).
    """
    if (
        use_rollups
        and rollups_cover(filters)
        and filters.since is not None
        and filters.until is not None
        and width == int(width)
        and origin == int(origin)
    ):
        with store.connect(read_only=True) as conn:
            sums = rollup_sums(
                conn, filters, width=int(width), origin=int(origin), dialect=store.dialect
            )
        return [_summed(origin + b * width, sums[b]) for b in sorted(sums)]
    return _raw_series(store, filters, origin=origin, width=width)


def _summed(start: float, sums: dict[str, float]) -> Bucket:
    bucket = Bucket(start, cost_usd=sums["cost_usd"], saved_usd=sums["saved_usd"])
    for name in _BUCKET_COUNTS:
        setattr(bucket, name, int(sums[name]))
    return bucket


_BUCKET_COUNTS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
                  "reasoning_tokens", "cache_hits", "cache_misses")  # fmt: skip


def _raw_series(store: LogStore, filters: Filters, *, origin: float, width: float) -> list[Bucket]:
    expr, params = _bucket_expr(store.dialect, origin, width)
    where, where_params = where_clause(filters)
    sums = ", ".join(
        [count_if("r.status = 'error'"), total("r.input_tokens"), total("r.output_tokens"),
         total("r.cache_read_tokens"), total("r.reasoning_tokens"), total("r.cost_usd"),
         count_if("r.cache = 'hit'"), count_if("r.cache = 'miss'"), total("r.saved_usd")]
    )  # fmt: skip
    sql = (
        f"SELECT {expr} AS b, COUNT(*), {sums} "  # noqa: S608
        f"FROM requests r WHERE {where} GROUP BY 1 ORDER BY 1"
    )
    buckets = []
    with store.connect(read_only=True) as conn:
        for b, n, err, tin, tout, tcr, tre, cost, hits, misses, saved in conn.execute(
            sql, [*params, *where_params]
        ):
            buckets.append(
                Bucket(
                    origin + b * width,
                    n,
                    err or 0,
                    int(tin),
                    int(tout),
                    int(tcr),
                    int(tre),
                    float(cost),
                    hits or 0,
                    misses or 0,
                    float(saved),
                )
            )
    return buckets


#: What `totals_by` can order its groups by (largest first).
TOTALS_ORDER = ("cost_usd", "requests", "input_tokens", "output_tokens", "errors", "cache_hits",
                "saved_usd")  # fmt: skip
_ERROR = "r.status = 'error'"
_HIT, _MISS = "r.cache = 'hit'", "r.cache = 'miss'"
_TOTALS = ", ".join(
    ["COUNT(*) AS requests", f"{count_if(_ERROR)} AS errors",
     f"{total('r.input_tokens')} AS input_tokens", f"{total('r.output_tokens')} AS output_tokens",
     f"{total('r.cache_read_tokens')} AS cache_read_tokens",
     f"{total('r.reasoning_tokens')} AS reasoning_tokens", f"{total('r.cost_usd')} AS cost_usd",
     f"{count_if('r.cost_usd IS NULL')} AS cost_unknown", f"{count_if(_HIT)} AS cache_hits",
     f"{count_if(_MISS)} AS cache_misses", f"{total('r.saved_usd')} AS saved_usd"]
)  # fmt: skip
_INTEGERS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
             "reasoning_tokens", "cost_unknown", "cache_hits", "cache_misses")  # fmt: skip


def totals_by(
    store: LogStore,
    filters: Filters,
    *,
    by: str,
    order: str,
    limit: int,
    use_rollups: bool = True,
) -> tuple[list[dict[str, Any]], int]:
    """Sums per value of `by` (a `query_stats` group key), summed in SQL: the `limit` largest
    by `order` (one of `TOTALS_ORDER`), and how many groups there are in all.

    From the rollups, as `series`, when `by` is one of their dimensions."""
    if order not in TOTALS_ORDER:
        raise ValueError(f"cannot order by {order!r}: expected one of {', '.join(TOTALS_ORDER)}")
    if (
        use_rollups
        and by in rollup.DIMENSIONS
        and rollups_cover(filters)
        and filters.since is not None
        and filters.until is not None
    ):
        with store.connect(read_only=True) as conn:
            sums = rollup_sums(conn, filters, by=by, dialect=store.dialect)
        grouped = [
            {"value": value, **{n: v for n, v in s.items() if n != "cache_write_tokens"}}
            for value, s in sums.items()
        ]
        grouped.sort(key=lambda r: (-r[order], r["value"] is not None, r["value"] or ""))
        rows, count = grouped[:limit], len(grouped)
    else:
        rows, count = _raw_totals(store, filters, by=by, order=order, limit=limit)
    for row in rows:
        for name in _INTEGERS:
            row[name] = int(row[name])
        seen = row["cache_hits"] + row["cache_misses"]
        row["cache_hit_rate"] = row["cache_hits"] / seen if seen else None
        row["error_rate"] = row["errors"] / row["requests"]
    return rows, count


def _raw_totals(
    store: LogStore, filters: Filters, *, by: str, order: str, limit: int
) -> tuple[list[dict[str, Any]], int]:
    exprs, joins, join_params = group_expressions([by], store.dialect)
    where, params = where_clause(filters)
    grouped = (
        f"SELECT {exprs[0]} AS value, {_TOTALS} FROM requests r {' '.join(joins)} "  # noqa: S608
        f"WHERE {where} GROUP BY 1"
    )
    with store.connect(read_only=True) as conn:
        # NULL first in both databases (PostgreSQL puts it last by default)
        rows = _dicts(conn.execute(
            f"SELECT * FROM ({grouped}) AS g "  # noqa: S608
            f"ORDER BY {order} DESC, value IS NOT NULL, value LIMIT ?",
            [*join_params, *params, limit],
        ))  # fmt: skip
        count = conn.execute(
            f"SELECT COUNT(*) AS n FROM ({grouped}) AS g",  # noqa: S608
            [*join_params, *params],
        ).fetchone()[0]
    return rows, int(count)


def error_breakdown(store: LogStore, filters: Filters, *, limit: int) -> ErrorBreakdown:
    """The `limit` most frequent failures of attempts (with every attempt of the provider,
    for a rate) and of requests (refusals by rate limits and budgets included)."""
    where, params = where_clause(filters)
    attempts_sql = (
        "SELECT a.provider, a.target, a.error_type, COUNT(*) FROM attempts a "  # noqa: S608
        f"JOIN requests r ON r.request_id = a.request_id WHERE {where} "
        "GROUP BY a.provider, a.target, a.error_type"
    )
    requests_sql = (
        "SELECT r.error_type, r.limit_type, COUNT(*) FROM requests r "  # noqa: S608
        f"WHERE {where} AND r.status = 'error' GROUP BY r.error_type, r.limit_type "
        "ORDER BY COUNT(*) DESC, r.error_type IS NOT NULL, r.error_type LIMIT ?"
    )
    result = ErrorBreakdown()
    with store.connect(read_only=True) as conn:
        per_target: dict[str, int] = {}
        failed = []
        for provider, target, error_type, count in conn.execute(attempts_sql, params):
            per_target[target] = per_target.get(target, 0) + count
            if error_type is not None:
                failed.append((provider, target, error_type, count))
        failed.sort(key=lambda f: (-f[3], f[1], f[2]))
        result.attempts = [
            {
                "provider": p,
                "target": t,
                "error_type": e,
                "count": n,
                "attempts": per_target[t],
                "rate": n / per_target[t],
            }
            for p, t, e, n in failed[:limit]
        ]
        result.requests = [
            {"error_type": e, "limit": lim, "count": n}
            for e, lim, n in conn.execute(requests_sql, [*params, limit])
        ]
    return result


def experiment_counts(
    store: LogStore, since: float, until: float, *, limit: int
) -> tuple[list[tuple[str, int]], int]:
    """The `limit` experiments with the most requests started in ``[since, until)`` (their
    name and requests, most first), and how many experiments there are in all.

    Read through the experiment index (the ``+`` keeps SQLite from scanning the range by
    time instead; PostgreSQL reads it as the plain column): a store without experiments answers at once, whatever the range."""
    grouped = (
        "SELECT r.experiment AS name, COUNT(*) AS n FROM requests r "
        "WHERE r.experiment IS NOT NULL AND +r.started_at >= ? AND +r.started_at < ? "
        "AND r.status <> 'started' GROUP BY r.experiment"
    )
    with store.connect(read_only=True) as conn:
        rows = conn.execute(f"{grouped} ORDER BY n DESC, name LIMIT ?", [since, until, limit])
        top = [(str(name), int(n)) for name, n in rows]
        (count,) = conn.execute(f"SELECT COUNT(*) FROM ({grouped}) AS e", [since, until]).fetchone()  # noqa: S608
    return top, int(count)


def request_page(
    store: LogStore, filters: Filters, *, search: str | None, limit: int, offset: int
) -> RequestPage:
    """Requests matching `filters` (and `search`, a substring of an id, route, model, user,
    key, team or error), newest first: `limit` of them from `offset`."""
    where, params = where_clause(filters)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        like = store.dialect.like
        where += " AND (" + " OR ".join(f"r.{c} {like} ? ESCAPE '\\'" for c in SEARCH_COLUMNS) + ")"
        params = [*params, *[pattern] * len(SEARCH_COLUMNS)]
    columns = ", ".join(f"r.{c}" for c in LIST_COLUMNS)
    with store.connect(read_only=True) as conn:
        total = conn.execute(f"SELECT COUNT(*) FROM requests r WHERE {where}", params)  # noqa: S608
        count = int(total.fetchone()[0])
        rows = conn.execute(
            f"SELECT {columns} FROM requests r WHERE {where} "  # noqa: S608
            "ORDER BY r.started_at DESC, r.request_id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
    return RequestPage(count, [_listed(row) for row in rows])


def _listed(row: tuple[Any, ...]) -> dict[str, Any]:
    item = dict(zip(LIST_COLUMNS, row, strict=True))
    item["stream"] = bool(item["stream"])
    item["limit"] = item.pop("limit_type")
    return item


def request_detail(store: LogStore, request_id: str) -> dict[str, Any] | None:
    """One request's whole record and its attempts (None if the store has no such request);
    captured content (already redacted when it was recorded) is cut to `MAX_CONTENT_CHARS`."""
    with store.connect(read_only=True) as conn:
        found = _dicts(conn.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)))
        if not found:
            return None
        attempts = _dicts(conn.execute(
            "SELECT idx, target, provider, model, kind, outcome, status, error_type, error, "
            "started_s, latency_s FROM attempts WHERE request_id = ? ORDER BY idx",
            (request_id,),
        ))  # fmt: skip
    detail: dict[str, Any] = found[0]
    detail["stream"] = bool(detail["stream"])
    detail["tokens_estimated"] = bool(detail["tokens_estimated"])
    detail["off_variant"] = bool(detail["off_variant"])
    detail["limit"] = detail.pop("limit_type")
    detail["finish_reasons"] = json.loads(detail["finish_reasons"] or "[]")
    detail["properties"] = json.loads(detail["properties"] or "{}")
    for name in ("prompt", "completion"):
        text = detail[name]
        if text is None:
            continue
        if len(text) > MAX_CONTENT_CHARS:
            detail[name] = {"truncated": True, "text": text[:MAX_CONTENT_CHARS]}
        else:
            detail[name] = json.loads(text)
    detail["attempts"] = attempts
    return detail


def _dicts(cursor: Cursor) -> list[dict[str, Any]]:
    """Every row of `cursor`, by column name."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# ---------------------------------------------------------------- rollups


def _keys(dialect: Dialect, width: int | None, origin: int, by: str | None) -> tuple[str, str]:
    """What `rollup_sums` groups by: over raw rows, and over a rollup."""
    if width is not None:
        # integer division of integers: truncated in both databases
        raw = f"({dialect.integer('r.started_at')} - {int(origin)}) / {int(width)}"
        return raw, "bucket"  # in the primary key's order: summed without sorting
    if by is not None:
        return f"r.{by}", f"NULLIF({by}, '')"
    return "CAST(NULL AS TEXT)", "CAST(NULL AS TEXT)"


def rollup_sums(
    conn: Connection,
    filters: Filters,
    *,
    width: int | None = None,
    origin: int = 0,
    by: str | None = None,
    dialect: Dialect = SQLITE,
) -> dict[Any, dict[str, float]]:
    """The `rollup.MEASURES` of the requests matching `filters` (which `rollups_cover` must accept, with
    `since` and `until` set), keyed by their bucket index ``(start - origin) // width`` when
    `width` is given, else by their value of the dimension `by` (None: one key, None).

    Only grains that divide `width` serve (and `origin` must be a multiple of it): a bucket
    of a grain then falls in one bucket of the series. `dialect`: the store's (that of
    `conn`).
    """
    if filters.since is None or filters.until is None:
        raise ValueError("rollup_sums needs a range: filters.since and filters.until")
    if by is not None and by not in rollup.DIMENSIONS:
        raise ValueError(f"cannot group rollups by {by!r}: expected one of {rollup.DIMENSIONS}")
    dims = {
        d: getattr(filters, d) for d in rollup.FILTER_DIMENSIONS if getattr(filters, d) is not None
    }
    tables = rollup.TOTAL_GRAINS if not dims and by is None else rollup.GRAINS
    grains = tuple((t, g) for t, g in tables if width is None or width % g == 0)
    raw_where, raw_params = where_clause(Filters(**dims))
    rolled_where = " AND ".join(["1 = 1", *(f"{d} = ?" for d in dims)])
    rolled_params = list(dims.values())
    raw_key, rolled_key = _keys(dialect, width, origin, by)
    names = list(rollup.MEASURES)
    result: dict[Any, dict[str, float]] = {}
    for table, lo, hi in pieces(filters.since, filters.until, grains):
        if table is None:
            sql = (
                f"SELECT {raw_key} AS k, {', '.join(rollup.MEASURES.values())} FROM requests r "  # noqa: S608
                f"WHERE {raw_where} AND r.started_at >= ? AND r.started_at < ? GROUP BY 1"
            )
        else:
            sql = (
                f"SELECT {rolled_key} AS k, {', '.join(f'SUM({m})' for m in names)} "  # noqa: S608
                f"FROM {table} WHERE {rolled_where} AND bucket >= ? AND bucket < ? GROUP BY 1"
            )
        params = [*(raw_params if table is None else rolled_params), lo, hi]
        for key, *values in conn.execute(sql, params):
            if table is not None and width is not None:
                key = (key - origin) // width
            sums = result.get(key)
            if sums is None:
                result[key] = dict(zip(names, values, strict=True))
            else:
                for name, value in zip(names, values, strict=True):
                    sums[name] += value
    for sums in result.values():
        for name in rollup.INTEGER_MEASURES:
            sums[name] = int(sums[name])
    return result

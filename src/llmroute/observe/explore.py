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

from .analytics import Filters, Percentiles, group_expressions, where_clause

if TYPE_CHECKING:
    import sqlite3

    from .sqlite import SqliteStore

__all__ = [
    "Bucket",
    "ErrorBreakdown",
    "LatencyBucket",
    "RequestPage",
    "error_breakdown",
    "latency_series",
    "request_detail",
    "request_page",
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
class LatencyBucket:
    """Latency and time-to-first-token percentiles of the requests of one time bucket."""

    start: float
    requests: int
    latency: Percentiles
    ttft: Percentiles


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


def _bucket_expr(origin: float, width: float) -> tuple[str, list[Any]]:
    return "CAST((r.started_at - ?) / ? AS INTEGER)", [origin, width]


def series(store: SqliteStore, filters: Filters, *, origin: float, width: float) -> list[Bucket]:
    """Requests, errors, tokens, cost and cache outcomes per bucket of `width` seconds from
    `origin`, summed in SQL; buckets without requests are left out."""
    expr, params = _bucket_expr(origin, width)
    where, where_params = where_clause(filters)
    sql = (
        f"SELECT {expr} AS b, COUNT(*), SUM(r.status = 'error'), "  # noqa: S608
        "TOTAL(r.input_tokens), TOTAL(r.output_tokens), TOTAL(r.cache_read_tokens), "
        "TOTAL(r.reasoning_tokens), TOTAL(r.cost_usd), SUM(r.cache = 'hit'), "
        "SUM(r.cache = 'miss'), TOTAL(r.saved_usd) "
        f"FROM requests r WHERE {where} GROUP BY b ORDER BY b"
    )
    buckets = []
    with store.connect() as conn:
        _read_only(conn)
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
                    cost,
                    hits or 0,
                    misses or 0,
                    saved,
                )
            )
    return buckets


#: What `totals_by` can order its groups by (largest first).
TOTALS_ORDER = ("cost_usd", "requests", "input_tokens", "output_tokens", "errors", "cache_hits",
                "saved_usd")  # fmt: skip
_TOTALS = (
    "COUNT(*) AS requests, TOTAL(r.status = 'error') AS errors, "
    "TOTAL(r.input_tokens) AS input_tokens, TOTAL(r.output_tokens) AS output_tokens, "
    "TOTAL(r.cache_read_tokens) AS cache_read_tokens, "
    "TOTAL(r.reasoning_tokens) AS reasoning_tokens, TOTAL(r.cost_usd) AS cost_usd, "
    "TOTAL(r.cost_usd IS NULL) AS cost_unknown, TOTAL(r.cache = 'hit') AS cache_hits, "
    "TOTAL(r.cache = 'miss') AS cache_misses, TOTAL(r.saved_usd) AS saved_usd"
)
_INTEGERS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
             "reasoning_tokens", "cost_unknown", "cache_hits", "cache_misses")  # fmt: skip


def totals_by(
    store: SqliteStore, filters: Filters, *, by: str, order: str, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Sums per value of `by` (a `query_stats` group key), summed in SQL: the `limit` largest
    by `order` (one of `TOTALS_ORDER`), and how many groups there are in all."""
    if order not in TOTALS_ORDER:
        raise ValueError(f"cannot order by {order!r}: expected one of {', '.join(TOTALS_ORDER)}")
    exprs, joins, join_params = group_expressions([by])
    where, params = where_clause(filters)
    grouped = (
        f"SELECT {exprs[0]} AS value, {_TOTALS} FROM requests r {' '.join(joins)} "  # noqa: S608
        f"WHERE {where} GROUP BY value"
    )
    with store.connect() as conn:
        _read_only(conn)
        conn.row_factory = _dict_row
        rows = conn.execute(
            f"SELECT * FROM ({grouped}) ORDER BY {order} DESC, value LIMIT ?",  # noqa: S608
            [*join_params, *params, limit],
        ).fetchall()
        count = conn.execute(
            f"SELECT COUNT(*) AS n FROM ({grouped})",  # noqa: S608
            [*join_params, *params],
        ).fetchone()["n"]
    for row in rows:
        for name in _INTEGERS:
            row[name] = int(row[name])
        seen = row["cache_hits"] + row["cache_misses"]
        row["cache_hit_rate"] = row["cache_hits"] / seen if seen else None
        row["error_rate"] = row["errors"] / row["requests"]
    return rows, int(count)


def latency_series(
    store: SqliteStore, filters: Filters, *, origin: float, width: float
) -> list[LatencyBucket]:
    """Exact latency and TTFT percentiles per bucket (reads each matching latency once)."""
    expr, params = _bucket_expr(origin, width)
    where, where_params = where_clause(filters)
    sql = (
        f"SELECT {expr}, r.latency_s, r.ttft_s FROM requests r "  # noqa: S608
        f"WHERE {where} AND r.latency_s IS NOT NULL"
    )
    latencies: dict[int, list[float]] = {}
    ttfts: dict[int, list[float]] = {}
    with store.connect() as conn:
        _read_only(conn)
        for b, latency, ttft in conn.execute(sql, [*params, *where_params]):
            latencies.setdefault(b, []).append(latency)
            if ttft is not None:
                ttfts.setdefault(b, []).append(ttft)
    return [
        LatencyBucket(
            origin + b * width,
            len(values),
            Percentiles.of(values),
            Percentiles.of(ttfts.get(b, [])),
        )
        for b, values in sorted(latencies.items())
    ]


def error_breakdown(store: SqliteStore, filters: Filters, *, limit: int) -> ErrorBreakdown:
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
        "ORDER BY COUNT(*) DESC, r.error_type LIMIT ?"
    )
    result = ErrorBreakdown()
    with store.connect() as conn:
        _read_only(conn)
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


def request_page(
    store: SqliteStore, filters: Filters, *, search: str | None, limit: int, offset: int
) -> RequestPage:
    """Requests matching `filters` (and `search`, a substring of an id, route, model, user,
    key, team or error), newest first: `limit` of them from `offset`."""
    where, params = where_clause(filters)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where += " AND (" + " OR ".join(f"r.{c} LIKE ? ESCAPE '\\'" for c in SEARCH_COLUMNS) + ")"
        params = [*params, *[pattern] * len(SEARCH_COLUMNS)]
    columns = ", ".join(f"r.{c}" for c in LIST_COLUMNS)
    with store.connect() as conn:
        _read_only(conn)
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


def request_detail(store: SqliteStore, request_id: str) -> dict[str, Any] | None:
    """One request's whole record and its attempts (None if the store has no such request);
    captured content (already redacted when it was recorded) is cut to `MAX_CONTENT_CHARS`."""
    with store.connect() as conn:
        _read_only(conn)
        conn.row_factory = _dict_row
        found = conn.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,))
        row = found.fetchone()
        if row is None:
            return None
        attempts = conn.execute(
            "SELECT idx, target, provider, model, kind, outcome, status, error_type, error, "
            "started_s, latency_s FROM attempts WHERE request_id = ? ORDER BY idx",
            (request_id,),
        ).fetchall()
    detail: dict[str, Any] = dict(row)
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


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: value for d, value in zip(cursor.description, row, strict=True)}


def _read_only(conn: sqlite3.Connection) -> None:
    """Make the connection refuse writes: browsing a store never changes it."""
    conn.execute("PRAGMA query_only = ON")

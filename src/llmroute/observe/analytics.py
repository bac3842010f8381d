"""Analytics over a log store (SQLite or PostgreSQL): filters, group-bys, exact percentiles, error rates.

`query_stats()` answers "how many requests, how many failed, how slow, how
many tokens, how much money, how often from cache" for any slice of the
store, grouped by provider, model, user, gateway key, team, a property,
route, hour or day.

Percentiles are exact: every matching latency is read from the store and the
percentile is interpolated linearly between the two closest ranks (the
definition of ``numpy.percentile``'s default and of
``statistics.quantiles(method="inclusive")``). Sums run over the same rows.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .._units import parse_duration
from .dialect import SQLITE, Dialect

if TYPE_CHECKING:
    from .dialect import LogStore

__all__ = [
    "ErrorRow",
    "Filters",
    "Percentiles",
    "StatsReport",
    "StatsRow",
    "group_expressions",
    "make_filters",
    "parse_time",
    "parse_where",
    "percentile",
    "query_stats",
    "where_clause",
]

#: Group keys and the column (or expression) each groups by.
_GROUP_COLUMNS = {
    "provider": "r.provider", "model": "r.model", "target": "r.target", "route": "r.route",
    "user": "r.user", "key": "r.key", "team": "r.team", "session": "r.session",
    "operation": "r.operation", "status": "r.status", "error_type": "r.error_type",
    "cache": "r.cache", "experiment": "r.experiment", "variant": "r.variant",
}  # fmt: skip
#: Group keys by time bucket: each dialect formats them (`Dialect.hour`, `Dialect.day`).
_TIME_GROUPS = frozenset({"hour", "day"})
#: The `Filters` fields that compare a column of ``requests`` with a value.
_FILTER_COLUMNS = (
    "route", "provider", "model", "target", "user", "key", "team", "session", "operation",
    "status", "error_type", "cache", "experiment", "variant",
)  # fmt: skip
_PROPERTY = re.compile(r"^(?:property|prop|properties)[.:](.+)$")


@dataclass(frozen=True, slots=True)
class Filters:
    """Which requests a query covers; unset fields do not filter.

    Attributes:
        since, until: started in ``[since, until)``, Unix seconds.
        key: the name of the gateway key the requests came in with.
        team: the team the requests were billed to.
        properties: every one of these properties has this value.
    """

    since: float | None = None
    until: float | None = None
    route: str | None = None
    provider: str | None = None
    model: str | None = None
    target: str | None = None
    user: str | None = None
    key: str | None = None
    team: str | None = None
    session: str | None = None
    operation: str | None = None
    status: str | None = None
    error_type: str | None = None
    cache: str | None = None
    experiment: str | None = None
    variant: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50, p90, p95 and p99 in seconds (None when there are no values)."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        """The percentiles of `values` (sorted or not)."""
        ordered = sorted(values)
        return cls(*(percentile(ordered, p) for p in (50, 90, 95, 99)))


@dataclass(slots=True)
class StatsRow:
    """The figures of one group (or of everything, as `StatsReport.total`).

    Attributes:
        group: the group's key values, by group key.
        requests: requests in the group.
        errors: requests that ended with an error (refusals included).
        error_rate: `errors` / `requests`.
        latency: whole-request latency percentiles.
        ttft: time-to-first-token percentiles (streams).
        cost_usd: the summed cost of the requests whose cost is known.
        cost_unknown: requests whose cost is unknown (not counted in `cost_usd`).
        cache_hits: requests answered from cache.
        cache_hit_rate: hits / (hits + misses) among requests the cache saw.
        saved_usd: what cache hits saved, where known.
    """

    group: dict[str, str | None]
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    latency: Percentiles = field(default_factory=Percentiles)
    ttft: Percentiles = field(default_factory=Percentiles)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown: int = 0
    cache_hits: int = 0
    cache_hit_rate: float | None = None
    saved_usd: float = 0.0


@dataclass(slots=True)
class ErrorRow:
    """Failed attempts of one provider with one error type.

    Attributes:
        count: attempts that failed with `error_type`.
        attempts: all attempts sent to `provider`.
        rate: `count` / `attempts`.
    """

    provider: str
    error_type: str
    count: int
    attempts: int
    rate: float


@dataclass(slots=True)
class StatsReport:
    """What `query_stats()` found.

    Attributes:
        by: the group keys.
        filters: the filters applied.
        total: every matching request together.
        rows: one per group, busiest first (oldest first for hour/day).
        errors: failed attempts by provider and error type, most frequent first.
    """

    by: list[str]
    filters: Filters
    total: StatsRow
    rows: list[StatsRow]
    errors: list[ErrorRow]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        data = asdict(self)
        data["filters"] = {**data["filters"], "properties": dict(self.filters.properties)}
        return data


# ---------------------------------------------------------------- parsing


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The `p`-th percentile of sorted values, linearly interpolated; None if empty."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


_UNIX_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?")


def parse_time(value: float | datetime | str, *, now: float | None = None) -> float:
    """A point in time as Unix seconds.

    Accepts Unix seconds, a `datetime` (naive means UTC), an ISO date or
    datetime string, or a duration ago (``"90m"``, ``"24h"``, ``"7d"``).
    """
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if _UNIX_SECONDS.fullmatch(text):  # not a duration: those need a unit ("90s")
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return parse_time(parsed)
    try:
        ago = parse_duration(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"expected a time (ISO date, Unix seconds) or a duration ago (1h, 7d), got {value!r}"
        ) from exc
    return (time.time() if now is None else now) - ago


def parse_where(conditions: Iterable[str], filters: Filters | None = None) -> Filters:
    """Add ``key=value`` conditions (``provider=openai``, ``property.team=search``) to filters."""
    result = filters or Filters()
    names = {f.name for f in fields(Filters)} - {"since", "until", "properties"}
    for condition in conditions:
        key, eq, value = condition.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"expected key=value, got {condition!r}")
        prop = _PROPERTY.match(key)
        if prop:
            result = replace(result, properties={**result.properties, prop.group(1): value})
        elif key in names:
            result = replace(result, **{key: value})  # type: ignore[arg-type]
        else:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown filter {key!r}: expected {known} or property.NAME")
    return result


def make_filters(
    *,
    since: float | datetime | str | None = None,
    until: float | datetime | str | None = None,
    where: Iterable[str] = (),
    route: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    user: str | None = None,
    key: str | None = None,
    team: str | None = None,
    properties: Mapping[str, str] | None = None,
) -> Filters:
    """`Filters` from the keyword arguments `AsyncRouter.analytics()` takes."""
    filters = Filters(
        since=None if since is None else parse_time(since),
        until=None if until is None else parse_time(until),
        route=route, provider=provider, model=model, user=user, key=key, team=team,
        properties=dict(properties or {}),
    )  # fmt: skip
    return parse_where(where, filters)


def group_expressions(
    by: Sequence[str], dialect: Dialect = SQLITE
) -> tuple[list[str], list[str], list[Any]]:
    """Per group key (`query_stats`'s `by`): the SQL expression over ``requests r`` in
    `dialect`; plus the joins it needs and their parameters. `ConfigError` for an unknown
    key."""
    exprs, joins, params = [], [], []
    for i, key in enumerate(by):
        prop = _PROPERTY.match(key)
        if prop:
            joins.append(
                f"LEFT JOIN properties g{i} ON g{i}.request_id = r.request_id AND g{i}.key = ?"
            )
            params.append(prop.group(1))
            exprs.append(f"g{i}.value")
        elif key in _GROUP_COLUMNS:
            exprs.append(_GROUP_COLUMNS[key])
        elif key in _TIME_GROUPS:
            exprs.append(
                dialect.hour("r.started_at") if key == "hour" else dialect.day("r.started_at")
            )
        else:
            known = ", ".join(sorted([*_GROUP_COLUMNS, *_TIME_GROUPS]))
            raise ConfigError(f"cannot group by {key!r}: expected {known} or property.NAME")
    return exprs, joins, params


def where_clause(filters: Filters) -> tuple[str, list[Any]]:
    """The SQL condition on ``requests r`` that `filters` make, and its bound parameters."""
    clauses: list[str] = ["1 = 1"]
    params: list[Any] = []
    if filters.since is not None:
        clauses.append("r.started_at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("r.started_at < ?")
        params.append(filters.until)
    for name in _FILTER_COLUMNS:
        value = getattr(filters, name)
        if value is not None:
            clauses.append(f"r.{name} = ?")
            params.append(value)
    # the requests with the property in the range, from the index on (key, value, start)
    window, window_params = "", list[float]()
    if filters.since is not None:
        window += " AND p.started_at >= ?"
        window_params.append(filters.since)
    if filters.until is not None:
        window += " AND p.started_at < ?"
        window_params.append(filters.until)
    for key, value in filters.properties.items():
        clauses.append(
            "r.request_id IN (SELECT p.request_id FROM properties p "  # noqa: S608 (fixed text)
            f"WHERE p.key = ? AND p.value = ?{window})"
        )
        params += [key, value, *window_params]
    return " AND ".join(clauses), params


# ---------------------------------------------------------------- the query


@dataclass(slots=True)
class _Accumulator:
    row: StatsRow
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    cache_seen: int = 0

    def add(self, values: Sequence[Any]) -> None:
        status, latency, ttft, tin, tout, tcr, tcw, treason, cost, cache, saved = values
        row = self.row
        row.requests += 1
        row.errors += status == "error"
        if latency is not None:
            self.latencies.append(latency)
        if ttft is not None:
            self.ttfts.append(ttft)
        row.input_tokens += tin or 0
        row.output_tokens += tout or 0
        row.cache_read_tokens += tcr or 0
        row.cache_write_tokens += tcw or 0
        row.reasoning_tokens += treason or 0
        if cost is None:
            row.cost_unknown += 1
        else:
            row.cost_usd += cost
        if cache in ("hit", "miss"):
            self.cache_seen += 1
            row.cache_hits += cache == "hit"
        row.saved_usd += saved or 0.0

    def finish(self) -> StatsRow:
        row = self.row
        row.error_rate = row.errors / row.requests if row.requests else 0.0
        row.latency = Percentiles.of(self.latencies)
        row.ttft = Percentiles.of(self.ttfts)
        row.cache_hit_rate = row.cache_hits / self.cache_seen if self.cache_seen else None
        return row


def query_stats(
    store: LogStore, *, by: Sequence[str] = (), filters: Filters | None = None
) -> StatsReport:
    """Request figures per group, and attempt errors per provider, over the store."""
    filters = filters or Filters()
    by = list(by)
    exprs, joins, join_params = group_expressions(by, store.dialect)
    where, where_params = where_clause(filters)
    selected = ", ".join(
        [*exprs, "r.status", "r.latency_s", "r.ttft_s", "r.input_tokens", "r.output_tokens",
         "r.cache_read_tokens", "r.cache_write_tokens", "r.reasoning_tokens", "r.cost_usd",
         "r.cache", "r.saved_usd"]
    )  # fmt: skip
    # built from fixed column names; every value is a bound parameter
    sql = f"SELECT {selected} FROM requests r {' '.join(joins)} WHERE {where}"  # noqa: S608
    total = _Accumulator(StatsRow(group={}))
    groups: dict[tuple[Any, ...], _Accumulator] = {}
    width = len(exprs)
    with store.connect(read_only=True) as conn:
        for values in conn.execute(sql, [*join_params, *where_params]):
            key = tuple(values[:width])
            rest = values[width:]
            total.add(rest)
            if width:
                acc = groups.get(key)
                if acc is None:
                    acc = groups[key] = _Accumulator(
                        StatsRow(group=dict(zip(by, key, strict=True)))
                    )
                acc.add(rest)
        errors = _errors(conn, where, where_params)
    rows = [acc.finish() for acc in groups.values()]
    if _TIME_GROUPS & set(by):
        rows.sort(key=lambda r: tuple((v is None, v or "") for v in r.group.values()))
    else:
        rows.sort(
            key=lambda r: (-r.requests, tuple((v is None, v or "") for v in r.group.values()))
        )
    return StatsReport(by=by, filters=filters, total=total.finish(), rows=rows, errors=errors)


def _errors(conn: Any, where: str, params: list[Any]) -> list[ErrorRow]:
    joined = "attempts a JOIN requests r ON r.request_id = a.request_id"
    grouped = "GROUP BY a.provider, a.error_type"
    # fixed clauses; every value is a bound parameter
    sql = f"SELECT a.provider, a.error_type, COUNT(*) FROM {joined} WHERE {where} {grouped}"  # noqa: S608
    per_provider: dict[str, int] = {}
    failed: list[tuple[str, str, int]] = []
    for provider, error_type, count in conn.execute(sql, params):
        per_provider[provider] = per_provider.get(provider, 0) + count
        if error_type is not None:
            failed.append((provider, error_type, count))
    rows = [
        ErrorRow(provider, error_type, count, per_provider[provider],
                 count / per_provider[provider])
        for provider, error_type, count in failed
    ]  # fmt: skip
    rows.sort(key=lambda e: (-e.count, e.provider, e.error_type))
    return rows

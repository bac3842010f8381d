"""The dashboard's JSON API: each view's parameters checked and bounded, its query run, JSON out.

The gateway (``/api/...`` in ``llmroute serve``) and ``llmroute dashboard``
both answer through `answer` (the views over a store: blocking, run them in a
worker thread) and `live_health` (the live router's targets: run it on the
router's event loop). Neither checks who is asking: the caller does.

Views and their parameters (every view takes the filters of `FILTER_PARAMS`,
``property.NAME``, and ``since``/``until``; the range defaults to the last 24
hours and spans at most `MAX_RANGE_S`):

============  =====================================  ==================================
``overview``  ``bucket``                             requests, errors, tokens, cost and
                                                     cache outcomes per time bucket
``latency``   ``bucket``, ``by``, ``exact``            latency and TTFT percentiles per
                                                     bucket and per group (from the
                                                     rollups' histograms, within 2.9%,
                                                     unless ``exact=1``)
``errors``    ``limit``                              failed attempts by provider, target
                                                     and type; failed requests by type
                                                     and refusing limit
``cost``      ``by``, ``order``, ``limit``           top-N sums per model, user, key,
                                                     team, route, provider or property
``cache``     ``by``, ``limit``                      hit rate and savings, per group
``requests``  ``search``, ``limit``, ``offset``      a page of requests, newest first
``request``   (the id, in the path)                  one request with its attempts
``experi-     ``experiment``, ``limit`` (and only    each experiment's report
ments``       ``since``/``until``: no other filter)  (`experiments.report`): variants,
                                                     metrics, comparisons, sentences
============  =====================================  ==================================

Every bound is a 400 with a message naming the parameter.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .._errors import ConfigError
from .._units import parse_duration
from ..experiments.report import query_report
from ..observe.analytics import Filters, parse_time
from ..observe.dialect import StoreUnavailable
from ..observe.explore import (
    TOTALS_ORDER,
    error_breakdown,
    experiment_counts,
    request_detail,
    request_page,
    series,
    totals_by,
)
from ..observe.histogram import RELATIVE_ERROR
from ..observe.latency import latency_report

if TYPE_CHECKING:
    from .._router import AsyncRouter
    from ..observe.dialect import LogStore

__all__ = [
    "FILTER_PARAMS",
    "MAX_RANGE_S",
    "STORE_VIEWS",
    "ApiError",
    "DashboardSource",
    "answer",
    "api_path",
    "error_body",
    "live_health",
    "parse_query",
]

#: The filters every view takes (as query parameters), besides ``property.NAME``.
FILTER_PARAMS = ("route", "provider", "model", "target", "user", "key", "team", "status",
                 "error_type", "cache", "operation")  # fmt: skip
#: The longest time range a view covers: about 13 months.
MAX_RANGE_S = 400 * 86400.0
#: The default range: the last 24 hours.
DEFAULT_RANGE_S = 86400.0
#: The most time buckets a series has; an automatic bucket aims at `TARGET_BUCKETS`.
MAX_BUCKETS = 1000
TARGET_BUCKETS = 120
#: Automatic bucket widths, in seconds: the narrowest that gives at most `TARGET_BUCKETS`.
NICE_WIDTHS = (60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_PAGE = 200
MAX_OFFSET = 100_000
MAX_TOP = 100
#: The most experiments ``experiments`` reports at once (each report reads its requests).
MAX_EXPERIMENTS = 20
MAX_PROPERTIES = 8
MAX_VALUE_CHARS = 500
MAX_SEARCH_CHARS = 200
MAX_QUERY_BYTES = 8192
#: What ``cost`` and ``cache`` may group by, and ``latency`` (two at most).
TOP_GROUPS = ("model", "provider", "target", "route", "user", "key", "team")
LATENCY_GROUPS = ("provider", "model", "target", "route")
_COMMON = frozenset({"since", "until", *FILTER_PARAMS})


class ApiError(Exception):
    """A request the API refuses: `status` (400, 404) and a message naming the parameter."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    """The JSON body of a refusal: ``{"error": {"status", "message", "param"}}``."""
    return _dumps({"error": {"status": status, "message": message, "param": param}})


@dataclass(frozen=True, slots=True)
class DashboardSource:
    """What the dashboard reads: the request log's `store` (None: the router has none), and
    the live `router` whose targets ``health`` shows (None: a store only)."""

    store: LogStore | None
    router: AsyncRouter | None = None


def api_path(path: str) -> tuple[str, str | None]:
    """The view an ``/api/...`` path names, and a request id for ``/api/requests/{id}``;
    `ApiError` 404 for an unknown path."""
    rest = path.removeprefix("/api/").strip("/")
    if rest.startswith("requests/"):
        request_id = rest.removeprefix("requests/")
        if not request_id or len(request_id) > 200 or "/" in request_id:
            raise ApiError(404, f"no such request id in {path!r}")
        return "request", request_id
    if rest in _VIEWS or rest == "health":
        return rest, None
    known = ", ".join(f"/api/{v}" for v in [*_VIEWS, "health"])
    raise ApiError(404, f"unknown API path {path!r}: expected one of {known}")


def parse_query(query: bytes) -> dict[str, str]:
    """The query string's parameters; `ApiError` 400 when too long, malformed or repeated."""
    if len(query) > MAX_QUERY_BYTES:
        raise ApiError(400, f"the query string is longer than {MAX_QUERY_BYTES} bytes")
    try:
        pairs = parse_qsl(query.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "the query string is not UTF-8") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise ApiError(400, f"parameter {name!r} is given twice", name)
        params[name] = value
    return params


def answer(
    source: DashboardSource,
    view: str,
    params: Mapping[str, str],
    *,
    request_id: str | None = None,
    now: float | None = None,
) -> tuple[int, bytes]:
    """The status and JSON body of a view over the store (blocking: it queries SQLite)."""
    try:
        if source.store is None:
            raise ApiError(
                404, "this router has no request log: set logging.store to a sqlite:/// URL"
            )
        if view == "request":
            _accept(params, frozenset(), view)
            detail = request_detail(source.store, request_id or "")
            if detail is None:
                raise ApiError(404, f"no request {request_id!r} in the store")
            return 200, _dumps(detail)
        handler = _VIEWS.get(view)
        if handler is None:
            raise ApiError(404, f"unknown view {view!r}")
        _accept(params, _VIEW_PARAMS[view], view)
        query = _Query(params, time.time() if now is None else now)
        return 200, _dumps(handler(source.store, query))
    except ApiError as exc:
        return exc.status, error_body(exc.status, exc.message, exc.param)
    except StoreUnavailable as exc:  # its server is down: try again later
        return 503, error_body(503, str(exc))
    except ConfigError as exc:  # a store that is not one, or a newer one
        return 404, error_body(404, str(exc))


def live_health(router: AsyncRouter | None, *, workers: int = 1) -> bytes:
    """The live router's targets (circuit, error ratio, cooldown, in flight, latency), cache
    and limit counters; ``{"live": false}`` without a router. Call it on the router's loop.

    They are this process's: with `workers` gateway processes, each keeps its own (the
    answer's ``worker`` says which process answered, and of how many)."""
    if router is None:
        return _dumps({"live": False, "targets": []})
    health, stats = router.health(), router.stats()
    targets = []
    for name, h in health.items():
        s = stats.get(name)
        targets.append(
            {
                "target": name,
                "state": h.state,
                "error_ratio": h.error_ratio,
                "window_requests": h.requests,
                "cooldown_remaining_s": h.cooldown_remaining_s,
                "last_error": h.last_error,
                "in_flight": s.in_flight if s else 0,
                "requests": s.requests if s else 0,
                "latency_p50_s": s.latency_p50_s if s else None,
                "latency_p95_s": s.latency_p95_s if s else None,
                "ttft_p50_s": s.ttft_p50_s if s else None,
                "ewma_ttft_s": s.ewma_ttft_s if s else None,
                "ewma_s_per_token": s.ewma_s_per_token if s else None,
            }
        )
    cache = router.cache_stats()
    return _dumps(
        {
            "live": True,
            "targets": targets,
            "cache": None if cache is None else asdict(cache),
            "limits": asdict(router.limit_stats()),
            "worker": {"pid": os.getpid(), "workers": workers},
        }
    )


# ---------------------------------------------------------------- parameters


def _accept(params: Mapping[str, str], extra: frozenset[str], view: str) -> None:
    only = _ONLY_PARAMS.get(view)
    allowed = only if only is not None else _COMMON | extra
    for name, value in params.items():
        if name not in allowed and (only is not None or not name.startswith("property.")):
            if only is not None:
                raise ApiError(
                    400, f"unknown parameter {name!r} for {view}: it takes only "
                    f"{', '.join(sorted(only))} (an experiment compares its variants over "
                    "all their requests)", name,
                )  # fmt: skip
            known = ", ".join(sorted(allowed))
            raise ApiError(
                400, f"unknown parameter {name!r} for {view}: expected {known} or property.NAME",
                name,
            )  # fmt: skip
        if len(value) > MAX_VALUE_CHARS:
            raise ApiError(400, f"{name} is longer than {MAX_VALUE_CHARS} characters", name)


class _Query:
    """A view's parameters, read and bounded: the filters, the range, and the rest."""

    def __init__(self, params: Mapping[str, str], now: float) -> None:
        self.params = params
        until = self._time("until", now, now)
        since = self._time("since", until - DEFAULT_RANGE_S, now)
        if since >= until:
            raise ApiError(400, "since must be before until", "since")
        if until - since > MAX_RANGE_S:
            raise ApiError(
                400, f"the time range is longer than {MAX_RANGE_S / 86400:g} days", "since"
            )
        self.since, self.until = since, until
        values = {name: params[name] or None for name in FILTER_PARAMS if name in params}
        properties = {
            name.removeprefix("property."): value
            for name, value in params.items()
            if name.startswith("property.")
        }
        if len(properties) > MAX_PROPERTIES or "" in properties:
            raise ApiError(400, f"give 1 to {MAX_PROPERTIES} property.NAME filters", "property")
        self.filters = Filters(since=since, until=until, properties=properties)
        self.filters = replace(self.filters, **values)  # type: ignore[arg-type]

    def _time(self, name: str, default: float, now: float) -> float:
        text = self.params.get(name)
        if not text:
            return default
        try:
            value = parse_time(text, now=now)
        except ConfigError as exc:
            raise ApiError(400, f"{name}: {exc}", name) from None
        if not math.isfinite(value):
            raise ApiError(400, f"{name} must be a finite time", name)
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.params.get(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise ApiError(400, f"{name} must be an integer, got {text!r}", name) from None
        if not low <= value <= high:
            raise ApiError(400, f"{name} must be from {low} to {high}, got {value}", name)
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.params.get(name) or default
        if value not in choices and not (
            name == "by" and value.startswith("property.") and len(value) > 9
        ):
            raise ApiError(400, f"{name} must be one of {', '.join(choices)}, got {value!r}", name)
        return value

    def buckets(self) -> tuple[float, float]:
        """The series' origin and bucket width: ``bucket`` (seconds or a duration such as
        ``5m``), else the narrowest of `NICE_WIDTHS` giving at most `TARGET_BUCKETS`."""
        span = self.until - self.since
        text = self.params.get("bucket")
        if text:
            try:
                width = float(parse_duration(text))
            except (ValueError, TypeError):
                raise ApiError(400, f"bucket must be a duration (60, 5m, 1h), got {text!r}",
                               "bucket") from None  # fmt: skip
            if not math.isfinite(width) or width < 1:
                raise ApiError(400, "bucket must be at least 1 second", "bucket")
            if span / width > MAX_BUCKETS:
                raise ApiError(
                    400, f"bucket {text} makes more than {MAX_BUCKETS} buckets over the range; "
                    "choose a wider bucket or a shorter range", "bucket",
                )  # fmt: skip
        else:
            width = next((w for w in NICE_WIDTHS if span / w <= TARGET_BUCKETS), NICE_WIDTHS[-1])
        return math.floor(self.since / width) * width, width

    def head(self, width: float | None = None) -> dict[str, Any]:
        filters = {n: getattr(self.filters, n) for n in FILTER_PARAMS if getattr(self.filters, n)}
        filters.update({f"property.{k}": v for k, v in self.filters.properties.items()})
        head: dict[str, Any] = {"since": self.since, "until": self.until, "filters": filters}
        if width is not None:
            head["bucket_s"] = width
        return head


# ---------------------------------------------------------------- the views


def _overview(store: LogStore, query: _Query) -> dict[str, Any]:
    origin, width = query.buckets()
    buckets = series(store, query.filters, origin=origin, width=width)
    totals: dict[str, Any] = {}
    for name in ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
                 "reasoning_tokens", "cost_usd", "cache_hits", "cache_misses", "saved_usd"):  # fmt: skip
        totals[name] = sum(getattr(b, name) for b in buckets)
    totals["error_rate"] = totals["errors"] / totals["requests"] if totals["requests"] else 0.0
    seen = totals["cache_hits"] + totals["cache_misses"]
    totals["cache_hit_rate"] = totals["cache_hits"] / seen if seen else None
    return {**query.head(width), "totals": totals, "series": [asdict(b) for b in buckets]}


def _latency(store: LogStore, query: _Query) -> dict[str, Any]:
    origin, width = query.buckets()
    by = (query.params.get("by") or "provider,model").split(",")
    if len(by) > 2 or any(b not in LATENCY_GROUPS for b in by) or len(set(by)) != len(by):
        raise ApiError(
            400, f"by must be one or two of {', '.join(LATENCY_GROUPS)}, comma-separated", "by"
        )
    exact = query.choice("exact", "0", ("0", "1")) == "1"
    report = latency_report(store, query.filters, by=by, origin=origin, width=width, exact=exact)
    groups = [
        {**row, "latency": asdict(row["latency"]), "ttft": asdict(row["ttft"])}
        for row in report.groups
    ]
    return {**query.head(width), "by": by, "exact": report.exact,
            "relative_error": 0.0 if report.exact else RELATIVE_ERROR,
            "total": {"latency": asdict(report.latency), "ttft": asdict(report.ttft)},
            "groups": groups, "series": [asdict(b) for b in report.series]}  # fmt: skip


def _errors(store: LogStore, query: _Query) -> dict[str, Any]:
    limit = query.integer("limit", 20, 1, MAX_TOP)
    breakdown = error_breakdown(store, query.filters, limit=limit)
    return {**query.head(), "attempts": breakdown.attempts, "requests": breakdown.requests}


def _top(store: LogStore, query: _Query, default_by: str, default_order: str) -> dict[str, Any]:
    by = query.choice("by", default_by, TOP_GROUPS)
    order = query.choice("order", default_order, TOTALS_ORDER)
    limit = query.integer("limit", 10, 1, MAX_TOP)
    rows, groups = totals_by(store, query.filters, by=by, order=order, limit=limit)
    return {**query.head(), "by": by, "order": order, "groups": groups, "rows": rows}


def _cost(store: LogStore, query: _Query) -> dict[str, Any]:
    return _top(store, query, "model", "cost_usd")


def _cache(store: LogStore, query: _Query) -> dict[str, Any]:
    return _top(store, query, "route", "cache_hits")


def _requests(store: LogStore, query: _Query) -> dict[str, Any]:
    search = query.params.get("search") or None
    if search is not None and len(search) > MAX_SEARCH_CHARS:
        raise ApiError(400, f"search is longer than {MAX_SEARCH_CHARS} characters", "search")
    limit = query.integer("limit", 50, 1, MAX_PAGE)
    offset = query.integer("offset", 0, 0, MAX_OFFSET)
    page = request_page(store, query.filters, search=search, limit=limit, offset=offset)
    return {**query.head(), "total": page.total, "limit": limit, "offset": offset,
            "requests": page.rows}  # fmt: skip


def _experiments(store: LogStore, query: _Query) -> dict[str, Any]:
    limit = query.integer("limit", 5, 1, MAX_EXPERIMENTS)
    found, count = experiment_counts(store, query.since, query.until, limit=limit)
    name = query.params.get("experiment")
    if name:
        found = [(n, c) for n, c in found if n == name] or [(name, 0)]
    reports = [
        {"name": n, "requests": c,
         "report": query_report(store, n, since=query.since, until=query.until).to_dict()}
        for n, c in found
    ]  # fmt: skip
    return {**query.head(), "count": count, "experiments": reports}


_VIEWS: dict[str, Callable[[LogStore, _Query], dict[str, Any]]] = {
    "overview": _overview,
    "latency": _latency,
    "errors": _errors,
    "cost": _cost,
    "cache": _cache,
    "requests": _requests,
    "experiments": _experiments,
}
_VIEW_PARAMS = {
    "overview": frozenset({"bucket"}),
    "latency": frozenset({"bucket", "by", "exact"}),
    "errors": frozenset({"limit"}),
    "cost": frozenset({"by", "order", "limit"}),
    "cache": frozenset({"by", "order", "limit"}),
    "requests": frozenset({"search", "limit", "offset"}),
    "experiments": frozenset({"experiment", "limit"}),
}
#: The views that take no filter but their own parameters and the range.
_ONLY_PARAMS = {"experiments": frozenset({"since", "until", "experiment", "limit"})}
#: The views `answer` serves from the store.
STORE_VIEWS = frozenset([*_VIEWS, "request"])


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()

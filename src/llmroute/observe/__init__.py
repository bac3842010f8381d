"""Observability: a record of every request, sinks, the SQLite store, analytics, OpenTelemetry.

Every router has a `Recorder` stage. It turns each request into a
`RequestRecord` off the request path and hands it to the sinks (the SQLite
store of ``logging.store``, JSON Lines files, your own), to OpenTelemetry,
and to the router's hooks. `SqliteStore` and `query_stats` read a store
back, as `AsyncRouter.analytics()` and ``llmroute stats`` do.

The analytics and the store are imported on first use (the store brings in
``sqlite3``), so a router that only records pays for neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .record import AttemptRecord, RequestRecord
from .recorder import HookEvent, Recorder, RecorderStatus, Redactor
from .sinks import CallbackSink, JsonlSink, Sink, sink_from_url

if TYPE_CHECKING:
    from .analytics import (
        ErrorRow,
        Filters,
        Percentiles,
        StatsReport,
        StatsRow,
        make_filters,
        parse_time,
        parse_where,
        percentile,
        query_stats,
    )
    from .sqlite import SqliteStore

_LAZY = {
    "SqliteStore": ".sqlite",
    **dict.fromkeys(
        ["ErrorRow", "Filters", "Percentiles", "StatsReport", "StatsRow", "make_filters",
         "parse_time", "parse_where", "percentile", "query_stats"],
        ".analytics",
    ),
}  # fmt: skip

__all__ = [
    "AttemptRecord",
    "CallbackSink",
    "ErrorRow",
    "Filters",
    "HookEvent",
    "JsonlSink",
    "Percentiles",
    "Recorder",
    "RecorderStatus",
    "Redactor",
    "RequestRecord",
    "Sink",
    "SqliteStore",
    "StatsReport",
    "StatsRow",
    "make_filters",
    "parse_time",
    "parse_where",
    "percentile",
    "query_stats",
    "sink_from_url",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value

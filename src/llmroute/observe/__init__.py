"""Observability: a record of every request, sinks, the log stores, analytics, OpenTelemetry.

Every router has a `Recorder` stage. It turns each request into a
`RequestRecord` off the request path and hands it to the sinks (the SQLite
or PostgreSQL store of ``logging.store``, JSON Lines files, your own), to
OpenTelemetry, and to the router's hooks. `SqliteStore`, `PostgresStore`
(`open_store` makes either from a URL) and `query_stats` read a store back,
as `AsyncRouter.analytics()` and ``llmroute stats`` do.

The analytics and the stores are imported on first use (they bring in
``sqlite3`` or psycopg), so a router that only records pays for neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports as _exports
from .hooks import HookEvent as HookEvent
from .record import AttemptRecord as AttemptRecord
from .record import RequestRecord as RequestRecord
from .recorder import Recorder as Recorder
from .recorder import Redactor as Redactor
from .sinks import CallbackSink as CallbackSink
from .sinks import JsonlSink as JsonlSink
from .sinks import Sink as Sink
from .sinks import open_store as open_store
from .sinks import sink_from_url as sink_from_url
from .status import RecorderStatus as RecorderStatus

if TYPE_CHECKING:
    from .analytics import ErrorRow as ErrorRow
    from .analytics import Filters as Filters
    from .analytics import Percentiles as Percentiles
    from .analytics import StatsReport as StatsReport
    from .analytics import StatsRow as StatsRow
    from .analytics import make_filters as make_filters
    from .analytics import parse_time as parse_time
    from .analytics import parse_where as parse_where
    from .analytics import percentile as percentile
    from .analytics import query_stats as query_stats
    from .feedback import ExperimentStop as ExperimentStop
    from .feedback import Feedback as Feedback
    from .postgres import PostgresStore as PostgresStore
    from .postgres import PostgresStoreStatus as PostgresStoreStatus
    from .sqlite import SqliteStore as SqliteStore

_EXPORTS = {
    "ErrorRow": ".analytics",
    "Filters": ".analytics",
    "Percentiles": ".analytics",
    "StatsReport": ".analytics",
    "StatsRow": ".analytics",
    "make_filters": ".analytics",
    "parse_time": ".analytics",
    "parse_where": ".analytics",
    "percentile": ".analytics",
    "query_stats": ".analytics",
    "ExperimentStop": ".feedback",
    "Feedback": ".feedback",
    "PostgresStore": ".postgres",
    "PostgresStoreStatus": ".postgres",
    "SqliteStore": ".sqlite",
}

__getattr__, __dir__, __all__ = _exports(
    __name__,
    _EXPORTS,
    eager=[
        "AttemptRecord",
        "CallbackSink",
        "HookEvent",
        "JsonlSink",
        "Recorder",
        "RecorderStatus",
        "Redactor",
        "RequestRecord",
        "Sink",
        "open_store",
        "sink_from_url",
    ],
)

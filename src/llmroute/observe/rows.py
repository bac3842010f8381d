"""The rows of a request log, the same in every store: columns, a record's row and back.

`SqliteStore` and `PostgresStore` write these columns and read them back
through the same statements (`read_records`, `read_feedback`, `read_stop`,
written once with ``?`` placeholders: see `llmroute.observe.dialect`).
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._types import TokenUsage
from .dialect import Connection
from .feedback import ExperimentStop, Feedback
from .record import AttemptRecord, RequestRecord, error_fields, response_facts
from .sqlite_writer import ATTEMPT_COLUMNS, REQUEST_COLUMNS, WATCHED_PARTS, watched_rows

if TYPE_CHECKING:
    from ..pipeline.stage import Ended

__all__ = [
    "ATTEMPT_COLUMNS",
    "FEEDBACK_COLUMNS",
    "MAX_FEEDBACK_PER_REQUEST",
    "MAX_FEEDBACK_PER_STICKY_KEY",
    "PROPERTY_COLUMNS",
    "REQUEST_COLUMNS",
    "attempt_rows",
    "PRUNE_EVERY",
    "decode_record",
    "encode_ended",
    "encode_json",
    "encode_record",
    "prune_statements",
    "property_rows",
    "read_feedback",
    "read_records",
    "read_stop",
    "record_from_row",
    "request_row",
    "stop_row",
]

#: The most feedback entries kept on one request, and on one experiment's sticky key:
#: feedback is a few named metrics, given again when a user changes their mind; a
#: client that keeps sending it is refused rather than growing the store.
MAX_FEEDBACK_PER_REQUEST = 100
MAX_FEEDBACK_PER_STICKY_KEY = 1_000

PROPERTY_COLUMNS = ("request_id", "key", "value", "started_at")
FEEDBACK_COLUMNS = (
    "feedback_id", "request_id", "experiment", "sticky_key", "name", "value", "kind",
    "comment", "key", "created_at",
)  # fmt: skip


#: `json.dumps` with its defaults takes the C encoder's fast path (about 1 µs here).
encode_json = json.dumps


#: The JSON text of each list of finish reasons seen (a request's are one of a few).
_REASONS: dict[tuple[str, ...], str] = {}


def _reasons_json(reasons: list[str]) -> str:
    """`encode_json(reasons)`, looked up: a request's end encodes its record on the event
    loop (`encode_record`), and encoding ``["stop"]`` each time cost more than the lookup.
    Fast path: oracle tests/test_fast_paths.py (the text `encode_json` gives)."""
    key = tuple(reasons)
    text = _REASONS.get(key)
    if text is None:
        text = encode_json(reasons)
        if len(_REASONS) < 256:  # the same few lists; a model inventing reasons is not kept
            _REASONS[key] = text
    return text


#: The token columns of a request without usage.
_NO_TOKENS = (None,) * 6


def _tokens(u: TokenUsage | None) -> tuple[Any, ...]:
    """The token columns of `REQUEST_COLUMNS` for a request's usage."""
    if u is None:
        return _NO_TOKENS
    return (u.input, u.output, u.cache_read, u.cache_write, u.reasoning, int(u.estimated))


def request_row(r: RequestRecord) -> tuple[Any, ...]:
    """The values of `REQUEST_COLUMNS` for `r` (content and lists as JSON text)."""
    tokens = _tokens(r.usage)
    return (
        r.request_id, r.operation, r.started_at, r.ended_at, r.request_model, r.route,
        r.strategy, r.target, r.provider, r.model, r.response_model, r.response_id,
        int(r.stream), r.status, r.latency_s, r.ttft_s, *tokens, r.cost_usd, r.cache,
        r.answered_by, r.limit, r.error_type, r.error,
        _reasons_json(r.finish_reasons) if r.finish_reasons else None, r.user, r.session,
        encode_json(r.properties) if r.properties else None,
        None if r.prompt is None else encode_json(r.prompt),
        None if r.completion is None else encode_json(r.completion),
        r.experiment, r.variant, r.saved_usd, r.key, r.team,
        r.assignment, r.sticky_key, int(r.off_variant),
    )  # fmt: skip


def attempt_rows(records: Sequence[RequestRecord]) -> list[tuple[Any, ...]]:
    """The values of `ATTEMPT_COLUMNS` for every attempt of `records`."""
    return [
        (r.request_id, i, a.target, a.provider, a.model, a.kind, a.outcome, a.status,
         a.error_type, a.error, a.started_s, a.latency_s)
        for r in records
        for i, a in enumerate(r.attempts)
    ]  # fmt: skip


def property_rows(records: Sequence[RequestRecord]) -> list[tuple[str, str, str, float]]:
    """The values of `PROPERTY_COLUMNS` for every property of `records` (each with its
    request's ``started_at``, so a property filter reads its index by time)."""
    return [(r.request_id, k, v, r.started_at) for r in records for k, v in r.properties.items()]


def encode_record(r: RequestRecord) -> bytes:
    """`r`'s rows (`request_row`, `attempt_rows`, `property_rows`), marshalled: one bytes
    object, which the garbage collector does not track (a record queued as it would be, a
    few containers each, promoted into older generations while it waits, made the
    collector cost more than the recording). `decode_record` gives the record back."""
    return _marshalled(request_row(r), attempt_rows((r,)), property_rows((r,)))


#: The `marshal` version of a request's end: 2 keeps no table of the objects written
#: (later versions build one for each call, and enter every string of the route in it).
_END_VERSION = 2


def encode_ended(
    end: Ended, cost: float | None, saved: float | None, rates: tuple[float, ...] | None = None
) -> bytes:
    """`encode_record` of the record `build_record` makes of the request `end` describes
    (priced: `cost` and `saved`, its ``cost_usd`` and ``saved_usd``; or `rates`, the flat
    rates the store computes its cost with, `PriceBook.held_rates`), as what its end
    read: a request's end encodes it on the event loop, where the record's 39 fields, and
    then its rows, cost more than reading the values it needs; the store makes the rows
    (`watched_rows`). Fast path: oracle tests/test_observe_watch.py (the rows
    `encode_record` gives). The values are read by the interpreter's own attribute loads,
    which specialise to a slot or an instance's values: ``operator.attrgetter`` groups,
    used before, cost 2.4 times as much (a generic lookup for each name, each dotted name
    walked from the end again: 591 against 242 ns for the end's 20 values, timeit).

    The attempts are a list: ``tuple()`` of an iterator of unknown length makes a tuple of
    10 and shrinks it, which leaves the garbage collector's count of allocations one
    higher each request (a tuple made anew, freed to the free list of another size):
    collections came 2.7 times as often, and full ones, with what they promote of the
    requests in flight, as soon as 27,000 requests at concurrency 100.
    (`benchmarks/bench_observe.py` prints collections per request.)"""
    info, route, options = end.info, end.route, end.options
    result, error, usage = end.result, end.error, info.usage
    properties = options.properties  # as JSON here: a value JSON refuses fails this end
    parts = (
        (end.operation, end.model, end.started, end.started_at, end.ended, route.name,
         route.strategy),
        (info.request_id, info.route, info.strategy, info.target, info.provider, info.model,
         info.ttft_s, info.cache, info.latency_s, options.user, options.session, options.key,
         options.team),
        None if usage is None else (usage.input, usage.output, usage.cache_read,
                                    usage.cache_write, usage.reasoning, usage.estimated),
        None if result is None else response_facts(result),
        None if error is None else error_fields(error),
        cost,
        saved,
        [(a.target, a.provider, a.model, a.kind, a.outcome, a.status, a.error_type, a.error,
          a.started, a.latency_s) for a in info.attempts],  # a list (above)
        rates,
        encode_json(properties) if properties else None,
    )  # fmt: skip
    try:
        return marshal.dumps(parts, _END_VERSION)
    except ValueError:  # a value of a subclass of str, int or float: its rows, made here
        return _marshalled(*watched_rows(parts))


def _marshalled(
    request: Sequence[Any], attempts: Sequence[Sequence[Any]], properties: Sequence[Sequence[Any]]
) -> bytes:
    """A request's rows as one bytes object (`encode_record`)."""
    rows: Any = (request, attempts, properties)
    try:
        return marshal.dumps(rows)
    except ValueError:  # a value of a subclass of str, int or float: stored as its base type
        return marshal.dumps(
            (_plain(request), [_plain(a) for a in attempts], [_plain(p) for p in properties])
        )


def _plain(row: Sequence[Any]) -> tuple[Any, ...]:
    """`row` with each value of a subclass of bool, str, int or float as its base type."""
    plain = []
    for value in row:
        for kind in (bool, str, int, float):
            if isinstance(value, kind):
                value = value if type(value) is kind else kind(value)
                break
        plain.append(value)
    return tuple(plain)


def decode_record(item: bytes | tuple[bytes, float | None, float | None]) -> RequestRecord:
    """The record `encode_record` encoded (as the store reads it back); with its cost and
    savings when given with them (priced after it was encoded)."""
    encoded = item if isinstance(item, bytes) else item[0]
    parts = marshal.loads(encoded)  # noqa: S302 - our own encoding, in memory
    request, attempts, _ = watched_rows(parts) if len(parts) == WATCHED_PARTS else parts
    record = record_from_row(dict(zip(REQUEST_COLUMNS, request, strict=True)))
    record.attempts = [AttemptRecord(*row[2:]) for row in attempts]
    if not isinstance(item, bytes):
        record.cost_usd, record.saved_usd = item[1], item[2]
    return record


def stop_row(stop: ExperimentStop) -> tuple[Any, ...]:
    """The values of ``experiment_stops``' columns for `stop`."""
    return (stop.experiment, stop.winner, stop.stopped_at, stop.probability, stop.metric,
            json.dumps(stop.samples, sort_keys=True))  # fmt: skip


def record_from_row(row: dict[str, Any]) -> RequestRecord:
    """The record a row of ``requests`` (by column name) holds, without its attempts."""
    usage = None
    if row["input_tokens"] is not None:
        usage = TokenUsage(
            row["input_tokens"], row["output_tokens"], row["cache_read_tokens"],
            row["cache_write_tokens"], row["reasoning_tokens"], bool(row["tokens_estimated"]),
        )  # fmt: skip
    loads = json.loads
    return RequestRecord(
        request_id=row["request_id"], operation=row["operation"], started_at=row["started_at"],
        request_model=row["request_model"], ended_at=row["ended_at"], route=row["route"],
        strategy=row["strategy"], target=row["target"], provider=row["provider"],
        model=row["model"], response_model=row["response_model"],
        response_id=row["response_id"], stream=bool(row["stream"]), status=row["status"],
        latency_s=row["latency_s"], ttft_s=row["ttft_s"], usage=usage,
        cost_usd=row["cost_usd"], saved_usd=row["saved_usd"], cache=row["cache"],
        answered_by=row["answered_by"], limit=row["limit_type"], error_type=row["error_type"],
        error=row["error"], finish_reasons=loads(row["finish_reasons"] or "[]"),
        user=row["user"], key=row["key"], team=row["team"], session=row["session"],
        properties=loads(row["properties"] or "{}"),
        experiment=row["experiment"], variant=row["variant"],
        assignment=row["assignment"], sticky_key=row["sticky_key"],
        off_variant=bool(row["off_variant"]),
        prompt=loads(row["prompt"]) if row["prompt"] else None,
        completion=loads(row["completion"]) if row["completion"] else None,
    )  # fmt: skip


def read_records(
    conn: Connection, *, since: float | None, until: float | None, limit: int | None
) -> list[RequestRecord]:
    """Stored records with their attempts, oldest first, started in ``[since, until)``."""
    where, params = ["1 = 1"], []
    if since is not None:
        where.append("started_at >= ?")
        params.append(since)
    if until is not None:
        where.append("started_at < ?")
        params.append(until)
    # fixed clauses and column names; every value is a bound parameter
    chosen = (
        f"SELECT request_id FROM requests WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY started_at, request_id" + ("" if limit is None else f" LIMIT {int(limit)}")
    )
    columns = ", ".join(f'"{c}"' for c in REQUEST_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns} FROM requests WHERE request_id IN ({chosen}) "  # noqa: S608
        "ORDER BY started_at, request_id",
        params,
    ).fetchall()
    records = [record_from_row(dict(zip(REQUEST_COLUMNS, row, strict=True))) for row in rows]
    by_id = {r.request_id: r for r in records}
    fields = (
        "request_id, target, provider, model, kind, outcome, status, error_type, error, "
        "started_s, latency_s"
    )
    attempts = f"SELECT {fields} FROM attempts WHERE request_id IN ({chosen})"  # noqa: S608
    for row in conn.execute(attempts + " ORDER BY request_id, idx", params):
        by_id[row[0]].attempts.append(AttemptRecord(*row[1:]))
    return records


def read_feedback(conn: Connection, *, since: float | None) -> list[Feedback]:
    """Stored feedback, oldest first, given at `since` (Unix seconds) or later."""
    columns = ", ".join(FEEDBACK_COLUMNS)
    where, params = ("WHERE created_at >= ?", [since]) if since is not None else ("", [])
    rows = conn.execute(
        f"SELECT {columns} FROM feedback {where} ORDER BY created_at, feedback_id",  # noqa: S608
        params,
    ).fetchall()
    return [Feedback(**dict(zip(FEEDBACK_COLUMNS, row, strict=True))) for row in rows]


def read_stop(conn: Connection, experiment: str) -> ExperimentStop | None:
    """When and why `experiment` stopped (None: no stop is stored)."""
    row = conn.execute(
        "SELECT experiment, winner, stopped_at, probability, metric, samples "
        "FROM experiment_stops WHERE experiment = ?",
        (experiment,),
    ).fetchone()
    if row is None:
        return None
    experiment, winner, stopped_at, probability, metric, samples = row
    return ExperimentStop(experiment, winner, stopped_at, probability, metric, json.loads(samples))


#: How often a store's writer deletes what is older than its retention (seconds).
PRUNE_EVERY = 600.0


def prune_statements() -> tuple[str, ...]:
    """The deletes of retention, each taking the cutoff (Unix seconds) as its one parameter:
    requests started before it with their attempts and properties, feedback given before
    it, and minute rollups (and minute latency histograms) of buckets before it."""
    old = "SELECT request_id FROM requests WHERE started_at < ?"
    return (
        f"DELETE FROM attempts WHERE request_id IN ({old})",  # noqa: S608
        f"DELETE FROM properties WHERE request_id IN ({old})",  # noqa: S608
        "DELETE FROM requests WHERE started_at < ?",
        "DELETE FROM feedback WHERE created_at < ?",
        "DELETE FROM rollup_minute WHERE bucket < ?",
        "DELETE FROM rollup_total_minute WHERE bucket < ?",
        "DELETE FROM rollup_latency_minute WHERE bucket < ?",
        "DELETE FROM rollup_latency_total_minute WHERE bucket < ?",
    )

"""The recorder: the pipeline stage that turns every request into a `RequestRecord`.

On the request path it does little: `before()` reads the caller's trace
context and decides whether content is captured; `after()` copies the
request's fields into its record (microseconds; see `_pending` for why this
is not left to the worker) and appends it to a bounded queue, or counts it
as dropped when the queue is full. When the store is all that reads the
record, `after()` also prices it and encodes it for the store (`_encoded`:
one bytes object, which the garbage collector does not track). A background task on the router's event
loop (for the blocking `Router`, on its loop thread) drains the queue in
batches of up to ``batch_size``, waiting at most ``flush_interval`` to fill
one; it runs while there are records and ends when the queue is empty (the
next record starts another), so an idle recorder has no task waiting: a
router dropped unclosed leaves no task pending for ever, which asyncio would
report ("Task was destroyed but it is pending!"). It hands each batch to a worker thread that
prices the records (reading the cost), serialises captured content, applies
the redactor, emits the OpenTelemetry spans and metric points, and writes
every sink. Back on the loop, the attempt-end and request-end hooks receive
the records. A failing sink, hook or redactor is logged and counted, never
raised into a request.

Attempt-end hooks run at request end, once per recorded attempt, from the
finished record (the attempt driver is not touched); request-start hooks run
in `before()`, on the request path, with a record of what was asked.

While the store is all that reads a record (no other sink, hook or redactor), a
request's content is not captured and no OpenTelemetry SDK is active, the
recorder only watches requests (`watches`): a non-streamed request then makes
no context, and `ended()` queues its rows encoded straight from its end
(`encode_ended`), without `before()`, `after()` or a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ..pipeline.stage import Answer, Ended, Outcome, RequestContext, Stage
from ._worker import gil_friendly, offer_gil
from .hooks import HookEvent, Hooks
from .queued import Pending, Priced, Queued, priced_rows, record_rows, sort_batch
from .record import (
    RequestRecord,
    add_content,
    apply_cost,
    build_record,
    start_record,
    unsent,
)
from .rows import encode_ended
from .sinks import CallbackSink, Sink, open_store, sink_from_url
from .sqlite_writer import Encoded
from .status import RecorderStatus

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._clock import Clock
    from .._config import LoggingConfig, TelemetryConfig
    from .._prices import PriceBook
    from .._request import RequestOptions
    from ..routing.catalog import Catalog
    from .analytics import Filters, StatsReport
    from .otel import Prepared, Telemetry
    from .postgres import PostgresStore
    from .sqlite import SqliteStore

__all__ = ["Recorder", "Redactor"]

logger = logging.getLogger("llmroute.observe")

#: Given each finished record before anything stores it; returns the record to
#: keep (changed or not), or None to keep nothing of this request.
Redactor = Callable[[RequestRecord], RequestRecord | None]

_STATE = "recorder"


class Recorder(Stage):
    """Records every request of a router: sinks, OpenTelemetry, hooks."""

    name = "recorder"

    def __init__(
        self,
        logging_config: LoggingConfig | None,
        telemetry_config: TelemetryConfig,
        *,
        clock: Clock,
        catalog: Catalog,
        prices: PriceBook,
    ) -> None:
        self._clock = clock
        self._catalog = catalog
        self._prices = prices
        config = logging_config
        self._capture = config.capture_content if config else False
        self._queue_size = config.queue_size if config else 10_000
        self._batch_size = config.batch_size if config else 2000
        self._flush_interval = config.flush_interval if config else 0.2
        self.store: SqliteStore | PostgresStore | None = None
        self._sinks: list[Sink] = []
        if config is not None:
            if config.store is not None:
                self.store = open_store(config.store, retention=config.retention,
                                        writer=config.writer)  # fmt: skip
                self._sinks.append(self.store)
            for url in config.sinks:
                self._add_url(url)
        self._hooks = Hooks()
        self._telemetry: Telemetry | None = None
        self._redactor: Redactor | None = None
        if telemetry_config.enabled:
            self.use_telemetry()
        #: Whether an encoded request is priced by the worker (`Priced`): until the worker
        #: has priced one, which loads genai-prices' data (72 ms); then a price costs
        #: microseconds (a model's first lookup 0.7 ms, a tiered price 30 µs), taken at the
        #: request's end, where a pricer kept per queued request cost the garbage collector
        #: more (`_encoded`).
        self._price_later = True
        #: Finished requests waiting to be written: queued (`_pending`), or encoded
        #: (`_encoded`) when the store is all that reads them.
        self._queue: list[Queued] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._full: asyncio.Event | None = None
        self._writing: asyncio.Lock | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._recorded = self._dropped = self._failed = 0
        self._sink_errors = 0
        self._update_active()

    # -------------------------------------------------------------- configuration

    def _add_url(self, url: str) -> Sink:
        sink = sink_from_url(url)
        self._sinks.append(sink)
        return sink

    def _update_active(self) -> None:
        hooks = self._hooks
        ends = hooks.follow_ends()
        #: Whether request-start hooks run (read by every `before()`).
        self._starts = hooks.follow("request_start")
        self._active = bool(self._sinks or ends)
        self._busy = self._active or self._starts
        #: The store's `write_encoded` when the store is all that reads a finished record
        #: (no other sink, end hook or redactor; and, request by request, no span or metric
        #: point to emit, no content to capture): a request's end then encodes its record
        #: at once (`_encoded`).
        self._write_encoded: Callable[[Sequence[Encoded]], None] | None = None
        sinks = self._sinks
        if len(sinks) == 1 and not ends and self._redactor is None:
            self._write_encoded = getattr(sinks[0], "write_encoded", None)
        #: Whether a request's end may be all it needs (`watches`): no start hook, and the
        #: store alone reads a record, or nothing does.
        self._watching = not self._starts and (self._write_encoded is not None or not self._active)

    def add_sink(self, sink: Sink | str | Callable[[Sequence[RequestRecord]], object]) -> None:
        """Send every record to `sink` too: a `Sink`, a URL, or a function taking a batch."""
        if isinstance(sink, str):
            self._add_url(sink)
        elif isinstance(sink, Sink):
            self._sinks.append(sink)
        elif callable(sink):
            self._sinks.append(CallbackSink(sink))
        else:
            raise TypeError(f"expected a Sink, a URL or a function, got {sink!r}")
        self._update_active()

    def add_hook(self, event: HookEvent, hook: Callable[..., object]) -> None:
        """Call `hook` on `event` (it may be a coroutine function).

        ``request_start`` and ``request_end`` hooks receive a `RequestRecord`;
        ``attempt_end`` hooks receive the record and an `AttemptRecord`.
        """
        self._hooks.add(event, hook)
        self._update_active()

    def set_redactor(self, redactor: Redactor | None) -> None:
        """Apply `redactor` to every record before any sink, span or hook sees it (those
        queued already included)."""
        self._redactor = redactor
        self._update_active()

    def use_telemetry(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        enabled: bool = True,
    ) -> None:
        """Emit spans and metrics through these providers (default: the global ones), or stop."""
        if enabled:
            from .otel import Telemetry

            self._telemetry = Telemetry(
                self._catalog, tracer_provider=tracer_provider, meter_provider=meter_provider
            )
        else:
            self._telemetry = None
        self._update_active()

    def status(self) -> RecorderStatus:
        """The recorder's counters (and its PostgreSQL store's, if it has one)."""
        status = RecorderStatus(
            len(self._queue), self._recorded, self._dropped, self._failed,
            self._sink_errors, self._hooks.errors,
        )  # fmt: skip
        from .postgres import PostgresStore  # imports no driver: psycopg comes with a write

        store = self.store
        if not isinstance(store, PostgresStore):
            return status
        held = store.status()
        return replace(status, store_waiting=held.waiting, store_outages=held.outages,
                       store_dropped=held.dropped)  # fmt: skip

    # -------------------------------------------------------------- the stage

    def idle(self) -> bool:
        """Nothing would receive a record: no sink, no hook, and no OpenTelemetry SDK
        that keeps spans or reads metrics (asked of `Telemetry.active`, which looks again
        once a second). `before()` would then change nothing a reader sees, and `after()`
        return at once."""
        if self._busy:
            return False
        telemetry = self._telemetry
        return telemetry is None or not telemetry.active()

    def watches(self, options: RequestOptions, state: dict[str, object]) -> bool:
        """When no request-start hook runs, the store is all that reads a finished record
        (`_write_encoded`) or nothing does, and the request's content is not captured:
        with no OpenTelemetry SDK active, or one whose sampler drops this request's span
        and no meter reading its metrics, the request's end is all it needs (`ended`).
        The sampling is decided here, as `before()` would, and left in `state` for
        `before()`, should the request get a context (its span kept, or a busy stage
        placed before this one): asked twice, a ratio sampler's ratio would be squared.
        The caller's trace context is read here, when the request is started."""
        if not self._watching:
            return False
        capture = options.capture_content
        if capture if capture is not None else self._capture:
            return False
        telemetry = self._telemetry  # as `idle` asks it (inline: a frame less per request)
        if telemetry is None or not telemetry.active():
            return True
        if telemetry.metering():  # every request's points are read from its record
            return False
        parent = telemetry.caller_context()
        trace_id = telemetry.decide_active(parent)
        # left for `before()` either way: a stage asked after this one (placed before it) may
        # still give the request a context
        state[_STATE] = (False, parent, trace_id)
        return trace_id == 0  # its span dropped: nothing is built for it

    def ended(self, end: Ended) -> None:
        """Queue the request's rows, encoded from its end (`encode_ended`): it made no
        context, nor this stage a record (nothing when nothing reads one: the request was
        only watched for its unsampled span). Each end runs this on the event loop, so the
        common case is written out (`_room`, `_put`, `priced_rows`: a frame each): a request
        that sent something (a cache, which answers without, never watches) is priced by
        reading its cost (`priced`), or, at a flat price whose rates are held, by the store
        from them (`PriceBook.held_rates`); the background task is looked at as `_put` does."""
        if not self._active:
            return
        queue = self._queue
        if self._closed or len(queue) >= self._queue_size:
            self._room()  # counts the drop
            return
        info = end.info
        try:
            hit = info.cache == "hit"  # (`nothing_sent`: no stage answered it)
            pricer = info.pending_cost()
            rates = None
            if pricer is not None and not hit:
                rates = self._prices.held_rates(pricer)  # a flat price: the store computes it
            if rates is not None:
                item: bytes | Priced = encode_ended(end, None, None, rates)
            elif hit or (self._price_later and pricer is not None):
                item = priced_rows(info, hit, encode_ended, end, now=not self._price_later)
            else:
                item = encode_ended(end, info.cost_usd, None)
        except Exception:
            self._failed += 1
            logger.exception("llmroute recorder: could not record request %s",
                             info.request_id)  # fmt: skip
            return
        queue.append(item)
        task = self._task  # (`_kick`, its common case inline: running, on this loop)
        if (
            task is None
            or task.done()
            or self._loop is not asyncio.get_running_loop()
            or len(queue) >= self._batch_size
        ):
            self._kick()

    async def before(self, ctx: RequestContext) -> Answer | None:
        capture = ctx.options.capture_content
        if capture is None:
            capture = self._capture
        telemetry = self._telemetry
        keep_chunks = capture  # for the completion and the finish reasons
        if telemetry is None:
            ctx.state[_STATE] = (capture, None, 0)
        else:
            decided: Any = ctx.state.get(_STATE)
            if not isinstance(decided, tuple):  # (a value of another stage's is replaced)
                parent = telemetry.caller_context()
                trace_id = telemetry.decide(parent)  # now: an unsampled request builds no span
                ctx.state[_STATE] = (capture, parent, trace_id)
            else:  # decided as the stages were asked (`watches`), content not captured
                _, parent, trace_id = decided
            keep_chunks = keep_chunks or (ctx.stream and trace_id != 0)
        if keep_chunks:
            ctx.keep_chunks = True
        if self._starts:
            await self._hooks.call("request_start", start_record(ctx))
        return None

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        telemetry = self._telemetry
        state: Any = ctx.state.get(_STATE)
        capture, parent, trace_id = state if isinstance(state, tuple) else (self._capture, None, 0)
        prepared = None
        if telemetry is not None:
            prepared = telemetry.prepare(ctx, parent, trace_id)
        if prepared is None and not self._active:
            return  # nothing would receive the record
        if not self._room():
            return
        try:
            if prepared is None and not capture and self._write_encoded is not None:
                item: Queued = self._encoded(ctx, outcome)
            else:
                item = self._pending(ctx, outcome, capture, prepared)
        except Exception:
            self._failed += 1
            logger.exception("llmroute recorder: could not record request %s",
                             ctx.info.request_id)  # fmt: skip
            return
        self._put(item)

    def _room(self) -> bool:
        """Whether the queue takes another request; if not, it is counted as dropped."""
        if not self._closed and len(self._queue) < self._queue_size:
            return True
        self._dropped += 1
        if self._dropped == 1 or self._dropped % 10_000 == 0:
            logger.warning(
                "llmroute recorder: %d request record(s) dropped so far (queue full or "
                "router closed)", self._dropped,
            )  # fmt: skip
        return False

    def _put(self, item: Queued) -> None:
        """Queue a finished request, and see that the background task writes it."""
        self._queue.append(item)
        self._kick()

    def _kick(self) -> None:
        """See that the background task runs (started, or again on another event loop), and
        that it writes a full batch now."""
        task, loop = self._task, asyncio.get_running_loop()
        if task is None or task.done() or loop is not self._loop:
            self._start(loop)
        elif len(self._queue) >= self._batch_size:
            full = self._full
            assert full is not None
            if not full.is_set():
                full.set()

    def _pending(
        self, ctx: RequestContext, outcome: Outcome, capture: bool, prepared: Prepared | None
    ) -> Pending:
        """The queued form of a finished request.

        The record is built now (copying fields: microseconds) so that the
        queue does not keep each request's and response's objects alive until
        its batch is written: held for a flush interval, they would survive
        into the garbage collector's older generations and make its
        collections several times costlier than the recording itself. Only
        with content capture are the request and outcome kept, to be
        serialised by the worker.
        """
        record = build_record(ctx, outcome, self._clock.monotonic())
        content = (ctx.request, outcome) if capture else None
        return record, ctx.info, content, prepared

    def _encoded(self, ctx: RequestContext, outcome: Outcome) -> bytes | Priced:
        """The queued form of a finished request when the store is all that reads it: its
        record, priced and encoded for the store (`encode_record`: one bytes object, which
        the garbage collector does not track); until the worker has priced once, with what
        prices it instead (`Priced`: a pricer kept per queued request measured 36.4
        against 23.8 µs of collection per request at c=100, and 358 against 315 µs of the
        process's CPU). Queued as records and routing metadata, a few containers each held
        for a flush interval, they were promoted into the collector's older generations
        and made it cost more than the recording: 65 against 24 µs of collection per
        request at concurrency 100 (gc.callbacks), full collections included. A redactor,
        hook or sink added before it is written gets it decoded (`decode_record`)."""
        record = build_record(ctx, outcome, self._clock.monotonic())
        return priced_rows(ctx.info, unsent(record), record_rows, record, now=not self._price_later)

    # -------------------------------------------------------------- the background task

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            self._loop = loop
            self._full, self._writing = asyncio.Event(), asyncio.Lock()
        self._task = loop.create_task(self._drain(), name="llmroute-recorder")

    async def _drain(self) -> None:
        """Write the queue in batches until it is empty, then end."""
        queue, full = self._queue, self._full
        assert full is not None
        try:
            while queue:
                if len(queue) < self._batch_size:
                    full.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._flush_interval):
                            await full.wait()
                await self._write_batch()
        except asyncio.CancelledError:
            if not self._closed and queue:
                # the loop is shutting down without the router being closed: write what is left
                while queue:
                    self._hooks.deliver_sync(self._process(self._take()))
            raise

    def _take(self) -> list[Queued]:
        queue = self._queue
        batch = queue[: self._batch_size]
        del queue[: len(batch)]
        return batch

    async def _write_batch(self) -> None:
        writing = self._writing
        assert writing is not None
        async with writing:
            if not self._queue:
                return
            batch = self._take()
            loop = asyncio.get_running_loop()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="llmroute-recorder")
            try:
                processing = loop.run_in_executor(self._executor, self._process, batch)
            except RuntimeError:  # the interpreter is exiting: threads take no new work
                records = self._process(batch)
            else:
                records = await processing
            if self._hooks.follow_ends():
                await self._hooks.deliver(records)

    def _process(self, batch: list[Queued]) -> list[RequestRecord]:
        """Price, redact, trace and store a batch (in the worker thread)."""
        pending = self._store_encoded(batch)
        if not pending:
            return []
        records = []
        telemetry = self._telemetry
        for record, info, content, prepared in gil_friendly(pending):
            try:
                if info is not None:  # (an encoded record is priced)
                    apply_cost(record, info)
                if content is not None:
                    add_content(record, *content)
                kept: RequestRecord | None = record
                if self._redactor is not None:
                    kept = self._redactor(record)
            except Exception:
                self._failed += 1
                logger.exception("llmroute recorder: could not record request %s",
                                 record.request_id)  # fmt: skip
                continue
            if kept is None:
                continue
            records.append(kept)
            if telemetry is not None and prepared is not None:
                try:
                    telemetry.emit(kept, prepared)
                except Exception:
                    logger.exception("llmroute recorder: OpenTelemetry export failed")
        for sink in self._sinks:
            offer_gil()
            try:
                sink.write(records)
            except Exception:
                self._sink_errors += 1
                logger.exception("llmroute recorder: sink %r failed to write %d record(s)",
                                 sink, len(records))  # fmt: skip
        self._recorded += len(records)
        return records

    def _store_encoded(self, batch: list[Queued]) -> list[Pending]:
        """Price the encoded requests of `batch` and write them to the store when it is still
        all that reads them; return the others, each encoded one decoded (something else
        reads it now)."""
        write_encoded = self._write_encoded
        encoded, pending, failed, priced = sort_batch(batch, for_store=write_encoded is not None)
        self._failed += failed
        if priced:
            self._price_later = False
        if encoded:
            assert write_encoded is not None
            try:
                write_encoded(encoded)
            except Exception:
                self._sink_errors += 1
                logger.exception("llmroute recorder: sink %r failed to write %d record(s)",
                                 self._sinks[0], len(encoded))  # fmt: skip
            self._recorded += len(encoded)
        return pending

    # -------------------------------------------------------------- analytics

    def query(self, *, by: Sequence[str] = (), filters: Filters | None = None) -> StatsReport:
        """Analytics over the store as written so far (blocking; see `query_stats`)."""
        if self.store is None:
            raise ConfigError(
                "analytics read the log store, and this router has none: set `logging.store` "
                "(for example sqlite:///llmroute.db)",
                path="logging.store",
            )
        from .analytics import query_stats

        return query_stats(self.store, by=by, filters=filters)

    async def analytics(
        self, *, by: Sequence[str] = (), filters: Filters | None = None
    ) -> StatsReport:
        """Flush, then query the store in a worker thread."""
        await self.flush()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.query(by=by, filters=filters))

    # -------------------------------------------------------------- flushing and closing

    async def flush(self) -> None:
        """Write every record queued so far, and wait for it (hooks included)."""
        while self._queue:
            await self._write_batch()
        writing = self._writing
        if writing is not None:
            async with writing:  # a batch the background task took is finished too
                pass

    async def aclose(self) -> None:
        """Flush, stop the background task, close the sinks. Later requests are counted as dropped."""
        if self._closed:
            return
        try:
            if self._loop is asyncio.get_running_loop():
                await self.flush()
            else:  # the loop that recorded them is gone: write what is left from here
                while self._queue:
                    self._hooks.deliver_sync(self._process(self._take()))
        finally:
            self._closed = True
            task = self._task
            if task is not None and not task.done() and self._loop is asyncio.get_running_loop():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            executor = self._executor
            self._executor = None
            for sink in self._sinks:
                try:
                    await _in_thread(executor, sink.close)
                except Exception:
                    logger.exception("llmroute recorder: sink %r failed to close", sink)
            if executor is not None:
                executor.shutdown(wait=False)
            if self._dropped:
                logger.warning("llmroute recorder: %d request record(s) were dropped",
                               self._dropped)  # fmt: skip


async def _in_thread(executor: ThreadPoolExecutor | None, func: Callable[[], object]) -> None:
    """`func()` in `executor`'s thread; here when there is none, or the interpreter is
    exiting (a router closed at exit: threads take no new work then)."""
    if executor is None:
        func()
        return
    try:
        running = asyncio.get_running_loop().run_in_executor(executor, func)
    except RuntimeError:  # the executor was shut down with the interpreter: run it here
        func()
        return
    await running

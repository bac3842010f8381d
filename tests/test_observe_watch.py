"""A request's end given to the stages that only watch it (`Stage.watches`, `Stage.ended`):
the recorder writing to its store alone takes it, and writes the rows it writes from a
context (oracle of `encode_ended`, docs/performance.md); a user's stage gets each end,
success or failure, and neither hook; whatever else is busy gets a context as before."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import marshal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

import llmroute
from _pipeline_parts import Scripted, catalog, chat_request
from _wire import Wire
from llmroute import AsyncRouter, RequestOptions, TokenUsage
from llmroute._errors import BudgetExceeded, LocalRateLimitExceeded, ProviderTimeout
from llmroute._types import AttemptInfo, ChatCompletion, CreateEmbeddingResponse, RouteInfo
from llmroute._wire_completion import WireCompletion, wire_completion
from llmroute.observe import SqliteStore
from llmroute.observe.record import RequestRecord, build_record
from llmroute.observe.rows import REQUEST_COLUMNS, decode_record, encode_ended, encode_record
from llmroute.observe.sqlite import PLAN
from llmroute.observe.sqlite_writer import decode_rows
from llmroute.pipeline.stage import Ended, Outcome, RequestContext
from llmroute.responses.request_model import ResponsesRequest
from llmroute.responses.translate import build_response
from llmroute.responses.types import IncompleteDetails, Response

_BUILT = catalog({"targets": [{"provider": "a", "model": "m"}]}, a=Scripted())
_ROUTES = [_BUILT.resolve("chat"), _BUILT.resolve("a/m")]  # named, and direct (no name)
_TEXT = st.text(max_size=6)
_MAYBE_TEXT = st.none() | _TEXT
_SECONDS = st.floats(0, 1e4, allow_nan=False)
_ATTEMPT = st.builds(
    AttemptInfo,
    target=_TEXT, provider=_TEXT, model=_TEXT,
    kind=st.sampled_from(["first", "retry", "fallback", "hedge"]),
    outcome=st.sampled_from(["ok", "error", "cancelled"]),
    status=st.none() | st.integers(100, 599), error_type=_MAYBE_TEXT, error=_MAYBE_TEXT,
    latency_s=_SECONDS, started=st.none() | _SECONDS,
)  # fmt: skip
_USAGE = st.none() | st.builds(TokenUsage, *[st.integers(0, 10**6)] * 5, estimated=st.booleans())
_OPTIONS = st.builds(
    RequestOptions,
    user=_MAYBE_TEXT, key=_MAYBE_TEXT, team=_MAYBE_TEXT, session=_MAYBE_TEXT,
    properties=st.dictionaries(_TEXT, _TEXT, max_size=3),
)  # fmt: skip
_REASON = st.none() | st.sampled_from(["stop", "length", "tool_calls"])


def _chat(model: str, answer_id: str, reasons: list[str | None]) -> dict[str, Any]:
    return {
        "id": answer_id, "object": "chat.completion", "created": 1, "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": "hi"},
             "finish_reason": reason}
            for i, reason in enumerate(reasons)
        ],
    }  # fmt: skip


def _response(status: str, reason: str | None) -> Response:
    request = ResponsesRequest.model_validate({"model": "m", "input": "hi"})
    details = IncompleteDetails(reason=reason) if status == "incomplete" else None
    return build_response(
        request, response_id="resp_1", created_at=1.0, model="m", status=status,  # type: ignore[arg-type]
        output=[], incomplete_details=details,
    )  # fmt: skip


@st.composite
def _ends(draw: st.DrawFn) -> tuple[str, Any, BaseException | None]:
    """An operation and how it ended: an answer (a wire completion among them) or an error."""
    kind = draw(st.sampled_from(["chat", "wire", "embeddings", "responses", "error"]))
    if kind in ("chat", "wire"):
        body = _chat(draw(_TEXT), draw(_TEXT), draw(st.lists(_REASON, min_size=1, max_size=3)))
        if kind == "chat":
            return "chat", ChatCompletion.model_validate(body), None
        wire = wire_completion(json.dumps(body).encode())
        assert wire is not None
        return "chat", wire, None
    if kind == "embeddings":
        data = {"object": "list", "data": [], "model": draw(_TEXT)}
        return "embeddings", CreateEmbeddingResponse.model_validate(data), None
    if kind == "responses":
        status = draw(st.sampled_from(["completed", "incomplete", "failed", "in_progress"]))
        return "responses", _response(status, draw(_REASON)), None
    errors = [
        RuntimeError("boom"), asyncio.CancelledError(), GeneratorExit(),
        LocalRateLimitExceeded("slow down", retry_after=1.0), BudgetExceeded("spent"),
        ProviderTimeout("late"),
    ]  # fmt: skip
    error = draw(st.sampled_from(errors))
    return draw(st.sampled_from(["chat", "embeddings", "responses"])), None, error


@settings(max_examples=400, deadline=None)
@given(
    ended=_ends(), options=_OPTIONS, route=st.sampled_from(_ROUTES), attempts=st.lists(
        _ATTEMPT, max_size=3), usage=_USAGE, info_route=_MAYBE_TEXT,
    strategy=st.none() | st.sampled_from(["", "ordered", "cost"]), target=_MAYBE_TEXT,
    latency=st.none() | _SECONDS, ttft=st.none() | _SECONDS,
    cache=st.none() | st.sampled_from(["hit", "miss", "bypass"]), started=_SECONDS,
    took=_SECONDS, started_at=st.floats(0, 2e9), cost=st.none() | _SECONDS,
    saved=st.none() | _SECONDS, model=st.text(min_size=1, max_size=6),
)  # fmt: skip
def test_the_rows_of_an_end_are_the_rows_of_its_record(
    ended: tuple[str, Any, BaseException | None], options: RequestOptions, route: Any,
    attempts: list[AttemptInfo], usage: TokenUsage | None, info_route: str | None,
    strategy: str | None, target: str | None, latency: float | None, ttft: float | None,
    cache: Any, started: float, took: float, started_at: float, cost: float | None,
    saved: float | None, model: str,
) -> None:  # fmt: skip
    """`encode_ended` writes what `encode_record` writes of the record `build_record` makes
    from the same request's context and outcome (the typed answer a busy stage is given),
    priced alike."""
    operation, result, error = ended
    info = RouteInfo(
        "lr-1", route=info_route, strategy=strategy, target=target, provider=target,
        model=target, attempts=attempts, cache=cache, usage=usage, latency_s=latency,
        ttft_s=ttft,
    )  # fmt: skip
    end = Ended(operation, model, options, route, info, started, started_at, started + took,  # type: ignore[arg-type]
                result, error)  # fmt: skip
    request = chat_request(model=model)
    ctx = RequestContext(operation, request, options, route, info, False, started, started_at)  # type: ignore[arg-type]
    typed = result.typed() if isinstance(result, WireCompletion) else result
    outcome = Outcome(error=error) if error is not None else Outcome(typed, completed=True)
    record = build_record(ctx, outcome, started + took)
    record.cost_usd, record.saved_usd = cost, saved
    _assert_same_rows(encode_ended(end, cost, saved), record)


def _assert_same_rows(encoded: bytes, record: RequestRecord) -> None:
    """`encoded` gives the store the rows of `record` (`decode_rows`, as the writer reads
    it; its record back, as a hook or sink added meanwhile gets it), priced or priced after."""
    expected = encode_record(record)
    assert decode_rows([encoded], PLAN) == decode_rows([expected], PLAN)
    later = (encoded, 0.5, None)
    assert decode_rows([later], PLAN) == decode_rows([(expected, 0.5, None)], PLAN)
    assert decode_record(encoded) == decode_record(expected)
    assert decode_record(later) == decode_record((expected, 0.5, None))


class _Name(str):
    """A value of a subclass of str, as a caller may give (marshal writes none)."""


def test_an_end_with_values_marshal_refuses_is_encoded_as_its_rows() -> None:
    """A subclass of str (a user's, a property's, an error's message) is stored as its
    text: the end's rows are made at once (`watched_rows`) and written as plain values."""
    # (as a stage may set them: validation would make them plain)
    options = RequestOptions.model_construct(user=_Name("ann"), properties={_Name("k"): _Name("v")})
    info = RouteInfo("lr-2", route="chat", strategy="ordered", target="a/m", provider="a",
                     model="m", usage=TokenUsage(3, 4), latency_s=0.5)  # fmt: skip
    end = Ended("chat", "chat", options, _ROUTES[0], info, 1.0, 1e9, 1.5, None,
                RuntimeError("odd"))  # fmt: skip
    ctx = RequestContext("chat", chat_request(model="chat"), options, _ROUTES[0], info, False,
                         1.0, 1e9)  # fmt: skip
    record = build_record(ctx, Outcome(error=end.error), 1.5)
    record.cost_usd = 0.25
    encoded = encode_ended(end, 0.25, None)
    _assert_same_rows(encoded, record)
    request, _, properties = marshal.loads(encoded)  # the rows themselves, plain
    assert type(request[REQUEST_COLUMNS.index("user")]) is str
    assert properties == [("lr-2", "k", "v", 1e9)]


# ---------------------------------------------------------------- through a router

_ASK = [{"role": "user", "content": "hi"}]
_QUIET: dict[str, Any] = {"telemetry": {"enabled": False}}


class Busy(llmroute.Stage):
    """Busy with every request, and does nothing: requests get a context."""

    name = "busy"


class Watcher(llmroute.Stage):
    """Watches every request: keeps the ends it is given, and the hooks called."""

    name = "watcher"

    def __init__(self, fail: bool = False) -> None:
        self.ends: list[Ended] = []
        self.hooks: list[str] = []
        self.fail = fail

    def watches(self, options: RequestOptions, state: dict[str, object]) -> bool:
        return True

    def ended(self, end: Ended) -> None:
        self.ends.append(end)
        if self.fail:
            raise RuntimeError("the watcher broke")

    async def before(self, ctx: RequestContext) -> None:
        self.hooks.append("before")

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        self.hooks.append("after")


def _router(wire: Wire, **more: Any) -> AsyncRouter:
    config = {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://a.invalid/v1",
                            "responses_api": False}},
        "routes": {"chat": {"targets": [{"provider": "a", "model": "m",
                                         "price": {"input": 1.0, "output": 2.0}}],
                            "retry": {"attempts": 1}}},
        **_QUIET,
        **more,
    }  # fmt: skip
    return AsyncRouter(config, transports={"a": wire.transport}, env={})


async def _traffic(router: AsyncRouter) -> None:
    """A plain request, one with options and parameters, one the provider refuses, an
    embeddings request, a Responses request and a stream."""
    create = router.chat.completions.create
    await create(model="chat", messages=_ASK)
    await create(model="chat", messages=_ASK, temperature=0.5,
                 llmroute={"user": "ann", "session": "s", "properties": {"tier": "gold"}})  # fmt: skip
    with pytest.raises(llmroute.InvalidRequest):
        await create(model="chat", messages=[{"role": "user", "content": "refuse"}])
    await router.embeddings.create(model="chat", input="hi")
    await router.responses.create(model="chat", input="hi")
    stream = await create(model="chat", messages=_ASK, stream=True)
    async for _ in stream:
        pass


def _comparable(record: llmroute.observe.RequestRecord) -> dict[str, Any]:
    """A stored record but for what differs between two runs of a request."""
    data = record.to_dict()
    for name in ("request_id", "started_at", "ended_at", "latency_s", "ttft_s", "response_id"):
        data.pop(name)
    for attempt in data["attempts"]:
        attempt.pop("started_s"), attempt.pop("latency_s")
    return data


@pytest.mark.anyio
async def test_the_log_stores_from_a_requests_end_what_it_stores_from_a_context(
    tmp_path: Path,
) -> None:
    """A router whose recorder only watches (its store alone) and one where a busy stage
    makes every request a context store the same records; the first's non-streamed
    requests reach a watching stage's `ended()` and no `before()` or `after()`."""
    stored = {}
    for kind in ("watched", "context"):
        wire = Wire(script=["ok", "ok", 400, "ok", "ok", "ok"])
        path = tmp_path / f"{kind}.db"
        router = _router(wire, logging={"store": f"sqlite:///{path}"})
        watcher = Watcher()
        router.add_stage(Busy() if kind == "context" else watcher)
        async with router:
            await _traffic(router)
        if kind == "watched":
            assert [e.operation for e in watcher.ends] == [
                "chat", "chat", "chat", "embeddings", "responses"
            ]  # fmt: skip
            assert watcher.hooks == ["before", "after"]  # the stream's
        store = SqliteStore(path)
        try:
            stored[kind] = sorted(
                (_comparable(r) for r in store.records()), key=lambda d: json.dumps(d)
            )
        finally:
            store.close()
    assert len(stored["watched"]) == 6
    priced = [r["cost_usd"] for r in stored["watched"] if r["status"] == "ok"]
    assert len(priced) == 5 and all(cost is not None and cost > 0 for cost in priced)
    assert stored["watched"] == stored["context"]


@pytest.mark.anyio
async def test_ends_queued_for_the_store_reach_a_hook_added_before_they_are_written(
    tmp_path: Path,
) -> None:
    """Requests queued as their ends' encoding while the store alone read them (nothing
    written yet: an hour's flush interval; the first priced by the worker, the price of
    the target's own), then an end hook added: the hook is given each request's record,
    decoded and priced, and the store the same records."""
    wire = Wire(script=["ok", "ok", 400])
    path = tmp_path / "log.db"
    router = _router(wire, logging={"store": f"sqlite:///{path}", "flush_interval": "1h"})
    seen: list[llmroute.observe.RequestRecord] = []
    async with router:
        create = router.chat.completions.create
        await create(model="chat", messages=_ASK)
        await create(model="chat", messages=_ASK,
                     llmroute={"user": "ann", "properties": {"tier": "gold"}})  # fmt: skip
        with pytest.raises(llmroute.InvalidRequest):
            await create(model="chat", messages=[{"role": "user", "content": "refuse"}])
        assert router.recording.queued == 3 and router.recording.recorded == 0
        router.add_hook("request_end", seen.append)
        await router.flush()
    assert [(r.status, r.user, r.properties) for r in seen] == [
        ("ok", None, {}), ("ok", "ann", {"tier": "gold"}), ("error", None, {}),
    ]  # fmt: skip
    assert [r.cost_usd is not None and r.cost_usd > 0 for r in seen] == [True, True, False]
    store = SqliteStore(path)
    try:
        stored = sorted((r.to_dict() for r in store.records()), key=lambda d: d["request_id"])
    finally:
        store.close()
    assert stored == sorted((r.to_dict() for r in seen), key=lambda d: d["request_id"])


@pytest.mark.anyio
async def test_a_flat_price_is_computed_by_the_store_as_the_router_computes_it(
    tmp_path: Path,
) -> None:
    """A model genai-prices prices flat: the first request is priced by the worker (which
    loads the prices), the later ones by the store from the rates held
    (`PriceBook.held_rates`); every stored cost is the one the caller reads, to the bit."""
    wire = Wire(script=["ok"] * 6)
    path = tmp_path / "log.db"
    config = {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://a.invalid/v1"}},
        "routes": {"chat": {"targets": ["a/gpt-4o-mini"]}},
        "logging": {"store": f"sqlite:///{path}"}, **_QUIET,
    }  # fmt: skip
    replies = []
    async with AsyncRouter(config, transports={"a": wire.transport}, env={}) as router:
        for n in range(6):
            replies.append(await router.chat.completions.create(model="chat", messages=_ASK))
            if n == 0:
                await router.flush()  # the worker prices the first: the rates are held after
    expected = {r.llmroute.request_id: r.llmroute.cost_usd for r in replies}
    store = SqliteStore(path)
    try:
        stored = {r.request_id: r.cost_usd for r in store.records()}
    finally:
        store.close()
    assert stored == expected and all(cost is not None and cost > 0 for cost in stored.values())


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["watched", "context"])
async def test_a_cancelled_request_is_stored_as_cancelled(tmp_path: Path, kind: str) -> None:
    """A caller that goes away while the provider is answering: the request's end is
    given to the watching stages (the record says ``cancelled``), as `after()` is."""
    path = tmp_path / "log.db"
    router = _router(Wire(latency="5s"), logging={"store": f"sqlite:///{path}"})
    watcher = Watcher()
    router.add_stage(Busy() if kind == "context" else watcher)
    async with router:
        asking = asyncio.ensure_future(router.chat.completions.create(model="chat", messages=_ASK))
        await asyncio.sleep(0.2)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
    store = SqliteStore(path)
    try:
        (record,) = store.records()
    finally:
        store.close()
    assert (record.status, record.error_type) == ("cancelled", "CancelledError")
    if kind == "watched":
        (end,) = watcher.ends
        assert isinstance(end.error, asyncio.CancelledError) and watcher.hooks == []


@pytest.mark.anyio
async def test_a_watching_stage_gets_each_end_success_or_failure() -> None:
    wire = Wire(script=["ok", 400])
    watcher = Watcher()
    async with _router(wire) as router:
        router.add_stage(watcher)
        reply = await router.chat.completions.create(
            model="chat", messages=_ASK, llmroute={"user": "ann"}
        )
        with pytest.raises(llmroute.InvalidRequest) as refused:
            await router.chat.completions.create(model="chat", messages=_ASK)
    ok, failed = watcher.ends
    assert watcher.hooks == []
    assert ok.result is reply and ok.response is reply and ok.error is None
    assert ok.info is reply.llmroute and ok.model == "chat" and ok.options.user == "ann"
    assert ok.route.name == "chat" and ok.operation == "chat"
    assert ok.ended - ok.started == pytest.approx(reply.llmroute.latency_s)
    assert failed.error is refused.value and failed.result is None and failed.response is None
    assert failed.started_at >= ok.started_at > 0


@pytest.mark.anyio
async def test_a_watching_stage_that_raises_is_counted_and_the_caller_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = Watcher(fail=True)
    async with _router(Wire()) as router:
        router.add_stage(watcher)
        with caplog.at_level(logging.ERROR, logger="llmroute"):
            reply = await router.chat.completions.create(model="chat", messages=_ASK)
        assert reply.choices[0].message.content
        assert router.stage_failures == 1
    assert "stage 'watcher' failed after request" in caplog.text
    assert reply.llmroute.request_id in caplog.text


@pytest.mark.anyio
async def test_a_busy_stage_or_an_experiment_gives_every_stage_both_hooks() -> None:
    watcher = Watcher()
    async with _router(Wire()) as router:
        router.add_stage(watcher)
        router.add_stage(Busy())
        await router.chat.completions.create(model="chat", messages=_ASK)
    assert watcher.ends == [] and watcher.hooks == ["before", "after"]
    watcher = Watcher()
    experiment = {"experiments": {"try": {"route": "chat", "variants": {
        "control": {"weight": 1}, "b": {"weight": 1, "params": {"temperature": 0.1}}}}}}  # fmt: skip
    async with _router(Wire(), **experiment) as router:
        router.add_stage(watcher)
        await router.chat.completions.create(model="chat", messages=_ASK)
    assert watcher.ends == [] and watcher.hooks == ["before", "after"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "why", ["capture", "start hook", "another sink", "end hook", "redactor", "telemetry"]
)
async def test_the_recorder_takes_a_context_when_its_store_is_not_all_it_writes(
    tmp_path: Path, why: str
) -> None:
    """Content to capture, a hook, another sink, a redactor or an OpenTelemetry SDK: the
    recorder needs more than the request's end, so a watching stage beside it gets both
    hooks."""
    path = tmp_path / "log.db"
    router = _router(Wire(), logging={"store": f"sqlite:///{path}"})
    watcher = Watcher()
    router.add_stage(watcher)
    started: list[Any] = []
    written: list[Any] = []
    options: dict[str, Any] = {}
    spans = InMemorySpanExporter()
    if why == "capture":
        options["capture_content"] = True
    elif why == "start hook":
        router.add_hook("request_start", started.append)
    elif why == "end hook":
        router.add_hook("request_end", written.append)
    elif why == "redactor":
        router.set_redactor(lambda record: dataclasses.replace(record, user="redacted"))
    elif why == "telemetry":
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        router.use_telemetry(provider)
    else:
        router.add_sink(written.extend)
    async with router:
        await router.chat.completions.create(
            model="chat", messages=_ASK, llmroute={"user": "ann", **options}
        )
    assert watcher.ends == [] and watcher.hooks == ["before", "after"]
    store = SqliteStore(path)
    try:
        (record,) = store.records()
    finally:
        store.close()
    if why == "capture":
        assert record.prompt == _ASK
    elif why == "start hook":
        assert [r.request_id for r in started] == [record.request_id]
    elif why == "redactor":
        assert record.user == "redacted"
    elif why == "telemetry":
        assert len(spans.get_finished_spans()) == 2
    else:
        assert [r.request_id for r in written] == [record.request_id]


@pytest.mark.anyio
async def test_a_request_whose_span_is_dropped_takes_the_path_without_a_context(
    tmp_path: Path,
) -> None:
    """With an OpenTelemetry SDK whose ratio sampler keeps half the spans and no meter: the
    sampling is decided as the stages are asked; a request whose span is dropped is only
    watched (no context, no hook), one whose span is kept gets a context and its span,
    with the decision taken once (a ratio asked twice would keep about a quarter), and
    the store holds them all."""
    path = tmp_path / "log.db"
    router = _router(Wire(), logging={"store": f"sqlite:///{path}"})
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(0.5))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    router.use_telemetry(provider)
    watcher = Watcher()
    router.add_stage(watcher)
    n = 300
    async with router:
        for _ in range(n):
            await router.chat.completions.create(model="chat", messages=_ASK)
    kept = [s for s in spans.get_finished_spans() if s.parent is None]
    assert 110 <= len(kept) <= 190  # binomial(300, 0.5): 150 +- 8.7
    assert len(watcher.ends) == n - len(kept)
    assert watcher.hooks == ["before", "after"] * len(kept)
    traced = {format(s.context.trace_id, "032x") for s in kept if s.context is not None}
    assert len(traced) == len(kept)
    store = SqliteStore(path)
    try:
        assert len(store.records()) == n
    finally:
        store.close()
    provider.shutdown()


@pytest.mark.anyio
async def test_a_busy_stage_before_the_recorder_keeps_the_ratio(tmp_path: Path) -> None:
    """A busy stage placed before the recorder is asked after it: the recorder's decision,
    kept or dropped, reaches its `before()`, so the sampler is asked once a request."""
    router = _router(Wire(), logging={"store": f"sqlite:///{tmp_path / 'log.db'}"})
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(0.25))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    router.use_telemetry(provider)
    router.add_stage(Busy(), before="recorder")
    n = 400
    async with router:
        for _ in range(n):
            await router.chat.completions.create(model="chat", messages=_ASK)
    kept = [s for s in spans.get_finished_spans() if s.parent is None]
    # binomial(400, 0.25): 100 +- 8.7; asked twice, 2p - p^2 of them: 175
    assert 65 <= len(kept) <= 135
    provider.shutdown()


def test_ends_queued_on_a_loop_closed_without_cancelling_go_with_the_next_loops(
    tmp_path: Path,
) -> None:
    """A loop closed under the recorder's background task, its queue not empty (no
    `asyncio.run` to cancel the task): the next loop's first request starts the task
    again, and every queued end is written within a flush interval, with no flush."""
    wire = Wire(script=["ok"] * 8)
    path = tmp_path / "log.db"
    router = _router(wire, logging={"store": f"sqlite:///{path}", "flush_interval": 0.05})

    async def requests(n: int) -> None:
        for _ in range(n):
            await router.chat.completions.create(model="chat", messages=_ASK)

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(requests(3))
        assert router.recording.queued == 3
    finally:
        first.close()  # the task is left pending on it

    async def later() -> tuple[int, int]:
        await requests(5)
        for _ in range(100):  # the flush interval, not a flush
            if router.recording.recorded == 8:
                break
            await asyncio.sleep(0.01)
        status = router.recording
        await router.aclose()
        return status.queued, status.recorded

    assert asyncio.run(later()) == (0, 8)


@pytest.mark.anyio
async def test_an_end_whose_properties_json_refuses_fails_alone(tmp_path: Path) -> None:
    """A property value JSON cannot write (set by a stage, past validation) fails that
    request's record at its end, counted and logged; the batch it would have joined is
    stored."""
    wire = Wire(script=["ok"] * 3)
    path = tmp_path / "log.db"
    router = _router(wire, logging={"store": f"sqlite:///{path}"})
    odd = RequestOptions.model_construct(properties={"k": b"v"})
    async with router:
        create = router.chat.completions.create
        await create(model="chat", messages=_ASK)
        await create(model="chat", messages=_ASK, llmroute=odd)
        await create(model="chat", messages=_ASK, llmroute={"properties": {"k": "v"}})
        await router.flush()
        status = router.recording
    assert (status.failed, status.recorded) == (1, 2)
    store = SqliteStore(path)
    try:
        assert sorted(str(r.properties) for r in store.records()) == ["{'k': 'v'}", "{}"]
    finally:
        store.close()

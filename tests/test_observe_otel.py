"""OpenTelemetry: spans, their attributes and parents, error status, and metric points.

The SDK's in-memory exporters are given to one router (`use_telemetry`), so
no global provider is set and other tests see nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import llmroute
from _helpers import HI
from llmroute import AsyncRouter, SystemClock
from llmroute._config_load import load_config
from llmroute._prices import PriceBook
from llmroute.observe.otel import DURATION_BUCKETS, TOKEN_BUCKETS
from llmroute.routing.catalog import Catalog

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "providers": {
        "flaky": {"type": "mock", "script": [503], "prompt_tokens": 12, "completion_tokens": 7},
        "steady": {"type": "mock", "prompt_tokens": 12, "completion_tokens": 7},
        "broken": {"type": "mock", "script": [400]},
    },
    "routes": {
        "chat": {"targets": ["flaky/small", "steady/small"]},
        "bad": {"targets": ["broken/m"]},
    },
    "telemetry": {"enabled": True},
}


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[HistogramDataPoint]:
        data = self.reader.get_metrics_data()
        assert data is not None
        found = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)  # type: ignore[arg-type]
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    found = Otel()
    yield found
    found.tracer_provider.shutdown()
    found.meter_provider.shutdown()


def router_with(otel: Otel, config: dict[str, Any] = CONFIG) -> AsyncRouter:
    router = AsyncRouter(config, env={})
    router.use_telemetry(otel.tracer_provider, otel.meter_provider)
    return router


async def test_request_span_with_attempt_children_under_the_callers_span(otel: Otel) -> None:
    caller = otel.tracer_provider.get_tracer("app")
    async with router_with(otel) as router:
        with caller.start_as_current_span("handler") as handler:
            reply = await router.chat.completions.create(
                model="chat",
                messages=HI,
                temperature=0.5,
                max_tokens=30,
                stop=["\n"],
                seed=3,
                llmroute={"key": "backend", "team": "search"},
            )
        await router.flush()
    spans = {s.name: s for s in otel.finished()}
    request = spans["chat chat"]
    assert request.kind == SpanKind.CLIENT
    assert request.parent is not None
    assert request.parent.span_id == handler.get_span_context().span_id
    assert request.context.trace_id == handler.get_span_context().trace_id
    attrs = dict(request.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "mock"
    assert attrs["gen_ai.request.model"] == "chat"
    assert attrs["gen_ai.response.model"] == "small"
    assert attrs["gen_ai.response.id"] == reply.id
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.request.max_tokens"] == 30
    assert attrs["gen_ai.request.stop_sequences"] == ("\n",)
    assert attrs["gen_ai.request.seed"] == 3
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 0
    assert attrs["server.address"] == "mock.llmroute.invalid"
    assert attrs["server.port"] == 80
    assert attrs["llmroute.request_id"] == reply.llmroute.request_id
    assert (attrs["llmroute.key"], attrs["llmroute.team"]) == ("backend", "search")
    assert "gen_ai.input.messages" not in attrs  # content is opt-in
    assert "error.type" not in attrs
    assert request.status.status_code == StatusCode.UNSET

    children = sorted(
        (s for s in otel.finished() if s.parent and s.parent.span_id == request.context.span_id),
        key=lambda s: s.start_time or 0,
    )
    assert [s.name for s in children] == ["chat small", "chat small"]
    failed, served = children
    assert failed.kind == SpanKind.INTERNAL
    assert dict(failed.attributes or {})["llmroute.target"] == "flaky/small"
    assert dict(failed.attributes or {})["error.type"] == "ProviderUnavailable"
    assert dict(failed.attributes or {})["http.response.status_code"] == 503
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(served.attributes or {})["llmroute.attempt.kind"] == "fallback"
    assert served.status.status_code == StatusCode.UNSET
    assert request.start_time is not None and request.end_time is not None
    for child in children:
        assert child.start_time is not None and child.end_time is not None
        assert request.start_time <= child.start_time <= child.end_time <= request.end_time
    expected = reply.llmroute.latency_s or 0
    assert (request.end_time - request.start_time) / 1e9 == pytest.approx(expected, abs=2e-6)


def test_attempt_spans_stay_inside_their_request_span(otel: Otel) -> None:
    """An attempt's times come from its own clock readings and float sums near 1.8e9 s
    (about 240 ns of resolution), so they can overshoot the request's by a rounding step:
    the child span is clamped to its parent's interval, never past it."""
    from llmroute.observe.otel import Prepared, Telemetry
    from llmroute.observe.record import AttemptRecord, RequestRecord

    telemetry = Telemetry(
        Catalog(load_config(CONFIG, env={}), clock=SystemClock(), prices=PriceBook()),
        tracer_provider=otel.tracer_provider,
    )
    started = 1796375235.7946
    record = RequestRecord(
        request_id="lr-clamp", operation="chat", started_at=started,
        ended_at=started + 0.25, request_model="chat", status="ok",
        attempts=[
            AttemptRecord("flaky/small", "flaky", "small", "first", "error", 503,
                          started_s=-1e-6, latency_s=0.1),
            AttemptRecord("steady/small", "steady", "small", "fallback",
                          started_s=0.1, latency_s=0.15 + 1e-6),
        ],
    )  # fmt: skip
    telemetry.emit(record, Prepared(None, {}, "flaky", trace_id=None))
    spans = {s.name: s for s in otel.finished()}
    request = spans["chat chat"]
    children = sorted(
        (s for s in otel.finished() if s.parent is not None),
        key=lambda s: s.start_time or 0,
    )
    assert len(children) == 2
    assert request.start_time is not None and request.end_time is not None
    assert children[0].start_time == request.start_time  # would be 1 µs before it
    assert children[1].end_time == request.end_time  # would be 1 µs after it
    for child in children:
        assert child.start_time is not None and child.end_time is not None
        assert request.start_time <= child.start_time <= child.end_time <= request.end_time


async def test_a_failed_request_has_an_error_status_and_error_metrics(otel: Otel) -> None:
    async with router_with(otel) as router:
        with pytest.raises(llmroute.InvalidRequest):
            await router.chat.completions.create(model="bad", messages=HI)
        await router.flush()
    (request,) = [s for s in otel.finished() if s.kind == SpanKind.CLIENT]
    assert request.name == "chat bad"
    assert request.status.status_code == StatusCode.ERROR
    assert dict(request.attributes or {})["error.type"] == "InvalidRequest"
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert point.attributes is not None
    assert point.attributes["error.type"] == "InvalidRequest"
    assert otel.points("gen_ai.client.token.usage") == []


async def test_metric_points_and_buckets(otel: Otel) -> None:
    config = {**CONFIG, "providers": {**CONFIG["providers"],
                                      "flaky": {"type": "mock", "prompt_tokens": 12,
                                                "completion_tokens": 7}}}  # fmt: skip
    latencies = []
    async with router_with(otel, config) as router:
        for _ in range(3):
            reply = await router.chat.completions.create(model="chat", messages=HI)
            latencies.append(reply.llmroute.latency_s or 0.0)
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        async for _ in stream:
            pass
        await router.flush()
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 4
    assert duration.sum == pytest.approx(sum(latencies) + (stream.llmroute.latency_s or 0))
    assert tuple(duration.explicit_bounds) == pytest.approx(DURATION_BUCKETS)
    assert duration.explicit_bounds[-1] == pytest.approx(81.92)
    assert duration.attributes is not None
    assert duration.attributes["gen_ai.request.model"] == "chat"
    assert duration.attributes["gen_ai.response.model"] == "small"
    assert duration.attributes["gen_ai.provider.name"] == "mock"
    tokens = {p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")
              if p.attributes}  # fmt: skip
    assert tokens["input"].count == 4 and tokens["output"].count == 4
    assert tokens["output"].sum == 3 * 7 + (
        stream.llmroute.usage.output if stream.llmroute.usage else 0
    )
    assert tuple(tokens["input"].explicit_bounds) == TOKEN_BUCKETS
    assert TOKEN_BUCKETS[-1] == 67108864
    (ttfc,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1 and ttfc.sum == pytest.approx(stream.llmroute.ttft_s)
    streamed = [s for s in otel.finished() if dict(s.attributes or {}).get("gen_ai.request.stream")]
    (span,) = streamed
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.response.time_to_first_chunk"] == pytest.approx(stream.llmroute.ttft_s)
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)  # chunks kept while tracing


async def test_content_attributes_only_when_captured(otel: Otel) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *HI]
    async with router_with(otel) as router:
        await router.chat.completions.create(model="chat", messages=messages)
        reply = await router.chat.completions.create(
            model="chat", messages=messages, llmroute={"capture_content": True}
        )
        await router.flush()
    plain, captured = sorted(
        (s for s in otel.finished() if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    assert not any(k.startswith("gen_ai.input") for k in dict(plain.attributes or {}))
    attrs = dict(captured.attributes or {})
    assert json.loads(str(attrs["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]}
    ]
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {"role": "assistant", "finish_reason": "stop",
         "parts": [{"type": "text", "content": reply.choices[0].message.content}]}
    ]  # fmt: skip


async def test_telemetry_off_emits_nothing(otel: Otel) -> None:
    router = router_with(otel, {**CONFIG, "telemetry": {"enabled": False}})
    router.use_telemetry(enabled=False)
    async with router:
        await router.chat.completions.create(model="chat", messages=HI)
        await router.flush()
        # nothing to record: no background task either
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "llmroute-recorder"]
    assert otel.finished() == []


def test_a_globally_installed_sdk_is_noticed_within_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whether telemetry has a receiver is asked per request, so it is kept for a second."""
    from llmroute.observe import otel

    now = [100.0]
    monkeypatch.setattr(otel.time, "monotonic", lambda: now[0])
    telemetry = otel.Telemetry(
        Catalog(load_config(CONFIG, env={}), clock=SystemClock(), prices=PriceBook())
    )
    assert not telemetry.active()  # the API's no-op providers: nothing receives anything
    installed = MeterProvider(metric_readers=[InMemoryMetricReader()])
    monkeypatch.setattr(otel.metrics, "get_meter_provider", lambda: installed)
    now[0] += 0.5
    assert not telemetry.active()  # still the answer kept half a second ago
    now[0] += 0.6
    assert telemetry.active()
    installed.shutdown()


async def test_a_recorder_with_no_one_to_record_for_is_passed_by(
    otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no sink, no hook and no OpenTelemetry SDK, a request skips the recorder's
    `before()` and `after()` (`Stage.idle`), streamed or not; a sink, a hook, an SDK or a
    busy stage of the user's, added at any time, gets every request from then on."""
    from llmroute.observe.recorder import Recorder
    from llmroute.pipeline.stage import Stage

    calls: list[str] = []
    for hook in ("before", "after"):
        plain = getattr(Recorder, hook)

        async def counted(
            self: Recorder, *args: Any, _hook: str = hook, _plain: Any = plain
        ) -> Any:
            calls.append(_hook)
            return await _plain(self, *args)

        monkeypatch.setattr(Recorder, hook, counted)

    async def one(router: AsyncRouter, *, stream: bool = False) -> None:
        create = router.chat.completions.create
        if stream:
            async for _ in await create(model="chat", messages=HI, stream=True):
                pass
        else:
            await create(model="chat", messages=HI)

    config = {**CONFIG, "routes": {"chat": {"targets": ["steady/small"]}}}
    async with AsyncRouter(config, env={}) as router:  # telemetry on, but no SDK
        await one(router)
        await one(router, stream=True)
        assert calls == []
        records: list[Any] = []
        router.add_sink(records.extend)
        await one(router)
        await one(router, stream=True)
        await router.flush()
        assert calls == ["before", "after"] * 2 and len(records) == 2
    for wake in ("hook", "telemetry", "stage"):
        calls.clear()
        seen: list[Any] = []
        async with AsyncRouter(config, env={}) as router:
            await one(router)
            assert calls == []
            if wake == "hook":
                router.add_hook("request_start", seen.append)
            elif wake == "telemetry":
                router.use_telemetry(otel.tracer_provider, otel.meter_provider)
            else:
                router.add_stage(Stage())
            await one(router)
            await one(router, stream=True)
        assert calls == ["before", "after"] * 2, wake
        if wake == "hook":
            assert len(seen) == 2
        if wake == "telemetry":
            assert len(otel.finished()) >= 2
    assert not Stage().idle()

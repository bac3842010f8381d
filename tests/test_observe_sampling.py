"""Sampling decided when a request starts: an unsampled request builds no span and no attributes.

The SDK's tracer is spied on (``Tracer.start_span``), as is the function that
builds the ``gen_ai.request.*`` attributes, so "nothing built" is counted,
not assumed. The providers are given to one router, or stand in for the
global ones through monkeypatch, so no other test sees them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from _helpers import HI
from llmroute import AsyncRouter
from llmroute.observe import otel as otel_module
from llmroute.observe.sampling import decided_early

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "providers": {"steady": {"type": "mock", "prompt_tokens": 12, "completion_tokens": 7}},
    "routes": {"chat": {"targets": ["steady/small"]}, "other": {"targets": ["steady/big"]}},
    "telemetry": {"enabled": True},
}


class Counts:
    def __init__(self) -> None:
        self.spans_started = 0
        self.parameters_built = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    found = Counts()
    start_span = Tracer.start_span
    parameters = otel_module.request_parameters

    def counted_start(self: Tracer, *args: Any, **kwargs: Any) -> Any:
        found.spans_started += 1
        return start_span(self, *args, **kwargs)

    def counted_parameters(ctx: Any) -> Any:
        found.parameters_built += 1
        return parameters(ctx)

    monkeypatch.setattr(Tracer, "start_span", counted_start)
    monkeypatch.setattr(otel_module, "request_parameters", counted_parameters)
    return found


class Traced:
    def __init__(self, sampler: Sampler) -> None:
        self.spans = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler)
        self.provider.add_span_processor(SimpleSpanProcessor(self.spans))

    def router(self, meter_provider: MeterProvider | None = None) -> AsyncRouter:
        router = AsyncRouter(CONFIG, env={})
        router.use_telemetry(self.provider, meter_provider)
        return router


@pytest.fixture
def never() -> Iterator[Traced]:
    found = Traced(TraceIdRatioBased(0.0))
    yield found
    found.provider.shutdown()


async def test_an_unsampled_request_builds_no_span_no_attributes_and_no_record(
    never: Traced, counts: Counts
) -> None:
    async with never.router() as router:
        for _ in range(20):
            await router.chat.completions.create(model="chat", messages=HI)
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        async for _ in stream:
            pass
        await router.flush()
        assert router.recording.recorded == 0  # no sink, no meter, no span: no record either
    assert counts.spans_started == 0
    assert counts.parameters_built == 0
    assert never.spans.get_finished_spans() == ()


async def test_metrics_are_still_recorded_for_unsampled_requests(
    never: Traced, counts: Counts
) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    async with never.router(meters) as router:
        for _ in range(5):
            await router.chat.completions.create(model="chat", messages=HI)
        await router.flush()
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "gen_ai.client.operation.duration"
        for point in metric.data.data_points  # type: ignore[attr-defined]
    ]
    assert sum(p.count for p in points) == 5
    assert counts.spans_started == 0
    assert counts.parameters_built == 0
    meters.shutdown()


async def test_a_ratio_sampler_keeps_its_ratio_once_not_squared(counts: Counts) -> None:
    """The early decision hands its trace id to the span: the SDK's second look agrees."""
    traced = Traced(ParentBased(TraceIdRatioBased(0.5)))
    n = 400
    async with traced.router() as router:
        for _ in range(n):
            await router.chat.completions.create(model="chat", messages=HI)
        await router.flush()
    kept = [s for s in traced.spans.get_finished_spans() if s.parent is None]
    # binomial(400, 0.5): 200 +- 10; a re-drawn decision would keep about 100 (0.5 squared)
    assert 150 <= len(kept) <= 250
    assert counts.spans_started == 2 * len(kept)  # each kept request and its one attempt
    assert counts.parameters_built == len(kept)
    ratio = TraceIdRatioBased(0.5)
    for span in kept:
        assert span.context is not None
        decided = ratio.should_sample(None, span.context.trace_id, "x")
        assert decided.decision is Decision.RECORD_AND_SAMPLE
    traced.provider.shutdown()


def parent(flags: int) -> Any:
    context = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(flags))
    return trace.set_span_in_context(NonRecordingSpan(context))


async def test_the_callers_sampling_flag_decides_under_a_parent_based_sampler(
    counts: Counts,
) -> None:
    traced = Traced(ParentBased(TraceIdRatioBased(0.0)))
    async with traced.router() as router:
        from opentelemetry import context as otel_context

        token = otel_context.attach(parent(TraceFlags.SAMPLED))
        try:
            await router.chat.completions.create(model="chat", messages=HI)
        finally:
            otel_context.detach(token)
        token = otel_context.attach(parent(TraceFlags.DEFAULT))
        try:
            await router.chat.completions.create(model="chat", messages=HI)
        finally:
            otel_context.detach(token)
        await router.flush()
    spans = [s for s in traced.spans.get_finished_spans() if s.name == "chat chat"]
    assert len(spans) == 1  # the sampled caller's request only
    assert spans[0].context is not None and spans[0].context.trace_id == 0x1234
    assert spans[0].parent is not None and spans[0].parent.span_id == 0x5678
    assert counts.parameters_built == 1
    traced.provider.shutdown()


class ByModel(Sampler):
    """A sampler reading the span's attributes: it cannot be decided early."""

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
        attributes: Any = None, links: Any = None, trace_state: Any = None,
    ) -> SamplingResult:  # fmt: skip
        if (attributes or {}).get("gen_ai.request.model") == "other":
            return SamplingResult(Decision.DROP)
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return "ByModel{other:drop}"


class Subclassed(TraceIdRatioBased):
    """A subclass of the SDK's ratio sampler may read more: it is not decided early."""


async def test_a_sampler_that_reads_attributes_is_asked_by_the_sdk_with_them() -> None:
    assert not decided_early(ByModel())
    traced = Traced(ByModel())
    async with traced.router() as router:
        await router.chat.completions.create(model="chat", messages=HI)
        await router.chat.completions.create(model="other", messages=HI)
        await router.flush()
    names = sorted(s.name for s in traced.spans.get_finished_spans() if s.parent is None)
    assert names == ["chat chat"]
    traced.provider.shutdown()


@pytest.mark.parametrize(
    ("sampler", "early"),
    [
        (ALWAYS_ON, True),
        (TraceIdRatioBased(0.1), True),
        (ParentBased(TraceIdRatioBased(0.25)), True),
        (ParentBased(ByModel()), False),
        (ByModel(), False),
        (Subclassed(1.0), False),
    ],
)
def test_which_samplers_are_decided_early(sampler: Sampler, early: bool) -> None:
    assert decided_early(sampler) is early


async def test_a_globally_installed_sampler_is_decided_early_too(
    monkeypatch: pytest.MonkeyPatch, counts: Counts
) -> None:
    traced = Traced(TraceIdRatioBased(0.0))
    monkeypatch.setattr(otel_module.trace, "get_tracer_provider", lambda: traced.provider)
    router = AsyncRouter(CONFIG, env={})
    async with router:
        for _ in range(10):
            await router.chat.completions.create(model="chat", messages=HI)
        await router.flush()
    assert counts.spans_started == 0
    assert counts.parameters_built == 0
    traced.provider.shutdown()


def test_without_the_sdk_a_request_builds_nothing_for_telemetry() -> None:
    """The SDK not installed: the API's no-op providers, and no record is built at all."""
    script = """
import asyncio, sys
sys.modules["opentelemetry.sdk"] = None  # as if the SDK were not installed
import llmroute
from llmroute.observe import otel, record

built = []
original = record.build_record
def counted(*args):
    built.append(1)
    return original(*args)
import llmroute.observe.recorder as recorder
recorder.build_record = counted
otel.request_parameters = lambda ctx: built.append("parameters")

async def main():
    config = {"providers": {"m": {"type": "mock"}}, "routes": {"chat": {"targets": ["m/x"]}},
              "telemetry": {"enabled": True}}
    async with llmroute.AsyncRouter(config, env={}) as router:
        for _ in range(5):
            await router.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}])
        await router.flush()
        print(router.recording.recorded, len(built))

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]

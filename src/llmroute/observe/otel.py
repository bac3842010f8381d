"""OpenTelemetry traces and metrics for each record, through ``opentelemetry-api`` only.

Each request becomes one CLIENT span named ``"{operation} {request model}"``
with the GenAI semantic-convention attributes (v1.41 names), and one
INTERNAL child span per attempt. The parent is the caller's trace context,
captured when the request started. The spans are built when the record is
written, with the request's and each attempt's own start and end times, so
tracing adds nothing to the request path; the span is therefore not the
current span while the request runs (an HTTP-client instrumentation's spans
are its siblings, not its children).

The metrics are the three GenAI client histograms with the recommended
bucket boundaries. Content attributes (messages, system instructions, tool
definitions) are set only on records that captured content.

Without an OpenTelemetry SDK installed, the API's no-op providers make all
of this nearly free.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .record import RequestRecord
from .sampling import Decider

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ..pipeline.stage import RequestContext
    from ..routing.catalog import Catalog

__all__ = ["DURATION_BUCKETS", "TOKEN_BUCKETS", "Prepared", "Telemetry", "request_parameters"]

#: The GenAI conventions' operation name of each llmroute operation: the Responses API
#: generates a chat answer, as the conventions (and openai's own instrumentation) name it.
_OPERATION_NAMES = {"responses": "chat"}

#: Seconds: 0.01 doubling to 81.92 (the GenAI conventions' recommendation).
DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))
#: Tokens: 1, 4, 16, ... to 67108864.
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))

_Attributes = dict[str, Any]
#: The parameters of a request whose span is not kept (none are read).
_NOTHING: Mapping[str, Any] = MappingProxyType({})
#: Seconds `Telemetry.active` keeps its answer.
_RECHECK = 1.0


def _no_meter_providers() -> tuple[type, ...]:
    """The API's meter providers that record nothing (the proxy stands in before an SDK is set)."""
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # a future API without it: only the explicit no-op counts
        return (metrics.NoOpMeterProvider,)
    return (metrics.NoOpMeterProvider, _ProxyMeterProvider)


_NO_METERS = _no_meter_providers()


def _version() -> str:
    from .._version import __version__

    return __version__


class Telemetry:
    """Spans and metrics of one router, on the given or the global providers."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._catalog = catalog
        version = _version()
        self._tracer = trace.get_tracer("llmroute", version, tracer_provider=tracer_provider)
        meter = metrics.get_meter("llmroute", version, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )  # fmt: skip
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )  # fmt: skip
        self._ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )  # fmt: skip
        self._servers: dict[str, tuple[str, str | None, int | None]] = {}
        self._own_tracer = tracer_provider is not None
        self._own_meter = meter_provider is not None
        self._decider = Decider.of(self._tracer) if self._own_tracer else None
        self._global: object = None  # the global tracer provider our tracer comes from
        self._active = self._metering = False
        self._tracing = self._own_tracer
        self._active_until = float("-inf")

    def tracing(self) -> bool:
        """Whether spans are recorded: an SDK's tracer provider is given or installed."""
        self.active()
        return self._tracing

    def metering(self) -> bool:
        """Whether a meter reads the metrics (then every request, sampled or not, records
        its points), as `active()` last found: ask that first (the recorder has, for the
        request; looking again would be a second call on every request's path)."""
        return self._metering

    def active(self) -> bool:
        """Whether anything receives spans or metrics (otherwise records need not be built).

        Asked on every request, so the answer is kept for a second: an SDK
        installed globally after the router started is noticed within that.
        """
        now = time.monotonic()
        if now < self._active_until:
            return self._active
        if not self._own_tracer:
            self._follow_global_tracer()
        self._metering = self._own_meter or not isinstance(metrics.get_meter_provider(), _NO_METERS)
        self._active = self._tracing or self._metering
        self._active_until = now + _RECHECK
        return self._active

    def _follow_global_tracer(self) -> None:
        provider = trace.get_tracer_provider()
        if provider is self._global:
            return
        self._global = provider
        self._tracing = not isinstance(
            provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
        )
        if self._tracing:  # our own tracer of the SDK's, so its sampling can be decided early
            self._tracer = provider.get_tracer("llmroute", _version())
            self._decider = Decider.of(self._tracer)
        else:
            self._decider = None

    def decide(self, parent: Context | None) -> int | None:
        """Whether this request's span will be kept, decided when the request starts.

        Returns 0 when no span will be kept (nothing is built for it), the kept
        span's trace id when the sampler could be asked early, and None when the
        SDK's sampler decides as the span starts (a sampler that may read the
        span's attributes; see `llmroute.observe.sampling`).
        """
        return self.decide_active(parent) if self.active() else 0

    def decide_active(self, parent: Context | None) -> int | None:
        """`decide`, where `active()` has just answered True (asked as the request started)."""
        if not self._tracing:
            return 0
        decider = self._decider
        return decider.decide(parent) if decider is not None else None

    #: The caller's trace context (the request span's parent); read at request start.
    caller_context = staticmethod(otel_context.get_current)

    def _server(self, provider_name: str | None) -> tuple[str, str | None, int | None]:
        """``(gen_ai.provider.name, server.address, server.port)`` of a provider."""
        key = provider_name or ""
        found = self._servers.get(key)
        if found is None:
            provider = self._catalog.provider_for(provider_name)
            if provider is None:
                found = (provider_name or "llmroute", None, None)
            else:
                url = urlsplit(str(getattr(provider.adapter, "base_url", "")))
                port = url.port or {"https": 443, "http": 80}.get(url.scheme)
                found = (provider.adapter.otel_name, url.hostname, port)
            self._servers[key] = found
        return found

    # -------------------------------------------------------------- emitting

    def prepare(
        self, ctx: RequestContext, parent: Context | None, trace_id: int | None
    ) -> Prepared | None:
        """What the span and metrics need from the request itself, read when it ends (cheap).

        None when nothing would be emitted: the span was not sampled (`decide`
        gave 0) and no meter reads the metrics.
        """
        if trace_id == 0 and not self._metering:
            return None
        fallback = ctx.route.targets[0].provider.name if ctx.route.targets else None
        if trace_id == 0:
            return Prepared(parent, _NOTHING, fallback, None, 0)
        tools = ctx.request.__dict__.get("tools")  # embeddings requests have none
        return Prepared(parent, request_parameters(ctx), fallback, tools, trace_id)

    def emit(self, record: RequestRecord, prepared: Prepared) -> None:
        """The record's span (with its attempts as children) and metric points."""
        provider_name = record.provider
        if provider_name is None:
            provider_name = record.attempts[-1].provider if record.attempts else prepared.fallback
        system, address, port = self._server(provider_name)
        base: _Attributes = {
            "gen_ai.operation.name": _OPERATION_NAMES.get(record.operation, record.operation),
            "gen_ai.provider.name": system,
            "gen_ai.request.model": record.request_model,
        }
        if address is not None:
            base["server.address"] = address
        if port is not None:
            base["server.port"] = port
        error_type = record.error_type if record.status == "error" else None
        if self._metering:
            self._metrics(record, base, error_type)
        trace_id = prepared.trace_id
        if trace_id == 0:
            return
        start = _ns(record.started_at)
        end = _ns(record.ended_at if record.ended_at is not None else record.started_at)
        parent = prepared.parent
        decider = self._decider if trace_id is not None else None
        if decider is not None:
            decider.hand(trace_id)  # type: ignore[arg-type]
        try:
            span = self._tracer.start_span(
                f"{base['gen_ai.operation.name']} {record.request_model}", context=parent,
                kind=SpanKind.CLIENT, attributes=base, start_time=start,
            )  # fmt: skip
        finally:
            if decider is not None:
                decider.hand(0)  # unused when the parent gave the trace id
        if span.is_recording():
            span.set_attributes(prepared.parameters)
            span.set_attributes(_response_attributes(record))
            if error_type is not None:
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR, record.error))
            if record.prompt is not None or record.completion is not None:
                span.set_attributes(_content_attributes(record, prepared.tools))
            child_context = trace.set_span_in_context(span, parent)
            for attempt in record.attempts:
                self._attempt_span(record, attempt, child_context, start, end)
        span.end(end_time=end)

    def _attempt_span(
        self, record: RequestRecord, attempt: Any, parent: Context, first: int, last: int
    ) -> None:
        """One attempt's child span, inside its request's [first, last] nanoseconds.

        Its times are the request's start plus offsets read on their own, summed in float
        seconds near 1.8e9 (about 240 ns of resolution), so ``started_at + started_s +
        latency_s`` can round past the request's own end: the clamp keeps every child
        within its parent, as trace viewers expect.
        """
        system, address, port = self._server(attempt.provider)
        attributes: _Attributes = {
            "gen_ai.operation.name": _OPERATION_NAMES.get(record.operation, record.operation),
            "gen_ai.provider.name": system,
            "gen_ai.request.model": attempt.model,
            "llmroute.target": attempt.target,
            "llmroute.attempt.kind": attempt.kind,
            "llmroute.attempt.outcome": attempt.outcome,
        }
        if address is not None:
            attributes["server.address"] = address
        if port is not None:
            attributes["server.port"] = port
        if attempt.status is not None:
            attributes["http.response.status_code"] = attempt.status
        started = record.started_at + attempt.started_s
        span = self._tracer.start_span(
            f"{record.operation} {attempt.model}", context=parent, kind=SpanKind.INTERNAL,
            attributes=attributes, start_time=min(max(_ns(started), first), last),
        )  # fmt: skip
        if attempt.outcome == "error":
            span.set_attribute("error.type", attempt.error_type or str(attempt.status))
            span.set_status(Status(StatusCode.ERROR, attempt.error))
        span.end(end_time=min(max(_ns(started + attempt.latency_s), first), last))

    def _metrics(self, record: RequestRecord, base: _Attributes, error_type: str | None) -> None:
        attributes = dict(base)
        if record.response_model is not None:
            attributes["gen_ai.response.model"] = record.response_model
        if error_type is not None:
            attributes["error.type"] = error_type
        if record.latency_s is not None:
            self._duration.record(record.latency_s, attributes)
        if record.stream and record.ttft_s is not None:
            self._ttfc.record(record.ttft_s, attributes)
        usage = record.usage
        if usage is not None and record.status != "error":
            self._tokens.record(usage.input, {**attributes, "gen_ai.token.type": "input"})
            if record.operation != "embeddings":
                self._tokens.record(usage.output, {**attributes, "gen_ai.token.type": "output"})


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a request's spans need beyond its record.

    Attributes:
        parent: the caller's trace context when the request started.
        parameters: the ``gen_ai.request.*`` attributes.
        fallback: the provider named on the span when no attempt was made.
        tools: the request's tool definitions (for content capture).
        trace_id: as `Telemetry.decide` gave it (0: metrics only).
    """

    parent: Context | None
    parameters: Mapping[str, Any]
    fallback: str | None
    tools: Any = None
    trace_id: int | None = None


def request_parameters(ctx: RequestContext) -> _Attributes:
    """The ``gen_ai.request.*`` attributes of a request."""
    attributes: _Attributes = {}
    request: Any = ctx.request
    if ctx.operation != "embeddings":  # a chat request, or a Responses one's chat equivalent
        for name, value in (
            ("temperature", request.temperature), ("top_p", request.top_p),
            ("max_tokens", request.max_completion_tokens or request.max_tokens),
            ("frequency_penalty", request.frequency_penalty),
            ("presence_penalty", request.presence_penalty), ("seed", request.seed),
        ):  # fmt: skip
            if value is not None:
                attributes[f"gen_ai.request.{name}"] = value
        if request.stop is not None:
            stop = request.stop
            attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if request.n is not None and request.n != 1:
            attributes["gen_ai.request.choice.count"] = request.n
    elif request.dimensions is not None:
        attributes["gen_ai.embeddings.dimension.count"] = request.dimensions
    if ctx.stream:
        attributes["gen_ai.request.stream"] = True
    return attributes


def _response_attributes(record: RequestRecord) -> _Attributes:
    attributes: _Attributes = {"llmroute.request_id": record.request_id}
    optional: _Attributes = {
        "gen_ai.response.id": record.response_id,
        "gen_ai.response.model": record.response_model,
        "gen_ai.response.time_to_first_chunk": record.ttft_s if record.stream else None,
        "llmroute.route": record.route,
        "llmroute.target": record.target,
        "llmroute.key": record.key,
        "llmroute.team": record.team,
        "llmroute.cache": record.cache,
        "llmroute.cost_usd": record.cost_usd,
        "llmroute.limit": record.limit,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    attributes["llmroute.attempts"] = len(record.attempts)
    if record.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(record.finish_reasons)
    usage = record.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.input
        attributes["gen_ai.usage.output_tokens"] = usage.output
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning
    return attributes


# ---------------------------------------------------------------- content


def _content_attributes(record: RequestRecord, tools: Any) -> _Attributes:
    attributes: _Attributes = {}
    if record.prompt is not None:
        system = [m for m in record.prompt if m.get("role") in ("system", "developer")]
        others = [m for m in record.prompt if m.get("role") not in ("system", "developer")]
        if system:
            parts = [p for m in system for p in _parts(m.get("content"))]
            attributes["gen_ai.system_instructions"] = _dumps(parts)
        attributes["gen_ai.input.messages"] = _dumps([_input_message(m) for m in others])
    if record.completion is not None:
        reasons = record.finish_reasons
        attributes["gen_ai.output.messages"] = _dumps(
            [
                {**_input_message(m), "finish_reason": reasons[i] if i < len(reasons) else None}
                for i, m in enumerate(record.completion)
            ]
        )
    if tools:
        attributes["gen_ai.tool.definitions"] = _dumps(
            [t.model_dump(mode="json", exclude_none=True) for t in tools]
        )
    return attributes


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content as GenAI message parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts = []
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append({"type": "text", "content": part.get("text", "")})
        elif isinstance(part, dict):
            parts.append(part)
        else:
            parts.append({"type": "text", "content": str(part)})
    return parts


def _input_message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role", "user")
    parts = _parts(message.get("content"))
    if role == "tool":
        parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                  "response": message.get("content")}]  # fmt: skip
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        arguments: Any = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                      "arguments": arguments})  # fmt: skip
    return {"role": role, "parts": parts}

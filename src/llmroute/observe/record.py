"""The request record: one per request, built off the request path from what the pipeline saw.

A `RequestRecord` is what every sink stores, what the hooks receive and what
the OpenTelemetry span is made from. The recorder stage builds it when the
request ends, from the `RequestContext` and `Outcome` the pipeline hands it
(a few microseconds: copying fields), so that the request's and response's
objects are not kept alive in the queue. Its cost (pricing) and content
(serialising messages) are filled in later by the recorder's worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, cast

from .._errors import BudgetExceeded, LocalRateLimitExceeded
from .._types import (
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    RouteInfo,
    TokenUsage,
)
from .._wire_completion import WireCompletion
from ..responses.types import Response

if TYPE_CHECKING:
    from ..pipeline.stage import Outcome, RequestContext

__all__ = [
    "EXPERIMENT_STATE",
    "Assignment",
    "AttemptRecord",
    "ExperimentTag",
    "RecordStatus",
    "RequestRecord",
    "add_content",
    "apply_cost",
    "build_record",
    "cost_fields",
    "error_fields",
    "nothing_sent",
    "priced",
    "response_facts",
    "saved_of",
    "start_record",
    "unsent",
]

#: How a request ended (``started`` only in the record a request-start hook receives).
RecordStatus = Literal["started", "ok", "error", "cancelled"]

#: The `RequestContext.state` key where the experiments' assignment puts the
#: request's `ExperimentTag`; the record picks it up.
EXPERIMENT_STATE = "experiment"

#: How a request's variant was chosen: by its sticky key, per request (no
#: sticky key), forced by the caller, as a shadow copy of another request, or
#: as the winner of a finished adaptive experiment.
Assignment = Literal["sticky", "unkeyed", "forced", "shadow", "winner"]


@dataclass(frozen=True, slots=True)
class ExperimentTag:
    """The experiment and variant a request took part in, as the record stores it.

    Attributes:
        experiment: the experiment's name.
        variant: the variant's name.
        assignment: how the variant was chosen (see `Assignment`).
        sticky_key: a digest of the sticky key (never the key itself), for
            joining feedback given per sticky key; None when unkeyed.
        targets: the ``provider/model`` targets that belong to the variant: a
            request served by any other target (a failover outside the variant)
            is flagged `RequestRecord.off_variant`.
    """

    experiment: str
    variant: str
    assignment: Assignment
    sticky_key: str | None = None
    targets: frozenset[str] = frozenset()


@dataclass(slots=True)
class AttemptRecord:
    """One try of one target.

    Attributes:
        target: ``provider/model``.
        provider: the provider name.
        model: the model sent to.
        kind: ``first``, ``retry``, ``fallback`` or ``hedge``.
        outcome: ``ok``, ``error`` or ``cancelled`` (a hedge that lost, a
            stream closed early).
        status: the HTTP status, when an answer came.
        error_type: the error's class name (``RateLimited``, ``ProviderTimeout``...).
        error: the error's message.
        started_s: when it was sent, in seconds after the request started.
        latency_s: how long it took (to the first content, for a stream).
    """

    target: str
    provider: str
    model: str
    kind: str
    outcome: str = "ok"
    status: int | None = None
    error_type: str | None = None
    error: str | None = None
    started_s: float = 0.0
    latency_s: float = 0.0


@dataclass(slots=True)
class RequestRecord:
    """Everything llmroute knows about one request.

    Attributes:
        request_id: the id on the response's `RouteInfo` (``lr-...``).
        operation: ``chat``, ``embeddings`` or ``responses``.
        started_at: when it started (Unix seconds).
        ended_at: when it ended (Unix seconds); None in a start record.
        request_model: the `model=` the caller asked for (a route or
            ``provider/model``).
        route: the route's name (None for a direct ``provider/model``).
        strategy: how the route ordered its targets.
        target, provider, model: what served it (None if nothing did).
        response_model: the model the provider said answered.
        response_id: the provider's response id.
        stream: whether it was streamed.
        status: ``ok``, ``error``, ``cancelled`` (the caller went away or
            closed the stream early), or ``started`` in a start record.
        latency_s: the whole request, to its last byte.
        ttft_s: time to the first content (streams).
        usage: the tokens, normalised (`TokenUsage.estimated` when counted by
            llmroute); None when unknown.
        cost_usd: the cost in USD; None when unknown (never guessed as 0).
            A cache hit costs 0.
        saved_usd: what a cache hit saved, when its original cost is known.
        cache: the cache status (``hit``, ``miss``, ``bypass``), if a cache ran.
        answered_by: the stage that answered instead of a provider (``cache``).
        limit: the error type when a rate limit or budget refused the request.
        error_type: the class name of the error that ended it.
        error: that error's message.
        finish_reasons: the choices' finish reasons (for a stream, only when
            its chunks were kept: content capture or tracing on).
        user, session, properties: from the request's options.
        key: the name of the gateway key the request came in with (never the
            key itself); from the request's options.
        team: the team the request is billed to; from the request's options
            (the gateway sets it from the key's ``team``).
        experiment, variant: when an experiment assigned the request.
        assignment: how its variant was chosen (``sticky``, ``unkeyed``,
            ``forced``, ``shadow`` or ``winner``).
        sticky_key: a digest of the experiment's sticky key, when it had one.
        off_variant: the request was served by a target outside its variant
            (it failed over): left out of the experiment's comparison by default.
        attempts: every attempt, in order.
        prompt: the request's messages (OpenAI format), when content is captured.
        completion: the answer's messages, one per choice, when content is captured.
    """

    request_id: str
    operation: str
    started_at: float
    request_model: str
    ended_at: float | None = None
    route: str | None = None
    strategy: str | None = None
    target: str | None = None
    provider: str | None = None
    model: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    stream: bool = False
    status: RecordStatus = "started"
    latency_s: float | None = None
    ttft_s: float | None = None
    usage: TokenUsage | None = None
    cost_usd: float | None = None
    saved_usd: float | None = None
    cache: str | None = None
    answered_by: str | None = None
    limit: str | None = None
    error_type: str | None = None
    error: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    user: str | None = None
    key: str | None = None
    team: str | None = None
    session: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    experiment: str | None = None
    variant: str | None = None
    assignment: str | None = None
    sticky_key: str | None = None
    off_variant: bool = False
    attempts: list[AttemptRecord] = field(default_factory=list)
    prompt: list[dict[str, Any]] | None = None
    completion: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        """The record `to_dict()` produced."""
        values = dict(data)
        usage = values.get("usage")
        values["usage"] = TokenUsage(**usage) if usage is not None else None
        values["attempts"] = [AttemptRecord(**a) for a in values.get("attempts") or []]
        return cls(**values)


# ---------------------------------------------------------------- building


def start_record(ctx: RequestContext) -> RequestRecord:
    """The record a request-start hook receives: who asked for what, nothing about the answer."""
    options = ctx.options
    return RequestRecord(
        request_id=ctx.info.request_id,
        operation=ctx.operation,
        started_at=ctx.started_at,
        request_model=ctx.request.model,
        route=ctx.route.name,
        strategy=ctx.route.strategy,
        stream=ctx.stream,
        user=options.user,
        key=options.key,
        team=options.team,
        session=options.session,
        properties=dict(options.properties),
    )


def build_record(ctx: RequestContext, outcome: Outcome, ended: float) -> RequestRecord:
    """The record of a request that ended at `ended` (on llmroute's monotonic clock).

    Everything but the cost (`apply_cost`, which prices the request) and the
    content (`add_content`, which serialises the messages): both are left to
    the recorder's worker thread.
    """
    info, options, route = ctx.info, ctx.options, ctx.route
    latency = info.latency_s if info.latency_s is not None else ended - ctx.started
    started = ctx.started
    # one constructor call: a request's end builds its record on the event loop
    record = RequestRecord(
        request_id=info.request_id, operation=ctx.operation, started_at=ctx.started_at,
        request_model=ctx.request.model, ended_at=ctx.started_at + latency,
        route=info.route if info.route is not None else route.name,
        strategy=info.strategy or route.strategy, target=info.target,
        provider=info.provider, model=info.model, stream=ctx.stream, latency_s=latency,
        ttft_s=info.ttft_s, usage=info.usage, cache=info.cache,
        answered_by=outcome.answered_by, user=options.user, key=options.key,
        team=options.team, session=options.session, properties=dict(options.properties),
        attempts=[
            AttemptRecord(
                a.target, a.provider, a.model, a.kind, a.outcome, a.status, a.error_type,
                a.error, (a.started - started) if a.started is not None else 0.0, a.latency_s,
            )
            for a in info.attempts
        ],
    )  # fmt: skip
    error = outcome.error
    if error is None:
        record.status = "ok" if outcome.completed else "cancelled"
    else:
        record.status, record.error_type, record.error, record.limit = error_fields(error)
    tag = ctx.state.get(EXPERIMENT_STATE)
    if isinstance(tag, ExperimentTag):
        record.experiment, record.variant = tag.experiment, tag.variant
        record.assignment, record.sticky_key = tag.assignment, tag.sticky_key
        record.off_variant = record.target is not None and record.target not in tag.targets
    response = outcome.response
    if response is not None:
        record.response_model, record.response_id, record.finish_reasons = response_facts(response)
    elif outcome.chunks:
        if ctx.operation == "responses":
            final = _final_response(outcome.chunks)
            if final is not None:
                record.response_model, record.response_id, record.finish_reasons = response_facts(
                    final
                )
        else:
            chunks = cast(list[ChatCompletionChunk], outcome.chunks)
            record.response_model, record.response_id = chunks[0].model, chunks[0].id
            record.finish_reasons = _stream_finish_reasons(chunks)
    return record


#: A choice's finish reason (`response_facts`).
_FINISH = attrgetter("finish_reason")


def response_facts(
    response: ChatCompletion | CreateEmbeddingResponse | Response | WireCompletion,
) -> tuple[str | None, str | None, list[str]]:
    """What a record keeps of an answer in one piece: its model, id (None for embeddings)
    and finish reasons (for a Responses answer, as chat names them: ``stop``,
    ``tool_calls``, ``length``, ``content_filter``, or ``error``)."""
    if isinstance(response, ChatCompletion):  # (a request's end reads it: one choice inline)
        choices = response.choices
        if len(choices) == 1:
            reason = choices[0].finish_reason
            return response.model, response.id, [reason] if reason else []
        return response.model, response.id, list(filter(None, map(_FINISH, choices)))
    if isinstance(response, WireCompletion):
        return response.facts()
    if not isinstance(response, Response):
        return response.model, None, []
    status = response.status
    if status == "completed":
        calls = any(item.type == "function_call" for item in response.output)
        return response.model, response.id, ["tool_calls" if calls else "stop"]
    if status == "incomplete":
        details = response.incomplete_details
        reason = getattr(details, "reason", None) if details is not None else None
        if isinstance(details, dict):
            reason = details.get("reason")
        finish = "length" if reason == "max_output_tokens" else "content_filter"
        return response.model, response.id, [finish]
    return response.model, response.id, ["error"] if status == "failed" else []


def _final_response(events: list[Any]) -> Response | None:
    """The response a Responses stream's last event carries, if it ended with one."""
    response = events[-1].__dict__.get("response") if events else None
    return response if isinstance(response, Response) else None


def apply_cost(record: RequestRecord, info: RouteInfo) -> None:
    """Set the record's cost (reading it prices the request) and what a cache hit saved."""
    record.cost_usd, record.saved_usd = priced(info, unsent(record))


def priced(info: RouteInfo, sent_nothing: bool) -> tuple[float | None, float | None]:
    """The ``cost_usd`` and ``saved_usd`` of the request `info` routed (reading its cost
    prices it); `sent_nothing`: what `unsent` says of its record."""
    return cost_fields(sent_nothing, info.cost_usd, saved_of(info, sent_nothing))


def saved_of(info: RouteInfo, sent_nothing: bool) -> float | None:
    """What the routing metadata says a request that sent nothing (`unsent`) saved."""
    return getattr(info, "saved_usd", None) if sent_nothing else None


def unsent(record: RequestRecord) -> bool:
    """Whether nothing was sent for the record's request (a cache hit, a stage's answer)."""
    return nothing_sent(record.cache, record.answered_by, bool(record.attempts))


def nothing_sent(cache: str | None, answered_by: str | None, attempted: bool) -> bool:
    """`unsent` of a request's cache status, answering stage and whether it made attempts."""
    return cache == "hit" or (answered_by is not None and not attempted)


def cost_fields(
    sent_nothing: bool, cost: float | None, saved: float | None
) -> tuple[float | None, float | None]:
    """A record's ``cost_usd`` and ``saved_usd`` given its request's priced `cost` and, for
    a request that sent nothing (`unsent`), what its routing metadata says it `saved`: it
    cost nothing, and what it would have cost was saved."""
    if sent_nothing:
        return 0.0, saved if saved is not None else (cost or None)
    return cost, None


def error_fields(error: BaseException) -> tuple[RecordStatus, str, str, str | None]:
    """A record's ``status``, ``error_type``, ``error`` and ``limit`` for the `error` that
    ended its request."""
    name = type(error).__name__
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled", name, str(error), None
    limited = isinstance(error, LocalRateLimitExceeded | BudgetExceeded)
    return "error", name, str(error), name if limited else None


def _stream_finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    reasons: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    return [reasons[i] for i in sorted(reasons)]


# ---------------------------------------------------------------- content


def add_content(record: RequestRecord, request: Any, outcome: Outcome) -> None:
    """Set the record's prompt and completion (the request's messages, the answer's)."""
    record.prompt = _prompt(record.operation, request)
    record.completion = _completion(outcome)


def _prompt(operation: str, request: Any) -> list[dict[str, Any]]:
    if operation in ("chat", "responses"):  # a Responses request: its chat equivalent
        return [m.model_dump(mode="json", exclude_none=True) for m in request.messages]
    return [{"role": "user", "content": request.input}]


def _completion(outcome: Outcome) -> list[dict[str, Any]] | None:
    response = outcome.response
    if isinstance(response, ChatCompletion):
        return [c.message.model_dump(mode="json", exclude_none=True) for c in response.choices]
    chunks = outcome.chunks
    if chunks and not isinstance(chunks[0], ChatCompletionChunk):  # a Responses stream
        response = _final_response(chunks)
    if isinstance(response, Response):
        output = [item.to_dict(mode="json") for item in response.output]
        return [{"role": "assistant", "content": response.output_text, "output": output}]
    if chunks:
        return _assemble(cast(list[ChatCompletionChunk], chunks))
    return None


def _assemble(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    """A stream's answer as one assistant message per choice (text and tool calls)."""
    texts: dict[int, list[str]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            texts.setdefault(choice.index, [])
            if delta.content:
                texts[choice.index].append(delta.content)
            for call in delta.tool_calls or ():
                slot = calls.setdefault(choice.index, {}).setdefault(
                    call.index, {"id": None, "type": "function",
                                 "function": {"name": "", "arguments": ""}}
                )  # fmt: skip
                if call.id:
                    slot["id"] = call.id
                if call.function is not None:
                    slot["function"]["name"] += call.function.name or ""
                    slot["function"]["arguments"] += call.function.arguments or ""
    messages = []
    for index in sorted(texts):
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts[index])}
        if index in calls:
            message["tool_calls"] = [calls[index][i] for i in sorted(calls[index])]
        messages.append(message)
    return messages

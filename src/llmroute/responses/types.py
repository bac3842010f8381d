"""The Responses API's objects: `Response`, its output items, `ResponseUsage`, stream events.

Field names, nesting and constant values are the OpenAI API's (the openai SDK's
``openai.types.responses``; tests validate every dump against it). As with the chat
models, whatever a native upstream adds is kept (``extra="allow"``), and an output item
or content part of a type llmroute does not model (``web_search_call``, ...) is kept
whole in a catch-all model, so it survives a round trip unchanged.

Fields the SDK requires (`Response.tools`, `ResponseOutputText.annotations`, a text
delta's `logprobs`, ...) are required here too, or given explicitly wherever llmroute
builds the object: `to_dict()` leaves out what was never set.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic_core import from_json, to_json

from .._errors import MalformedResponse
from .._types import OpenAIObject, RoutedObject, validator
from .items import (
    ContentPart,
    InputTokensDetails,
    ItemStatus,
    OutputItem,
    OutputTokensDetails,
    ResponseContentPart,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningText,
    ResponseStatus,
    ResponseSummaryText,
    ResponseUsage,
    construct,
    response_usage,
    usage_from_tokens,
)

__all__ = [
    "IncompleteDetails",
    "InputTokensDetails",
    "ItemStatus",
    "OutputItem",
    "OutputTokensDetails",
    "Response",
    "ResponseCompletedEvent",
    "ResponseContentPart",
    "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent",
    "ResponseCreatedEvent",
    "ResponseError",
    "ResponseErrorEvent",
    "ResponseFailedEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseFunctionToolCall",
    "ResponseInProgressEvent",
    "ResponseIncompleteEvent",
    "ResponseOutputItem",
    "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseOutputMessage",
    "ResponseOutputRefusal",
    "ResponseOutputText",
    "ResponseOutputTextAnnotationAddedEvent",
    "ResponseQueuedEvent",
    "ResponseReasoningItem",
    "ResponseReasoningSummaryPartAddedEvent",
    "ResponseReasoningSummaryPartDoneEvent",
    "ResponseReasoningSummaryTextDeltaEvent",
    "ResponseReasoningSummaryTextDoneEvent",
    "ResponseReasoningText",
    "ResponseRefusalDeltaEvent",
    "ResponseRefusalDoneEvent",
    "ResponseStatus",
    "ResponseStreamEvent",
    "ResponseSummaryText",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseUsage",
    "TERMINAL_EVENTS",
    "ContentPart",
    "construct",
    "event_class",
    "json_bytes",
    "parse_event",
    "response_usage",
    "usage_from_tokens",
]

_OPEN = ConfigDict(extra="allow", defer_build=True)


def json_bytes(model: BaseModel) -> bytes:
    """`model` as compact JSON: the fields it has set, which for what llmroute builds is
    all of them (constants included) and for what an upstream sent is what it sent.

    About a sixth of `to_json()`'s instructions (which walks the dump again for the
    constants); a flat event with every field set and no extras (a text delta: the bulk
    of a stream) is written from its `__dict__` directly, which costs 8,600 instructions
    against 12,400 through its serializer (callgrind). Oracle:
    tests/test_responses_events.py (every event's bytes against ``to_dict()``).
    """
    if (
        type(model) in _FLAT
        and not model.__pydantic_extra__
        and len(model.__pydantic_fields_set__) == len(model.__dict__)
    ):
        return to_json(model.__dict__)
    return model.__pydantic_serializer__.to_json(model, exclude_unset=True)


# ---------------------------------------------------------------- the response


class ResponseError(OpenAIObject):
    """Why a response failed. OpenAI's codes: ``server_error``, ``rate_limit_exceeded``,
    ``invalid_prompt``, ... (the SDK's `ResponseError.code` lists them)."""

    model_config = _OPEN
    code: str
    message: str


class IncompleteDetails(OpenAIObject):
    """Why a response is incomplete: ``max_output_tokens`` or ``content_filter``."""

    model_config = _OPEN
    reason: str | None = None


class Response(RoutedObject):
    """A response, exactly as the Responses API returns it.

    llmroute's metadata rides beside it as `llmroute` (a `RouteInfo`), as on a
    `ChatCompletion`: not part of the schema or of dumps.
    """

    model_config = _OPEN
    id: str
    object: Literal["response"] = "response"
    created_at: float
    status: ResponseStatus | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | list[Any] | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool | None = None
    temperature: float | None = None
    text: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_p: float | None = None
    truncation: str | None = None
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part of the message items, joined (as the
        SDK's property)."""
        texts: list[str] = []
        for item in self.output:
            if isinstance(item, ResponseOutputMessage):
                texts.extend(p.text for p in item.content if isinstance(p, ResponseOutputText))
        return "".join(texts)


# ---------------------------------------------------------------- stream events


class ResponseStreamEvent(OpenAIObject):
    """A stream event: the typed subclasses below, or this class, kept whole, for an event
    type llmroute does not model (``response.web_search_call.searching``, ...)."""

    model_config = _OPEN
    type: str
    sequence_number: int


class ResponseCreatedEvent(ResponseStreamEvent):
    """The response was created (status ``in_progress``, no output yet)."""

    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseInProgressEvent(ResponseStreamEvent):
    """The response is being generated."""

    type: Literal["response.in_progress"] = "response.in_progress"
    response: Response


class ResponseQueuedEvent(ResponseStreamEvent):
    """The response is queued (a native upstream's)."""

    type: Literal["response.queued"] = "response.queued"
    response: Response


class ResponseCompletedEvent(ResponseStreamEvent):
    """The response is complete: the whole `Response`, with usage."""

    type: Literal["response.completed"] = "response.completed"
    response: Response


class ResponseFailedEvent(ResponseStreamEvent):
    """The response failed (status ``failed``, `error` set)."""

    type: Literal["response.failed"] = "response.failed"
    response: Response


class ResponseIncompleteEvent(ResponseStreamEvent):
    """The response ended incomplete (`incomplete_details` says why)."""

    type: Literal["response.incomplete"] = "response.incomplete"
    response: Response


class ResponseOutputItemAddedEvent(ResponseStreamEvent):
    """An output item was opened (in progress, nothing in it yet)."""

    type: Literal["response.output_item.added"] = "response.output_item.added"
    output_index: int
    item: OutputItem


class ResponseOutputItemDoneEvent(ResponseStreamEvent):
    """An output item is complete."""

    type: Literal["response.output_item.done"] = "response.output_item.done"
    output_index: int
    item: OutputItem


class ResponseContentPartAddedEvent(ResponseStreamEvent):
    """A content part of a message item was opened (empty)."""

    type: Literal["response.content_part.added"] = "response.content_part.added"
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class ResponseContentPartDoneEvent(ResponseStreamEvent):
    """A content part of a message item is complete."""

    type: Literal["response.content_part.done"] = "response.content_part.done"
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class ResponseTextDeltaEvent(ResponseStreamEvent):
    """More text for an ``output_text`` part."""

    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]]


class ResponseTextDoneEvent(ResponseStreamEvent):
    """An ``output_text`` part's whole text."""

    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[dict[str, Any]]


class ResponseOutputTextAnnotationAddedEvent(ResponseStreamEvent):
    """An annotation (a citation) for an ``output_text`` part."""

    type: Literal["response.output_text.annotation.added"] = "response.output_text.annotation.added"
    item_id: str
    output_index: int
    content_index: int
    annotation_index: int
    annotation: dict[str, Any]


class ResponseRefusalDeltaEvent(ResponseStreamEvent):
    """More text for a ``refusal`` part."""

    type: Literal["response.refusal.delta"] = "response.refusal.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseRefusalDoneEvent(ResponseStreamEvent):
    """A ``refusal`` part's whole text."""

    type: Literal["response.refusal.done"] = "response.refusal.done"
    item_id: str
    output_index: int
    content_index: int
    refusal: str


class ResponseFunctionCallArgumentsDeltaEvent(ResponseStreamEvent):
    """More of a function call's arguments."""

    type: Literal["response.function_call_arguments.delta"] = (
        "response.function_call_arguments.delta"
    )
    item_id: str
    output_index: int
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(ResponseStreamEvent):
    """A function call's whole arguments."""

    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    item_id: str
    output_index: int
    arguments: str


class ResponseReasoningSummaryPartAddedEvent(ResponseStreamEvent):
    """A part of a reasoning item's summary was opened (empty)."""

    type: Literal["response.reasoning_summary_part.added"] = "response.reasoning_summary_part.added"
    item_id: str
    output_index: int
    summary_index: int
    part: ResponseSummaryText


class ResponseReasoningSummaryPartDoneEvent(ResponseStreamEvent):
    """A part of a reasoning item's summary is complete."""

    type: Literal["response.reasoning_summary_part.done"] = "response.reasoning_summary_part.done"
    item_id: str
    output_index: int
    summary_index: int
    part: ResponseSummaryText


class ResponseReasoningSummaryTextDeltaEvent(ResponseStreamEvent):
    """More text of a reasoning summary part."""

    type: Literal["response.reasoning_summary_text.delta"] = "response.reasoning_summary_text.delta"
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class ResponseReasoningSummaryTextDoneEvent(ResponseStreamEvent):
    """A reasoning summary part's whole text."""

    type: Literal["response.reasoning_summary_text.done"] = "response.reasoning_summary_text.done"
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ResponseErrorEvent(ResponseStreamEvent):
    """An error in the stream."""

    type: Literal["error"] = "error"
    code: str | None = None
    message: str
    param: str | None = None


#: Event type -> the class that models it.
_EVENT_CLASSES: dict[str, type[ResponseStreamEvent]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        ResponseCreatedEvent,
        ResponseInProgressEvent,
        ResponseQueuedEvent,
        ResponseCompletedEvent,
        ResponseFailedEvent,
        ResponseIncompleteEvent,
        ResponseOutputItemAddedEvent,
        ResponseOutputItemDoneEvent,
        ResponseContentPartAddedEvent,
        ResponseContentPartDoneEvent,
        ResponseTextDeltaEvent,
        ResponseTextDoneEvent,
        ResponseOutputTextAnnotationAddedEvent,
        ResponseRefusalDeltaEvent,
        ResponseRefusalDoneEvent,
        ResponseFunctionCallArgumentsDeltaEvent,
        ResponseFunctionCallArgumentsDoneEvent,
        ResponseReasoningSummaryPartAddedEvent,
        ResponseReasoningSummaryPartDoneEvent,
        ResponseReasoningSummaryTextDeltaEvent,
        ResponseReasoningSummaryTextDoneEvent,
        ResponseErrorEvent,
    )
}

#: The event classes whose fields are plain values (`json_bytes` writes their `__dict__`).
_FLAT = frozenset({
    ResponseTextDeltaEvent, ResponseTextDoneEvent, ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent, ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent, ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent, ResponseOutputTextAnnotationAddedEvent,
    ResponseErrorEvent,
})  # fmt: skip

#: The event types that end a stream.
TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})


def event_class(kind: str) -> type[ResponseStreamEvent]:
    """The class modelling events of type `kind` (`ResponseStreamEvent` for unknown ones)."""
    return _EVENT_CLASSES.get(kind, ResponseStreamEvent)


def parse_event(data: bytes | str | dict[str, Any]) -> ResponseStreamEvent:
    """An event from its JSON (or decoded JSON), as the class its `type` names.

    Raises `MalformedResponse` when it is not JSON or not the event its type says.
    """
    try:
        raw = from_json(data) if isinstance(data, bytes | str) else data
        if not isinstance(raw, dict):
            raise TypeError("an event is a JSON object")
        cls = _EVENT_CLASSES.get(raw.get("type"), ResponseStreamEvent)  # type: ignore[arg-type]
        event: ResponseStreamEvent = validator(cls).validate_python(raw)
    except ValueError as exc:  # pydantic's ValidationError and from_json's errors
        raise MalformedResponse(f"malformed Responses stream event: {exc}") from exc
    except TypeError as exc:
        raise MalformedResponse(f"malformed Responses stream event: {exc}") from exc
    return event

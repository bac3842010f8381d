"""Responses stream events: from chat chunks, from a native upstream's SSE, from a whole answer.

Three sources, one documented order (``response.created``, ``response.in_progress``;
per output item ``response.output_item.added``, its parts' ``.added``, deltas and
``.done`` events, ``response.output_item.done``; then ``response.completed``,
``response.incomplete`` or ``response.failed``), with sequence numbers from 0:

- `ChunkEvents` turns a translated target's chat chunks into events as they come.
- `NativeEventDecoder` (`llmroute.responses.native_events`) reads a native upstream's SSE
  lines, keeping its events as sent (only the response id is rewritten to llmroute's).
- `response_events` gives the events a stream of a whole `Response` carries (a cached
  answer replayed as a stream).

Events are built without validation (`construct`: the values are llmroute's own),
with every field set, constants included, so `json_bytes` (the serializer,
``exclude_unset``) writes one whole in about a microsecond, where ``to_json()``
takes ten: a text delta costs a few microseconds.
"""

from __future__ import annotations

from typing import Any

from .._errors import MalformedResponse
from .._route_info import TokenUsage
from .._types import (
    ChatCompletionChunk,
    ChoiceDeltaToolCall,
    ChunkChoice,
    CompletionUsage,
)
from .request_model import ResponsesRequest
from .signatures import signature_block
from .translate import (
    annotation,
    build_response,
    finish_status,
    function_call_item,
    logprobs_of,
    message_item,
    new_item_id,
    output_text,
    reasoning_item,
    reasoning_of,
    refusal_part,
    summary_text,
    usage_of,
)
from .types import (
    ItemStatus,
    OutputItem,
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseError,
    ResponseFailedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseOutputTextAnnotationAddedEvent,
    ResponseReasoningItem,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseReasoningSummaryPartDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent,
    ResponseStatus,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    construct,
    usage_from_tokens,
)

__all__ = ["ChunkEvents", "response_events"]


# ---------------------------------------------------------------- chat chunks


class _Sequence:
    """Numbers events from 0 and builds them."""

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, cls: type[ResponseStreamEvent], **fields: Any) -> Any:
        number = self.next
        self.next = number + 1
        return construct(cls, {"type": _KINDS[cls], "sequence_number": number, **fields})


#: Event class -> its type.
_KINDS: dict[type[ResponseStreamEvent], str] = {
    cls: cls.model_fields["type"].default for cls in (
        ResponseCompletedEvent, ResponseContentPartAddedEvent, ResponseContentPartDoneEvent,
        ResponseCreatedEvent, ResponseFailedEvent, ResponseFunctionCallArgumentsDeltaEvent,
        ResponseFunctionCallArgumentsDoneEvent, ResponseIncompleteEvent, ResponseInProgressEvent,
        ResponseOutputItemAddedEvent, ResponseOutputItemDoneEvent,
        ResponseOutputTextAnnotationAddedEvent, ResponseReasoningSummaryPartAddedEvent,
        ResponseReasoningSummaryPartDoneEvent, ResponseReasoningSummaryTextDeltaEvent,
        ResponseReasoningSummaryTextDoneEvent, ResponseRefusalDeltaEvent, ResponseRefusalDoneEvent,
        ResponseTextDeltaEvent, ResponseTextDoneEvent,
    )
}  # fmt: skip

_TEXT = "output_text"
_REFUSAL = "refusal"
#: A text delta's fields: every one is set.
_DELTA_FIELDS = frozenset(ResponseTextDeltaEvent.model_fields)


_Item = ResponseOutputMessage | ResponseFunctionToolCall | ResponseReasoningItem


class ChunkEvents:
    """A translated target's chat chunks as Responses stream events.

    `start()` gives the two opening events, `feed(chunk)` the events each chunk makes
    (items open as their content arrives), `finish(usage)` closes what is open and ends
    with ``response.completed`` (``response.incomplete`` when the finish reason was
    ``length`` or ``content_filter``); `fail()` ends with ``response.failed`` instead.
    `response` is the response so far, and the final one once ended: the same
    `Response` that `completion_to_response` makes of the same answer (ids apart).

    Only the first choice is read (the Responses API has one). Tool calls are items in
    their chat index order; a fragment of a call after the next call began raises
    `MalformedResponse` (no chat provider interleaves them).
    """

    __slots__ = (
        "_annotations", "_args", "_blocks", "_call", "_calls", "_created_at", "_done",
        "_ended", "_finish", "_item_id", "_logprobs", "_model", "_open", "_part", "_parts",
        "_request", "_response_id", "_seq", "_summary", "_text", "_usage", "_written",
    )  # fmt: skip

    def __init__(
        self, request: ResponsesRequest, *, response_id: str, created_at: float, model: str
    ) -> None:
        self._request = request
        self._response_id = response_id
        self._created_at = created_at
        self._model = model
        self._seq = _Sequence()
        self._done: list[OutputItem] = []  # closed items, by output index
        self._open: str | None = None  # the open item: reasoning, message or function_call
        self._item_id = ""
        self._summary: list[str] | None = None  # reasoning text (None: no summary part yet)
        self._blocks: list[dict[str, Any]] = []
        self._parts: list[Any] = []  # the open message's closed parts
        self._part: str | None = None  # its open part: output_text or refusal
        self._text: list[str] = []  # the open part's
        self._written: list[str] = []  # every output_text delta, in order
        self._annotations: list[Any] = []
        self._logprobs: list[dict[str, Any]] | None = None
        self._calls: dict[int, list[str]] = {}  # chat index -> [call_id, name]
        self._call: list[str] | None = None
        self._args: list[str] = []
        self._finish: str | None = None
        self._usage: CompletionUsage | None = None
        self._ended: Response | None = None

    # ------------------------------------------------------------ the whole

    def _build(self, status: ResponseStatus, output: list[OutputItem], **more: Any) -> Response:
        return build_response(
            self._request, response_id=self._response_id, created_at=self._created_at,
            model=self._model, status=status, output=output, **more,
        )  # fmt: skip

    def start(self) -> list[ResponseStreamEvent]:
        """``response.created`` and ``response.in_progress`` (status in progress, no output)."""
        response = self._build("in_progress", [])
        seq = self._seq
        return [
            seq(ResponseCreatedEvent, response=response),
            seq(ResponseInProgressEvent, response=response),
        ]

    @property
    def response(self) -> Response:
        """The final response once ended; before, the response so far (in progress, the
        open item as it stands)."""
        if self._ended is not None:
            return self._ended
        return self._build("in_progress", [*self._done, *self._current("in_progress")])

    def finish(self, usage: TokenUsage | None = None) -> list[ResponseStreamEvent]:
        """Close every open part and item, then ``response.completed`` (or
        ``response.incomplete``) with `usage` (else the usage chunk's, if any)."""
        status, details = finish_status(self._finish)
        events: list[Any] = []
        self._close(events, "incomplete" if details is not None else "completed")
        final = usage_from_tokens(usage) if usage is not None else usage_of(self._usage)
        response = self._ended = self._build(
            status, list(self._done), usage=final, incomplete_details=details
        )
        kind = ResponseCompletedEvent if status == "completed" else ResponseIncompleteEvent
        events.append(self._seq(kind, response=response))
        return events

    def fail(self, message: str, code: str = "server_error") -> list[ResponseStreamEvent]:
        """``response.failed`` (status failed, `error` {code, message}); what was half
        written is in its output as ``incomplete``, with no ``.done`` events."""
        error = construct(ResponseError, {"code": code, "message": message})
        output = [*self._done, *self._current("incomplete")]
        response = self._ended = self._build("failed", output, error=error)
        return [self._seq(ResponseFailedEvent, response=response)]

    # ------------------------------------------------------------ chunks

    @property
    def text(self) -> str:
        """The output text written so far (every ``output_text`` part's)."""
        return "".join(self._written)

    @property
    def finished(self) -> bool:
        """Whether a chunk said why the answer finished (its finish reason)."""
        return self._finish is not None

    def feed(self, chunk: ChatCompletionChunk) -> list[ResponseStreamEvent]:
        """The events `chunk` makes (none for a chunk with nothing new)."""
        choices = chunk.choices
        if self._part is _TEXT and len(choices) == 1 and chunk.usage is None:
            event = self._more_text(choices[0])
            if event is not None:
                return [event]
        return self._feed(chunk)

    def _more_text(self, choice: ChunkChoice) -> ResponseTextDeltaEvent | None:
        """Fast path, the bulk of a stream: the event of a choice that only adds text to the
        open ``output_text`` part (None for any other, which `_feed` takes). Fields are read
        from ``__dict__`` (a pydantic model's attribute costs a ``__getattr__`` hook) and
        the event built with its field names given: ~21.5k instructions per delta against
        ~23.1k through `_feed` (callgrind, `feed` over a 200-chunk stream). Oracle:
        tests/test_responses_fast_paths.py::test_text_deltas_are_what_the_general_path_makes.
        """
        values = choice.__dict__
        delta = values["delta"]
        fields = delta.__dict__
        text = fields.get("content")
        if (
            not text
            or values["index"]
            or values.get("finish_reason") is not None
            or values.get("logprobs") is not None
            or delta.__pydantic_extra__
            or fields.get("refusal")
            or fields.get("tool_calls")
        ):
            return None
        self._text.append(text)
        self._written.append(text)
        seq = self._seq
        number = seq.next
        seq.next = number + 1
        return construct(ResponseTextDeltaEvent, {
            "type": "response.output_text.delta", "sequence_number": number,
            "item_id": self._item_id, "output_index": len(self._done),
            "content_index": len(self._parts), "delta": text, "logprobs": [],
        }, _DELTA_FIELDS)  # fmt: skip

    def _feed(self, chunk: ChatCompletionChunk) -> list[ResponseStreamEvent]:
        """The events of any chunk (the general path)."""
        if chunk.usage is not None:
            self._usage = chunk.usage
        events: list[Any] = []
        for choice in chunk.choices:
            if choice.index:
                continue
            delta = choice.delta
            extra = delta.__pydantic_extra__
            if extra:
                self._extra(extra, events)
            if delta.content:
                self._text_delta(delta.content, choice.logprobs, events)
            if delta.refusal:
                self._refusal_delta(delta.refusal, events)
            if delta.tool_calls:
                for fragment in delta.tool_calls:
                    self._call_delta(fragment, events)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _extra(self, extra: dict[str, Any], events: list[Any]) -> None:
        text, blocks = reasoning_of(extra)
        if text or blocks:
            self._reasoning_delta(text, blocks, events)
        found = extra.get("annotations")
        if found:
            self._annotate(found, events)

    def _open_item(self, kind: str, item: _Item, events: list[Any]) -> None:
        self._close(events, "completed")
        self._open = kind
        self._item_id = item.id or ""
        events.append(
            self._seq(ResponseOutputItemAddedEvent, output_index=len(self._done), item=item)
        )

    def _reasoning_delta(self, text: str, blocks: list[Any], events: list[Any]) -> None:
        seq = self._seq
        if self._open != "reasoning":
            item = reasoning_item(new_item_id("rs"), "", [])
            self._open_item("reasoning", item, events)
            self._summary, self._blocks = None, []
        self._blocks.extend(blocks)
        if not text:
            return
        where = {"item_id": self._item_id, "output_index": len(self._done), "summary_index": 0}
        if self._summary is None:
            self._summary = []
            part = summary_text("")
            events.append(seq(ResponseReasoningSummaryPartAddedEvent, **where, part=part))
        self._summary.append(text)
        events.append(seq(ResponseReasoningSummaryTextDeltaEvent, **where, delta=text))

    def _open_message(self, events: list[Any]) -> None:
        if self._open != "message":
            self._open_item("message", message_item(new_item_id("msg"), "in_progress", []), events)
            self._parts, self._part = [], None

    def _open_part(self, kind: str, events: list[Any]) -> None:
        self._open_message(events)
        self._close_part(events)
        self._part = kind
        if kind == _TEXT:
            self._text, self._annotations, self._logprobs = [], [], None
            part: Any = output_text("", [], None)
        else:
            self._text = []
            part = refusal_part("")
        events.append(self._seq(ResponseContentPartAddedEvent, **self._where(), part=part))

    def _where(self) -> dict[str, Any]:
        return {
            "item_id": self._item_id,
            "output_index": len(self._done),
            "content_index": len(self._parts),
        }

    # The deltas, the bulk of a stream, are built inline (type and number first, as
    # OpenAI writes them): `_seq`'s keyword arguments cost a fifth of an event.

    def _text_delta(self, text: str, logprobs: Any, events: list[Any]) -> None:
        if self._part is not _TEXT:
            self._open_part(_TEXT, events)
        self._text.append(text)
        self._written.append(text)
        found = logprobs_of(logprobs) if logprobs is not None else None
        if found:
            self._logprobs = [*(self._logprobs or ()), *found]
        seq = self._seq
        number = seq.next
        seq.next = number + 1
        events.append(construct(ResponseTextDeltaEvent, {
            "type": "response.output_text.delta", "sequence_number": number,
            "item_id": self._item_id, "output_index": len(self._done),
            "content_index": len(self._parts), "delta": text, "logprobs": found or [],
        }))  # fmt: skip

    def _refusal_delta(self, refusal: str, events: list[Any]) -> None:
        if self._part is not _REFUSAL:
            self._open_part(_REFUSAL, events)
        self._text.append(refusal)
        events.append(self._seq(ResponseRefusalDeltaEvent, **self._where(), delta=refusal))

    def _annotate(self, found: list[Any], events: list[Any]) -> None:
        if self._part is not _TEXT:
            self._open_part(_TEXT, events)
        for given in found:
            index = len(self._annotations)
            self._annotations.append(note := annotation(given))
            events.append(
                self._seq(
                    ResponseOutputTextAnnotationAddedEvent,
                    **self._where(),
                    annotation_index=index,
                    annotation=note,
                )
            )

    def _call_delta(self, fragment: ChoiceDeltaToolCall, events: list[Any]) -> None:
        function = fragment.function
        call = self._calls.get(fragment.index)
        if call is None:
            more = fragment.__pydantic_extra__
            if more and (signed := signature_block(fragment.id or "", more)) is not None:
                self._reasoning_delta("", [signed], events)  # before the call, as whole
            name = (function.name if function else None) or ""
            call = self._calls[fragment.index] = [fragment.id or "", name]
            item = function_call_item(new_item_id("fc"), call[0], name, "", "in_progress")
            self._open_item("function_call", item, events)
            self._call, self._args = call, []
        elif call is not self._call:
            raise MalformedResponse(
                f"a fragment of tool call {fragment.index} came after the next call began"
            )
        elif function is not None and function.name:
            call[1] += function.name
        if fragment.id and not call[0]:
            call[0] = fragment.id
        arguments = function.arguments if function is not None else None
        if arguments:
            self._args.append(arguments)
            seq = self._seq
            number = seq.next
            seq.next = number + 1
            events.append(construct(ResponseFunctionCallArgumentsDeltaEvent, {
                "type": "response.function_call_arguments.delta", "sequence_number": number,
                "item_id": self._item_id, "output_index": len(self._done), "delta": arguments,
            }))  # fmt: skip

    # ------------------------------------------------------------ closing

    def _close_part(self, events: list[Any]) -> None:
        kind = self._part
        if kind is None:
            return
        seq, where, text = self._seq, self._where(), "".join(self._text)
        if kind == _TEXT:
            logprobs = self._logprobs
            events.append(seq(ResponseTextDoneEvent, **where, text=text, logprobs=logprobs or []))
            part: Any = output_text(text, self._annotations, logprobs)
        else:
            events.append(seq(ResponseRefusalDoneEvent, **where, refusal=text))
            part = refusal_part(text)
        events.append(seq(ResponseContentPartDoneEvent, **where, part=part))
        self._parts.append(part)
        self._part = None

    def _current(self, status: ItemStatus) -> list[OutputItem]:
        """The open item as it stands (for `response` and `fail`), or none."""
        kind = self._open
        if kind == "reasoning":
            return [reasoning_item(self._item_id, "".join(self._summary or ()), self._blocks)]
        if kind == "message":
            parts = list(self._parts)
            text = "".join(self._text)
            if self._part == _TEXT:
                parts.append(output_text(text, list(self._annotations), self._logprobs))
            elif self._part == _REFUSAL:
                parts.append(refusal_part(text))
            return [message_item(self._item_id, status, parts)]
        if kind == "function_call" and self._call is not None:
            call_id, name = self._call
            args = "".join(self._args)
            return [function_call_item(self._item_id, call_id, name, args, status)]
        return []

    def _close(self, events: list[Any], status: ItemStatus) -> None:
        """Close the open item (and its open part), `status` its status."""
        kind = self._open
        if kind is None:
            return
        seq, index, item_id = self._seq, len(self._done), self._item_id
        if kind == "reasoning" and self._summary is not None:
            where = {"item_id": item_id, "output_index": index, "summary_index": 0}
            text = "".join(self._summary)
            events.append(seq(ResponseReasoningSummaryTextDoneEvent, **where, text=text))
            part = summary_text(text)
            events.append(seq(ResponseReasoningSummaryPartDoneEvent, **where, part=part))
        elif kind == "message":
            self._close_part(events)
        elif kind == "function_call":
            events.append(
                seq(
                    ResponseFunctionCallArgumentsDoneEvent,
                    item_id=item_id,
                    output_index=index,
                    arguments="".join(self._args),
                )
            )
        item = self._current(status)[0]
        self._open, self._call = None, None
        self._done.append(item)
        events.append(seq(ResponseOutputItemDoneEvent, output_index=index, item=item))


# ---------------------------------------------------------------- whole responses


def _message_events(seq: _Sequence, item: ResponseOutputMessage, index: int) -> list[Any]:
    events = []
    for position, part in enumerate(item.content):
        where = {"item_id": item.id, "output_index": index, "content_index": position}
        if isinstance(part, ResponseOutputText):
            logprobs = part.logprobs or []
            empty: Any = output_text("", [], None)
            events.append(seq(ResponseContentPartAddedEvent, **where, part=empty))
            if part.text:
                events.append(
                    seq(ResponseTextDeltaEvent, **where, delta=part.text, logprobs=logprobs)
                )
            for number, note in enumerate(part.annotations):
                events.append(seq(ResponseOutputTextAnnotationAddedEvent, **where,
                                  annotation_index=number, annotation=note))  # fmt: skip
            events.append(seq(ResponseTextDoneEvent, **where, text=part.text, logprobs=logprobs))
        elif isinstance(part, ResponseOutputRefusal):
            events.append(seq(ResponseContentPartAddedEvent, **where, part=refusal_part("")))
            if part.refusal:
                events.append(seq(ResponseRefusalDeltaEvent, **where, delta=part.refusal))
            events.append(seq(ResponseRefusalDoneEvent, **where, refusal=part.refusal))
        else:
            events.append(seq(ResponseContentPartAddedEvent, **where, part=part))
        events.append(seq(ResponseContentPartDoneEvent, **where, part=part))
    return events


def _reasoning_events(seq: _Sequence, item: ResponseReasoningItem, index: int) -> list[Any]:
    events = []
    for position, summary in enumerate(item.summary):
        where = {"item_id": item.id, "output_index": index, "summary_index": position}
        empty = summary_text("")
        events.append(seq(ResponseReasoningSummaryPartAddedEvent, **where, part=empty))
        events.append(seq(ResponseReasoningSummaryTextDeltaEvent, **where, delta=summary.text))
        events.append(seq(ResponseReasoningSummaryTextDoneEvent, **where, text=summary.text))
        events.append(seq(ResponseReasoningSummaryPartDoneEvent, **where, part=summary))
    return events


def _call_events(seq: _Sequence, item: ResponseFunctionToolCall, index: int) -> list[Any]:
    where = {"item_id": item.id or "", "output_index": index}
    events = []
    if item.arguments:
        events.append(seq(ResponseFunctionCallArgumentsDeltaEvent, **where, delta=item.arguments))
    events.append(seq(ResponseFunctionCallArgumentsDoneEvent, **where, arguments=item.arguments))
    return events


def _opened(item: OutputItem) -> OutputItem:
    """`item` as ``response.output_item.added`` shows it: in progress, nothing in it yet."""
    if isinstance(item, ResponseOutputMessage):
        return message_item(item.id, "in_progress", [])
    if isinstance(item, ResponseFunctionToolCall):
        return function_call_item(item.id or "", item.call_id, item.name, "", "in_progress")
    if isinstance(item, ResponseReasoningItem):
        return reasoning_item(item.id, "", [])
    return item


def response_events(response: Response) -> list[ResponseStreamEvent]:
    """The events a stream of `response` carries, from ``response.created`` to its end
    (``response.completed``, ``.incomplete`` or ``.failed``, by its status); each text in
    one delta. Sequence numbers from 0."""
    seq = _Sequence()
    opening = response.model_copy(update={"status": "in_progress", "output": [], "usage": None})
    events: list[Any] = [
        seq(ResponseCreatedEvent, response=opening),
        seq(ResponseInProgressEvent, response=opening),
    ]
    for index, item in enumerate(response.output):
        events.append(seq(ResponseOutputItemAddedEvent, output_index=index, item=_opened(item)))
        if isinstance(item, ResponseOutputMessage):
            events.extend(_message_events(seq, item, index))
        elif isinstance(item, ResponseFunctionToolCall):
            events.extend(_call_events(seq, item, index))
        elif isinstance(item, ResponseReasoningItem):
            events.extend(_reasoning_events(seq, item, index))
        events.append(seq(ResponseOutputItemDoneEvent, output_index=index, item=item))
    terminal = {
        "failed": ResponseFailedEvent, "incomplete": ResponseIncompleteEvent,
    }.get(response.status or "", ResponseCompletedEvent)  # fmt: skip
    events.append(seq(terminal, response=response))
    return events

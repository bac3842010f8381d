"""The Responses API on the request path: its two exchanges, and how a stream of its events
is opened.

A Responses request goes to each target the way that target can take it:
native to a provider that serves the Responses API itself (OpenAI, Azure
OpenAI: `ProviderAdapter.native_responses`), with the request as the caller
sent it, made self-contained (``store: false``); translated into a chat
completion for every other provider, whose answer (or chunks) is translated
back into a `Response` (or its events). The exchange decides per attempt, so a
request fails over from a native target to a translated one like any other.

A request that uses a built-in tool (web search, file search, ...) can only be
served natively: a translated target refuses it (`RequestError`, so the route's
next target is tried), and when none is left the caller gets that refusal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import TypeVar, cast

from pydantic import ValidationError

from .._errors import MalformedResponse, ProviderUnavailable, RequestError
from .._request import ChatRequest, EmbeddingsRequest, RequestOptions, UserMessage
from .._transports import HttpRequest, HttpResponse
from .._types import ChatCompletionChunk, TokenUsage
from ..providers import ExtraRequest, ProviderAdapter, StreamDecoder
from ..responses.events import ChunkEvents
from ..responses.native_events import NativeEventDecoder
from ..responses.request import native_body, to_chat
from ..responses.request_model import ResponsesRequest, builtin_tools
from ..responses.signatures import without_signatures
from ..responses.translate import completion_to_response
from ..responses.types import Response, ResponseError, ResponseFailedEvent, ResponseStreamEvent
from ..routing.model import Target
from ..routing.select import RequestFacts
from .accounting import stream_usage
from .exchange import Exchange, Opened, WholeExchange
from .opening import no_batches, read_to_content, single_batches
from .stage import Answer

__all__ = [
    "EventDecoder",
    "OpenedEvents",
    "ResponsesExchange",
    "ResponsesParts",
    "ResponsesStreamExchange",
    "TranslatedEvents",
    "chat_view",
]

T = TypeVar("T")

#: The events after which a stream has content worth serving (before one of them, a
#: failure fails over to the next target).
_CONTENT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
    }
)

#: The events that end a stream badly; met before any content, they fail the attempt over.
_FAILED_EVENTS = frozenset({"response.failed", "error"})


def chat_view(request: ResponsesRequest) -> ChatRequest:
    """The request as a chat completion, for what the stages and selection read of it
    (input tokens, output cap, capabilities, user). A request no chat target can express
    (a built-in tool choice, a file by id) is seen as its input's text."""
    try:
        return to_chat(request)
    except RequestError:
        text = request.input if isinstance(request.input, str) else repr(request.input)
        return ChatRequest(
            model=request.model,
            messages=[UserMessage(role="user", content=text)],
            max_completion_tokens=request.max_output_tokens,
        )


def _translatable(adapter: ProviderAdapter, request: ResponsesRequest) -> ChatRequest:
    """The chat translation of `request` for `adapter` (not native), or its refusal; only a
    Gemini target gets the thought signatures of Gemini's calls."""
    builtin = builtin_tools(request)
    if builtin:
        raise RequestError(
            f"provider {adapter.name!r} cannot run the built-in tool(s) "
            f"{', '.join(sorted(set(builtin)))}: only targets that serve the Responses API "
            "natively (OpenAI, Azure OpenAI) run them",
            param="tools",
        )
    chat = to_chat(request)
    if adapter.thought_signatures or not isinstance(request.input, list):
        return chat
    return without_signatures(chat)  # Gemini's, for another vendor: left out


class ResponsesParts(Exchange[T]):
    """What both Responses exchanges share: the request (and its chat view, for what the
    stages and selection read), the response's id and time, and how each attempt's wire
    request is built, native or translated."""

    __slots__ = ("chat", "created_at", "request", "response_id")

    operation = "responses"

    def __init__(
        self,
        request: ResponsesRequest,
        chat: ChatRequest,
        options: RequestOptions,
        extra: ExtraRequest,
        *,
        response_id: str,
        created_at: float,
    ) -> None:
        self.request, self.chat, self.options, self.extra = request, chat, options, extra
        self.response_id, self.created_at = response_id, created_at
        self.timing = "stream" if self.stream else "answer"

    def facts(self) -> RequestFacts:
        return RequestFacts(self.chat, self.options, stream=self.stream)

    def vary(
        self, request: ChatRequest | EmbeddingsRequest, source: ResponsesRequest | None
    ) -> None:
        assert isinstance(request, ChatRequest) and source is not None
        self.chat, self.request = request, source

    def build(self, adapter: ProviderAdapter, model: str) -> HttpRequest:
        stream = self.stream
        if adapter.native_responses:
            body = native_body(self.request, model, stream=stream)
            return adapter.responses_request(body, model, stream=stream, extra=self.extra)
        chat = _translatable(adapter, self.request)
        return adapter.chat_request(chat, model, stream=stream, extra=self.extra)


class ResponsesExchange(ResponsesParts[Response], WholeExchange[Response]):
    """A non-streamed Responses request."""

    __slots__ = ()

    described = "a Responses request"

    def parse(self, adapter: ProviderAdapter, body: bytes, model: str) -> Response:
        if adapter.native_responses:
            try:
                response = Response.model_validate_json(body)
            except ValidationError as exc:
                raise MalformedResponse(
                    f"unexpected Responses API body: {exc.errors()[0]['msg']}",
                    provider=adapter.name,
                    model=model,
                    status=200,
                    body=body,
                ) from exc
            response.id, response.created_at = self.response_id, self.created_at
            return response
        completion = adapter.parse_chat(body, model)
        return completion_to_response(
            completion, self.request, response_id=self.response_id, created_at=self.created_at
        )

    def usage(self, value: Response) -> TokenUsage | None:
        usage = value.usage
        return usage.normalised() if usage is not None else None

    def tier(self, value: Response) -> str | None:
        tier = value.__dict__.get("service_tier") or self.request.service_tier
        return tier if isinstance(tier, str) else None

    def stage_answer(self, answer: Answer, stage: str | None) -> Response:
        if isinstance(answer, Response):
            answer.id, answer.created_at = self.response_id, self.created_at
            return answer
        raise self.wrong_answer(answer, stage)


class EventDecoder(ABC):
    """Turns one upstream stream into Responses events (the interface both kinds share).

    `done` is true once the stream ended as the API ends one (a terminal event);
    `usage` and `text` describe the answer so far; `fail()` gives the events that end
    the stream as failed.
    """

    __slots__ = ()

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether the stream has ended with a terminal event."""

    @abstractmethod
    def feed(self, data: bytes) -> list[ResponseStreamEvent]:
        """Take one line (or raw chunk) of the body; return the events it completes."""

    def finish(self) -> list[ResponseStreamEvent]:
        """Called at the end of the body; returns the events still held back."""
        return []

    @property
    @abstractmethod
    def usage(self) -> TokenUsage | None:
        """The usage of the answer (reported, else estimated; None: not known)."""

    @property
    @abstractmethod
    def text(self) -> str:
        """The output text so far."""

    @abstractmethod
    def fail(self, message: str, code: str) -> list[ResponseStreamEvent]:
        """The events that end the stream as failed with `message`."""


class NativeEvents(EventDecoder):
    """The events of a provider that serves the Responses API, as it sent them (the
    response's id and creation time made llmroute's, as for a whole response)."""

    __slots__ = ("_created_at", "_decoder", "_last", "_number", "_text")

    def __init__(self, response_id: str, created_at: float) -> None:
        self._decoder = NativeEventDecoder(response_id=response_id)
        self._created_at = created_at
        self._last: Response | None = None  # the response the last lifecycle event carried
        self._number = -1
        self._text: list[str] = []

    @property
    def done(self) -> bool:
        return self._decoder.done

    def feed(self, data: bytes) -> list[ResponseStreamEvent]:
        events = self._decoder.feed(data)
        if events:
            self._note(events)
        return events

    def finish(self) -> list[ResponseStreamEvent]:
        events = self._decoder.finish()
        if events:
            self._note(events)
        return events

    def _note(self, events: list[ResponseStreamEvent]) -> None:
        for event in events:
            self._number = event.sequence_number
            values = event.__dict__
            if event.type == "response.output_text.delta":
                self._text.append(values.get("delta") or "")
            response = values.get("response")
            if isinstance(response, Response):
                response.created_at = self._created_at
                self._last = response

    @property
    def usage(self) -> TokenUsage | None:
        response = self._decoder.response
        usage = response.usage if response is not None else None
        return usage.normalised() if usage is not None else None

    @property
    def text(self) -> str:
        return "".join(self._text)

    def fail(self, message: str, code: str) -> list[ResponseStreamEvent]:
        last = self._last
        if last is None:
            return []
        failed = last.model_copy(
            update={
                "status": "failed",
                "error": ResponseError.model_construct(code=code, message=message),
            }
        )
        event = ResponseFailedEvent.model_construct(
            type="response.failed", sequence_number=self._number + 1, response=failed
        )
        return [event]


class TranslatedEvents(EventDecoder):
    """The events of a chat stream translated into the Responses API's."""

    __slots__ = ("_chat", "_decoder", "_done", "_events")

    def __init__(self, decoder: StreamDecoder, events: ChunkEvents, chat: ChatRequest) -> None:
        self._decoder, self._events, self._chat = decoder, events, chat
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def start(self) -> list[ResponseStreamEvent]:
        """The events that open the stream (created, in progress)."""
        return self._events.start()

    def feed(self, data: bytes) -> list[ResponseStreamEvent]:
        decoder = self._decoder
        chunks = decoder.feed(data)
        # most lines make one chunk, or none
        out = self._events.feed(chunks[0]) if len(chunks) == 1 else self._translate(chunks)
        if decoder.done and not self._done:
            out.extend(self._close())
        return out

    def finish(self) -> list[ResponseStreamEvent]:
        out = self._translate(self._decoder.finish())
        if (self._decoder.done or self._events.finished) and not self._done:
            out.extend(self._close())
        return out

    def _translate(self, chunks: list[ChatCompletionChunk]) -> list[ResponseStreamEvent]:
        out: list[ResponseStreamEvent] = []
        events = self._events
        for chunk in chunks:
            out.extend(events.feed(chunk))
        return out

    def _close(self) -> list[ResponseStreamEvent]:
        self._done = True
        return self._events.finish(self.usage)

    @property
    def usage(self) -> TokenUsage:
        return stream_usage(self._chat, self._decoder.usage, self.text, False)

    @property
    def text(self) -> str:
        return self._events.text

    def fail(self, message: str, code: str) -> list[ResponseStreamEvent]:
        self._done = True
        return self._events.fail(message, code)


class OpenedEvents(Opened[EventDecoder, ResponseStreamEvent]):
    """A stream of Responses events whose first content has arrived."""

    __slots__ = ()


class ResponsesStreamExchange(ResponsesParts[OpenedEvents]):
    """A streamed Responses request, opened up to its first content.

    A stream that fails before its first content (an error status, a
    ``response.failed`` or ``error`` event, a cut) fails over like any other
    attempt; what was read of it is never delivered.
    """

    __slots__ = ()

    stream = True
    described = "a Responses stream"

    def _decoder(
        self, adapter: ProviderAdapter, target: Target
    ) -> tuple[EventDecoder, list[ResponseStreamEvent]]:
        if adapter.native_responses:
            return NativeEvents(self.response_id, self.created_at), []
        chat = to_chat(self.request)
        events = ChunkEvents(
            self.request,
            response_id=self.response_id,
            created_at=self.created_at,
            model=target.model,
        )
        translated = TranslatedEvents(adapter.stream_decoder(chat, target.model), events, chat)
        return translated, translated.start()

    async def open(
        self, adapter: ProviderAdapter, response: HttpResponse, target: Target
    ) -> OpenedEvents:
        decoder, opening = self._decoder(adapter, target)
        if adapter.stream_framing == "lines" or adapter.native_responses:
            batches = response.aiter_line_batches()
        else:
            batches = single_batches(response.aiter_bytes())
        pending: deque[ResponseStreamEvent] = deque(opening)
        opened = partial(_opened, target=target, status=response.status)
        backlog = await read_to_content(batches, decoder, pending, opened)
        if backlog is not None:
            return OpenedEvents(response, batches, decoder, pending, backlog)
        events = decoder.finish()
        pending.extend(events)
        if opened(events):
            return OpenedEvents(response, no_batches(), decoder, pending)
        raise ProviderUnavailable(
            "the stream ended before its first content",
            provider=target.provider.name,
            model=target.model,
            status=response.status,
        )

    async def discard(self, value: OpenedEvents) -> None:
        await value.response.aclose()

    def stage_answer(self, answer: Answer, stage: str | None) -> list[ResponseStreamEvent]:
        """A stage's answer (the events to replay), with this request's id and time."""
        if isinstance(answer, list):
            events = cast(list[ResponseStreamEvent], answer)
            for event in events:
                response = event.__dict__.get("response")
                if isinstance(response, Response):
                    response.id, response.created_at = self.response_id, self.created_at
            return events
        raise self.wrong_answer(answer, stage)


def _opened(events: Sequence[ResponseStreamEvent], target: Target, status: int) -> bool:
    """Whether `events` hold the stream's first content; a failure before it raises (so
    the attempt fails over)."""
    for event in events:
        kind = event.type
        if kind in _FAILED_EVENTS:
            raise ProviderUnavailable(
                f"the stream failed before its first content: {_failure(event)}",
                provider=target.provider.name,
                model=target.model,
                status=status,
            )
        if kind in _CONTENT_EVENTS:
            return True
    return False


def _failure(event: ResponseStreamEvent) -> str:
    """What a ``response.failed`` or ``error`` event says went wrong."""
    values = event.__dict__
    response = values.get("response")
    error = response.error if isinstance(response, Response) else None
    if error is not None:
        return f"{error.code}: {error.message}"
    message, code = values.get("message"), values.get("code")
    return f"{code}: {message}" if code else str(message or event.type)

"""The ``chat.completions.stream(...)`` helper, as in the openai SDK.

A context manager whose stream yields typed events, in the order and on the
conditions of the SDK's ``ChatCompletionStreamState``: ``chunk`` (with the
completion so far), ``content.delta``/``.done``, ``refusal.delta``/``.done``,
``tool_calls.function.arguments.delta``/``.done``,
``logprobs.content.delta``/``.done`` and ``logprobs.refusal.delta``/``.done``;
and whose `get_final_completion()` returns the `ParsedChatCompletion` the
stream added up to. Content and tool arguments are parsed as
`llmroute._structured` parses a whole answer; with something to parse (a
response format type, a strict tool), a choice that ends at its token limit or
is stopped by the content filter raises `LengthFinishReasonError` /
`ContentFilterFinishReasonError` from the iteration, as the SDK does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ._structured import ParsedChatCompletion, Parsing, check_finish, parse_completion, partial_json
from ._types import ChatCompletion, ChatCompletionChunk, ChunkChoice, OpenAIObject, RouteInfo
from .cache.convert import chunks_to_completion

__all__ = [
    "AsyncChatCompletionStream",
    "AsyncChatCompletionStreamManager",
    "ChatCompletionStream",
    "ChatCompletionStreamManager",
    "ChatCompletionTokenLogprob",
    "ChunkEvent",
    "ContentDeltaEvent",
    "ContentDoneEvent",
    "FunctionToolCallArgumentsDeltaEvent",
    "FunctionToolCallArgumentsDoneEvent",
    "LogprobsContentDeltaEvent",
    "LogprobsContentDoneEvent",
    "LogprobsRefusalDeltaEvent",
    "LogprobsRefusalDoneEvent",
    "RefusalDeltaEvent",
    "RefusalDoneEvent",
    "StreamEvent",
    "TopLogprob",
]


# ---------------------------------------------------------------- log probabilities


class TopLogprob(OpenAIObject):
    """One of the most likely tokens at a position, with its log probability."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(OpenAIObject):
    """A token of the answer with its log probability (and the most likely alternatives),
    as the openai SDK's type of this name."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


def _logprobs(logprobs: Any, key: str) -> list[ChatCompletionTokenLogprob] | None:
    """A chunk's ``logprobs.content`` or ``.refusal`` (a dict from the wire), typed."""
    items = logprobs.get(key) if isinstance(logprobs, Mapping) else getattr(logprobs, key, None)
    if items is None:
        return None
    return [ChatCompletionTokenLogprob.model_validate(item) for item in items]


# ---------------------------------------------------------------- events


class ChunkEvent:
    """Every chunk, as it arrives; `snapshot` is the completion so far."""

    __slots__ = ("_count", "_state", "chunk")
    type: Literal["chunk"] = "chunk"

    def __init__(self, chunk: ChatCompletionChunk, state: _EventState, count: int) -> None:
        self.chunk = chunk
        self._state, self._count = state, count

    @property
    def snapshot(self) -> ChatCompletion:
        """The completion the chunks up to this one add up to (built when read)."""
        return self._state.snapshot(self._count)


@dataclass(frozen=True, slots=True)
class ContentDeltaEvent:
    """More content: `delta`, the content so far (`snapshot`), and what of it parses
    (`parsed`, from the partial JSON, when a type was requested)."""

    delta: str
    snapshot: str
    parsed: Any = None
    type: Literal["content.delta"] = "content.delta"


@dataclass(frozen=True, slots=True)
class ContentDoneEvent:
    """The content is complete (`parsed` into the requested type, if any)."""

    content: str
    parsed: Any = None
    type: Literal["content.done"] = "content.done"


@dataclass(frozen=True, slots=True)
class RefusalDeltaEvent:
    """More of a refusal."""

    delta: str
    snapshot: str
    type: Literal["refusal.delta"] = "refusal.delta"


@dataclass(frozen=True, slots=True)
class RefusalDoneEvent:
    """The refusal is complete."""

    refusal: str
    type: Literal["refusal.done"] = "refusal.done"


@dataclass(frozen=True, slots=True)
class FunctionToolCallArgumentsDeltaEvent:
    """More arguments of the tool call at `index`; `parsed_arguments` is what of them
    parses so far, for a strict tool (None otherwise)."""

    name: str
    index: int
    arguments: str
    parsed_arguments: Any
    arguments_delta: str
    type: Literal["tool_calls.function.arguments.delta"] = "tool_calls.function.arguments.delta"


@dataclass(frozen=True, slots=True)
class FunctionToolCallArgumentsDoneEvent:
    """The tool call at `index` is complete; `parsed_arguments` as `ParsedFunction` has
    them (the tool's model for a tool made with ``openai.pydantic_function_tool``)."""

    name: str
    index: int
    arguments: str
    parsed_arguments: Any
    type: Literal["tool_calls.function.arguments.done"] = "tool_calls.function.arguments.done"


@dataclass(frozen=True, slots=True)
class LogprobsContentDeltaEvent:
    """The log probabilities of more content tokens (`content`), and all so far."""

    content: list[ChatCompletionTokenLogprob]
    snapshot: list[ChatCompletionTokenLogprob]
    type: Literal["logprobs.content.delta"] = "logprobs.content.delta"


@dataclass(frozen=True, slots=True)
class LogprobsContentDoneEvent:
    """The log probabilities of every content token."""

    content: list[ChatCompletionTokenLogprob]
    type: Literal["logprobs.content.done"] = "logprobs.content.done"


@dataclass(frozen=True, slots=True)
class LogprobsRefusalDeltaEvent:
    """The log probabilities of more refusal tokens (`refusal`), and all so far."""

    refusal: list[ChatCompletionTokenLogprob]
    snapshot: list[ChatCompletionTokenLogprob]
    type: Literal["logprobs.refusal.delta"] = "logprobs.refusal.delta"


@dataclass(frozen=True, slots=True)
class LogprobsRefusalDoneEvent:
    """The log probabilities of every refusal token."""

    refusal: list[ChatCompletionTokenLogprob]
    type: Literal["logprobs.refusal.done"] = "logprobs.refusal.done"


StreamEvent = (
    ChunkEvent
    | ContentDeltaEvent
    | ContentDoneEvent
    | RefusalDeltaEvent
    | RefusalDoneEvent
    | FunctionToolCallArgumentsDeltaEvent
    | FunctionToolCallArgumentsDoneEvent
    | LogprobsContentDeltaEvent
    | LogprobsContentDoneEvent
    | LogprobsRefusalDeltaEvent
    | LogprobsRefusalDoneEvent
)


# ---------------------------------------------------------------- chunks into events


@dataclass(slots=True)
class _Call:
    name: str = ""
    arguments: str = ""
    parsed: Any = None  # the partial parse, for a strict tool


@dataclass(slots=True)
class _ChoiceState:
    """One choice so far, and which of its done events have been sent (the SDK's
    ``ChoiceEventState`` and its part of the snapshot)."""

    content: str | None = None
    refusal: str | None = None
    parsed: Any = None
    calls: dict[int, _Call] = field(default_factory=dict)
    logprobs: bool = False  # a chunk of this choice has had logprobs
    content_logprobs: list[ChatCompletionTokenLogprob] | None = None
    refusal_logprobs: list[ChatCompletionTokenLogprob] | None = None
    # what the latest chunk added to them
    added_content: list[ChatCompletionTokenLogprob] | None = None
    added_refusal: list[ChatCompletionTokenLogprob] | None = None
    finished: bool = False
    current_call: int | None = None
    sent: set[str] = field(default_factory=set)  # done events sent: content, refusal...
    done_calls: set[int] = field(default_factory=set)


def _add_logprobs(state: _ChoiceState, logprobs: Any) -> None:
    """Add a chunk's log probabilities to its choice's (the first chunk with any sets both
    lists, None where it had none; later ones extend them)."""
    added = state.added_content = _logprobs(logprobs, "content")
    refused = state.added_refusal = _logprobs(logprobs, "refusal")
    if not state.logprobs:
        state.logprobs = True
        state.content_logprobs, state.refusal_logprobs = added, refused
        return
    if added:
        state.content_logprobs = [*(state.content_logprobs or ()), *added]
    if refused:
        state.refusal_logprobs = [*(state.refusal_logprobs or ()), *refused]


class _EventState:
    """Turns chunks into events, as the openai SDK's ``ChatCompletionStreamState``: each
    chunk is added to its choice's state first, then its events are made."""

    def __init__(self, parsing: Parsing) -> None:
        self._parsing = parsing
        self._chunks: list[ChatCompletionChunk] = []
        self._choices: dict[int, _ChoiceState] = {}

    def snapshot(self, count: int | None = None) -> ChatCompletion:
        chunks = self._chunks if count is None else self._chunks[:count]
        return chunks_to_completion(chunks)

    def events(self, chunk: ChatCompletionChunk) -> list[StreamEvent]:
        self._chunks.append(chunk)
        for choice in chunk.choices:
            self._add(self._choices.setdefault(choice.index, _ChoiceState()), choice)
        events: list[StreamEvent] = [ChunkEvent(chunk, self, len(self._chunks))]
        for choice in chunk.choices:
            self._choice_events(self._choices[choice.index], choice, events)
        return events

    def _add(self, state: _ChoiceState, choice: ChunkChoice) -> None:
        """Add `choice`'s delta to its state (raising for a finish that leaves nothing to
        parse, when something is to be parsed)."""
        parsing, delta = self._parsing, choice.delta
        if delta.content is not None:
            state.content = (state.content or "") + delta.content
        if delta.refusal is not None:
            state.refusal = (state.refusal or "") + delta.refusal
        if choice.finish_reason:
            state.finished = True
            if parsing.parseable:
                check_finish(choice.finish_reason, self.snapshot())
        content = state.content
        if content and not state.refusal and parsing.rich_format is not None and content.strip():
            state.parsed = partial_json(content)
        for fragment in delta.tool_calls or ():
            call = state.calls.setdefault(fragment.index, _Call())
            function = fragment.function
            if function is not None:
                call.name += function.name or ""
                call.arguments += function.arguments or ""
            if call.arguments and parsing.strict(call.name):
                call.parsed = partial_json(call.arguments)
        if choice.logprobs is not None:
            _add_logprobs(state, choice.logprobs)

    def _choice_events(
        self, state: _ChoiceState, choice: ChunkChoice, events: list[StreamEvent]
    ) -> None:
        delta = choice.delta
        if delta.content is not None and state.content is not None:
            events.append(ContentDeltaEvent(delta.content, state.content, state.parsed))
        if delta.refusal is not None and state.refusal is not None:
            events.append(RefusalDeltaEvent(delta.refusal, state.refusal))
        for fragment in delta.tool_calls or ():
            function = fragment.function
            if function is not None:
                call = state.calls[fragment.index]
                events.append(FunctionToolCallArgumentsDeltaEvent(
                    call.name, fragment.index, call.arguments, call.parsed,
                    function.arguments or "",
                ))  # fmt: skip
        if choice.logprobs is not None and state.logprobs:
            added, snapshot = state.added_content, state.content_logprobs
            if added and snapshot:
                events.append(LogprobsContentDeltaEvent(added, list(snapshot)))
            added, snapshot = state.added_refusal, state.refusal_logprobs
            if added and snapshot:
                events.append(LogprobsRefusalDeltaEvent(added, list(snapshot)))
        self._done_events(state, choice, events)

    def _done_events(
        self, state: _ChoiceState, choice: ChunkChoice, events: list[StreamEvent]
    ) -> None:
        """The content's done events when the choice finishes or a tool call starts; a tool
        call's when the next one starts or the choice finishes (each once)."""
        if state.finished:
            self._content_done(state, events)
            self._call_done(state, events)
        for fragment in choice.delta.tool_calls or ():
            if state.current_call != fragment.index:
                self._content_done(state, events)
                self._call_done(state, events)
            state.current_call = fragment.index

    def _content_done(self, state: _ChoiceState, events: list[StreamEvent]) -> None:
        sent = state.sent
        if state.content and "content" not in sent:
            sent.add("content")
            state.parsed = self._parsing.content(state.content, state.refusal)
            events.append(ContentDoneEvent(state.content, state.parsed))
        if state.refusal is not None and "refusal" not in sent:
            sent.add("refusal")
            events.append(RefusalDoneEvent(state.refusal))
        if state.logprobs and state.content_logprobs is not None and "lp.content" not in sent:
            sent.add("lp.content")
            events.append(LogprobsContentDoneEvent(list(state.content_logprobs)))
        if state.logprobs and state.refusal_logprobs is not None and "lp.refusal" not in sent:
            sent.add("lp.refusal")
            events.append(LogprobsRefusalDoneEvent(list(state.refusal_logprobs)))

    def _call_done(self, state: _ChoiceState, events: list[StreamEvent]) -> None:
        index = state.current_call
        if index is None or index in state.done_calls:
            return
        state.done_calls.add(index)
        call = state.calls[index]
        parsed = self._parsing.arguments(call.name, call.arguments)
        events.append(FunctionToolCallArgumentsDoneEvent(call.name, index, call.arguments, parsed))

    def final(self, info: RouteInfo | None) -> ParsedChatCompletion[Any]:
        if not self._chunks:
            raise RuntimeError("the stream has not delivered any chunk yet")
        completion = self.snapshot()
        if info is not None:
            completion.attach_route_info(info)
        return parse_completion(completion, self._parsing)


# ---------------------------------------------------------------- streams and managers


class _HelperStream:
    """What both streams of events have: the router's stream, and the events' state."""

    def __init__(self, stream: Any, parsing: Parsing) -> None:
        self._stream = stream
        self._state = _EventState(parsing)

    @property
    def llmroute(self) -> RouteInfo:
        """What llmroute did for this request (final once the stream has ended)."""
        info: RouteInfo = self._stream.llmroute
        return info

    @property
    def current_completion_snapshot(self) -> ChatCompletion:
        """The completion the chunks received so far add up to."""
        return self._state.snapshot()


class AsyncChatCompletionStream(_HelperStream):
    """The events of a streamed completion (``async for event in stream``)."""

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        async for chunk in self._stream:
            for event in self._state.events(chunk):
                yield event

    async def until_done(self) -> AsyncChatCompletionStream:
        """Read the stream to its end."""
        async for _ in self:
            pass
        return self

    async def get_final_completion(self) -> ParsedChatCompletion[Any]:
        """Read the stream to its end; the `ParsedChatCompletion` it added up to."""
        await self.until_done()
        return self._state.final(self.llmroute)

    async def close(self) -> None:
        """Stop reading and release the connection."""
        await self._stream.aclose()


class AsyncChatCompletionStreamManager:
    """``async with router.chat.completions.stream(...) as stream``: the request is made
    on entry and the stream closed on exit."""

    def __init__(self, open_stream: Callable[[], Awaitable[Any]], parsing: Parsing) -> None:
        self._open = open_stream
        self._parsing = parsing
        self._stream: AsyncChatCompletionStream | None = None

    async def __aenter__(self) -> AsyncChatCompletionStream:
        self._stream = AsyncChatCompletionStream(await self._open(), self._parsing)
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.close()


class ChatCompletionStream(_HelperStream):
    """The events of a streamed completion (``for event in stream``; blocking)."""

    def __iter__(self) -> Iterator[StreamEvent]:
        for chunk in self._stream:
            yield from self._state.events(chunk)

    def until_done(self) -> ChatCompletionStream:
        """Read the stream to its end."""
        for _ in self:
            pass
        return self

    def get_final_completion(self) -> ParsedChatCompletion[Any]:
        """Read the stream to its end; the `ParsedChatCompletion` it added up to."""
        self.until_done()
        return self._state.final(self.llmroute)

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._stream.close()


class ChatCompletionStreamManager:
    """``with router.chat.completions.stream(...) as stream`` (blocking)."""

    def __init__(self, open_stream: Callable[[], Any], parsing: Parsing) -> None:
        self._open = open_stream
        self._parsing = parsing
        self._stream: ChatCompletionStream | None = None

    def __enter__(self) -> ChatCompletionStream:
        self._stream = ChatCompletionStream(self._open(), self._parsing)
        return self._stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()

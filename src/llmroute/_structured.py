"""Structured outputs and the stream helper: ``chat.completions.parse`` and ``.stream``.

As in the openai SDK: `parse(response_format=SomeModel)` sends the model's JSON
schema as a strict ``json_schema`` response format and returns a
`ParsedChatCompletion` whose messages carry `parsed` (None when the model
refused: `refusal` says why). `stream(...)` is a context manager whose stream
yields typed events (``chunk``, ``content.delta``, ``content.done``,
``refusal.delta``, ``refusal.done``,
``tool_calls.function.arguments.delta``/``.done``) and whose
`get_final_completion()` returns the `ParsedChatCompletion` the stream added up to.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import TypeAdapter
from pydantic_core import from_json

from ._types import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, Choice, RouteInfo
from .cache.convert import chunks_to_completion

__all__ = [
    "AsyncChatCompletionStream",
    "AsyncChatCompletionStreamManager",
    "ChatCompletionStream",
    "ChatCompletionStreamManager",
    "ChunkEvent",
    "ContentDeltaEvent",
    "ContentDoneEvent",
    "FunctionToolCallArgumentsDeltaEvent",
    "FunctionToolCallArgumentsDoneEvent",
    "ParsedChatCompletion",
    "ParsedChatCompletionMessage",
    "ParsedChoice",
    "RefusalDeltaEvent",
    "RefusalDoneEvent",
    "parse_completion",
    "response_format_param",
]

ContentT = TypeVar("ContentT")


# ---------------------------------------------------------------- parsed completions


class ParsedChatCompletionMessage(ChatCompletionMessage, Generic[ContentT]):
    """An assistant message with its content `parsed` into the requested type (None when
    the model refused, or no type was requested)."""

    parsed: ContentT | None = None


class ParsedChoice(Choice, Generic[ContentT]):
    """A choice whose message is parsed."""

    message: ParsedChatCompletionMessage[ContentT]


class ParsedChatCompletion(ChatCompletion, Generic[ContentT]):
    """A chat completion whose choices' messages are parsed, as the openai SDK's
    ``ParsedChatCompletion``."""

    choices: list[ParsedChoice[ContentT]]  # type: ignore[assignment]


def _strict(schema: Any) -> Any:
    """`schema` as OpenAI's strict mode wants it: every object closed and every property
    required (an optional field stays nullable), no ``default``."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items() if key != "default"}
    properties = out.get("properties")
    if out.get("type") == "object" or isinstance(properties, dict):
        out["additionalProperties"] = False
        out["required"] = list(properties) if isinstance(properties, dict) else []
    if "$ref" in out and len(out) > 1:  # a $ref with siblings: OpenAI wants it alone
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _is_type(response_format: object) -> bool:
    return isinstance(response_format, type) or hasattr(response_format, "__origin__")


def response_format_param(response_format: object) -> object:
    """The ``response_format`` to send: a type's strict JSON schema, or `response_format`
    itself when it is already a parameter (a dict)."""
    if not _is_type(response_format):
        return response_format
    schema = TypeAdapter[Any](cast(Any, response_format)).json_schema()
    name = getattr(response_format, "__name__", "response")
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": _strict(copy.deepcopy(schema)), "strict": True},
    }


def _parse_content(content: str | None, response_format: object) -> Any:
    if content is None or not _is_type(response_format):
        return None
    # pydantic's ValidationError when the content does not fit (a truncated answer, say)
    return TypeAdapter[Any](cast(Any, response_format)).validate_json(content)


def parse_completion(
    completion: ChatCompletion, response_format: object
) -> ParsedChatCompletion[Any]:
    """`completion` with every message's content parsed into `response_format` (a type);
    a refusal leaves `parsed` None."""
    data = completion.model_dump(exclude_unset=True)
    for choice, raw in zip(completion.choices, data["choices"], strict=True):
        message = choice.message
        parsed = None if message.refusal else _parse_content(message.content, response_format)
        raw["message"]["parsed"] = parsed
    result = ParsedChatCompletion[Any].model_validate(data)
    info = completion.llmroute
    if info.request_id:
        result.attach_route_info(info)
    return result


# ---------------------------------------------------------------- stream events


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
    """More arguments of the tool call at `index`."""

    name: str
    index: int
    arguments: str
    parsed_arguments: Any
    arguments_delta: str
    type: Literal["tool_calls.function.arguments.delta"] = "tool_calls.function.arguments.delta"


@dataclass(frozen=True, slots=True)
class FunctionToolCallArgumentsDoneEvent:
    """The tool call at `index` is complete."""

    name: str
    index: int
    arguments: str
    parsed_arguments: Any
    type: Literal["tool_calls.function.arguments.done"] = "tool_calls.function.arguments.done"


StreamEvent = (
    ChunkEvent
    | ContentDeltaEvent
    | ContentDoneEvent
    | RefusalDeltaEvent
    | RefusalDoneEvent
    | FunctionToolCallArgumentsDeltaEvent
    | FunctionToolCallArgumentsDoneEvent
)


def _partial(text: str) -> Any:
    try:
        return from_json(text, allow_partial=True)
    except ValueError:
        return None


@dataclass(slots=True)
class _ChoiceState:
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [name, arguments]
    open_call: int | None = None


class _EventState:
    """Turns chunks into events, as the openai SDK's ``ChatCompletionStreamState``."""

    def __init__(self, response_format: object) -> None:
        self._format = response_format if _is_type(response_format) else None
        self._chunks: list[ChatCompletionChunk] = []
        self._choices: dict[int, _ChoiceState] = {}

    def snapshot(self, count: int | None = None) -> ChatCompletion:
        chunks = self._chunks if count is None else self._chunks[:count]
        return chunks_to_completion(chunks)

    def events(self, chunk: ChatCompletionChunk) -> list[StreamEvent]:
        self._chunks.append(chunk)
        events: list[StreamEvent] = [ChunkEvent(chunk, self, len(self._chunks))]
        for choice in chunk.choices:
            state = self._choices.setdefault(choice.index, _ChoiceState())
            delta = choice.delta
            if delta.content:
                state.content.append(delta.content)
                text = "".join(state.content)
                parsed = _partial(text) if self._format is not None else None
                events.append(ContentDeltaEvent(delta.content, text, parsed))
            if delta.refusal:
                state.refusal.append(delta.refusal)
                events.append(RefusalDeltaEvent(delta.refusal, "".join(state.refusal)))
            for fragment in delta.tool_calls or ():
                if state.open_call is not None and state.open_call != fragment.index:
                    events.append(self._call_done(state, state.open_call))
                state.open_call = fragment.index
                call = state.calls.setdefault(fragment.index, ["", ""])
                function = fragment.function
                if function is not None:
                    call[0] += function.name or ""
                    call[1] += function.arguments or ""
                    events.append(FunctionToolCallArgumentsDeltaEvent(
                        call[0], fragment.index, call[1], _partial(call[1]),
                        function.arguments or "",
                    ))  # fmt: skip
            if choice.finish_reason is not None:
                events.extend(self._choice_done(state))
        return events

    def _call_done(self, state: _ChoiceState, index: int) -> FunctionToolCallArgumentsDoneEvent:
        name, arguments = state.calls[index]
        return FunctionToolCallArgumentsDoneEvent(name, index, arguments, _partial(arguments))

    def _choice_done(self, state: _ChoiceState) -> list[StreamEvent]:
        done: list[StreamEvent] = []
        if state.open_call is not None:
            done.append(self._call_done(state, state.open_call))
            state.open_call = None
        if state.content:
            text = "".join(state.content)
            done.append(ContentDoneEvent(text, _parse_content(text, self._format)))
        if state.refusal:
            done.append(RefusalDoneEvent("".join(state.refusal)))
        return done

    def final(self, info: RouteInfo | None) -> ParsedChatCompletion[Any]:
        if not self._chunks:
            raise RuntimeError("the stream has not delivered any chunk yet")
        completion = self.snapshot()
        if info is not None:
            completion.attach_route_info(info)
        return parse_completion(completion, self._format)


class AsyncChatCompletionStream:
    """The events of a streamed completion (``async for event in stream``)."""

    def __init__(self, stream: Any, response_format: object) -> None:
        self._stream = stream
        self._state = _EventState(response_format)

    @property
    def llmroute(self) -> RouteInfo:
        """What llmroute did for this request (final once the stream has ended)."""
        info: RouteInfo = self._stream.llmroute
        return info

    @property
    def current_completion_snapshot(self) -> ChatCompletion:
        """The completion the chunks received so far add up to."""
        return self._state.snapshot()

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

    def __init__(self, open_stream: Callable[[], Awaitable[Any]], response_format: object):
        self._open = open_stream
        self._format = response_format
        self._stream: AsyncChatCompletionStream | None = None

    async def __aenter__(self) -> AsyncChatCompletionStream:
        self._stream = AsyncChatCompletionStream(await self._open(), self._format)
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.close()


class ChatCompletionStream:
    """The events of a streamed completion (``for event in stream``; blocking)."""

    def __init__(self, stream: Any, response_format: object) -> None:
        self._stream = stream
        self._state = _EventState(response_format)

    @property
    def llmroute(self) -> RouteInfo:
        """What llmroute did for this request (final once the stream has ended)."""
        info: RouteInfo = self._stream.llmroute
        return info

    @property
    def current_completion_snapshot(self) -> ChatCompletion:
        """The completion the chunks received so far add up to."""
        return self._state.snapshot()

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

    def __init__(self, open_stream: Callable[[], Any], response_format: object) -> None:
        self._open = open_stream
        self._format = response_format
        self._stream: ChatCompletionStream | None = None

    def __enter__(self) -> ChatCompletionStream:
        self._stream = ChatCompletionStream(self._open(), self._format)
        return self._stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()


def stream_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], object]:
    """`params` for ``create(stream=True)``, with a type `response_format` turned into its
    schema; and the `response_format` to parse with."""
    out = dict(params)
    response_format = out.get("response_format")
    if response_format is not None:
        out["response_format"] = response_format_param(response_format)
    return out, response_format

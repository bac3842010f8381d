"""OpenAI-shaped response models (and, from `llmroute._route_info`, llmroute's routing metadata).

The response models follow the Chat Completions and Embeddings schema exactly:
same field names, same nesting, same `object` values. Unknown fields a
provider adds are kept (``extra="allow"``) so nothing is lost in a round trip.
llmroute's own information never mixes into those fields: it rides beside them
as the typed `llmroute` attribute (a `RouteInfo`), which `model_dump()` leaves
out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    Self,
    TypeVar,
    get_origin,
    overload,
)

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter
from pydantic_core import SchemaValidator, to_json

# the routing metadata the response models carry, kept importable from here
from ._route_info import AttemptInfo, AttemptKind, RouteInfo, TokenUsage

__all__ = [
    "AttemptInfo",
    "AttemptKind",
    "ChatCompletion",
    "ChatCompletionAudio",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageCustomToolCall",
    "ChatCompletionMessageToolCall",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChunkChoice",
    "CompletionUsage",
    "CreateEmbeddingResponse",
    "CustomCall",
    "ExtraField",
    "Embedding",
    "EmbeddingUsage",
    "FunctionCall",
    "Model",
    "ModelList",
    "OpenAIObject",
    "RouteInfo",
    "RoutedObject",
    "TokenUsage",
    "ToolCall",
    "tool_call_kind",
]

T = TypeVar("T")


class ExtraField(Generic[T]):
    """A field of the OpenAI schema that llmroute keeps among a model's extras.

    Reading it gives the value the answer carried, validated into `kind` (None when
    absent); setting it (or passing it to the constructor) stores it there. Unlike a
    declared field, it costs nothing when absent (no default to fill in on each of a
    stream's chunks) and is serialised only when present, so llmroute's own answers
    carry no ``"audio": null`` that OpenAI would not send.
    """

    def __init__(self, kind: Any) -> None:
        self._kind = kind
        self._adapter: TypeAdapter[T] | None = None
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: BaseModel, owner: type | None = None) -> T | None: ...

    def __get__(self, obj: BaseModel | None, owner: type | None = None) -> T | Self | None:
        if obj is None:
            return self
        extra = obj.__pydantic_extra__
        raw = extra.get(self.name) if extra else None
        if raw is None:
            return None
        adapter = self._adapter
        if adapter is None:
            adapter = self._adapter = TypeAdapter(self._kind)
        return adapter.validate_python(raw)

    def __set__(self, obj: BaseModel, value: T | None) -> None:
        extra = obj.__pydantic_extra__
        if extra is None:
            extra = {}
            object.__setattr__(obj, "__pydantic_extra__", extra)
        extra[self.name] = value


_OPEN = ConfigDict(extra="allow", defer_build=True, ignored_types=(ExtraField,))


def _is_none(value: object) -> bool:
    return value is None


#: The default of a field OpenAI leaves out of its JSON when it has no value (a message's
#: `tool_calls`, a delta's fields, a chunk's `usage`, usage details), unlike those it
#: sends as null (`refusal`, `logprobs`, `finish_reason`...; see tests/fixtures/openai):
#: an answer llmroute builds itself (a translation, a cache hit, the mock) is then
#: serialised as OpenAI would send it, and a relayed one keeps the provider's fields.
_OMITTED_IF_NONE: Any = Field(default=None, exclude_if=_is_none)


class OpenAIObject(BaseModel):
    """The base of the OpenAI-shaped models: `to_dict` and `to_json` as in the openai SDK.

    As there, fields left unset (not in the provider's answer) are left out by default,
    so the output is the answer as it came. The constant fields (`object`, `role`,
    `type`: required by the schema, defaulted here) are always in it, even in an object
    llmroute built itself, so its `to_dict()` validates against the SDK's types.
    """

    #: The constant fields (a `Literal` with a default) of each model.
    _constants: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._constants = frozenset(
            name
            for name, info in cls.model_fields.items()
            if get_origin(info.annotation) is Literal and not info.is_required()
        )

    def to_dict(
        self,
        *,
        mode: Literal["json", "python"] = "python",
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> dict[str, object]:
        """This object as a dict, as ``openai.BaseModel.to_dict`` (`use_api_names`: dump
        by alias; llmroute's field names are the API's)."""
        dump = self.model_dump(
            mode=mode,
            by_alias=use_api_names,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
            warnings=warnings,
        )
        if exclude_unset or exclude_defaults:
            _add_constants(self, dump)
        return dump

    def to_json(
        self,
        *,
        indent: int | None = 2,
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> str:
        """This object as JSON, as ``openai.BaseModel.to_json`` (indented by default)."""
        dump = self.to_dict(
            mode="json",
            use_api_names=use_api_names,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
            warnings=warnings,
        )
        return to_json(dump, indent=indent).decode()


def _add_constants(model: OpenAIObject, dump: dict[str, Any]) -> None:
    """Put back in `dump` the constant fields of `model` (and of the models it holds) that
    a dump without unset or default values left out."""
    for name in model._constants:
        if name not in dump:
            dump[name] = getattr(model, name)
    for name, value in dump.items():
        held = model.__dict__.get(name)
        if isinstance(held, OpenAIObject) and isinstance(value, dict):
            _add_constants(held, value)
        elif isinstance(held, list) and isinstance(value, list):
            for item, item_dump in zip(held, value, strict=False):
                if isinstance(item, OpenAIObject) and isinstance(item_dump, dict):
                    _add_constants(item, item_dump)


def validator(model: type[BaseModel]) -> SchemaValidator:
    """`model`'s pydantic-core validator, built now if it was deferred (`defer_build`).

    Calling it directly spares the Python around `model_validate_json` (a tenth of a
    small model's parse). Until a deferred model is built, pydantic's `MockValSer` stands
    in for its validator and builds it through frame inspection, which fails from a
    shallow call stack; this builds it plainly instead.

    Fast path: a 20-chunk stream 2.48M -> 2.38M instructions, non-streamed 520.2k ->
    518.8k (callgrind, in-process gateway, 18610be). Oracle: tests/test_fast_paths.py.
    """
    found = model.__pydantic_validator__
    if isinstance(found, SchemaValidator):
        return found
    model.model_rebuild()
    return model.__pydantic_validator__  # type: ignore[return-value]


# ---------------------------------------------------------------- chat completions


class FunctionCall(OpenAIObject):
    """A function name and its arguments as a JSON string."""

    model_config = _OPEN
    name: str
    arguments: str


class ChatCompletionMessageToolCall(OpenAIObject):
    """A function tool call in an assistant message."""

    model_config = _OPEN
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class CustomCall(OpenAIObject):
    """A custom tool's name and the free-form input the model gave it."""

    model_config = _OPEN
    name: str
    input: str


class ChatCompletionMessageCustomToolCall(OpenAIObject):
    """A call of a custom tool (``type: "custom"``) in an assistant message."""

    model_config = _OPEN
    id: str
    type: Literal["custom"]
    custom: CustomCall

    @property
    def function(self) -> FunctionCall:
        """The call seen as a function call (its input as the arguments), for code that
        reads every call's name and arguments."""
        return FunctionCall(name=self.custom.name, arguments=self.custom.input)


def tool_call_kind(value: Any) -> str:
    """Which kind of tool call `value` (a dict or a model) is: ``custom`` or ``function``."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom" if kind == "custom" else "function"


#: A tool call in an assistant message: a function's or a custom tool's.
ToolCall = Annotated[
    Annotated[ChatCompletionMessageToolCall, Tag("function")]
    | Annotated[ChatCompletionMessageCustomToolCall, Tag("custom")],
    Discriminator(tool_call_kind),
]


class ChatCompletionAudio(OpenAIObject):
    """Audio the model answered with (``modalities: ["audio"]``)."""

    model_config = _OPEN
    id: str
    data: str
    expires_at: int
    transcript: str


class ChatCompletionMessage(OpenAIObject):
    """The assistant message of a choice.

    `function_call` is legacy function calling's (``functions=``); `annotations` are
    web search citations; `audio` is an audio answer.
    """

    model_config = _OPEN
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = _OMITTED_IF_NONE
    function_call: ClassVar[ExtraField[FunctionCall]] = ExtraField(FunctionCall)
    annotations: ClassVar[ExtraField[list[dict[str, Any]]]] = ExtraField(list[dict[str, Any]])
    audio: ClassVar[ExtraField[ChatCompletionAudio]] = ExtraField(ChatCompletionAudio)


class Choice(OpenAIObject):
    """One completion choice."""

    model_config = _OPEN
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None = None
    logprobs: Any = None


class PromptTokensDetails(OpenAIObject):
    """Breakdown of prompt tokens."""

    model_config = _OPEN
    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(OpenAIObject):
    """Breakdown of completion tokens."""

    model_config = _OPEN
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class CompletionUsage(OpenAIObject):
    """Token usage as OpenAI reports it."""

    model_config = _OPEN
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = _OMITTED_IF_NONE
    completion_tokens_details: CompletionTokensDetails | None = _OMITTED_IF_NONE

    def normalised(self, *, estimated: bool = False) -> TokenUsage:
        """This usage as a `TokenUsage` (OpenAI's prompt tokens already include cached ones).

        Cache writes are read from ``prompt_tokens_details.cache_write_tokens``
        (OpenRouter's name, also used by llmroute's Anthropic and Bedrock adapters).
        """
        ptd = self.prompt_tokens_details
        ctd = self.completion_tokens_details
        if ptd is None and ctd is None:  # no details: positional, as keywords bind slower
            return TokenUsage(self.prompt_tokens, self.completion_tokens, 0, 0, 0, estimated)
        written = (ptd.model_extra or {}).get("cache_write_tokens") if ptd else None
        return TokenUsage(
            input=self.prompt_tokens,
            output=self.completion_tokens,
            cache_write=written if isinstance(written, int) else 0,
            cache_read=(ptd.cached_tokens or 0) if ptd else 0,
            reasoning=(ctd.reasoning_tokens or 0) if ctd else 0,
            estimated=estimated,
        )


_NO_ROUTE = RouteInfo(request_id="")


class RoutedObject(OpenAIObject):
    """An answer that carries llmroute's metadata beside its schema (`ChatCompletion`,
    `CreateEmbeddingResponse`, the Responses API's `Response`): the `llmroute` attribute,
    which dumps leave out."""

    # A slot, not a pydantic private attribute: those cost ~5 µs per instance to set up.
    __slots__ = ("_route_info",)

    @property
    def llmroute(self) -> RouteInfo:
        """What llmroute did for this request (not part of the OpenAI schema or dumps)."""
        info: RouteInfo = getattr(self, "_route_info", _NO_ROUTE)
        return info

    def attach_route_info(self, info: RouteInfo) -> None:
        """Attach llmroute's metadata (done by the router before the response is returned)."""
        _set_route_info(self, info)  # the slot's own setter: no attribute lookup


#: The `_route_info` slot's setter, called directly (pydantic's `__setattr__` would refuse
#: a name that is not a field; `object.__setattr__` looks the slot up each time).
_set_route_info: Callable[[RoutedObject, RouteInfo], None] = RoutedObject.__dict__[
    "_route_info"
].__set__


class ChatCompletion(RoutedObject):
    """A chat completion, exactly as the Chat Completions API returns it."""

    model_config = _OPEN
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    metadata: ClassVar[ExtraField[dict[str, str]]] = ExtraField(dict[str, str])
    moderation: ClassVar[ExtraField[dict[str, Any]]] = ExtraField(dict[str, Any])


class ChoiceDeltaFunction(OpenAIObject):
    """A fragment of a streamed tool call's function."""

    model_config = _OPEN
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(OpenAIObject):
    """A fragment of a streamed tool call; fragments share an `index`."""

    model_config = _OPEN
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChoiceDeltaFunction | None = None


class ChoiceDelta(OpenAIObject):
    """What one chunk adds to a choice (`function_call`: legacy function calling's)."""

    model_config = _OPEN
    role: str | None = _OMITTED_IF_NONE
    content: str | None = _OMITTED_IF_NONE
    refusal: str | None = _OMITTED_IF_NONE
    tool_calls: list[ChoiceDeltaToolCall] | None = _OMITTED_IF_NONE
    function_call: ClassVar[ExtraField[ChoiceDeltaFunction]] = ExtraField(ChoiceDeltaFunction)
    audio: ClassVar[ExtraField[dict[str, Any]]] = ExtraField(dict[str, Any])


class ChunkChoice(OpenAIObject):
    """One choice inside a stream chunk."""

    model_config = _OPEN
    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletionChunk(OpenAIObject):
    """One `chat.completion.chunk` of a streamed completion."""

    # The provider's own JSON for the chunk, when it was decoded from one line of it: the
    # gateway forwards it instead of serialising the chunk again (nothing changes chunks).
    __slots__ = ("_raw",)

    model_config = _OPEN
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = _OMITTED_IF_NONE
    system_fingerprint: str | None = None
    service_tier: str | None = None
    moderation: ClassVar[ExtraField[dict[str, Any]]] = ExtraField(dict[str, Any])
    obfuscation: ClassVar[ExtraField[str]] = ExtraField(str)


def provider_json(chunk: ChatCompletionChunk) -> bytes | None:
    """The one-line JSON the provider sent for `chunk`, if it was decoded from one.

    Fast path: the gateway forwards it instead of serialising the chunk again (with the
    relay's trampoline and batching, a 20-chunk gateway stream 3.20M -> 2.61M
    instructions; callgrind, 135722e). Oracle: tests/test_fast_paths.py.
    """
    try:
        # the slot itself: getattr() on an unset slot falls back to pydantic's __getattr__,
        # which builds an error message before it raises
        raw: bytes = _RAW.__get__(chunk)
    except AttributeError:
        return None
    return raw


def keep_provider_json(chunk: ChatCompletionChunk, data: bytes) -> None:
    """Remember `data`, the JSON `chunk` was validated from: kept only when it is one line
    (no line break of any kind: SSE ends a line at ``\r`` too) and states every field the
    schema requires itself, so forwarding it is the same as serialising the chunk."""
    fields = chunk.__pydantic_fields_set__  # not the property: a frame fewer per chunk
    if fields >= _CHUNK_FIELDS and b"\n" not in data and b"\r" not in data:
        object.__setattr__(chunk, "_raw", data)


#: The slot holding a chunk's own JSON (read without pydantic's attribute fallback).
_RAW = ChatCompletionChunk.__dict__["_raw"]
#: The fields a forwarded chunk's own JSON must have set (`object` has a default).
_CHUNK_FIELDS = frozenset({"id", "object", "created", "model", "choices"})


# ---------------------------------------------------------------- models


class Model(OpenAIObject):
    """A model the router accepts, as ``GET /v1/models`` lists it."""

    model_config = _OPEN
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    shutdown_date: ClassVar[ExtraField[str]] = ExtraField(str)


class ModelList(OpenAIObject):
    """The models a router accepts; iterating it yields the `Model` entries."""

    model_config = _OPEN
    object: Literal["list"] = "list"
    data: list[Model]

    def __iter__(self) -> Iterator[Model]:  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


# ---------------------------------------------------------------- embeddings


class Embedding(OpenAIObject):
    """One embedding vector (a base64 string when `encoding_format="base64"`)."""

    model_config = _OPEN
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(OpenAIObject):
    """Token usage of an embeddings request."""

    model_config = _OPEN
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(RoutedObject):
    """An embeddings response, exactly as the Embeddings API returns it."""

    model_config = _OPEN
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None = None

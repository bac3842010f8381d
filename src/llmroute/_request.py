"""The validated request models: Chat Completions and Embeddings parameters.

`create()` keyword arguments are validated into these models before anything
touches the network. Parameters llmroute does not interpret are kept
(``extra="allow"``) and passed through to OpenAI-compatible providers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from ._construct import construct
from ._errors import RequestError
from ._types import validator

__all__ = [
    "AssistantMessage",
    "ChatRequest",
    "ContentPart",
    "CustomTool",
    "CustomToolCallParam",
    "CustomToolDefinition",
    "DEFAULT_OPTIONS",
    "NO_CHAT_FIELDS",
    "DeveloperMessage",
    "EmbeddingsRequest",
    "FunctionDefinition",
    "FunctionMessage",
    "FunctionTool",
    "FunctionToolCallParam",
    "ImagePart",
    "Message",
    "RequestOptions",
    "SystemMessage",
    "TextPart",
    "Tool",
    "ToolCallParam",
    "ToolMessage",
    "UserMessage",
    "plain_chat_request",
    "plain_message",
    "plain_request",
    "plain_role",
    "plain_shape",
    "trusted_message",
    "validate_chat_request",
    "validate_embeddings_request",
    "validate_options",
]

_OPEN = ConfigDict(extra="allow", defer_build=True)
_CLOSED = ConfigDict(extra="forbid", defer_build=True)


class TextPart(BaseModel):
    """A text content part."""

    model_config = _OPEN
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    """An image reference: an https URL or a ``data:`` URL."""

    model_config = _OPEN
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    """An image content part."""

    model_config = _OPEN
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(BaseModel):
    """Base64 audio data and its format."""

    model_config = _OPEN
    data: str
    format: str


class AudioPart(BaseModel):
    """An audio content part."""

    model_config = _OPEN
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(BaseModel):
    """A file content part."""

    model_config = _OPEN
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(BaseModel):
    """A refusal content part (assistant messages)."""

    model_config = _OPEN
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")
]
Content = str | list[ContentPart]


class FunctionCallParam(BaseModel):
    """A function name and its JSON-string arguments in an assistant message."""

    model_config = _OPEN
    name: str
    arguments: str


class FunctionToolCallParam(BaseModel):
    """A function tool call the assistant made, as sent back in the conversation."""

    model_config = _OPEN
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallParam


class CustomCallParam(BaseModel):
    """A custom tool's name and the free-form input the model gave it."""

    model_config = _OPEN
    name: str
    input: str


class CustomToolCallParam(BaseModel):
    """A call of a custom tool (``type: "custom"``), as sent back in the conversation."""

    model_config = _OPEN
    id: str
    type: Literal["custom"]
    custom: CustomCallParam

    @property
    def function(self) -> FunctionCallParam:
        """The call seen as a function call (its input as the arguments), for the code that
        reads every call's name and arguments (token estimates, vendors' tool-use blocks:
        those that need JSON arguments refuse an input that is not a JSON object)."""
        return FunctionCallParam(name=self.custom.name, arguments=self.custom.input)


def _tool_kind(value: Any) -> str:
    kind = (
        value.get("type", "function") if isinstance(value, dict) else getattr(value, "type", None)
    )
    return "custom" if kind == "custom" else "function"


#: A tool call in an assistant message: a function's (``type`` may be left out) or a
#: custom tool's.
ToolCallParam = Annotated[
    Annotated[FunctionToolCallParam, Tag("function")]
    | Annotated[CustomToolCallParam, Tag("custom")],
    Discriminator(_tool_kind),
]


class SystemMessage(BaseModel):
    """A system message."""

    model_config = _OPEN
    role: Literal["system"]
    content: Content
    name: str | None = None


class DeveloperMessage(BaseModel):
    """A developer message (the newer name for system instructions)."""

    model_config = _OPEN
    role: Literal["developer"]
    content: Content
    name: str | None = None


class UserMessage(BaseModel):
    """A user message."""

    model_config = _OPEN
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantMessage(BaseModel):
    """An assistant message, possibly with tool calls."""

    model_config = _OPEN
    role: Literal["assistant"]
    content: Content | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    function_call: FunctionCallParam | None = None


class ToolMessage(BaseModel):
    """The result of a tool call."""

    model_config = _OPEN
    role: Literal["tool"]
    content: Content
    tool_call_id: str


class FunctionMessage(BaseModel):
    """The result of a legacy function call (``functions``/``function_call``, which OpenAI
    still serves). Targets that translate the conversation (Anthropic, Bedrock, Gemini)
    refuse it: it names no call to answer."""

    model_config = _OPEN
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(BaseModel):
    """A function the model may call."""

    model_config = _OPEN
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(BaseModel):
    """A function tool the model may call."""

    model_config = _OPEN
    type: Literal["function"] = "function"
    function: FunctionDefinition


class CustomToolDefinition(BaseModel):
    """A custom tool: the model calls it with free-form text (or text in a `format`)."""

    model_config = _OPEN
    name: str
    description: str | None = None
    format: dict[str, Any] | None = None


class CustomTool(BaseModel):
    """A custom tool (``type: "custom"``), which only OpenAI-compatible targets express."""

    model_config = _OPEN
    type: Literal["custom"]
    custom: CustomToolDefinition

    @property
    def function(self) -> FunctionDefinition:
        """A custom tool has no function: adapters that translate tools into their vendor's
        read this, and the `RequestError` refuses that target (the router tries the next)."""
        raise RequestError(
            f"custom tool {self.custom.name!r}: custom tools can only be sent to "
            "OpenAI-compatible targets",
            param="tools",
        )


#: A tool the model may use: a function (``type`` may be left out) or a custom tool.
Tool = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[CustomTool, Tag("custom")],
    Discriminator(_tool_kind),
]


class StreamOptions(BaseModel):
    """Streaming options."""

    model_config = _OPEN
    include_usage: bool | None = None


class ChatRequest(BaseModel):
    """A Chat Completions request. Unknown parameters are kept and passed through."""

    # written to JSON as it came: an infinite or NaN float as Infinity / NaN (which the
    # provider refuses), not quietly as null
    model_config = ConfigDict(extra="allow", defer_build=True, ser_json_inf_nan="constants")
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    seed: int | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    prompt_cache_key: str | None = None

    @property
    def wants_usage_chunk(self) -> bool:
        """Whether the caller asked for the final usage chunk of a stream."""
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def output_limit(self) -> int | None:
        """The requested cap on output tokens, from either parameter."""
        return self.max_completion_tokens or self.max_tokens


class EmbeddingsRequest(BaseModel):
    """An Embeddings request. Unknown parameters are kept and passed through."""

    model_config = _OPEN
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class CacheControl(BaseModel):
    """Per-request cache control (see docs/caching.md).

    Attributes:
        no_cache: skip the lookup (the answer is still stored unless `no_store`).
        no_store: do not store the answer.
        ttl: how long this request's answer is kept, in seconds.
        namespace: keeps this request's entries apart from other namespaces'
            (a tenant, say); added to the cache's own `namespace`.
        buckets: answers kept for this request's key: while fewer are stored,
            the request is sent and its answer added; then one of them is
            picked at random (variety for sampled answers).
        scope: whose requests share this request's entries, instead of the
            cache's own `scope`: ``key``, ``team``, ``user`` (the `user`
            option, within its `key`) or ``global``; see docs/caching.md.
    """

    model_config = _CLOSED
    no_cache: bool = False
    no_store: bool = False
    ttl: float | None = Field(default=None, gt=0)
    namespace: str | None = None
    buckets: int | None = Field(default=None, ge=1, le=100)
    scope: Literal["key", "team", "user", "global"] | None = None


class RequestOptions(BaseModel):
    """llmroute's per-request options, passed as ``llmroute=`` to `create()`.

    Attributes:
        timeout: overall deadline for this request in seconds, across every
            attempt and wait (overrides the route's `timeout`).
        user: who the request is for (recorded; used by limits and budgets).
        key: the name of the API key the request came in with (the gateway
            sets it from its keys; recorded; used by limits and budgets).
        team: the team the request is billed to (recorded; used by limits and
            budgets).
        session: a session or conversation id (recorded).
        properties: free-form tags recorded with the request.
        targets: restrict the request to these targets (``"provider/model"``
            or provider names) of its route.
        cache: cache control for this request.
        capture_content: record this request's prompt and completion (True)
            or not (False) whatever the router's ``logging.capture_content``
            says; None follows the router.
        user_scope: the key a client-named `user` belongs to: ``per: user``
            limits and budgets count that user apart for each key, so a key
            cannot spend the quota of another key's user (the gateway sets it
            for keys not bound to a user). None: `user` counts as itself.
        variant: force an experiment's variant, as ``"experiment=variant"``
            (for tests and demos; recorded as ``forced``, apart from the
            comparison). An unknown experiment or variant is a `RequestError`.
        prompt_variables: the values of the ``{variables}`` of a prompt template
            an experiment's variant uses (see docs/experiments.md).
    """

    model_config = _CLOSED
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    user: str | None = None
    key: str | None = None
    team: str | None = None
    session: str | None = None
    properties: dict[str, str] = Field(default_factory=dict)
    targets: list[str] | None = None
    cache: CacheControl = Field(default_factory=CacheControl)
    capture_content: bool | None = None
    user_scope: str | None = None
    variant: str | None = Field(default=None, pattern=r"^[^=\s]+=[^=\s]+$")
    prompt_variables: dict[str, str] = Field(default_factory=dict)


#: The options of a request that sets none: one shared instance, never mutated, so a
#: stage can tell "no options" by identity (the cache's short path does).
DEFAULT_OPTIONS = RequestOptions.model_construct()


def _describe(error: ValidationError) -> tuple[str, str | None]:
    first = error.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return (f"{loc}: {first['msg']}{suffix}" if loc else f"{first['msg']}{suffix}"), loc or None


def _invalid(kind: str, error: ValidationError) -> RequestError:
    message, param = _describe(error)
    return RequestError(f"invalid {kind} request: {message}", param=param)


#: Every field of a chat request, None (the trusted builders set those they are given:
#: `plain_chat_request`, and the Responses translation's `trusted_chat`). Copy it.
NO_CHAT_FIELDS = dict.fromkeys(ChatRequest.model_fields)
#: The messages `plain_chat_request` builds: those of a string content and a role only.
_PLAIN_MESSAGES: dict[str, type[BaseModel]] = {
    "system": SystemMessage,
    "developer": DeveloperMessage,
    "user": UserMessage,
}
_ROLE_CONTENT = ("role", "content")


def plain_shape(params: Mapping[str, Any]) -> list[Any] | None:
    """`params`' messages when `params` has the plainest kind of request's shape: a model
    name, a list of messages and perhaps `stream`, and nothing else; else None (the
    messages themselves are not looked at: see `plain_role`)."""
    model, messages = params.get("model"), params.get("messages")
    if type(model) is not str or not model or type(messages) is not list or not messages:
        return None
    if len(params) != 2 and (len(params) != 3 or type(params.get("stream")) is not bool):
        return None
    return messages


def plain_role(message: Any) -> str | None:
    """The role of `message` when it is a system, developer or user message of a string
    content and nothing else (the kind `plain_message` builds); else None."""
    if type(message) is not dict or len(message) != 2:
        return None
    role = message.get("role")
    if type(role) is not str or role not in _PLAIN_MESSAGES:
        return None
    return role if type(message.get("content")) is str else None


def plain_chat_request(params: Mapping[str, Any]) -> ChatRequest | None:
    """The `ChatRequest` validating `params` makes, when `params` is the plainest kind of
    request: a model name, system, developer and user messages of a string content and
    nothing else, and perhaps `stream`; None for any other (validation decides then).

    Fast path: built with `construct`, its types checked here, instead of validated:
    ~15.4k against ~28.1k instructions for a one-message request (callgrind, this
    branch). Oracle: tests/test_fast_paths_requests.py
    (``test_a_plain_chat_request_is_what_validation_makes``, hypothesis).
    """
    # plain_shape and plain_role written out: two calls less per request of the many
    # that are typed at once (llmroute's own work with the request log, callgrind)
    model, messages = params.get("model"), params.get("messages")
    if type(model) is not str or not model or type(messages) is not list or not messages:
        return None
    if len(params) != 2 and (len(params) != 3 or type(params.get("stream")) is not bool):
        return None
    built: list[BaseModel] = []
    for message in messages:
        made = plain_message(message)
        if made is None:
            return None
        built.append(made)
    fields = NO_CHAT_FIELDS.copy()
    fields.update(params)
    fields["messages"] = built
    return construct(ChatRequest, fields, params)


def plain_request(params: Mapping[str, Any], messages: list[BaseModel]) -> ChatRequest:
    """The request validating plain `params` (`plain_shape`) makes, its messages already
    built (`trusted_message`)."""
    fields = NO_CHAT_FIELDS.copy()
    fields.update(params)
    fields["messages"] = messages
    return construct(ChatRequest, fields, params)


def plain_message(message: Any) -> BaseModel | None:
    """The message validating `message` makes, when it is a system, developer or user
    message of a string content and nothing else (built with `construct`); else None."""
    if type(message) is not dict or len(message) != 2:
        return None
    role, content = message.get("role"), message.get("content")
    if type(content) is not str:
        return None
    kind = _PLAIN_MESSAGES.get(role) if type(role) is str else None
    if kind is None:
        return None
    return construct(kind, {"role": role, "content": content, "name": None}, _ROLE_CONTENT)


def trusted_message(role: str, content: str) -> BaseModel:
    """The message validating a plain message (`plain_role`) of `role` and `content` makes."""
    values = {"role": role, "content": content, "name": None}
    return construct(_PLAIN_MESSAGES[role], values, _ROLE_CONTENT)


def validate_chat_request(params: Mapping[str, Any]) -> ChatRequest:
    """Validate Chat Completions parameters, raising `RequestError` on bad input (a plain
    request is built without validation: `plain_chat_request`)."""
    plain = plain_chat_request(params)
    if plain is not None:
        return plain
    try:
        request: ChatRequest = validator(ChatRequest).validate_python(params)
    except ValidationError as exc:
        raise _invalid("chat completion", exc) from exc
    return request


def validate_embeddings_request(params: Mapping[str, Any]) -> EmbeddingsRequest:
    """Validate Embeddings parameters, raising `RequestError` on bad input."""
    try:
        request = EmbeddingsRequest.model_validate(params)
    except ValidationError as exc:
        raise _invalid("embeddings", exc) from exc
    if isinstance(request.input, list) and not request.input:
        raise RequestError("invalid embeddings request: input must not be empty", param="input")
    return request


def validate_options(options: RequestOptions | Mapping[str, Any] | None) -> RequestOptions:
    """Validate the ``llmroute=`` keyword argument."""
    if options is None:
        return DEFAULT_OPTIONS
    if isinstance(options, RequestOptions):
        return options
    try:
        return RequestOptions.model_validate(options)
    except ValidationError as exc:
        message, param = _describe(exc)
        raise RequestError(f"invalid llmroute options: {message}", param=param) from exc

"""Vendor-neutral pieces of the translations between OpenAI's shapes and other vendors' APIs.

The Anthropic, Gemini and Bedrock adapters share these: reading the parts of a
Chat Completions request the same way (tool choice, structured output, stop
sequences, images), refusing what a vendor cannot do before any network call,
and building OpenAI-shaped completions, chunks and usage from what the vendor
answered.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json, to_json

from .._errors import MalformedResponse, RequestError
from .._request import (
    ChatRequest,
    Content,
    ContentPart,
    FilePart,
    ImagePart,
    TextPart,
    ToolCallParam,
)
from .._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceDelta,
    ChoiceDeltaFunction,
    ChoiceDeltaToolCall,
    ChunkChoice,
    CompletionTokensDetails,
    CompletionUsage,
    FunctionCall,
    PromptTokensDetails,
)

__all__ = [
    "RESPONSE_TOOL",
    "VENDOR_OPTION_KEYS",
    "ChunkMaker",
    "DataUrl",
    "JsonOutput",
    "ToolChoice",
    "completion",
    "completion_usage",
    "json_output",
    "malformed",
    "parse_data_url",
    "parse_tool_arguments",
    "refuse",
    "refuse_unsupported",
    "stable_call_id",
    "stop_sequences",
    "text_of",
    "tool_call",
    "tool_choice",
    "user_parts",
    "vendor_options",
]

#: The request keys that carry one vendor's typed options (``extra_body={"anthropic": {...}}``).
#: Every adapter ignores the other vendors' keys, so one request can be routed to any of them.
VENDOR_OPTION_KEYS = frozenset({"anthropic", "gemini", "bedrock"})

#: The name of the tool that carries structured output where it is translated to a forced tool.
RESPONSE_TOOL = "json_response"

#: Extra (undeclared) OpenAI parameters that only tune OpenAI's own service: other vendors
#: have no counterpart and leaving them out changes nothing about the answer's form, so they
#: are dropped, like the declared `store`, `metadata`, `service_tier` and `prompt_cache_key`.
#: (`prompt_cache_retention` asks OpenAI to keep its prompt cache longer: Anthropic's
#: cache is set per block with `cache_control`, Gemini's and Bedrock's by their own means.)
_OPENAI_ONLY_HINTS = frozenset({"prompt_cache_retention", "safety_identifier", "verbosity"})

T = TypeVar("T", bound=BaseModel)


def refuse(provider: str, feature: str, *, param: str | None = None) -> RequestError:
    """The `RequestError` for a feature a provider cannot offer (raised before any network call)."""
    return RequestError(f"provider {provider!r} does not support {feature}", param=param)


# ---------------------------------------------------------------- request parameters


def _set_and_meaningful(name: str, value: Any) -> bool:
    """Whether an unsupported parameter would change the answer (defaults are harmless)."""
    if value is None:
        return False
    if name == "n":
        return bool(value != 1)
    if name in ("logprobs", "logit_bias"):
        return bool(value)
    if name in ("presence_penalty", "frequency_penalty"):
        return bool(value != 0)
    if name == "modalities":
        return list(value) != ["text"]
    return True


#: Parameters a vendor may lack, with what to call them in a refusal.
_OPTIONAL_FEATURES = {
    "n": "n > 1 (several choices)",
    "logprobs": "logprobs",
    "top_logprobs": "top_logprobs",
    "logit_bias": "logit_bias",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "audio": "audio output",
    "modalities": "output modalities other than text",
    "prediction": "predicted outputs (prediction)",
    "web_search_options": "web_search_options",
}


def refuse_unsupported(
    request: ChatRequest,
    provider: str,
    *,
    supported: Iterable[str] = (),
) -> None:
    """Refuse parameters the vendor cannot honour, naming them.

    `supported` lists the optional features (keys of ``_OPTIONAL_FEATURES``) the
    vendor translates. Unknown extra parameters are refused too: they cannot be passed through to a
    non-OpenAI API, and dropping them silently would hide a mistake. So are what only OpenAI
    expresses: legacy ``role: "function"`` messages and custom tools.
    """
    allowed = set(supported)
    for name, feature in _OPTIONAL_FEATURES.items():
        if name in allowed:
            continue
        value = getattr(request, name, None) if name in type(request).model_fields else None
        if value is None and request.model_extra:
            value = request.model_extra.get(name)
        if _set_and_meaningful(name, value):
            raise refuse(provider, feature, param=name)
    if any(message.role == "function" for message in request.messages):
        raise refuse(provider, "role 'function' messages (legacy function calling)",
                     param="messages")  # fmt: skip
    if any(tool.type == "custom" for tool in request.tools or ()):
        raise refuse(provider, "custom tools (type 'custom')", param="tools")
    extra = request.model_extra or {}
    known = VENDOR_OPTION_KEYS | _OPENAI_ONLY_HINTS | _OPTIONAL_FEATURES.keys()
    unknown = sorted(key for key in extra if key not in known)
    if unknown:
        names = ", ".join(unknown)
        raise RequestError(
            f"provider {provider!r} does not accept the parameter(s) {names}; vendor options "
            f"go under one key (for example extra_body={{'anthropic': {{...}}}})",
            param=unknown[0],
        )


def vendor_options(request: ChatRequest, key: str, model: type[T], provider: str) -> T | None:
    """The typed options under `key` in the request's extra parameters, validated strictly."""
    raw = (request.model_extra or {}).get(key)
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        where = f"{key}.{where}" if where else key
        raise RequestError(
            f"invalid {key} options for provider {provider!r}: {where}: {first['msg']}",
            param=where,
        ) from exc


def stop_sequences(request: ChatRequest) -> list[str] | None:
    """`stop` as a list (None when unset or empty)."""
    stop = request.stop
    if stop is None:
        return None
    values = [stop] if isinstance(stop, str) else list(stop)
    return values or None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`tool_choice`, read: ``auto``, ``none``, ``required`` or one ``function`` by `name`."""

    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None


def tool_choice(request: ChatRequest, provider: str) -> ToolChoice | None:
    """The request's `tool_choice`; a function it names must be among its tools."""
    choice = request.tool_choice
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(choice)
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str):
        raise refuse(provider, f"tool_choice {choice!r}", param="tool_choice")
    if not any(tool.function.name == name for tool in request.tools or ()):
        raise RequestError(
            f"tool_choice names the function {name!r}, which is not among the request's tools",
            param="tool_choice",
        )
    return ToolChoice("function", name)


@dataclass(frozen=True, slots=True)
class JsonOutput:
    """A structured-output request: `schema` is None for ``json_object`` (any JSON object)."""

    schema: dict[str, Any] | None
    name: str
    description: str | None = None
    strict: bool | None = None

    @property
    def object_schema(self) -> dict[str, Any]:
        """The schema, or the schema of any JSON object."""
        return self.schema if self.schema is not None else {"type": "object"}


def json_output(request: ChatRequest, provider: str) -> JsonOutput | None:
    """The request's `response_format` when it asks for JSON; None for text or unset."""
    fmt = request.response_format
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JsonOutput(None, "json_object")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise RequestError(
                "response_format json_schema needs a json_schema object with a name",
                param="response_format",
            )
        if schema is not None and not isinstance(schema, dict):
            raise RequestError("response_format json_schema.schema must be an object",
                               param="response_format")  # fmt: skip
        description = spec.get("description")
        strict = spec.get("strict")
        return JsonOutput(
            schema if schema is not None else {"type": "object"},
            spec["name"],
            description if isinstance(description, str) else None,
            strict if isinstance(strict, bool) else None,
        )
    raise refuse(provider, f"response_format type {kind!r}", param="response_format")


# ---------------------------------------------------------------- message content


def text_of(content: Content | None, provider: str, where: str) -> str:
    """The text of a message whose content may only be text (system, tool results)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if not isinstance(part, TextPart):
            raise refuse(provider, f"{part.type} content in {where}", param="messages")
        texts.append(part.text)
    return "\n".join(texts) if len(texts) > 1 else (texts[0] if texts else "")


def user_parts(content: Content) -> list[ContentPart]:
    """A message's content as a list of parts (a string becomes one text part)."""
    if isinstance(content, str):
        return [TextPart(type="text", text=content)]
    return list(content)


@dataclass(frozen=True, slots=True)
class DataUrl:
    """A ``data:`` URL: its media type and its base64 data."""

    media_type: str
    data: str

    @property
    def format(self) -> str:
        """The subtype of the media type (``png`` for ``image/png``)."""
        return self.media_type.partition("/")[2] or self.media_type


def parse_data_url(url: str, provider: str) -> DataUrl | None:
    """The media type and base64 data of a ``data:`` URL, or None for another URL."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or not media_type:
        raise RequestError(f"malformed data: URL for provider {provider!r}", param="messages")
    if encoding != "base64":
        data = base64.b64encode(data.encode()).decode()
    return DataUrl(media_type.lower(), data)


def image_data(part: ImagePart, provider: str, *, urls: bool) -> DataUrl | str:
    """An image part as inline data, or its URL when the vendor fetches URLs (`urls`)."""
    url = part.image_url.url
    inline = parse_data_url(url, provider)
    if inline is not None:
        return inline
    if not urls:
        raise refuse(provider, "images by URL (send them as data: URLs)", param="messages")
    return url


def file_data(part: FilePart, provider: str) -> DataUrl:
    """A file part's inline data (``file_data`` as a data: URL); file ids are refused."""
    raw = part.file.get("file_data")
    inline = parse_data_url(raw, provider) if isinstance(raw, str) else None
    if inline is None:
        raise refuse(provider, "file parts other than file_data data: URLs", param="messages")
    return inline


def parse_tool_arguments(call: ToolCallParam, provider: str) -> dict[str, Any]:
    """A tool call's JSON-string arguments as an object (vendors take objects)."""
    text = call.function.arguments.strip() or "{}"
    try:
        value = from_json(text)
    except ValueError as exc:
        raise RequestError(
            f"tool call {call.id!r} ({call.function.name}) has arguments that are not valid "
            f"JSON; provider {provider!r} needs them as a JSON object",
            param="messages",
        ) from exc
    if not isinstance(value, dict):
        raise RequestError(
            f"tool call {call.id!r} ({call.function.name}) has arguments that are not a JSON "
            f"object; provider {provider!r} needs an object",
            param="messages",
        )
    return value


# ---------------------------------------------------------------- responses


def stable_call_id(seed: str, index: int, name: str) -> str:
    """A tool call id derived from what identifies the call (for vendors that give none)."""
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{name}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def tool_call(
    call_id: str, name: str, arguments: Any, **extra: Any
) -> ChatCompletionMessageToolCall:
    """An OpenAI tool call; `arguments` is an object (serialised) or already a JSON string."""
    text = arguments if isinstance(arguments, str) else to_json(arguments).decode()
    return ChatCompletionMessageToolCall(
        id=call_id, type="function", function=FunctionCall(name=name, arguments=text), **extra
    )


def completion_usage(
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
) -> CompletionUsage:
    """OpenAI usage from normalised counts: `input_tokens` includes cache reads and writes.

    Cache writes travel as ``prompt_tokens_details.cache_write_tokens`` (the name
    OpenRouter uses); `CompletionUsage.normalised()` reads them back.
    """
    prompt_details: dict[str, int] = {}
    if cache_read is not None:
        prompt_details["cached_tokens"] = cache_read
    if cache_write is not None:
        prompt_details["cache_write_tokens"] = cache_write
    return CompletionUsage(
        prompt_tokens=input_tokens,
        completion_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        prompt_tokens_details=PromptTokensDetails(**prompt_details) if prompt_details else None,
        completion_tokens_details=(
            CompletionTokensDetails(reasoning_tokens=reasoning) if reasoning is not None else None
        ),
    )


def completion(
    *,
    completion_id: str,
    model: str,
    content: str | None,
    tool_calls: list[ChatCompletionMessageToolCall],
    finish_reason: str | None,
    usage: CompletionUsage | None,
    message_extra: Mapping[str, Any] | None = None,
    index: int = 0,
    choices: list[Choice] | None = None,
) -> ChatCompletion:
    """A one-choice `ChatCompletion` (or one with the given `choices`)."""
    if choices is None:
        message = ChatCompletionMessage(
            role="assistant", content=content, refusal=None, tool_calls=tool_calls or None,
            **(message_extra or {}),
        )  # fmt: skip
        choices = [Choice(index=index, message=message, finish_reason=finish_reason, logprobs=None)]
    return ChatCompletion(
        id=completion_id, object="chat.completion", created=int(time.time()), model=model,
        choices=choices, usage=usage,
    )  # fmt: skip


def malformed(provider: str, model: str, body: bytes, problem: str) -> MalformedResponse:
    """The error for a 2xx body that does not have the vendor's documented shape."""
    return MalformedResponse(
        f"unexpected response body: {problem}",
        provider=provider,
        model=model,
        status=200,
        body=body,
    )


class ChunkMaker:
    """Builds the `chat.completion.chunk` objects of one stream (same id, model and time)."""

    __slots__ = ("created", "id", "model")

    def __init__(self, chunk_id: str, model: str) -> None:
        self.id = chunk_id
        self.model = model
        self.created = int(time.time())

    def delta(
        self, *, index: int = 0, finish_reason: str | None = None, **fields: Any
    ) -> ChatCompletionChunk:
        """A chunk whose one choice adds `fields` (``content``, ``tool_calls``, ...)."""
        choice = ChunkChoice(
            index=index, delta=ChoiceDelta(**fields), finish_reason=finish_reason, logprobs=None
        )
        return ChatCompletionChunk(
            id=self.id, object="chat.completion.chunk", created=self.created, model=self.model,
            choices=[choice],
        )  # fmt: skip

    def tool_start(
        self, position: int, call_id: str, name: str, arguments: str = "", *, index: int = 0,
        **extra: Any,
    ) -> ChatCompletionChunk:  # fmt: skip
        """The first fragment of a tool call: its id and name (and any arguments so far)."""
        fragment = ChoiceDeltaToolCall(
            index=position, id=call_id, type="function",
            function=ChoiceDeltaFunction(name=name, arguments=arguments), **extra,
        )  # fmt: skip
        return self.delta(index=index, tool_calls=[fragment])

    def tool_arguments(
        self, position: int, arguments: str, *, index: int = 0
    ) -> ChatCompletionChunk:
        """A later fragment of a tool call's arguments."""
        fragment = ChoiceDeltaToolCall(
            index=position, function=ChoiceDeltaFunction(arguments=arguments)
        )
        return self.delta(index=index, tool_calls=[fragment])

    def usage(self, usage: CompletionUsage) -> ChatCompletionChunk:
        """The final usage chunk (no choices), as OpenAI sends it."""
        return ChatCompletionChunk(
            id=self.id, object="chat.completion.chunk", created=self.created, model=self.model,
            choices=[], usage=usage,
        )  # fmt: skip

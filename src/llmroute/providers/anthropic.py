"""The Anthropic adapter: Chat Completions translated to and from the Messages API.

What the translation does:

- system and developer messages become the top-level ``system``; tool results
  become ``tool_result`` blocks of a user turn; consecutive turns of one role merge.
- ``tool_calls`` and ``tool_use`` blocks map both ways (arguments: JSON string <-> object).
- ``response_format`` JSON becomes a forced tool whose input is the answer (or
  ``output_config.format`` with ``structured_output: native``); the answer comes
  back as the message's content, never as a tool call.
- ``max_tokens`` is required by Anthropic: the provider's `max_tokens` (4096 by
  default) is sent when the request sets none.
- Anthropic-only options (``thinking``, ``top_k``, ``cache_control``, betas,
  service tier) come from ``extra_body={"anthropic": {...}}``, validated by
  `AnthropicOptions`; ``cache_control`` on a text or image part is kept.
- Thinking comes back as ``reasoning_content`` and the signed ``thinking_blocks``
  (send them back on the assistant message to continue a tool loop).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import from_json, to_json

from .._errors import (
    AuthenticationError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestError,
)
from .._request import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    FilePart,
    FunctionDefinition,
    ImagePart,
    RefusalPart,
    TextPart,
    ToolMessage,
    UserMessage,
)
from .._transports import HttpRequest
from .._types import ChatCompletion, ChatCompletionMessageToolCall
from ._anthropic_stream import AnthropicStreamDecoder, WireUsage, finish_reason
from ._base import (
    NO_EXTRA,
    ExtraRequest,
    ProviderAdapter,
    RateLimitState,
    StreamDecoder,
    parse_retry_after,
)
from ._translate import (
    RESPONSE_TOOL,
    DataUrl,
    completion,
    file_data,
    image_data,
    json_output,
    malformed,
    parse_tool_arguments,
    refuse,
    refuse_unsupported,
    stop_sequences,
    tool_call,
    tool_choice,
    user_parts,
    vendor_options,
)
from .configs import AnthropicProviderConfig

__all__ = [
    "AnthropicAdapter",
    "AnthropicCacheControl",
    "AnthropicOptions",
    "AnthropicThinking",
    "parse_rfc3339_reset",
]

_DEFAULT_BASE_URL = "https://api.anthropic.com"
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})


class AnthropicCacheControl(BaseModel):
    """A prompt-caching breakpoint: ``{"type": "ephemeral", "ttl": "5m" | "1h"}``."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["ephemeral"] = "ephemeral"
    ttl: Literal["5m", "1h"] | None = None


class AnthropicThinking(BaseModel):
    """Extended thinking: ``enabled`` (with `budget_tokens` >= 1024), ``adaptive`` or ``disabled``."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["enabled", "adaptive", "disabled"]
    budget_tokens: int | None = Field(default=None, ge=1024)
    display: Literal["summarized", "omitted"] | None = None

    @model_validator(mode="after")
    def _budget_with_enabled(self) -> AnthropicThinking:
        if (self.type == "enabled") != (self.budget_tokens is not None):
            raise ValueError("budget_tokens is required with type 'enabled', and only then")
        return self


class AnthropicOptions(BaseModel):
    """Anthropic-only request options, passed as ``extra_body={"anthropic": {...}}``.

    Attributes:
        thinking: extended thinking (see `AnthropicThinking`).
        top_k: sample from the top K tokens only.
        cache_control: automatic prompt caching: a breakpoint on the last
            cacheable block of the request.
        betas: ``anthropic-beta`` flags for this request (added to the provider's).
        service_tier: ``auto`` or ``standard_only``.
    """

    model_config = ConfigDict(extra="forbid")
    thinking: AnthropicThinking | None = None
    top_k: int | None = Field(default=None, ge=0)
    cache_control: AnthropicCacheControl | None = None
    betas: list[str] = Field(default_factory=list)
    service_tier: Literal["auto", "standard_only"] | None = None


def parse_rfc3339_reset(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from `now` until an RFC 3339 time (Anthropic's rate-limit resets); never negative."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


#: Anthropic error types, for errors that arrive without a telling status (inside a stream).
_TYPE_CLASSES: dict[str, type[ProviderError]] = {
    "invalid_request_error": InvalidRequest,
    "request_too_large": InvalidRequest,
    "authentication_error": AuthenticationError,
    "billing_error": PermissionDenied,
    "permission_error": PermissionDenied,
    "not_found_error": ModelNotFound,
    "rate_limit_error": RateLimited,
    "timeout_error": ProviderUnavailable,
    "api_error": ProviderUnavailable,
    "overloaded_error": ProviderUnavailable,
}

_STATUS_CLASSES: dict[int, type[ProviderError]] = {
    401: AuthenticationError,
    402: PermissionDenied,
    403: PermissionDenied,
    404: ModelNotFound,
    413: InvalidRequest,
    429: RateLimited,
}


def classify_anthropic_error(status: int, kind: str | None) -> type[ProviderError]:
    """The error class from the HTTP status, else (in a stream) from Anthropic's error type."""
    if status < 400:
        return _TYPE_CLASSES.get(kind or "", ProviderUnavailable)
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if status in (408, 409) or status >= 500:  # 529 is Anthropic's "overloaded"
        return ProviderUnavailable
    return _TYPE_CLASSES.get(kind or "", InvalidRequest)


#: OpenAI tool_choice modes -> Anthropic's tool_choice types.
_FORCED = {"none": "none", "auto": "auto", "required": "any", "function": "tool"}


def _tool_spec(function: FunctionDefinition) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": function.name,
        "input_schema": function.parameters or {"type": "object", "properties": {}},
    }
    if function.description:
        spec["description"] = function.description
    if function.strict:
        spec["strict"] = True
    return spec


class _WireMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None = None
    usage: WireUsage


#: The Messages fields ``count_tokens`` takes.
_COUNTED = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
)


class AnthropicAdapter(ProviderAdapter):
    """Chat Completions over Anthropic's Messages API."""

    config: AnthropicProviderConfig

    def __init__(self, name: str, config: AnthropicProviderConfig) -> None:
        super().__init__(name, config)
        self.otel_name = "anthropic"
        self.prices_id = "anthropic"
        self.base_url = (config.base_url or _DEFAULT_BASE_URL).rstrip("/")
        self._url = f"{self.base_url}/v1/messages"
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": config.anthropic_version,
        }
        if config.api_key is not None:
            headers["x-api-key"] = config.api_key.get_secret_value()
        if config.betas:
            headers["anthropic-beta"] = ",".join(config.betas)
        headers.update({k.lower(): v for k, v in config.headers.items()})
        self._headers = headers

    # ------------------------------------------------------------ requests

    def uses_response_tool(self, request: ChatRequest) -> bool:
        """Whether this request's structured output travels through the forced response tool."""
        fmt = json_output(request, self.name)
        return fmt is not None and (self.config.structured_output == "tool" or fmt.schema is None)

    def chat_request(
        self, request: ChatRequest, model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        body, betas = self.build_body(request, model)
        if stream:
            body["stream"] = True
        headers = dict(self._headers)
        if stream:
            headers["accept"] = "text/event-stream"
        if betas:
            known = headers.get("anthropic-beta")
            headers["anthropic-beta"] = ",".join([*(known.split(",") if known else []), *betas])
        if extra.headers:
            headers.update({k.lower(): v for k, v in extra.headers.items()})
        url = self._url
        if extra.query:
            url = f"{url}?{urlencode(extra.query, doseq=True)}"
        return HttpRequest("POST", url, headers, to_json(body))

    def count_tokens_request(
        self, request: ChatRequest, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        """``POST /v1/messages/count_tokens``: the Messages body with only the fields that
        endpoint takes (it refuses ``max_tokens``, sampling and ``stream``)."""
        sent = self.chat_request(request, model, stream=False, extra=extra)
        body = {k: v for k, v in from_json(sent.body or b"{}").items() if k in _COUNTED}
        url, _, query = sent.url.partition("?")
        url = f"{url}/count_tokens" + (f"?{query}" if query else "")
        return HttpRequest("POST", url, sent.headers, to_json(body))

    def parse_count_tokens(self, body: bytes) -> int:
        try:
            tokens = from_json(body).get("input_tokens")
        except (ValueError, AttributeError):
            tokens = None
        if type(tokens) is not int:
            raise malformed(self.name, "", body, "input_tokens: expected an integer")
        return tokens

    def build_body(self, request: ChatRequest, model: str) -> tuple[dict[str, Any], list[str]]:
        """The Messages API body for `request`, and the request's extra beta flags."""
        name = self.name
        refuse_unsupported(request, name)
        options = vendor_options(request, "anthropic", AnthropicOptions, name) or AnthropicOptions()
        if request.temperature is not None and request.temperature > 1:
            raise refuse(name, f"temperature {request.temperature} (Anthropic accepts 0-1)",
                          param="temperature")  # fmt: skip
        system, messages = self._messages(request)
        limit = request.output_limit or self._default_limit(options)
        body: dict[str, Any] = {"model": model, "max_tokens": limit, "messages": messages}
        if system:
            body["system"] = system
        self._add_tools(request, options, body)
        for key in ("temperature", "top_p"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        stops = stop_sequences(request)
        if stops:
            body["stop_sequences"] = stops
        if request.user:
            body["metadata"] = {"user_id": request.user}
        self._add_output_config(request, body)
        body.update(options.model_dump(exclude_none=True, exclude={"betas"}))
        return body, options.betas

    def _default_limit(self, options: AnthropicOptions) -> int:
        """The provider's `max_tokens`, plus the thinking budget (which counts toward it)."""
        thinking = options.thinking
        budget = thinking.budget_tokens if thinking is not None else None
        return self.config.max_tokens + (budget or 0)

    def _add_output_config(self, request: ChatRequest, body: dict[str, Any]) -> None:
        config: dict[str, Any] = {}
        effort = request.reasoning_effort
        if effort is not None:
            if effort not in _EFFORTS:
                raise refuse(self.name, f"reasoning_effort {effort!r} (Anthropic's efforts: "
                             f"{', '.join(sorted(_EFFORTS))})", param="reasoning_effort")  # fmt: skip
            config["effort"] = effort
        fmt = json_output(request, self.name)
        if fmt is not None and not self.uses_response_tool(request):
            config["format"] = {"type": "json_schema", "schema": fmt.object_schema}
        if config:
            body["output_config"] = config

    def _add_tools(
        self, request: ChatRequest, options: AnthropicOptions, body: dict[str, Any]
    ) -> None:
        tools = [_tool_spec(tool.function) for tool in request.tools or ()]
        choice = tool_choice(request, self.name)
        forced: dict[str, Any] | None = None
        if choice is not None:
            forced = {"type": _FORCED[choice.mode]}
            if choice.mode == "function":
                forced["name"] = choice.name
        if self.uses_response_tool(request):
            tools.append(self._response_tool(request, tools))
            if choice is None or choice.mode != "function":
                # answer through the response tool, or call one of the caller's tools first
                user_tools = len(tools) > 1 and (choice is None or choice.mode != "none")
                forced = {"type": "any"} if user_tools else {"type": "tool", "name": RESPONSE_TOOL}
        if not tools:
            return
        body["tools"] = tools
        if request.parallel_tool_calls is False:
            forced = forced or {"type": "auto"}
            if forced["type"] != "none":
                forced["disable_parallel_tool_use"] = True
        if forced is None:
            return
        thinking = options.thinking
        if forced["type"] in ("any", "tool") and thinking and thinking.type != "disabled":
            raise refuse(self.name, "forced tool use (tool_choice required or a function, or "
                         "response_format through the response tool) with extended thinking; "
                         "use structured_output: native for JSON", param="tool_choice")  # fmt: skip
        body["tool_choice"] = forced

    def _response_tool(self, request: ChatRequest, tools: list[dict[str, Any]]) -> dict[str, Any]:
        """The forced tool whose input is the structured answer."""
        fmt = json_output(request, self.name)
        assert fmt is not None
        schema = fmt.object_schema
        if schema.get("type", "object") != "object":
            raise refuse(self.name, "a response_format schema whose root is not an object "
                         "(it travels as a tool input)", param="response_format")  # fmt: skip
        if any(t["name"] == RESPONSE_TOOL for t in tools):
            raise RequestError(f"a tool may not be called {RESPONSE_TOOL!r} when "
                               "response_format asks for JSON", param="tools")  # fmt: skip
        described = fmt.description or f"the {fmt.name} object"
        return {
            "name": RESPONSE_TOOL,
            "description": f"Give the final answer by calling this tool with {described}.",
            "input_schema": schema,
        }

    # ------------------------------------------------------------ messages

    def _messages(self, request: ChatRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for message in request.messages:
            if isinstance(message, UserMessage):
                role, blocks = "user", self._blocks(message.content, "user messages")
            elif isinstance(message, AssistantMessage):
                role, blocks = "assistant", self._assistant_blocks(message)
            elif isinstance(message, ToolMessage):
                role, blocks = "user", [self._tool_result(message)]
            else:  # system or developer: Anthropic has one top-level system prompt
                system.extend(self._blocks(message.content, "system messages", text_only=True))
                continue
            if not blocks:
                continue
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        return system, turns

    def _blocks(self, content: Any, where: str, *, text_only: bool = False) -> list[dict[str, Any]]:
        blocks = []
        for part in user_parts(content):
            block = self._block(part, where, text_only=text_only)
            if block is not None:
                blocks.append(block)
        return blocks

    def _block(self, part: ContentPart, where: str, *, text_only: bool) -> dict[str, Any] | None:
        name = self.name
        if isinstance(part, TextPart | RefusalPart):
            text = part.text if isinstance(part, TextPart) else part.refusal
            if not text:
                return None  # Anthropic refuses empty text blocks
            block: dict[str, Any] = {"type": "text", "text": text}
        elif text_only:
            raise refuse(name, f"{part.type} content in {where}", param="messages")
        elif isinstance(part, ImagePart):
            image = image_data(part, name, urls=True)
            source = (
                {"type": "base64", "media_type": image.media_type, "data": image.data}
                if isinstance(image, DataUrl) else {"type": "url", "url": image}
            )  # fmt: skip
            block = {"type": "image", "source": source}
        elif isinstance(part, FilePart):
            document = file_data(part, name)
            block = {"type": "document", "source": {
                "type": "base64", "media_type": document.media_type, "data": document.data}}  # fmt: skip
        else:
            raise refuse(name, f"{part.type} content in {where}", param="messages")
        cache = (part.model_extra or {}).get("cache_control")
        if cache is not None:
            try:
                block["cache_control"] = AnthropicCacheControl.model_validate(cache).model_dump(
                    exclude_none=True
                )
            except ValidationError as exc:
                raise RequestError(f"invalid cache_control on a content part: {cache!r}",
                                   param="messages") from exc  # fmt: skip
        return block

    def _assistant_blocks(self, message: AssistantMessage) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for thinking in (message.model_extra or {}).get("thinking_blocks") or ():
            if not isinstance(thinking, dict) or thinking.get("type") not in (
                "thinking", "redacted_thinking",
            ):  # fmt: skip
                raise RequestError("thinking_blocks must be Anthropic thinking or "
                                   "redacted_thinking blocks", param="messages")  # fmt: skip
            blocks.append(dict(thinking))
        if message.content is not None:
            blocks.extend(self._blocks(message.content, "assistant messages", text_only=True))
        for call in message.tool_calls or ():
            blocks.append({
                "type": "tool_use", "id": call.id, "name": call.function.name,
                "input": parse_tool_arguments(call, self.name),
            })  # fmt: skip
        return blocks

    def _tool_result(self, message: ToolMessage) -> dict[str, Any]:
        content: Any = message.content
        if not isinstance(content, str):
            content = self._blocks(content, "tool messages")
        return {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content}

    # ------------------------------------------------------------ responses

    def parse_chat(self, body: bytes, model: str) -> ChatCompletion:
        try:
            message = _WireMessage.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise malformed(self.name, model, body, f"{where}: {first['msg']}") from exc
        texts: list[str] = []
        thinking: list[str] = []
        thinking_blocks: list[dict[str, Any]] = []
        calls: list[ChatCompletionMessageToolCall] = []
        for block in message.content:
            kind = block.get("type")
            try:
                if kind == "text":
                    texts.append(block["text"])
                elif kind == "tool_use" and block["name"] == RESPONSE_TOOL:
                    texts.append(to_json(block["input"]).decode())
                elif kind == "tool_use":
                    calls.append(tool_call(block["id"], block["name"], block["input"]))
                elif kind == "thinking":
                    thinking.append(block["thinking"])
                    thinking_blocks.append(block)
                elif kind == "redacted_thinking":
                    thinking_blocks.append(block)
            except KeyError as exc:
                raise malformed(self.name, model, body, f"a {kind} block without {exc}") from exc
        extra: dict[str, Any] = {}
        if thinking_blocks:
            extra["reasoning_content"] = "".join(thinking)
            extra["thinking_blocks"] = thinking_blocks
        return completion(
            completion_id=message.id,
            model=message.model,
            content="".join(texts) if texts else None,
            tool_calls=calls,
            finish_reason=finish_reason(message.stop_reason, tool_calls=bool(calls)),
            usage=message.usage.to_openai(),
            message_extra=extra,
        )

    def stream_decoder(self, request: ChatRequest, model: str) -> StreamDecoder:
        return AnthropicStreamDecoder(self, model, json_tool=self.uses_response_tool(request))

    # ------------------------------------------------------------ errors and limits

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        message, kind, request_id = _error_fields(body)
        cls = classify_anthropic_error(status, kind)
        if message is None:
            text = body[:200].decode("utf-8", "replace").strip() or "(empty body)"
            message = f"HTTP {status} with a non-Anthropic error body: {text}"
        return cls(
            message,
            provider=self.name,
            status=status,
            retry_after=parse_retry_after(headers),
            request_id=headers.get("request-id") or request_id,
            body=body,
            code=kind,
        )

    def rate_limit_state(self, headers: Mapping[str, str]) -> RateLimitState | None:
        prefix = "anthropic-ratelimit-"
        tokens = "tokens" if f"{prefix}tokens-remaining" in headers else "input-tokens"
        if (
            f"{prefix}requests-remaining" not in headers
            and f"{prefix}{tokens}-remaining" not in headers
        ):
            return None
        return RateLimitState(
            limit_requests=_int_header(headers, f"{prefix}requests-limit"),
            remaining_requests=_int_header(headers, f"{prefix}requests-remaining"),
            reset_requests_s=parse_rfc3339_reset(headers.get(f"{prefix}requests-reset")),
            limit_tokens=_int_header(headers, f"{prefix}{tokens}-limit"),
            remaining_tokens=_int_header(headers, f"{prefix}{tokens}-remaining"),
            reset_tokens_s=parse_rfc3339_reset(headers.get(f"{prefix}{tokens}-reset")),
        )


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, error type, request id) from an Anthropic error body, or Nones."""
    try:
        data = from_json(body)
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    error = data.get("error")
    request_id = data.get("request_id")
    request_id = request_id if isinstance(request_id, str) else None
    if not isinstance(error, dict):
        return None, None, request_id
    message, kind = error.get("message"), error.get("type")
    return (
        message if isinstance(message, str) else None,
        kind if isinstance(kind, str) else None,
        request_id,
    )

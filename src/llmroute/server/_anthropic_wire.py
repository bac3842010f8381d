"""Anthropic Messages requests read into Chat Completions parameters; errors in Anthropic's shape.

The opposite direction of the Anthropic provider adapter: what arrives at the
gateway's ``/v1/messages`` is an Anthropic request, validated by the private
models below and turned into the parameters of ``router.chat.completions.create``,
so any provider can answer it.

==========================  ============================================================
Anthropic                   Chat Completions
==========================  ============================================================
``system``                  a first ``system`` message (text blocks as text parts)
``text`` / ``image``        text and ``image_url`` parts (base64 sources as data URLs)
``document`` (PDF, base64)  a ``file`` part
``tool_use`` (assistant)    ``tool_calls`` (``input`` as a JSON string)
``tool_result`` (user)      a ``tool`` message each, before the turn's other content
``tools[].input_schema``    ``tools[].function.parameters``
``tool_choice``             auto / any -> required / tool -> function / none;
                            ``disable_parallel_tool_use`` -> ``parallel_tool_calls``
``stop_sequences``          ``stop``
``metadata.user_id``        ``user``
``output_config``           ``format`` (JSON schema) -> ``response_format``;
                            ``effort`` -> ``reasoning_effort``
``top_k``                   the Anthropic and Gemini adapters' ``top_k`` option
``cache_control`` (top)     the Anthropic adapter's automatic ``cache_control``
``service_tier``            the Anthropic adapter's ``service_tier``
``thinking``                dropped: the answer carries no thinking blocks
``speed``, ``container``,   dropped: no counterpart
``inference_geo``,
``diagnostics``,
``user_profile_id``,
``workspace_id``
==========================  ============================================================

Vendor options reach only their vendor's targets (the other adapters drop them).

``cache_control`` on text and image blocks is kept (the Anthropic adapter sends it
on); elsewhere it is dropped. Anything else unknown is refused with a 400.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import HTTPError

__all__ = ["MessagesRequest", "error_body", "error_type", "read_request", "to_chat_params"]

_STRICT = ConfigDict(extra="forbid", defer_build=True)
_LOOSE = ConfigDict(extra="ignore", defer_build=True)


class _CacheControl(BaseModel):
    model_config = _LOOSE
    type: str = "ephemeral"
    ttl: str | None = None


class _Text(BaseModel):
    model_config = _LOOSE  # citations: not translated
    type: Literal["text"]
    text: str
    cache_control: _CacheControl | None = None


class _Source(BaseModel):
    model_config = _LOOSE
    type: Literal["base64", "url", "text"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class _Image(BaseModel):
    model_config = _LOOSE
    type: Literal["image"]
    source: _Source
    cache_control: _CacheControl | None = None


class _Document(BaseModel):
    model_config = _LOOSE
    type: Literal["document"]
    source: _Source
    title: str | None = None
    cache_control: _CacheControl | None = None


class _ToolUse(BaseModel):
    model_config = _LOOSE
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class _ToolResult(BaseModel):
    model_config = _LOOSE
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[_Text | _Image, Field(discriminator="type")]] = ""
    is_error: bool = False


class _Thinking(BaseModel):
    """A thinking block sent back in an assistant turn: not translated (dropped)."""

    model_config = _LOOSE
    type: Literal["thinking", "redacted_thinking"]


_Block = Annotated[
    _Text | _Image | _Document | _ToolUse | _ToolResult | _Thinking, Field(discriminator="type")
]


class _Message(BaseModel):
    model_config = _STRICT
    role: Literal["user", "assistant"]
    content: str | list[_Block]


class _Tool(BaseModel):
    model_config = _LOOSE  # cache_control, type "custom": nothing to translate
    type: Literal["custom"] | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]


class _ToolChoice(BaseModel):
    model_config = _STRICT
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class _OutputFormat(BaseModel):
    model_config = _STRICT
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class _OutputConfig(BaseModel):
    model_config = _STRICT
    effort: str | None = None
    format: _OutputFormat | None = None


class _Metadata(BaseModel):
    model_config = _STRICT
    user_id: str | None = None


class MessagesRequest(BaseModel):
    """A ``POST /v1/messages`` body, validated (Anthropic's own limits where they matter)."""

    model_config = _STRICT
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[_Message] = Field(min_length=1)
    system: str | list[_Text] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: _Metadata | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    output_config: _OutputConfig | None = None
    cache_control: _CacheControl | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    # accepted and dropped (see the module docstring)
    thinking: dict[str, Any] | None = None
    speed: Any = None
    inference_geo: Any = None
    diagnostics: Any = None
    container: Any = None
    user_profile_id: Any = None
    workspace_id: Any = None


def read_request(body: dict[str, Any]) -> MessagesRequest:
    """`body` validated; an Anthropic-style 400 naming the first bad field otherwise."""
    try:
        return MessagesRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        more = exc.error_count() - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise HTTPError(
            400, f"{where}: {first['msg']}{suffix}" if where else first["msg"] + suffix,
            param=where or None,
        ) from None  # fmt: skip


# ---------------------------------------------------------------- request translation


def to_chat_params(request: MessagesRequest) -> dict[str, Any]:
    """The ``chat.completions.create`` parameters (without ``stream``) of an Anthropic request."""
    messages: list[dict[str, Any]] = []
    if request.system:
        system = request.system
        content: Any = system if isinstance(system, str) else [_text_part(b) for b in system]
        messages.append({"role": "system", "content": content})
    for message in request.messages:
        if message.role == "user":
            messages.extend(_user_messages(message.content))
        else:
            messages.append(_assistant_message(message.content))
    params: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
    }
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            params[name] = value
    if request.stop_sequences:
        params["stop"] = request.stop_sequences
    if request.metadata is not None and request.metadata.user_id is not None:
        params["user"] = request.metadata.user_id
    if request.tools:
        params["tools"] = [_tool(t) for t in request.tools]
    if request.tool_choice is not None:
        params.update(_tool_choice(request.tool_choice))
    params.update(_output_config(request.output_config))
    params.update(_vendor_options(request))
    return params


def _output_config(config: _OutputConfig | None) -> dict[str, Any]:
    if config is None:
        return {}
    params: dict[str, Any] = {}
    if config.effort is not None:
        params["reasoning_effort"] = config.effort
    if config.format is not None:
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": config.format.schema_, "strict": True},
        }
    return params


def _vendor_options(request: MessagesRequest) -> dict[str, Any]:
    """``top_k``, top-level ``cache_control`` and ``service_tier``, for the vendors that have them."""
    anthropic: dict[str, Any] = {}
    params: dict[str, Any] = {}
    if request.top_k is not None:
        anthropic["top_k"] = request.top_k
        if request.top_k >= 1:
            params["gemini"] = {"top_k": request.top_k}
    if request.cache_control is not None:
        anthropic["cache_control"] = request.cache_control.model_dump(exclude_none=True)
    if request.service_tier is not None:
        anthropic["service_tier"] = request.service_tier
    if anthropic:
        params["anthropic"] = anthropic
    return params


def _text_part(block: _Text) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": block.text}
    if block.cache_control is not None:
        part["cache_control"] = block.cache_control.model_dump(exclude_none=True)
    return part


def _data_url(source: _Source, kind: str) -> str:
    if source.type == "url" and source.url:
        return source.url
    if source.type == "base64" and source.data is not None and source.media_type:
        return f"data:{source.media_type};base64,{source.data}"
    raise HTTPError(400, f"unsupported {kind} source: {source.type!r}", param="messages")


def _image_part(block: _Image) -> dict[str, Any]:
    part: dict[str, Any] = {
        "type": "image_url",
        "image_url": {"url": _data_url(block.source, "image")},
    }
    if block.cache_control is not None:
        part["cache_control"] = block.cache_control.model_dump(exclude_none=True)
    return part


def _document_part(block: _Document) -> dict[str, Any]:
    if block.source.type == "text" and block.source.data is not None:
        return {"type": "text", "text": block.source.data}
    file: dict[str, Any] = {"file_data": _data_url(block.source, "document")}
    if block.title:
        file["filename"] = block.title
    return {"type": "file", "file": file}


def _user_messages(content: str | list[Any]) -> list[dict[str, Any]]:
    """A user turn: its tool results as ``tool`` messages, then the rest as one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, _ToolResult):
            results.append(_tool_message(block))
        elif isinstance(block, _Text):
            parts.append(_text_part(block))
        elif isinstance(block, _Image):
            parts.append(_image_part(block))
        elif isinstance(block, _Document):
            parts.append(_document_part(block))
        else:
            raise HTTPError(
                400, f"a user message cannot hold a {block.type} block", param="messages"
            )
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _tool_message(block: _ToolResult) -> dict[str, Any]:
    content: Any = block.content
    if not isinstance(content, str):
        if all(isinstance(b, _Text) for b in content):
            content = "".join(b.text for b in content if isinstance(b, _Text))
        else:
            content = [_text_part(b) if isinstance(b, _Text) else _image_part(b) for b in content]
    if block.is_error:
        # Chat Completions has no error flag on a tool result: say it in the content.
        content = f"Error: {content}" if isinstance(content, str) else content
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": content}


def _assistant_message(content: str | list[Any]) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, _Text):
            texts.append(block.text)
        elif isinstance(block, _ToolUse):
            arguments = json.dumps(block.input, separators=(",", ":"), ensure_ascii=False)
            calls.append({
                "id": block.id, "type": "function",
                "function": {"name": block.name, "arguments": arguments},
            })  # fmt: skip
        elif isinstance(block, _Thinking):
            continue  # thinking is not translated (see the module docstring)
        else:
            raise HTTPError(
                400, f"an assistant message cannot hold a {block.type} block", param="messages"
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: _Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description is not None:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _tool_choice(choice: _ToolChoice) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if choice.type == "tool":
        if not choice.name:
            raise HTTPError(400, "tool_choice.name: required with type 'tool'", param="tool_choice")
        params["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        params["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    if choice.disable_parallel_tool_use is not None and choice.type != "none":
        params["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    return params


# ---------------------------------------------------------------- errors

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def _status(status: int) -> int:
    """503 (every target overloaded or rate limited) is 529: Anthropic's "overloaded"."""
    return 529 if status == 503 else status


def error_body(error: HTTPError, request_id: str | None = None) -> tuple[int, bytes]:
    """The status and Anthropic-shaped body of a gateway error (the anthropic SDK retries 529)."""
    return _status(error.status), error_event(error, request_id)


def error_event(error: HTTPError, request_id: str | None = None) -> bytes:
    """``{"type": "error", "error": {type, message}, "request_id"}`` as JSON bytes.

    Anthropic's own errors carry their ``request_id`` at the top level too; here it is the
    gateway's (``lr-...``), when given.
    """
    inner: dict[str, Any] = {"type": error_type(_status(error.status)), "message": error.message}
    if error.code:
        inner["code"] = error.code  # llmroute's own code (an extra the SDK keeps in the body)
    body: dict[str, Any] = {"type": "error", "error": inner}
    if request_id is not None:
        body["request_id"] = request_id
    return json.dumps(body, separators=(",", ":")).encode()

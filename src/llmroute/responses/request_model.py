"""The Responses API request as a model: `ResponsesRequest`, its validation as OpenAI
validates it, and a request made self-contained from a stored conversation.

`validate_responses_request` checks a request as OpenAI would (items of `input` by type,
naming the bad one as ``input[2].content[0].type``; `checks` holds the item checks);
`with_history` makes a request self-contained from a stored conversation;
`builtin_tools` names the tools only a native target can run. Its two forms on the wire
(`native_body`, `to_chat`) are in `llmroute.responses.request`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._errors import RequestError
from .._types import validator
from .checks import (
    check_call_outputs,
    check_item,
    check_text,
    check_tool_choice,
    check_tools,
    invalid,
)
from .types import construct

__all__ = [
    "CHAT_SLOT",
    "ResponsesRequest",
    "builtin_tools",
    "validate_responses_request",
    "with_history",
]

_NOT_BUILTIN = frozenset({"function", "custom"})
#: The names pydantic gives the members of a union in an error's location.
_UNION_TAGS = frozenset({"str", "bool", "int", "float", "list[dict[str,any]]", "dict[str,any]"})


class ResponsesRequest(BaseModel):
    """A Responses API request. Unknown parameters are kept and passed through to native
    upstreams (and to chat targets, which refuse what they do not know)."""

    # The chat translation, made once (`to_chat`: `CHAT_SLOT`). A slot, not a pydantic private
    # attribute: those cost ~5 µs per instance to set up.
    __slots__ = ("_chat",)

    model_config = ConfigDict(extra="allow", defer_build=True)
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    reasoning: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    include: list[str] | None = None
    truncation: str | None = None
    user: str | None = None
    service_tier: str | None = None
    conversation: str | dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tool_calls: int | None = Field(default=None, ge=1)
    background: bool | None = None

    def input_items(self) -> list[dict[str, Any]]:
        """`input` as items (a string is one user message; none: no items)."""
        given = self.input
        if given is None:
            return []
        if isinstance(given, str):
            return [{"type": "message", "role": "user", "content": given}]
        return given


#: The slot holding a request's chat translation (`llmroute.responses.request.to_chat`),
#: read and written through it without pydantic's fallbacks; None until it is made (an
#: unset slot, in a request not made by `validate_responses_request`, raises
#: AttributeError).
CHAT_SLOT = ResponsesRequest.__dict__["_chat"]


def _refuse_unsupported(request: ResponsesRequest) -> None:
    if request.background:
        raise RequestError("background responses are not supported: llmroute runs every "
                           "request in the foreground (leave background unset or false)",
                           param="background")  # fmt: skip
    if request.conversation is not None:
        raise RequestError("conversation objects are not supported: llmroute keeps "
                           "conversation state by previous_response_id (store: true)",
                           param="conversation")  # fmt: skip


def validate_responses_request(body: Mapping[str, Any]) -> ResponsesRequest:
    """Validate Responses API parameters, raising `RequestError` (naming the parameter)
    on bad input and on what llmroute refuses: ``background: true`` and `conversation`."""
    given = body.get("input")
    if isinstance(given, list):
        for index, item in enumerate(given):
            if not isinstance(item, dict):
                raise invalid("an input item must be an object", f"input[{index}]")
    try:
        # the validator itself: it spares the Python around model_validate (a third here)
        request: ResponsesRequest = validator(ResponsesRequest).validate_python(
            body if isinstance(body, dict) else dict(body)
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}"
            for p in first["loc"]
            if isinstance(p, int) or p not in _UNION_TAGS
        ).lstrip(".")
        raise RequestError(f"invalid responses request: {loc}: {first['msg']}",
                           param=loc or None) from exc  # fmt: skip
    _refuse_unsupported(request)
    if isinstance(request.input, list):
        for index, item in enumerate(request.input):
            check_item(item, f"input[{index}]")
        if request.previous_response_id is None:
            check_call_outputs(request.input)
    if request.tools:
        check_tools(request.tools)
    if request.tool_choice is not None:
        check_tool_choice(request.tool_choice)
    if request.text is not None:
        check_text(request.text)
    CHAT_SLOT.__set__(request, None)
    return request


def with_history(request: ResponsesRequest, history: list[dict[str, Any]]) -> ResponsesRequest:
    """A self-contained copy of `request`: `input` is `history` (the stored conversation's
    input and output items, oldest first) then the request's own items, and no
    `previous_response_id`. Raises `RequestError` if a function_call_output then answers
    no call."""
    items = [*history, *request.input_items()]
    check_call_outputs(items)
    values = {**request.__dict__, "input": items, "previous_response_id": None}
    fields = (request.model_fields_set | {"input"}) - {"previous_response_id"}
    return construct(ResponsesRequest, values, fields, dict(request.model_extra or {}))


def builtin_tools(request: ResponsesRequest) -> tuple[str, ...]:
    """The types of the request's tools that only a native target runs (every tool that is
    not ``function`` or ``custom``: ``web_search``, ``file_search``, ``mcp``, ...)."""
    tools = request.tools  # most requests have none: no generator (~3,500 instructions)
    return tuple(str(t["type"]) for t in tools if t["type"] not in _NOT_BUILTIN) if tools else ()

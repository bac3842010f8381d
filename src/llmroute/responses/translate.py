"""A chat completion as a `Response`, for the targets reached through Chat Completions.

The completion's first choice becomes the output items, in the order the Responses
API gives them: the reasoning (a message's ``reasoning_content``, as a summary; the
vendor's signed ``thinking_blocks``, if any, as `encrypted_content`, so that they go
back to the vendor on the next turn), the message (``output_text`` with the
``annotations`` and logprobs the completion had, and a ``refusal`` part), then one
``function_call`` item per tool call (``custom_tool_call`` for a custom tool).
A Gemini call's thought signature goes before the call, in the encrypted content of a
reasoning item (`llmroute.responses.signatures`).
``finish_reason`` ``length`` makes the response ``incomplete`` (``max_output_tokens``),
``content_filter`` likewise (``content_filter``). Usage keeps its cached and reasoning
token details. The request's parameters are echoed as OpenAI echoes them.

The streamed form (`llmroute.responses.events.ChunkEvents`) builds its items and its
final response with the same functions, so both forms give the same `Response`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .._types import ChatCompletion, ChatCompletionMessage, CompletionUsage, ToolCall
from .request import thinking_content
from .request_model import ResponsesRequest
from .signatures import signature_block
from .types import (
    IncompleteDetails,
    ItemStatus,
    OutputItem,
    Response,
    ResponseError,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseStatus,
    ResponseSummaryText,
    ResponseUsage,
    construct,
    response_usage,
)

__all__ = [
    "annotation",
    "build_response",
    "completion_to_response",
    "finish_status",
    "function_call_item",
    "logprobs_of",
    "message_item",
    "new_item_id",
    "output_text",
    "reasoning_item",
    "reasoning_of",
    "refusal_part",
    "summary_text",
    "usage_of",
]


def new_item_id(prefix: str) -> str:
    """A fresh id: `prefix` (``msg``, ``fc``, ``rs``, ``resp``...), ``_``, 48 hex digits, as
    OpenAI's ids look."""
    return f"{prefix}_{os.urandom(24).hex()}"


def finish_status(finish_reason: str | None) -> tuple[ResponseStatus, IncompleteDetails | None]:
    """The response's status (and why it is incomplete) for a chat finish reason."""
    if finish_reason == "length":
        return "incomplete", construct(IncompleteDetails, {"reason": "max_output_tokens"})
    if finish_reason == "content_filter":
        return "incomplete", construct(IncompleteDetails, {"reason": "content_filter"})
    return "completed", None


def annotation(given: Any) -> Any:
    """A chat annotation as the Responses API writes it (a URL citation's fields are
    flattened: ``{type, url_citation: {...}}`` -> ``{type, start_index, ...}``)."""
    if isinstance(given, dict) and given.get("type") == "url_citation":
        inner = given.get("url_citation")
        if isinstance(inner, dict):
            return {"type": "url_citation", **inner}
    return given


def _logprob(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": entry.get("token", ""),
        "bytes": entry.get("bytes") or [],
        "logprob": entry.get("logprob", 0.0),
        "top_logprobs": [
            {
                "token": top.get("token", ""),
                "bytes": top.get("bytes") or [],
                "logprob": top.get("logprob", 0.0),
            }
            for top in entry.get("top_logprobs") or ()
        ],
    }


def logprobs_of(given: Any) -> list[dict[str, Any]] | None:
    """A chat choice's content logprobs as the Responses API writes them (None: none)."""
    if given is None:
        return None
    content = given.get("content") if isinstance(given, dict) else getattr(given, "content", None)
    if not content:
        return None
    return [_logprob(e if isinstance(e, dict) else dict(e)) for e in content]


def reasoning_of(extra: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]]]:
    """The reasoning text and the signed thinking blocks among a message's (or a delta's)
    extra fields."""
    if not extra:
        return "", []
    text = extra.get("reasoning_content")
    blocks = extra.get("thinking_blocks")
    return (text if isinstance(text, str) else ""), (blocks if isinstance(blocks, list) else [])


def reasoning_item(
    item_id: str, text: str, blocks: Sequence[dict[str, Any]], *, status: ItemStatus | None = None
) -> ResponseReasoningItem:
    """A reasoning item: `text` as its one summary part (none when empty), `blocks` as its
    encrypted content."""
    encrypted = thinking_content(list(blocks)) if blocks else None
    values = {"id": item_id, "type": "reasoning", "summary": [summary_text(text)] if text else [],
              "content": None, "encrypted_content": encrypted, "status": status}  # fmt: skip
    fields = ["id", "type", "summary"]
    if encrypted is not None:
        fields.append("encrypted_content")
    if status is not None:
        fields.append("status")
    return construct(ResponseReasoningItem, values, fields)


_TEXT_FIELDS = ("type", "text", "annotations")


def output_text(
    text: str, annotations: list[Any], logprobs: list[dict[str, Any]] | None
) -> ResponseOutputText:
    """An ``output_text`` part (`logprobs` left out when None)."""
    values = {"type": "output_text", "text": text, "annotations": annotations, "logprobs": logprobs}
    return construct(ResponseOutputText, values, _TEXT_FIELDS if logprobs is None else None)


def refusal_part(refusal: str) -> ResponseOutputRefusal:
    """A ``refusal`` part."""
    return construct(ResponseOutputRefusal, {"type": "refusal", "refusal": refusal})


def summary_text(text: str) -> ResponseSummaryText:
    """A reasoning summary's part."""
    return construct(ResponseSummaryText, {"type": "summary_text", "text": text})


def message_item(item_id: str, status: ItemStatus, content: list[Any]) -> ResponseOutputMessage:
    """An assistant message item."""
    return construct(
        ResponseOutputMessage,
        {"id": item_id, "type": "message", "role": "assistant", "status": status,
         "content": content},
    )  # fmt: skip


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: ItemStatus
) -> ResponseFunctionToolCall:
    """A ``function_call`` item."""
    return construct(
        ResponseFunctionToolCall,
        {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
         "arguments": arguments, "status": status},
    )  # fmt: skip


def _call_item(call: ToolCall, status: ItemStatus) -> OutputItem:
    if call.type == "custom":
        custom = call.custom
        return construct(
            ResponseOutputItem,
            {"type": "custom_tool_call"},
            extra={"id": new_item_id("ctc"), "call_id": call.id, "name": custom.name,
                   "input": custom.input, "status": status},
        )  # fmt: skip
    function = call.function
    return function_call_item(new_item_id("fc"), call.id, function.name, function.arguments, status)


def _items(message: ChatCompletionMessage, logprobs: Any, last: ItemStatus) -> list[OutputItem]:
    """The output items of `message`; `last` is the status of the last one (the one a
    length cut leaves incomplete), the others are completed."""
    items: list[OutputItem] = []
    extra = message.__pydantic_extra__  # read once: most answers have none of these
    text, blocks = reasoning_of(extra) if extra else ("", [])
    if text or blocks:
        items.append(reasoning_item(new_item_id("rs"), text, blocks))
    content: list[Any] = []
    if message.content:
        found = extra.get("annotations") if extra else None
        annotations = [annotation(a) for a in found] if isinstance(found, list) else []
        probs = logprobs_of(logprobs) if logprobs is not None else None
        content.append(output_text(message.content, annotations, probs))
    if message.refusal:
        content.append(refusal_part(message.refusal))
    calls = message.tool_calls or ()
    if content:
        status: ItemStatus = "completed" if calls else last
        items.append(message_item(new_item_id("msg"), status, content))
    for position, call in enumerate(calls, 1):
        more = call.__pydantic_extra__
        signed = signature_block(call.id, more) if more else None
        if signed is not None:  # a reasoning item before the call carries it (`signatures`)
            previous = items[-1] if items else None
            if isinstance(previous, ResponseReasoningItem):  # the model's, as a stream has it
                blocks = [*blocks, signed]
                items[-1] = reasoning_item(previous.id, text, blocks)
            else:
                items.append(reasoning_item(new_item_id("rs"), "", [signed]))
        items.append(_call_item(call, last if position == len(calls) else "completed"))
    return items


def usage_of(usage: CompletionUsage | None) -> ResponseUsage | None:
    """A chat completion's usage as the Responses API reports it (what
    `CompletionUsage.normalised` reads, without the `TokenUsage` in between)."""
    if usage is None:
        return None
    given, made = usage.prompt_tokens_details, usage.completion_tokens_details
    written = (given.__pydantic_extra__ or {}).get("cache_write_tokens") if given else None
    return response_usage(
        usage.prompt_tokens,
        usage.completion_tokens,
        (given.cached_tokens or 0) if given else 0,
        int(written) if isinstance(written, int) else 0,
        (made.reasoning_tokens or 0) if made else 0,
    )


#: What `build_response` starts from: every field of a `Response`, in order, None but
#: the constant. Fast path: copying it and setting a dozen fields costs ~19,400
#: instructions against ~26,400 for the 25-entry dict written out (callgrind). Oracle:
#: tests/test_responses_fast_paths.py (the response written out and validated).
_RESPONSE = dict.fromkeys(Response.model_fields, None) | {"object": "response"}
_RESPONSE_FIELDS = frozenset(_RESPONSE)
#: The parameters a response echoes as they are when the request sets them.
_ECHOED = ("instructions", "max_output_tokens", "previous_response_id", "reasoning",
           "temperature", "top_p", "user")  # fmt: skip


def build_response(
    request: ResponsesRequest,
    *,
    response_id: str,
    created_at: float,
    model: str,
    status: ResponseStatus,
    output: list[OutputItem],
    usage: ResponseUsage | None = None,
    incomplete_details: IncompleteDetails | None = None,
    error: ResponseError | None = None,
) -> Response:
    """A `Response` echoing `request`'s parameters as OpenAI does (with its defaults:
    ``tool_choice: "auto"``, ``parallel_tool_calls: true``, ``store: true``, text format
    ``text``, ``truncation: "disabled"``, ``metadata: {}``); every field is set."""
    given = request.__dict__  # plain reads: a Response is built per request, or twice a stream
    values = _RESPONSE.copy()
    values["id"], values["created_at"], values["status"] = response_id, created_at, status
    values["model"], values["output"], values["usage"] = model, output, usage
    values["error"], values["incomplete_details"] = error, incomplete_details
    for name in _ECHOED:
        value = given[name]
        if value is not None:
            values[name] = value
    store, text, choice = given["store"], given["text"], given["tool_choice"]
    tools, metadata = given["tools"], given["metadata"]
    values["parallel_tool_calls"] = given["parallel_tool_calls"] is not False
    values["store"] = True if store is None else store
    values["text"] = {"format": {"type": "text"}} if text is None else text
    values["tool_choice"] = "auto" if choice is None else choice
    values["tools"] = [] if tools is None else tools
    values["truncation"] = given["truncation"] or "disabled"
    values["metadata"] = {} if metadata is None else metadata
    return construct(Response, values, _RESPONSE_FIELDS)


#: The finish reasons that leave a response incomplete (`finish_status`).
_CUT = frozenset({"length", "content_filter"})


def completion_to_response(
    completion: ChatCompletion, request: ResponsesRequest, *, response_id: str, created_at: float
) -> Response:
    """`completion` (the answer of a translated target) as the `Response` to `request`."""
    output: list[OutputItem] = []
    status: ResponseStatus = "completed"
    details = None
    choices = completion.choices
    if choices:
        choice = choices[0]
        last: ItemStatus = "completed"
        if choice.finish_reason in _CUT:
            status, details = finish_status(choice.finish_reason)
            last = "incomplete"
        output = _items(choice.message, choice.logprobs, last)
    return build_response(
        request,
        response_id=response_id,
        created_at=created_at,
        model=completion.model,
        status=status,
        output=output,
        usage=usage_of(completion.usage),
        incomplete_details=details,
    )

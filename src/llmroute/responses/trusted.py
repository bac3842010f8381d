"""A Responses request's chat translation built trusted (`trusted_chat`).

`to_chat` writes the chat request as a dict, then makes it a `ChatRequest`. What it
writes was checked when the request was validated as a Responses request, or written
by llmroute itself, and the chat fields it fills have the same types and bounds as the
Responses parameters they come from. So for the shapes it writes most, messages of
string content, function tools and function calls, `trusted_chat` builds the models
that validation would (with `construct`) instead of validating them a second time. For
any other shape (content parts, a custom tool, a type it cannot vouch for, a chat field
given as an extra parameter) it returns None, and `to_chat` validates.

Fast path: the chat view of a one-message request ~28,900 (validation) -> ~20,900
instructions (callgrind). Oracle: tests/test_responses_fast_paths.py (what it builds is what
validation builds, over varied bodies and requests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from .._request import (
    NO_CHAT_FIELDS,
    AssistantMessage,
    ChatRequest,
    FunctionCallParam,
    FunctionDefinition,
    FunctionTool,
    FunctionToolCallParam,
    StreamOptions,
    ToolMessage,
    plain_message,
)
from .items import construct

__all__ = ["trusted_chat"]

#: Every field of a chat request, None (`model` and `messages` are always given).
_CHAT = NO_CHAT_FIELDS
#: The roles `plain_message` builds.
_PLAIN = frozenset({"system", "developer", "user"})
_ASSISTANT_KEYS = frozenset({"role", "content", "refusal", "tool_calls", "thinking_blocks"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def trusted_chat(body: dict[str, Any], passed: Mapping[str, Any] | None) -> ChatRequest | None:
    """The `ChatRequest` that validating `body` would make, or None when `body` has a
    shape this does not vouch for. `passed`: the Responses request's extra parameters,
    which `body` passes through unchecked (one that names a chat field needs validation).
    """
    if passed and not _CHAT.keys().isdisjoint(passed):
        return None
    messages: list[BaseModel] = []
    for message in body["messages"]:
        made = _message(message)
        if made is None:
            return None
        messages.append(made)
    values = _CHAT.copy()
    values.update(body)
    extra = None
    if len(values) != len(_CHAT):  # parameters chat does not declare (verbosity, ...)
        extra = {name: values.pop(name) for name in body if name not in _CHAT}
    values["messages"] = messages
    if values["tools"] is not None:
        tools = [_tool(t) for t in values["tools"]]
        if None in tools:
            return None
        values["tools"] = tools
    if values["stream_options"] is not None:
        options = values["stream_options"]
        values["stream_options"] = construct(
            StreamOptions,
            {"include_usage": options.get("include_usage")},
            options,
            {k: v for k, v in options.items() if k != "include_usage"},
        )
    if values["metadata"] is not None:
        values["metadata"] = dict(values["metadata"])  # validation's copy
    effort = values["reasoning_effort"]
    if effort is not None and type(effort) is not str:
        return None
    return construct(ChatRequest, values, body, extra)


def _message(message: dict[str, Any]) -> BaseModel | None:
    role, content = message["role"], message["content"]
    if role in _PLAIN:
        return plain_message(message)
    if role == "tool":
        if type(content) is not str or len(message) != 3:
            return None
        values = {"role": role, "content": content, "tool_call_id": message["tool_call_id"]}
        return construct(ToolMessage, values)
    if role != "assistant" or not _ASSISTANT_KEYS.issuperset(message):
        return None
    if content is not None and type(content) is not str:
        return None
    calls = message.get("tool_calls")
    if calls is not None:
        calls = [_call(c) for c in calls]
        if None in calls:
            return None
    blocks = (
        {"thinking_blocks": message["thinking_blocks"]} if "thinking_blocks" in message else None
    )
    values = {"role": role, "content": content, "name": None, "refusal": message.get("refusal"),
              "tool_calls": calls, "function_call": None}  # fmt: skip
    return construct(AssistantMessage, values, message, blocks)


def _call(call: dict[str, Any]) -> FunctionToolCallParam | None:
    # a call with more than its id, type and function (a Gemini thought signature in
    # `extra_content`) keeps it through validation
    if call["type"] != "function" or len(call) != 3 or len(call["function"]) != 2:
        return None
    given = call["function"]
    function = construct(
        FunctionCallParam, {"name": given["name"], "arguments": given["arguments"]}
    )
    values = {"id": call["id"], "type": "function", "function": function}
    return construct(FunctionToolCallParam, values)


def _tool(tool: dict[str, Any]) -> FunctionTool | None:
    if tool["type"] != "function":
        return None
    given = tool["function"]
    if not _FUNCTION_KEYS.issuperset(given):
        return None
    description, parameters, strict = (
        given.get("description"),
        given.get("parameters"),
        given.get("strict"),
    )
    if description is not None and type(description) is not str:
        return None
    if strict is not None and type(strict) is not bool:
        return None
    if parameters is not None:
        if type(parameters) is not dict or not all(type(k) is str for k in parameters):
            return None
        parameters = dict(parameters)  # validation's copy
    values = {"name": given["name"], "description": description, "parameters": parameters,
              "strict": strict}  # fmt: skip
    function = construct(FunctionDefinition, values, given)
    return construct(FunctionTool, {"type": "function", "function": function})

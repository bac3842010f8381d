"""Structured outputs: ``chat.completions.parse``, as in the openai SDK.

`parse(response_format=SomeModel)` sends the model's JSON schema as a strict
``json_schema`` response format and returns a `ParsedChatCompletion` whose
messages carry `parsed` (None when the model refused: `refusal` says why).
Tools made with ``openai.pydantic_function_tool(Model)`` (strict function
tools) are parsed too: each tool call's ``function.parsed_arguments`` is the
validated model (the JSON arguments for another strict function tool, None
for a tool that is not strict). An answer that ended at its token limit or
was stopped by the content filter cannot be parsed: `LengthFinishReasonError`
and `ContentFilterFinishReasonError`, as the SDK raises. The ``stream()``
helper, which parses the same way, is in `llmroute._stream_helper`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar, cast

from pydantic import BaseModel, Discriminator, Field, Tag, TypeAdapter
from pydantic_core import from_json

from ._errors import ContentFilterFinishReasonError, LengthFinishReasonError
from ._params import given
from ._types import (
    ChatCompletion,
    ChatCompletionMessage,
    ChatCompletionMessageCustomToolCall,
    ChatCompletionMessageToolCall,
    Choice,
    FunctionCall,
    tool_call_kind,
)

__all__ = [
    "ParsedChatCompletion",
    "ParsedChatCompletionMessage",
    "ParsedChoice",
    "ParsedFunction",
    "ParsedFunctionToolCall",
    "Parsing",
    "parse_completion",
    "partial_json",
    "response_format_param",
    "stream_params",
]

ContentT = TypeVar("ContentT")


# ---------------------------------------------------------------- parsed completions


class ParsedFunction(FunctionCall):
    """A tool call's function with its arguments parsed: into the tool's model for a tool
    made with ``openai.pydantic_function_tool``, as JSON for another strict function tool,
    None for a tool that is not strict (as the openai SDK's ``ParsedFunction``)."""

    parsed_arguments: object = None


class ParsedFunctionToolCall(ChatCompletionMessageToolCall):
    """A function tool call whose arguments are parsed (`function.parsed_arguments`)."""

    function: ParsedFunction


#: A tool call in a parsed message: a function's, parsed, or a custom tool's, as it came.
ParsedToolCall = Annotated[
    Annotated[ParsedFunctionToolCall, Tag("function")]
    | Annotated[ChatCompletionMessageCustomToolCall, Tag("custom")],
    Discriminator(tool_call_kind),
]


def _is_none(value: object) -> bool:
    return value is None


class ParsedChatCompletionMessage(ChatCompletionMessage, Generic[ContentT]):
    """An assistant message with its content `parsed` into the requested type (None when
    the model refused, or no type was requested) and its tool calls' arguments parsed."""

    parsed: ContentT | None = None
    tool_calls: list[ParsedToolCall] | None = Field(default=None, exclude_if=_is_none)  # type: ignore[assignment]


class ParsedChoice(Choice, Generic[ContentT]):
    """A choice whose message is parsed."""

    message: ParsedChatCompletionMessage[ContentT]


class ParsedChatCompletion(ChatCompletion, Generic[ContentT]):
    """A chat completion whose choices' messages are parsed, as the openai SDK's
    ``ParsedChatCompletion``."""

    choices: list[ParsedChoice[ContentT]]  # type: ignore[assignment]


# ---------------------------------------------------------------- what to parse with


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


def partial_json(text: str) -> Any:
    """What of `text`, a JSON document still arriving, parses so far (None: nothing yet)."""
    try:
        return from_json(text, allow_partial=True)
    except ValueError:
        return None


def _tool_model(function: object) -> type[BaseModel] | None:
    """The model of a tool made with ``openai.pydantic_function_tool`` (its function
    definition is a dict that carries it as ``.model``), else None."""
    model = getattr(function, "model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


@dataclass(frozen=True, slots=True)
class Parsing:
    """What a ``parse()`` or ``stream()`` call parses its answer with: the response format
    (a type, a parameter dict, or None) and the tools the request gave."""

    response_format: object = None
    tools: tuple[Mapping[str, Any], ...] = ()

    @property
    def rich_format(self) -> object | None:
        """The response format when it is a type to parse into, else None."""
        response_format = self.response_format
        return response_format if _is_type(response_format) else None

    def function(self, name: str) -> Mapping[str, Any] | None:
        """The function definition of the tool named `name`, if the request gave one."""
        for tool in self.tools:
            function = tool.get("function") if tool.get("type") == "function" else None
            if isinstance(function, Mapping) and function.get("name") == name:
                return function
        return None

    def strict(self, name: str) -> bool:
        """Whether `name` is a strict function tool (its arguments are parsed)."""
        function = self.function(name)
        return function is not None and function.get("strict") is True

    @property
    def parseable(self) -> bool:
        """Whether anything is parsed: a type to parse into, or a strict function tool."""
        if self.rich_format is not None:
            return True
        functions = (t.get("function") for t in self.tools if t.get("type") == "function")
        return any(isinstance(f, Mapping) and f.get("strict") is True for f in functions)

    def content(self, content: str | None, refusal: str | None) -> Any:
        """A message's whole content parsed into the response format (None: a refusal, no
        content, or no type to parse into); pydantic's ValidationError if it does not fit."""
        response_format = self.rich_format
        if response_format is None or not content or refusal:
            return None
        return TypeAdapter[Any](cast(Any, response_format)).validate_json(content)

    def arguments(self, name: str, arguments: str) -> object:
        """A tool call's whole arguments parsed: the tool's model, JSON for a strict tool,
        None otherwise (as the openai SDK's ``parse_function_tool_arguments``)."""
        function = self.function(name)
        if function is None:
            return None
        model = _tool_model(function)
        if model is not None:
            return model.model_validate_json(arguments)
        if function.get("strict") is not True:
            return None
        return json.loads(arguments)


def stream_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], Parsing]:
    """`params` for ``create()``, with a type `response_format` turned into its schema; and
    what to parse the answer with."""
    out = dict(params)
    response_format = out.get("response_format")
    if response_format is not None:
        out["response_format"] = response_format_param(response_format)
    tools = out.get("tools")
    given_tools: Iterable[Any] = tools if tools is not None and given(tools) else ()
    if not isinstance(given_tools, list | tuple):
        given_tools = out["tools"] = list(given_tools)  # an iterator, read once: kept
    listed = tuple(t for t in given_tools if isinstance(t, Mapping))
    return out, Parsing(response_format, listed)


# ---------------------------------------------------------------- parsing an answer


def check_finish(choice_finish: str | None, completion: ChatCompletion) -> None:
    """Raise the openai SDK's error for a finish reason that leaves nothing to parse."""
    if choice_finish == "length":
        raise LengthFinishReasonError(completion=completion)
    if choice_finish == "content_filter":
        raise ContentFilterFinishReasonError(completion=completion)


def parse_completion(completion: ChatCompletion, parsing: Parsing) -> ParsedChatCompletion[Any]:
    """`completion` with every message's content parsed into the response format (a
    refusal leaves `parsed` None) and every function tool call's arguments parsed.

    Raises `LengthFinishReasonError` / `ContentFilterFinishReasonError` for a choice that
    ended at its token limit or was stopped by the content filter, as the openai SDK does.
    """
    for choice in completion.choices:
        check_finish(choice.finish_reason, completion)
    data = completion.model_dump(exclude_unset=True)
    for choice, raw in zip(completion.choices, data["choices"], strict=True):
        message = choice.message
        raw_message = raw["message"]
        raw_message["parsed"] = parsing.content(message.content, message.refusal)
        raw_calls = raw_message.get("tool_calls") or ()
        for call, raw_call in zip(message.tool_calls or (), raw_calls, strict=True):
            if isinstance(call, ChatCompletionMessageToolCall):
                function = call.function
                parsed = parsing.arguments(function.name, function.arguments)
                raw_call["function"]["parsed_arguments"] = parsed
    result = ParsedChatCompletion[Any].model_validate(data)
    info = completion.llmroute
    if info.request_id:
        result.attach_route_info(info)
    return result

"""The checks of a Responses request's items and parameters that pydantic's types leave to
code: each failure is a `RequestError` naming the parameter (``input[2].content[0].type``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._errors import RequestError

__all__ = [
    "BUILTIN_ITEM_TYPES",
    "check_call_outputs",
    "check_item",
    "check_text",
    "check_tool_choice",
    "check_tools",
    "invalid",
]

#: Item types of built-in tools' calls and outputs (and other OpenAI-run items): kept
#: whole for native targets.
BUILTIN_ITEM_TYPES = frozenset({
    "web_search_call", "file_search_call", "computer_call", "computer_call_output",
    "code_interpreter_call", "image_generation_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
    "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output",
    "additional_tools", "compaction", "compaction_trigger", "program", "program_output",
    "configuration_update", "item_reference",
})  # fmt: skip

_ROLES = frozenset({"user", "assistant", "system", "developer"})
_INPUT_PARTS = frozenset({"input_text", "input_image", "input_file", "input_audio"})
_ASSISTANT_PARTS = frozenset({"output_text", "refusal", "input_text"})
_OUTPUT_PARTS = frozenset({"input_text", "input_image", "input_file", "output_text"})
_CHOICES = frozenset({"auto", "none", "required"})
_FORMATS = frozenset({"text", "json_object", "json_schema"})


def invalid(message: str, param: str) -> RequestError:
    return RequestError(f"invalid responses request: {param}: {message}", param=param)


def _need_str(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        kind = "missing" if value is None else f"must be a string, not {type(value).__name__}"
        raise invalid(f"{key!r} is {kind}" if value is None else kind, f"{where}.{key}")
    return value


def _check_part(part: Any, where: str, allowed: frozenset[str]) -> None:
    if not isinstance(part, dict):
        raise invalid("a content part must be an object", where)
    kind = part.get("type")
    if kind not in allowed:
        raise invalid(f"unknown or misplaced content part type {kind!r} (expected one of "
                    f"{', '.join(sorted(allowed))})", f"{where}.type")  # fmt: skip
    if kind in ("input_text", "output_text"):
        _need_str(part, "text", where)
    elif kind == "refusal":
        _need_str(part, "refusal", where)
    elif kind == "input_image" and part.get("image_url") is None and part.get("file_id") is None:
        raise invalid("an input_image needs image_url or file_id", where)
    elif kind == "input_file" and not any(
        part.get(k) is not None for k in ("file_data", "file_id", "file_url")
    ):
        raise invalid("an input_file needs file_data, file_id or file_url", where)


def _check_content(item: Mapping[str, Any], where: str, allowed: frozenset[str]) -> None:
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid("'content' must be a string or a list of content parts", f"{where}.content")
    for index, part in enumerate(content):
        _check_part(part, f"{where}.content[{index}]", allowed)


def _check_message(item: Mapping[str, Any], where: str) -> None:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(f"unknown role {role!r} (expected user, assistant, system or developer)",
                    f"{where}.role")  # fmt: skip
    _check_content(item, where, _ASSISTANT_PARTS if role == "assistant" else _INPUT_PARTS)


def _check_output(item: Mapping[str, Any], where: str) -> None:
    _need_str(item, "call_id", where)
    output = item.get("output")
    if isinstance(output, list):
        for index, part in enumerate(output):
            _check_part(part, f"{where}.output[{index}]", _OUTPUT_PARTS)
    elif not isinstance(output, str):
        raise invalid("'output' must be a string or a list of content parts", f"{where}.output")


def _check_reasoning(item: Mapping[str, Any], where: str) -> None:
    if not isinstance(item.get("summary"), list):
        raise invalid("'summary' must be a list", f"{where}.summary")


def _strings(*keys: str) -> Callable[[Mapping[str, Any], str], None]:
    def check(item: Mapping[str, Any], where: str) -> None:
        for key in keys:
            _need_str(item, key, where)

    return check


#: Item type -> its check (the built-in items' are left to the native upstream).
_ITEM_CHECKS: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    "message": _check_message,
    "function_call": _strings("call_id", "name", "arguments"),
    "function_call_output": _check_output,
    "custom_tool_call": _strings("call_id", "name", "input"),
    "custom_tool_call_output": _check_output,
    "reasoning": _check_reasoning,
}


def check_item(item: dict[str, Any], where: str) -> None:
    kind = item.get("type")
    if kind is None and "role" in item:
        kind = "message"
    check = _ITEM_CHECKS.get(kind)  # type: ignore[arg-type]
    if check is not None:
        check(item, where)
    elif kind not in BUILTIN_ITEM_TYPES:
        raise invalid(f"unknown item type {kind!r}", f"{where}.type")


def check_tools(tools: list[dict[str, Any]]) -> None:
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        kind = tool.get("type")
        if not isinstance(kind, str):
            raise invalid("a tool needs a 'type'", f"{where}.type")
        if kind in ("function", "custom"):
            _need_str(tool, "name", where)
        if kind == "function" and not isinstance(tool.get("parameters", {}), dict | None):
            raise invalid("'parameters' must be a JSON schema object", f"{where}.parameters")


def check_tool_choice(choice: str | dict[str, Any]) -> None:
    if isinstance(choice, str):
        if choice not in _CHOICES:
            raise invalid(f"{choice!r} is not auto, none or required", "tool_choice")
        return
    if not isinstance(choice.get("type"), str):
        raise invalid("a tool choice needs a 'type'", "tool_choice.type")
    if choice["type"] in ("function", "custom"):
        _need_str(choice, "name", "tool_choice")


def check_text(text: dict[str, Any]) -> None:
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in _FORMATS:
        kind = fmt.get("type") if isinstance(fmt, dict) else fmt
        raise invalid(f"unknown format {kind!r} (expected text, json_object or json_schema)",
                    "text.format.type")  # fmt: skip
    if fmt["type"] == "json_schema":
        _need_str(fmt, "name", "text.format")
        if not isinstance(fmt.get("schema"), dict):
            raise invalid("a json_schema format needs a 'schema' object", "text.format.schema")


def check_call_outputs(items: list[dict[str, Any]]) -> None:
    """Every function_call_output (custom_tool_call_output) answers an earlier call."""
    calls: set[str] = set()
    for index, item in enumerate(items):
        kind = item.get("type")
        if kind in ("function_call", "custom_tool_call"):
            calls.add(item["call_id"])
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id")
            if call_id not in calls:
                raise RequestError(
                    f"No tool call found for function call output with call_id {call_id}.",
                    param=f"input[{index}].call_id",
                )

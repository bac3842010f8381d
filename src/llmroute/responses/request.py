"""The Responses API request's two forms on the wire.

`native_body` is what an OpenAI or Azure OpenAI target receives; `to_chat` is the Chat
Completions request every other target receives. The request itself (`ResponsesRequest`,
its validation, conversation history) is in `llmroute.responses.request_model`.

How `to_chat` translates each parameter (a refusal is a `RequestError` naming the
parameter: that target is then ineligible, and the router tries the next):

====================== ==========================================================
Responses              Chat Completions
====================== ==========================================================
model                  model
instructions           the first message, role ``system``
input (string)         one user message
input message items    messages of the same role (``system``, ``developer``,
                       ``user``, ``assistant``); consecutive assistant items
                       (message, function_call, custom_tool_call) make one
                       assistant message
 input_text,           a text part (a message of one text part: string content)
 output_text
 refusal part          the assistant message's ``refusal``
 input_image           an ``image_url`` part (url or data URL, ``detail`` kept);
                       with ``file_id``: refused (an OpenAI file id means
                       nothing elsewhere)
 input_file            with ``file_data``: a ``file`` part (``file_data``,
                       ``filename``); with ``file_id`` or ``file_url``: refused
 input_audio           an ``input_audio`` part
function_call          an assistant ``tool_calls`` entry (id = ``call_id``)
function_call_output   a ``tool`` message (``tool_call_id`` = ``call_id``;
                       parts of a list output mapped as above)
custom_tool_call(_     a custom tool call / a tool message (OpenAI-compatible
 output)               targets express custom tools; others refuse them)
reasoning              dropped: its summary is the model's own note of its
                       thinking, not conversation; its ``encrypted_content``
                       is readable only by the vendor that wrote it. Except
                       reasoning llmroute translated from a vendor's signed
                       thinking (`THINKING_PREFIX`): sent back as that
                       assistant message's ``thinking_blocks``, as Anthropic
                       and Bedrock need to continue a tool loop; Gemini's
                       thought signatures go back on their calls (`signatures`)
web_search_call,       dropped: records of searches the server ran; what they
 file_search_call      found is in the assistant message that follows
item_reference and     refused (only OpenAI can resolve or run them)
 other built-in items
tools: function        ``{type: function, function: {name, description,
                       parameters, strict}}``
tools: custom          ``{type: custom, custom: {name, description, format}}``
tools: built-in        left out: `builtin_tools` names them, and the exchange
                       makes every translated target ineligible
tool_choice            auto / none / required as they are; ``{type: function,
                       name}`` -> ``{type: function, function: {name}}``;
                       custom likewise; allowed_tools -> chat's allowed_tools;
                       a built-in tool's choice: refused
text.format            json_schema -> ``response_format: {type: json_schema,
                       json_schema: {name, schema, strict, description}}``;
                       json_object as is; text -> nothing (the default)
text.verbosity         ``verbosity`` (OpenAI-compatible targets use it; the
                       vendor adapters drop it as an OpenAI-only hint)
max_output_tokens      max_completion_tokens
reasoning.effort       reasoning_effort
reasoning.summary,     dropped: they choose how OpenAI presents its reasoning;
 other reasoning keys  a translated target returns its reasoning text, if any,
                       as the summary
parallel_tool_calls,   the same parameter
 temperature, top_p,
 user, metadata,
 service_tier,
 prompt_cache_key
top_logprobs           top_logprobs when `include` asks for
                       ``message.output_text.logprobs``; without it, dropped
                       (the Responses API returns no logprobs then either, and
                       chat refuses top_logprobs without logprobs)
safety_identifier      ``safety_identifier`` (dropped by the vendor adapters as
                       an OpenAI-only hint)
stream                 stream, with ``stream_options.include_usage`` (the
                       final event carries usage); stream_options'
                       include_obfuscation kept
store                  dropped: llmroute keeps the conversation itself; chat's
                       ``store`` would store it at the provider
previous_response_id   resolved before (`with_history`); still set: refused
include                ``message.output_text.logprobs`` -> ``logprobs: true``
                       (the answer's logprobs come back on its output_text);
                       ``reasoning.encrypted_content``:
                       nothing to ask (translated thinking is always returned);
                       the built-in tools' outputs: dropped (no built-in tool
                       runs on a translated target)
truncation             dropped: ``auto`` matters only when the input overflows
                       the context, where a translated target fails with
                       `ContextLengthExceeded` instead of truncating
max_tool_calls         dropped: it caps built-in tool calls, which a
                       translated target never makes
prompt                 refused (a prompt template stored at OpenAI)
context_management     refused (OpenAI's server-side compaction)
background: true,      refused by `validate_responses_request` for every target
 conversation
other parameters       passed through as chat parameters (OpenAI-compatible
                       targets receive them; the vendor adapters refuse them
                       by name)
====================== ==========================================================
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json, to_json

from .._errors import RequestError
from .._request import ChatRequest
from .._types import validator
from .checks import (
    BUILTIN_ITEM_TYPES,
)
from .request_model import CHAT_SLOT, ResponsesRequest
from .signatures import signed_call, split_thinking
from .trusted import trusted_chat

__all__ = [
    "BUILTIN_ITEM_TYPES",
    "THINKING_PREFIX",
    "native_body",
    "thinking_content",
    "to_chat",
]

#: The `encrypted_content` of a reasoning item llmroute made from a vendor's signed
#: thinking blocks (Anthropic's, Bedrock's) or Gemini's thought signatures
#: (`llmroute.responses.signatures`): this prefix, then the blocks as JSON. Such an item
#: goes back to that kind of target as ``thinking_blocks`` (a signature: on its call); a
#: native OpenAI target, which could not read it, never receives it (`native_body`).
THINKING_PREFIX = "llmroute.thinking:"

#: Built-in items a translated target leaves out (see the table above).
_DROPPED_ITEMS = frozenset({"web_search_call", "file_search_call"})

_LOGPROBS = "message.output_text.logprobs"


def thinking_content(blocks: list[dict[str, Any]]) -> str:
    """The `encrypted_content` of a reasoning item carrying a vendor's signed thinking."""
    return THINKING_PREFIX + to_json(blocks).decode()


# ---------------------------------------------------------------- native


def _native_item(item: dict[str, Any]) -> bool:
    """Whether OpenAI can take `item` back: reasoning needs its own encrypted content
    (with ``store: false`` an id alone resolves nothing), not llmroute's thinking."""
    if item.get("type") != "reasoning":
        return True
    encrypted = item.get("encrypted_content")
    return isinstance(encrypted, str) and not encrypted.startswith(THINKING_PREFIX)


def native_body(request: ResponsesRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The JSON body for a native (OpenAI, Azure OpenAI) upstream.

    Every parameter the caller set, extras included, with `model` replaced, ``store:
    false`` (llmroute keeps the conversation), no `previous_response_id` (resolve it
    first with `with_history`), `stream` set, and ``reasoning.encrypted_content`` added
    to `include` when reasoning is used, so that the conversation keeps its reasoning.
    Reasoning items OpenAI could not read back (without encrypted content, or
    llmroute's translated thinking) are left out of `input`.
    """
    body = request.model_dump(exclude_unset=True)
    body.pop("previous_response_id", None)
    body["model"] = model
    body["store"] = False
    body["stream"] = stream
    items = body.get("input")
    reasoned = request.reasoning is not None
    if isinstance(items, list):
        reasoned = reasoned or any(i.get("type") == "reasoning" for i in items)
        body["input"] = [item for item in items if _native_item(item)]
    if reasoned:
        include = list(body.get("include") or ())
        if "reasoning.encrypted_content" not in include:
            include.append("reasoning.encrypted_content")
        body["include"] = include
    return body


# ---------------------------------------------------------------- chat


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = part.get("image_url")
    if url is None:
        raise RequestError(
            f"{where}: an input_image with a file_id can only be sent to an OpenAI target "
            "(other providers cannot read OpenAI files): send image_url (a URL or data URL)",
            param=f"{where}.file_id",
        )
    image: dict[str, Any] = {"url": url}
    if part.get("detail") in ("auto", "low", "high"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    data = part.get("file_data")
    if data is None:
        which = "file_id" if part.get("file_id") is not None else "file_url"
        raise RequestError(
            f"{where}: an input_file with a {which} can only be sent to an OpenAI target: "
            "send file_data (a data URL) to reach other providers",
            param=f"{where}.{which}",
        )
    file: dict[str, Any] = {"file_data": data}
    if part.get("filename") is not None:
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _chat_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        return _image_part(part, where)
    if kind == "input_file":
        return _file_part(part, where)
    return {"type": "input_audio", "input_audio": part["input_audio"]}


def _chat_content(content: Any, where: str) -> Any:
    """String content as it is; parts mapped (one text part: its string)."""
    if isinstance(content, str):
        return content
    parts = [_chat_part(p, f"{where}[{i}]") for i, p in enumerate(content)]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


class _Messages:
    """Builds chat messages from input items, one assistant turn at a time."""

    __slots__ = ("messages", "signatures", "thinking", "turn")

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.turn: dict[str, Any] | None = None  # the open assistant message
        self.thinking: list[dict[str, Any]] = []  # for the next assistant message
        self.signatures: dict[str, str] = {}  # call id -> its thought signature

    def assistant(self) -> dict[str, Any]:
        turn = self.turn
        if turn is None:
            turn = self.turn = {"role": "assistant", "content": None}
            if self.thinking:
                turn["thinking_blocks"], self.thinking = self.thinking, []
            self.messages.append(turn)
        return turn

    def other(self, message: dict[str, Any]) -> None:
        self.turn = None
        self.messages.append(message)

    def add(self, item: dict[str, Any], where: str) -> None:
        kind = item.get("type") or "message"
        if kind == "message":
            self.message(item, where)
        elif kind in ("function_call", "custom_tool_call"):
            self.call(item)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item["output"]
            content = _chat_content(output, f"{where}.output") if output != [] else ""
            self.other({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        elif kind == "reasoning":
            self.reasoning(item, where)
        elif kind not in _DROPPED_ITEMS:
            raise RequestError(
                f"{where}: a {kind} item can only be sent to a target that runs the Responses "
                "API natively (OpenAI or Azure OpenAI)",
                param=f"{where}.type",
            )

    def message(self, item: dict[str, Any], where: str) -> None:
        role, content = item["role"], item["content"]
        if role != "assistant":
            self.other({"role": role, "content": _chat_content(content, f"{where}.content")})
            return
        turn = self.assistant()
        if turn.get("tool_calls"):  # text after calls: a new assistant message
            self.turn = None
            turn = self.assistant()
        if isinstance(content, str):
            texts = [content]
        else:
            texts = [p["text"] for p in content if p["type"] != "refusal"]
            refusals = [p["refusal"] for p in content if p["type"] == "refusal"]
            if refusals:
                turn["refusal"] = (turn.get("refusal") or "") + "".join(refusals)
        if texts:
            turn["content"] = (turn["content"] or "") + "".join(texts)

    def call(self, item: dict[str, Any]) -> None:
        if item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}  # fmt: skip
            signature = self.signatures.pop(item["call_id"], None) if self.signatures else None
            if signature is not None:
                call = signed_call(call, signature)
        else:
            call = {"id": item["call_id"], "type": "custom",
                    "custom": {"name": item["name"], "input": item["input"]}}  # fmt: skip
        self.assistant().setdefault("tool_calls", []).append(call)

    def reasoning(self, item: dict[str, Any], where: str) -> None:
        encrypted = item.get("encrypted_content")
        if not (isinstance(encrypted, str) and encrypted.startswith(THINKING_PREFIX)):
            return  # dropped: see the module's table
        try:
            blocks, signatures = split_thinking(from_json(encrypted[len(THINKING_PREFIX) :]))
        except ValueError as exc:
            raise RequestError(f"{where}: damaged encrypted_content",
                               param=f"{where}.encrypted_content") from exc  # fmt: skip
        self.signatures.update(signatures)  # for the calls that follow, in this turn or not
        if blocks:
            self.turn = None
            self.thinking.extend(blocks)


def _tool(tool: dict[str, Any]) -> dict[str, Any] | None:
    kind = tool["type"]
    if kind == "function":
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict")
                    if tool.get(k) is not None}  # fmt: skip
        return {"type": "function", "function": function}
    if kind == "custom":
        custom = {k: tool[k] for k in ("name", "description", "format") if tool.get(k) is not None}
        return {"type": "custom", "custom": custom}
    return None  # built-in: see builtin_tools()


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    kind = choice["type"]
    if kind == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind == "custom":
        return {"type": "custom", "custom": {"name": choice["name"]}}
    if kind == "allowed_tools":
        tools = [_tool_choice(t) for t in choice.get("tools") or ()]
        return {"type": "allowed_tools",
                "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools}}  # fmt: skip
    raise RequestError(
        f"tool_choice: the built-in tool {kind!r} can only be chosen on a target that runs the "
        "Responses API natively (OpenAI or Azure OpenAI)",
        param="tool_choice",
    )


def _response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    kind = fmt["type"]
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description")
                  if fmt.get(k) is not None}  # fmt: skip
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


_REFUSED_EXTRAS = {
    "prompt": "prompt templates are stored at OpenAI: only an OpenAI target can use them",
    "context_management": "context management is OpenAI's server-side compaction",
}
#: Parameters read above or dropped (see the table), never copied as chat parameters.
_HANDLED = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "text", "max_output_tokens",
    "reasoning", "parallel_tool_calls", "temperature", "top_p", "store",
    "previous_response_id", "metadata", "stream", "stream_options", "include", "truncation",
    "user", "service_tier", "conversation", "prompt_cache_key", "safety_identifier",
    "top_logprobs", "max_tool_calls", "background",
})  # fmt: skip
_PASSED = ("parallel_tool_calls", "temperature", "top_p", "user", "metadata", "service_tier",
           "prompt_cache_key", "safety_identifier")  # fmt: skip
#: What `_chat_options` reads (top_logprobs and stream_options only beside two of these).
_OPTIONS = frozenset((*_PASSED, "max_output_tokens", "reasoning", "text", "include", "stream"))


def _messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    given, instructions = request.input, request.instructions
    messages = [] if instructions is None else [{"role": "system", "content": instructions}]
    if isinstance(given, str):  # the common case, without the item machinery
        messages.append({"role": "user", "content": given})
    elif given:
        built = _Messages(messages)
        for index, item in enumerate(given):
            built.add(item, f"input[{index}]")
    if not messages:
        raise RequestError("a request translated to chat completions needs input or "
                           "instructions", param="input")  # fmt: skip
    return messages


def _chat_options(request: ResponsesRequest, body: dict[str, Any]) -> None:
    """The parameters besides messages and tools, into `body`."""
    values = request.__dict__
    for name in _PASSED:
        if values[name] is not None:
            body[name] = values[name]
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    effort = (request.reasoning or {}).get("effort")
    if effort is not None:
        body["reasoning_effort"] = effort
    text = request.text or {}
    fmt = text.get("format")
    if fmt is not None and (response_format := _response_format(fmt)) is not None:
        body["response_format"] = response_format
    if text.get("verbosity") is not None:
        body["verbosity"] = text["verbosity"]
    if _LOGPROBS in (request.include or ()):
        body["logprobs"] = True
        if request.top_logprobs is not None:
            body["top_logprobs"] = request.top_logprobs
    if request.stream:
        body["stream"] = True
        options = {"include_usage": True}
        obfuscation = (request.stream_options or {}).get("include_obfuscation")
        if obfuscation is not None:
            options["include_obfuscation"] = obfuscation
        body["stream_options"] = options


def _build_chat(request: ResponsesRequest) -> ChatRequest:
    if request.previous_response_id is not None:
        raise RequestError("previous_response_id must be resolved (with_history) before the "
                           "request is translated", param="previous_response_id")  # fmt: skip
    body: dict[str, Any] = {"model": request.model, "messages": _messages(request)}
    if request.tools:
        tools = [t for t in map(_tool, request.tools) if t is not None]
        if tools:
            body["tools"] = tools
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if not request.__pydantic_fields_set__.isdisjoint(_OPTIONS):  # most requests: none set
        _chat_options(request, body)
    for name, value in (request.__pydantic_extra__ or {}).items():
        if name in _REFUSED_EXTRAS:
            raise RequestError(f"{name}: {_REFUSED_EXTRAS[name]}", param=name)
        if name not in _HANDLED:
            body[name] = value
    if (trusted := trusted_chat(body, request.__pydantic_extra__)) is not None:
        return trusted  # what validation below would make, without its cost
    try:
        chat: ChatRequest = validator(ChatRequest).validate_python(body)
    except ValidationError as exc:  # what the checks above let through
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RequestError(f"the request cannot be translated to chat completions: {where}: "
                           f"{first['msg']}", param="input") from exc  # fmt: skip
    return chat


def to_chat(request: ResponsesRequest) -> ChatRequest:
    """The Chat Completions request a translated target receives (see the module's table),
    made once per request. Raises `RequestError` (naming the parameter) for what no
    chat target can express."""
    try:
        chat: ChatRequest | None = CHAT_SLOT.__get__(request)
    except AttributeError:  # a request not made by validate_responses_request
        chat = None
    if chat is None:
        CHAT_SLOT.__set__(request, chat := _build_chat(request))
    return chat

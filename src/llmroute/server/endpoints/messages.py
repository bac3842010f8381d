"""``POST /v1/messages``: the Anthropic Messages API in front of the router.

A request in Anthropic's format is read into Chat Completions parameters
(`llmroute.server._anthropic_wire`), routed like any other (to any provider,
with failover, limits, caching and records), and answered in Anthropic's
format: a ``message`` object, or its streamed event sequence::

    message_start, ping,
    (content_block_start, content_block_delta*, content_block_stop)*,
    message_delta (stop_reason, cumulative usage), message_stop

Text becomes ``text`` blocks (``text_delta``), tool calls ``tool_use`` blocks
(``input`` parsed from the JSON arguments; streamed as ``input_json_delta``).
Finish reasons map back: stop -> ``end_turn``, length -> ``max_tokens``,
tool_calls -> ``tool_use``, content_filter -> ``refusal``. Usage is
Anthropic's: ``input_tokens`` excludes cache reads and writes, which are
``cache_read_input_tokens`` and ``cache_creation_input_tokens``. A stream's
``message_start`` reports zero input tokens (they are known only at the end,
from the provider's usage); its ``message_delta`` carries every count.

Errors are Anthropic's ``{"type": "error", "error": {type, message}}``, before
a stream starts (with the status the anthropic SDK maps to its exception
classes) and after (an ``event: error``). The gateway key is read from
``x-api-key`` (what the anthropic SDK sends) or ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
from typing import Any

from ..._errors import LLMRouteError, RequestError, UnknownModel
from ..._request import validate_chat_request
from ..._tokens import estimate_request_tokens
from ..._types import ChatCompletion, ChatCompletionChunk, CompletionUsage, RouteInfo, TokenUsage
from .._anthropic_wire import error_event, read_request, to_chat_params
from ..errors import HTTPError, from_exception
from ..headers import control_options
from ..relay import has_content
from ..request import GatewayRequest
from ..responses import answer, send_json, send_stream
from ..scrub import ErrorText

__all__ = ["MessageEvents", "count_tokens", "create_message", "message_json", "stop_reason"]

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None) -> str:
    """Anthropic's ``stop_reason`` for an OpenAI ``finish_reason``."""
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def _usage_json(usage: TokenUsage | None) -> dict[str, int]:
    """Anthropic usage: ``input_tokens`` without the cache reads and writes counted apart."""
    if usage is None:
        usage = TokenUsage()
    return {
        "input_tokens": max(0, usage.input - usage.cache_read - usage.cache_write),
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "output_tokens": usage.output,
    }


def _normalised(usage: CompletionUsage | None, info: RouteInfo) -> TokenUsage | None:
    return usage.normalised() if usage is not None else info.usage


def _message_id(completion_id: str) -> str:
    return completion_id if completion_id.startswith("msg_") else f"msg_{completion_id}"


def _tool_input(arguments: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise HTTPError(
            502,
            f"the provider's arguments for tool {name!r} are not a JSON object",
            type="upstream_error",
            code="malformed_tool_arguments",
        )
    return value


def message_json(completion: ChatCompletion) -> dict[str, Any]:
    """An Anthropic ``message`` object from a chat completion (its first choice)."""
    content: list[dict[str, Any]] = []
    finish: str | None = None
    if completion.choices:
        choice = completion.choices[0]
        finish = choice.finish_reason
        message = choice.message
        text = message.content or message.refusal
        if text:
            content.append({"type": "text", "text": text})
        for call in message.tool_calls or ():
            function = call.function
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": function.name,
                    "input": _tool_input(function.arguments, function.name),
                }
            )
    return {
        "id": _message_id(completion.id),
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": None,
        "usage": _usage_json(_normalised(completion.usage, completion.llmroute)),
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({"type": kind, **data}, separators=(",", ":"), ensure_ascii=False)
    return b"event: " + kind.encode() + b"\ndata: " + payload.encode() + b"\n\n"


class MessageEvents:
    """Chat completion chunks in, Anthropic stream events out (as SSE bytes).

    Call `chunk` for each chunk and `end` once the stream has ended (`error` if
    it failed after it started); a block is stopped when the next one starts
    (tool-call fragments for an earlier call still go to its block, by index).
    """

    def __init__(self, info: RouteInfo) -> None:
        self._info = info
        self._started = False
        self._open: int | None = None  # the index of the block not yet stopped
        self._open_text = False
        self._blocks = 0
        self._tools: dict[int, int] = {}  # OpenAI tool-call index -> block index
        self._finish: str | None = None
        self._usage: CompletionUsage | None = None

    @staticmethod
    def content(chunk: ChatCompletionChunk) -> bool:
        return has_content(chunk)

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        """The events for one chunk (often none)."""
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start(chunk.id, chunk.model))
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            text = delta.content or delta.refusal
            if text:
                out.extend(self._text(text))
            for call in delta.tool_calls or ():
                function = call.function
                out.extend(self._tool(call.index, call.id, function.name if function else None))
                if function is not None and function.arguments:
                    block = self._tools[call.index]
                    out.append(
                        self._delta(block, "input_json_delta", "partial_json", function.arguments)
                    )
            if choice.finish_reason:
                self._finish = choice.finish_reason
        return b"".join(out)

    def end(self) -> bytes:
        """The closing events: the open block's stop, ``message_delta``, ``message_stop``."""
        out = [b"" if self._started else self._message_start(self._info.request_id, "")]
        out.append(self._stop_open())
        delta = {"stop_reason": stop_reason(self._finish), "stop_sequence": None}
        usage = _usage_json(_normalised(self._usage, self._info))
        out.append(_event("message_delta", {"delta": delta, "usage": usage}))
        out.append(_event("message_stop", {}))
        return b"".join(out)

    @staticmethod
    def error(failure: LLMRouteError, request_id: str, text: ErrorText) -> bytes:
        """An ``event: error`` in Anthropic's error shape."""
        payload = error_event(from_exception(failure, text), request_id)
        return b"event: error\ndata: " + payload + b"\n\n"

    def _message_start(self, message_id: str, model: str) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": _message_id(message_id),
            "type": "message",
            "role": "assistant",
            "model": model or self._info.model or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage_json(None),
        }
        return _event("message_start", {"message": message}) + _event("ping", {})

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_text = self._open, None, False
        return _event("content_block_stop", {"index": index})

    def _start(self, block: dict[str, Any]) -> list[bytes]:
        out = [self._stop_open()]
        index = self._open = self._blocks
        self._blocks += 1
        out.append(_event("content_block_start", {"index": index, "content_block": block}))
        return out

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if not self._open_text:
            out = self._start({"type": "text", "text": ""})
            self._open_text = True
        assert self._open is not None
        out.append(self._delta(self._open, "text_delta", "text", text))
        return out

    def _tool(self, index: int, call_id: str | None, name: str | None) -> list[bytes]:
        if index in self._tools:
            return []
        out = self._start(
            {
                "type": "tool_use",
                "id": call_id or f"toolu_{self._info.request_id}_{index}",
                "name": name or "",
                "input": {},
            }
        )
        self._tools[index] = self._blocks - 1
        return out

    @staticmethod
    def _delta(index: int, kind: str, field: str, value: str) -> bytes:
        return _event(
            "content_block_delta", {"index": index, "delta": {"type": kind, field: value}}
        )


# ---------------------------------------------------------------- the endpoint


async def create_message(request: GatewayRequest) -> None:
    """Answer one ``POST /v1/messages`` through the router."""
    request.anthropic = True
    identity = request.identity()
    body = await request.read_json()
    request.allowed(identity, body)
    wire = read_request(body)
    routes = request.gateway.router.config.routes
    options = control_options(identity, request.controls, routes, request.model)
    params = to_chat_params(wire)
    model, messages = params.pop("model"), params.pop("messages")
    completions = request.gateway.router.chat.completions
    try:
        if wire.stream:
            params["stream_options"] = {"include_usage": True}
            opened = await completions.create(
                model=model, messages=messages, stream=True, extra_body=params, llmroute=options
            )
            await send_stream(request, "messages", opened, MessageEvents(opened.llmroute))
            return
        completion = await completions.create(
            model=model, messages=messages, extra_body=params, llmroute=options
        )
    except UnknownModel as exc:
        raise identity.visible(exc) from None
    body_json = json.dumps(message_json(completion), separators=(",", ":"), ensure_ascii=False)
    await answer(request, "messages", body_json.encode(), completion.llmroute)


#: Marks a ``count_tokens`` answer llmroute estimated (no target of the route counts tokens).
ESTIMATED = (b"x-llmroute-estimated", b"true")


async def count_tokens(request: GatewayRequest) -> None:
    """Answer one ``POST /v1/messages/count_tokens``: ``{"input_tokens": n}``.

    Counted by the route's first target whose provider counts tokens (Anthropic's own
    ``count_tokens``, through its adapter and transport, failing over like any request);
    when none can, estimated (`llmroute._tokens`) and marked ``x-llmroute-estimated: true``.
    """
    request.anthropic = True
    identity = request.identity()
    body = await request.read_json()
    request.allowed(identity, body)
    body.setdefault("max_tokens", 1)  # count_tokens takes none; the reader wants one
    params = to_chat_params(read_request(body))
    options = control_options(identity, request.controls)
    chat = validate_chat_request(params)  # an invalid request is a 400, not an estimate
    model, messages = params.pop("model"), params.pop("messages")
    headers: list[tuple[bytes, bytes]] = []
    try:
        tokens = await request.gateway.router.count_tokens(
            model=model, messages=messages, extra_body=params, llmroute=options
        )
    except UnknownModel:
        raise
    except RequestError:  # no target of the route counts tokens
        tokens = estimate_request_tokens(chat)
        headers.append(ESTIMATED)
    await send_json(request, b'{"input_tokens":%d}' % tokens, headers=headers)

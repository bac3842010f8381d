"""Anthropic Messages: reading usage and stop reasons, and the streamed events as OpenAI chunks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import from_json

from .._transports import SseDecoder
from .._types import ChatCompletionChunk, CompletionUsage
from ._base import ErrorMapper, StreamDecoder
from ._translate import RESPONSE_TOOL, ChunkMaker, completion_usage, malformed

__all__ = ["AnthropicStreamDecoder", "WireUsage", "finish_reason"]

#: Anthropic stop reasons -> OpenAI finish reasons.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None, *, tool_calls: bool) -> str | None:
    """The OpenAI finish reason; ``tool_use`` that only carried structured output is ``stop``."""
    if stop_reason is None:
        return None
    if stop_reason == "tool_use" and not tool_calls:
        return "stop"
    return _FINISH.get(stop_reason, "stop")


class WireUsage(BaseModel):
    """Anthropic's usage: `input_tokens` excludes cache reads and writes."""

    model_config = ConfigDict(extra="ignore")
    input_tokens: int | None = None
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: dict[str, Any] | None = None

    def merged(self, later: WireUsage) -> WireUsage:
        """This usage updated by a later, cumulative report (its fields win when present)."""
        fields = later.model_dump(exclude_none=True, exclude_unset=True)
        return self.model_copy(update=fields)

    def to_openai(self) -> CompletionUsage:
        """OpenAI usage: prompt tokens = input + cache reads + cache writes."""
        read = self.cache_read_input_tokens or 0
        written = self.cache_creation_input_tokens or 0
        details = self.output_tokens_details or {}
        thinking = details.get("thinking_tokens")
        return completion_usage(
            input_tokens=(self.input_tokens or 0) + read + written,
            output_tokens=self.output_tokens,
            cache_read=read,
            cache_write=written,
            reasoning=thinking if isinstance(thinking, int) else None,
        )


class AnthropicStreamDecoder(StreamDecoder):
    """Decodes Anthropic's typed SSE events into ``chat.completion.chunk`` objects.

    Text and tool-argument deltas become content and tool-call fragments (tool
    calls numbered in order of appearance), thinking becomes
    ``reasoning_content`` deltas (with the signed block in ``thinking_blocks``
    when it ends), usage is cumulative (the latest report wins), and an
    ``error`` event raises the matching `ProviderError`.
    """

    __slots__ = (
        "_adapter", "_blocks", "_finish", "_json_tool", "_maker", "_model", "_sse", "_tools",
        "_wire_usage", "done", "usage",
    )  # fmt: skip

    def __init__(self, adapter: ErrorMapper, model: str, *, json_tool: bool) -> None:
        self._adapter = adapter
        self._model = model
        self._json_tool = json_tool
        self._sse = SseDecoder()
        self._maker = ChunkMaker("", model)
        #: Anthropic block index -> [kind, tool position or None, text so far, signature]
        self._blocks: dict[int, list[Any]] = {}
        self._tools = 0
        self._finish: str | None = None
        self._wire_usage = WireUsage()
        self.done = False
        self.usage = None

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        event = self._sse.feed(data)
        return [] if event is None else self._decode(event.data)

    def finish(self) -> list[ChatCompletionChunk]:
        event = self._sse.flush()
        return [] if event is None else self._decode(event.data)

    def _decode(self, data: bytes) -> list[ChatCompletionChunk]:
        try:
            event = from_json(data)
        except ValueError as exc:
            raise malformed(
                self._adapter.name, self._model, data, "an event that is not JSON"
            ) from exc
        if not isinstance(event, dict):
            raise malformed(self._adapter.name, self._model, data, "an event that is not an object")
        kind = event.get("type")
        if kind == "error":
            raise self._adapter.map_error(200, {}, data)
        try:
            handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
            return handler(self, event) if handler is not None else []
        except (KeyError, TypeError, AttributeError) as exc:
            raise malformed(self._adapter.name, self._model, data, f"a {kind} event") from exc

    # ------------------------------------------------------------ events

    def _message_start(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        message = event["message"]
        self._maker = ChunkMaker(message["id"], message.get("model") or self._model)
        self._wire_usage = WireUsage.model_validate(message.get("usage") or {})
        return [self._maker.delta(role="assistant", content="")]

    def _block_start(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        index, block = event["index"], event["content_block"]
        kind = block["type"]
        maker = self._maker
        if kind == "tool_use":
            if self._json_tool and block["name"] == RESPONSE_TOOL:
                self._blocks[index] = ["json", None, "", None]
                return []
            position = self._tools
            self._tools += 1
            self._blocks[index] = ["tool", position, "", None]
            return [maker.tool_start(position, block["id"], block["name"])]
        self._blocks[index] = [kind, None, "", None]
        if kind == "text" and block.get("text"):
            return [maker.delta(content=block["text"])]
        if kind == "redacted_thinking":
            return [maker.delta(thinking_blocks=[{"type": kind, "data": block["data"]}])]
        return []

    def _block_delta(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        state = self._blocks.get(event["index"])
        delta = event["delta"]
        kind = delta["type"]
        maker = self._maker
        if kind == "text_delta":
            return [maker.delta(content=delta["text"])] if delta["text"] else []
        if kind == "input_json_delta":
            fragment = delta["partial_json"]
            if not fragment or state is None:
                return []
            if state[0] == "json":
                return [maker.delta(content=fragment)]
            return [maker.tool_arguments(state[1], fragment)]
        if kind == "thinking_delta":
            if state is not None:
                state[2] += delta["thinking"]
            return [maker.delta(reasoning_content=delta["thinking"])] if delta["thinking"] else []
        if kind == "signature_delta" and state is not None:
            state[3] = delta["signature"]
        return []

    def _block_stop(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        state = self._blocks.get(event["index"])
        if state is None or state[0] != "thinking":
            return []
        block = {"type": "thinking", "thinking": state[2], "signature": state[3]}
        return [self._maker.delta(thinking_blocks=[block])]

    def _message_delta(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        usage = event.get("usage")
        if usage:
            self._wire_usage = self._wire_usage.merged(WireUsage.model_validate(usage))
            self.usage = self._wire_usage.to_openai()
        stop = (event.get("delta") or {}).get("stop_reason")
        if stop is None:
            return []
        self._finish = finish_reason(stop, tool_calls=self._tools > 0)
        return [self._maker.delta(finish_reason=self._finish)]

    def _message_stop(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        self.done = True
        self.usage = self._wire_usage.to_openai()
        return [self._maker.usage(self.usage)]


_HANDLERS = {
    "message_start": AnthropicStreamDecoder._message_start,
    "content_block_start": AnthropicStreamDecoder._block_start,
    "content_block_delta": AnthropicStreamDecoder._block_delta,
    "content_block_stop": AnthropicStreamDecoder._block_stop,
    "message_delta": AnthropicStreamDecoder._message_delta,
    "message_stop": AnthropicStreamDecoder._message_stop,
}

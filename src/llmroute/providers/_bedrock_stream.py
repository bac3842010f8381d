"""Bedrock Converse: usage, stop reasons, error types, and the ConverseStream event stream.

ConverseStream answers with ``application/vnd.amazon.eventstream``: binary
frames (prelude, headers, JSON payload, CRCs) decoded by botocore's
`EventStreamBuffer`. Each frame's ``:event-type`` header names the event; an
``:message-type`` of ``exception`` carries an in-stream error.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic_core import from_json

from .._errors import (
    AuthenticationError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from .._types import ChatCompletionChunk, CompletionUsage
from ._base import ErrorMapper, StreamDecoder
from ._translate import RESPONSE_TOOL, ChunkMaker, completion_usage, malformed

__all__ = [
    "BedrockErrorMapper",
    "BedrockStreamDecoder",
    "classify_bedrock_error",
    "finish_reason",
    "usage_from",
]


class BedrockErrorMapper(ErrorMapper, Protocol):
    """What the Bedrock decoder needs of its adapter beyond an `ErrorMapper`: the error
    of an exception event (they carry a type, not a status) and a completion id."""

    def stream_error(self, kind: str, payload: bytes) -> ProviderError:
        """The error for an exception event inside a stream (or a broken answer)."""
        ...

    def new_id(self) -> str:
        """An id for a completion."""
        ...


_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
#: Stop reasons that mean the model's output was broken: worth another try, never an answer.
BROKEN = frozenset({"malformed_model_output", "malformed_tool_use"})


def finish_reason(stop_reason: str | None, *, tool_calls: bool) -> str | None:
    """The OpenAI finish reason; ``tool_use`` that only carried structured output is ``stop``."""
    if stop_reason is None:
        return None
    if stop_reason == "tool_use" and not tool_calls:
        return "stop"
    return _FINISH.get(stop_reason, "stop")


def usage_from(usage: dict[str, Any]) -> CompletionUsage:
    """OpenAI usage from Converse's: `inputTokens` excludes cache reads and writes."""
    read = int(usage.get("cacheReadInputTokens") or 0)
    written = int(usage.get("cacheWriteInputTokens") or 0)
    return completion_usage(
        input_tokens=int(usage.get("inputTokens") or 0) + read + written,
        output_tokens=int(usage.get("outputTokens") or 0),
        cache_read=read,
        cache_write=written,
    )


#: Bedrock error types (``x-amzn-errortype`` or the stream's ``:exception-type``), lower-cased
#: and without the ``exception`` suffix.
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "validation": InvalidRequest,
    "accessdenied": PermissionDenied,
    "unrecognizedclient": AuthenticationError,
    "invalidsignature": AuthenticationError,
    "incompletesignature": AuthenticationError,
    "missingauthenticationtoken": AuthenticationError,
    "expiredtoken": AuthenticationError,
    "resourcenotfound": ModelNotFound,
    "throttling": RateLimited,
    "servicequotaexceeded": RateLimited,
    "modeltimeout": ProviderUnavailable,
    "modelerror": ProviderUnavailable,
    "modelnotready": ProviderUnavailable,
    "modelstreamerror": ProviderUnavailable,
    "internalserver": ProviderUnavailable,
    "serviceunavailable": ProviderUnavailable,
}
_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationError, 403: PermissionDenied, 404: ModelNotFound, 429: RateLimited,
}  # fmt: skip


def error_key(kind: str | None) -> str:
    """``ThrottlingException:http://...`` or ``com.amazon...#ThrottlingException`` -> ``throttling``."""
    if not kind:
        return ""
    name = kind.split(":", 1)[0].rsplit("#", 1)[-1].lower()
    return name.removesuffix("exception")


def classify_bedrock_error(status: int, kind: str | None) -> type[ProviderError]:
    """The error class from Bedrock's error type, else from the HTTP status."""
    found = _ERROR_TYPES.get(error_key(kind))
    if found is not None:
        return found
    if status < 400 or status in (408, 409, 424) or status >= 500:
        return ProviderUnavailable
    return _STATUS.get(status, InvalidRequest)


class BedrockStreamDecoder(StreamDecoder):
    """Decodes ConverseStream's binary event stream into ``chat.completion.chunk`` objects.

    `feed` takes raw body chunks (the adapter's framing is ``"bytes"``); frames
    split across chunks are completed by the buffer. Usage arrives in the final
    ``metadata`` event, which ends the stream.
    """

    __slots__ = ("_adapter", "_blocks", "_buffer", "_json_tool", "_maker", "_model", "_tools",
                 "done", "usage")  # fmt: skip

    def __init__(self, adapter: BedrockErrorMapper, model: str, *, json_tool: bool) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._adapter = adapter
        self._model = model
        self._json_tool = json_tool
        self._buffer = EventStreamBuffer()
        self._maker = ChunkMaker(adapter.new_id(), model)
        #: content block index -> [kind, tool position or None, text so far, signature]
        self._blocks: dict[int, list[Any]] = {}
        self._tools = 0
        self.done = False
        self.usage = None

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        from botocore.eventstream import ParserError

        self._buffer.add_data(data)
        chunks: list[ChatCompletionChunk] = []
        try:
            for message in self._buffer:
                chunks.extend(self._message(message.headers, message.payload))
        except ParserError as exc:
            raise malformed(self._adapter.name, self._model, data, f"a bad frame: {exc}") from exc
        return chunks

    def _message(self, headers: dict[str, Any], payload: bytes) -> list[ChatCompletionChunk]:
        kind = headers.get(":message-type")
        if kind == "exception":
            raise self._adapter.stream_error(str(headers.get(":exception-type")), payload)
        if kind == "error":
            message = str(headers.get(":error-message") or "stream error")
            raise self._adapter.stream_error(str(headers.get(":error-code")), message.encode())
        event = headers.get(":event-type")
        handler = _HANDLERS.get(event) if isinstance(event, str) else None
        if handler is None:
            return []
        try:
            return handler(self, from_json(payload))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise malformed(self._adapter.name, self._model, payload, f"a {event} event") from exc

    # ------------------------------------------------------------ events

    def _start(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        return [self._maker.delta(role="assistant", content="")]

    def _block_start(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        index = event["contentBlockIndex"]
        tool = (event.get("start") or {}).get("toolUse")
        if tool is None:
            return []
        if self._json_tool and tool["name"] == RESPONSE_TOOL:
            self._blocks[index] = ["json", None, "", None]
            return []
        position = self._tools
        self._tools += 1
        self._blocks[index] = ["tool", position, "", None]
        return [self._maker.tool_start(position, tool["toolUseId"], tool["name"])]

    def _block_delta(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        index, delta = event["contentBlockIndex"], event["delta"]
        maker = self._maker
        if "text" in delta:
            return [maker.delta(content=delta["text"])] if delta["text"] else []
        state = self._blocks.get(index)
        if "toolUse" in delta:
            fragment = delta["toolUse"]["input"]
            if not fragment or state is None:
                return []
            if state[0] == "json":
                return [maker.delta(content=fragment)]
            return [maker.tool_arguments(state[1], fragment)]
        reasoning = delta.get("reasoningContent")
        if reasoning is None:
            return []
        if state is None:
            state = self._blocks[index] = ["thinking", None, "", None]
        if "redactedContent" in reasoning:
            state[0], state[2] = "redacted", reasoning["redactedContent"]
        if reasoning.get("signature"):
            state[3] = reasoning["signature"]
        text = reasoning.get("text")
        if text:
            state[2] += text
            return [maker.delta(reasoning_content=text)]
        return []

    def _block_stop(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        state = self._blocks.get(event["contentBlockIndex"])
        if state is None or state[0] not in ("thinking", "redacted"):
            return []
        if state[0] == "redacted":
            block = {"type": "redacted_thinking", "data": state[2]}
        else:
            block = {"type": "thinking", "thinking": state[2], "signature": state[3]}
        return [self._maker.delta(thinking_blocks=[block])]

    def _stop(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        reason = event["stopReason"]
        if reason in BROKEN:
            raise self._adapter.stream_error("ModelErrorException", f"the model's output was "
                                             f"malformed ({reason})".encode())  # fmt: skip
        finish = finish_reason(reason, tool_calls=self._tools > 0)
        return [self._maker.delta(finish_reason=finish)]

    def _metadata(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        usage = event.get("usage")
        self.done = True
        if not isinstance(usage, dict):
            return []
        self.usage = usage_from(usage)
        return [self._maker.usage(self.usage)]


_HANDLERS = {
    "messageStart": BedrockStreamDecoder._start,
    "contentBlockStart": BedrockStreamDecoder._block_start,
    "contentBlockDelta": BedrockStreamDecoder._block_delta,
    "contentBlockStop": BedrockStreamDecoder._block_stop,
    "messageStop": BedrockStreamDecoder._stop,
    "metadata": BedrockStreamDecoder._metadata,
}

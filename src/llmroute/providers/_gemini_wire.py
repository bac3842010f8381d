"""Gemini: reading responses (candidates, usage, finish reasons, errors), streamed or not."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic_core import from_json

from .._errors import (
    AuthenticationError,
    ContentFiltered,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from .._transports import SseDecoder
from .._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    CompletionUsage,
)
from .._units import parse_duration
from ._base import ErrorMapper, StreamDecoder
from ._translate import (
    ChunkMaker,
    completion,
    completion_usage,
    malformed,
    stable_call_id,
    tool_call,
)

__all__ = [
    "GeminiStreamDecoder",
    "classify_gemini_error",
    "gemini_error_fields",
    "parse_gemini_chat",
    "signature_extra",
    "thought_signature",
    "usage_from_metadata",
]

_FILTERED = frozenset({
    "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR",
})  # fmt: skip
#: Finish reasons that mean the model's output was broken: worth another try, never an answer.
_BROKEN = frozenset({"MALFORMED_FUNCTION_CALL", "MALFORMED_RESPONSE"})


def finish_reason(reason: str | None, *, tool_calls: bool) -> str | None:
    """The OpenAI finish reason for a Gemini candidate's `finishReason`."""
    if reason is None:
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if tool_calls else "stop"


def usage_from_metadata(metadata: dict[str, Any]) -> CompletionUsage:
    """OpenAI usage from ``usageMetadata``: thoughts count as output, tool-use prompts as input."""
    prompt = int(metadata.get("promptTokenCount") or 0)
    tool_prompt = int(metadata.get("toolUsePromptTokenCount") or 0)
    thoughts = metadata.get("thoughtsTokenCount")
    candidates = int(metadata.get("candidatesTokenCount") or 0)
    cached = metadata.get("cachedContentTokenCount")
    return completion_usage(
        input_tokens=prompt + tool_prompt,
        output_tokens=candidates + int(thoughts or 0),
        cache_read=int(cached) if cached is not None else 0,
        reasoning=int(thoughts) if thoughts is not None else None,
    )


def signature_extra(signature: str) -> dict[str, Any]:
    """The extra fields of a tool call that carry a Gemini function call's thought
    signature in OpenAI's shape, as Google's own OpenAI-compatible endpoint carries it:
    ``extra_content.google.thought_signature``."""
    return {"extra_content": {"google": {"thought_signature": signature}}}


def thought_signature(extra: dict[str, Any] | None) -> str | None:
    """The thought signature among a tool call's extra fields (`signature_extra`), if any."""
    content = (extra or {}).get("extra_content")
    google = content.get("google") if isinstance(content, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) else None


def _signature_extra(part: dict[str, Any]) -> dict[str, Any]:
    signature = part.get("thoughtSignature")
    return signature_extra(signature) if isinstance(signature, str) else {}


class _Reader:
    """What one Gemini response (or stream chunk) holds, per candidate."""

    def __init__(self, adapter: ErrorMapper, model: str, body: bytes) -> None:
        self.adapter, self.model, self.body = adapter, model, body

    def load(self) -> dict[str, Any]:
        try:
            data = from_json(self.body)
        except ValueError as exc:
            raise malformed(self.adapter.name, self.model, self.body, "not JSON") from exc
        if not isinstance(data, dict):
            raise malformed(self.adapter.name, self.model, self.body, "not a JSON object")
        if "error" in data and "candidates" not in data:
            raise self.adapter.map_error(200, {}, self.body)
        return data

    def candidates(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        candidates = data.get("candidates")
        if candidates:
            if not isinstance(candidates, list):
                raise malformed(self.adapter.name, self.model, self.body, "candidates")
            return candidates
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        if blocked:
            raise ContentFiltered(
                f"Gemini blocked the prompt ({blocked})", provider=self.adapter.name,
                model=self.model, status=200, body=self.body, code=str(blocked),
            )  # fmt: skip
        return []

    def check_finish(self, reason: str | None) -> None:
        if reason in _BROKEN:
            raise ProviderUnavailable(
                f"Gemini ended the answer with {reason}", provider=self.adapter.name,
                model=self.model, status=200, body=self.body, code=reason,
            )  # fmt: skip


def parse_gemini_chat(adapter: ErrorMapper, body: bytes, model: str) -> ChatCompletion:
    """A whole ``generateContent`` response as a `ChatCompletion` (one choice per candidate)."""
    reader = _Reader(adapter, model, body)
    data = reader.load()
    response_id = str(data.get("responseId") or f"gemini-{uuid.uuid4().hex}")
    choices: list[Choice] = []
    try:
        candidates = reader.candidates(data)
        if not candidates:
            raise malformed(adapter.name, model, body, "no candidates")
        for position, candidate in enumerate(candidates):
            reason = candidate.get("finishReason")
            reader.check_finish(reason)
            texts: list[str] = []
            thoughts: list[str] = []
            calls: list[ChatCompletionMessageToolCall] = []
            for part in (candidate.get("content") or {}).get("parts") or ():
                call = part.get("functionCall")
                if call is not None:
                    calls.append(_call(response_id, position, len(calls), call, part))
                elif "text" in part:
                    (thoughts if part.get("thought") else texts).append(part["text"])
            extra = {"reasoning_content": "".join(thoughts)} if thoughts else {}
            message = ChatCompletionMessage(
                role="assistant", content="".join(texts) if texts else None, refusal=None,
                tool_calls=calls or None, **extra,
            )  # fmt: skip
            choices.append(Choice(
                index=int(candidate.get("index", position)), message=message,
                finish_reason=finish_reason(reason, tool_calls=bool(calls)), logprobs=None,
            ))  # fmt: skip
    except (KeyError, TypeError, AttributeError) as exc:
        raise malformed(adapter.name, model, body, f"a candidate without {exc}") from exc
    usage = data.get("usageMetadata")
    return completion(
        completion_id=response_id, model=str(data.get("modelVersion") or model), content=None,
        tool_calls=[], finish_reason=None, choices=choices,
        usage=usage_from_metadata(usage) if isinstance(usage, dict) else None,
    )  # fmt: skip


def _call(
    response_id: str, candidate: int, index: int, call: dict[str, Any], part: dict[str, Any]
) -> ChatCompletionMessageToolCall:
    name = call["name"]
    call_id = call.get("id") or stable_call_id(f"{response_id}/{candidate}", index, name)
    return tool_call(call_id, name, call.get("args") or {}, **_signature_extra(part))


class GeminiStreamDecoder(StreamDecoder):
    """Decodes ``streamGenerateContent?alt=sse``: each event is a partial response object.

    Text becomes content deltas (thoughts: ``reasoning_content``), each function
    call arrives whole and becomes one tool-call fragment with a stable id,
    usage is cumulative (the latest wins) and is sent as the last chunk when the
    body ends (Gemini sends no end marker).
    """

    __slots__ = ("_adapter", "_calls", "_finished", "_maker", "_model", "_sse", "done", "usage")

    def __init__(self, adapter: ErrorMapper, model: str) -> None:
        self._adapter = adapter
        self._model = model
        self._sse = SseDecoder()
        self._maker: ChunkMaker | None = None
        self._calls: dict[int, int] = {}
        self._finished: set[int] = set()
        self.done = False
        self.usage = None

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        event = self._sse.feed(data)
        return [] if event is None else self._decode(event.data)

    def finish(self) -> list[ChatCompletionChunk]:
        event = self._sse.flush()
        chunks = [] if event is None else self._decode(event.data)
        if self._finished and self._maker is not None and not self.done:
            self.done = True
            if self.usage is not None:
                chunks.append(self._maker.usage(self.usage))
        return chunks

    def _decode(self, body: bytes) -> list[ChatCompletionChunk]:
        reader = _Reader(self._adapter, self._model, body)
        data = reader.load()
        if self._maker is None:
            chunk_id = str(data.get("responseId") or f"gemini-{uuid.uuid4().hex}")
            self._maker = ChunkMaker(chunk_id, str(data.get("modelVersion") or self._model))
        usage = data.get("usageMetadata")
        if isinstance(usage, dict):
            self.usage = usage_from_metadata(usage)
        try:
            chunks = []
            for position, candidate in enumerate(reader.candidates(data)):
                chunks.extend(self._candidate(reader, position, candidate))
            return chunks
        except (KeyError, TypeError, AttributeError) as exc:
            raise malformed(
                self._adapter.name, self._model, body, f"a chunk without {exc}"
            ) from exc

    def _candidate(
        self, reader: _Reader, position: int, candidate: dict[str, Any]
    ) -> list[ChatCompletionChunk]:
        maker = self._maker
        assert maker is not None
        index = int(candidate.get("index", position))
        reason = candidate.get("finishReason")
        reader.check_finish(reason)
        chunks = []
        if index not in self._calls:
            chunks.append(maker.delta(index=index, role="assistant", content=""))
        calls = self._calls.setdefault(index, 0)
        for part in (candidate.get("content") or {}).get("parts") or ():
            call = part.get("functionCall")
            if call is not None:
                made = _call(maker.id, index, calls, call, part)
                chunks.append(maker.tool_start(
                    calls, made.id, made.function.name, made.function.arguments, index=index,
                    **(made.model_extra or {}),
                ))  # fmt: skip
                calls += 1
            elif part.get("text"):
                key = "reasoning_content" if part.get("thought") else "content"
                chunks.append(maker.delta(index=index, **{key: part["text"]}))
        self._calls[index] = calls
        if reason is not None:
            self._finished.add(index)
            chunks.append(maker.delta(
                index=index, finish_reason=finish_reason(reason, tool_calls=calls > 0)
            ))  # fmt: skip
        return chunks


# ---------------------------------------------------------------- errors

#: google.rpc status names -> error classes (for errors inside a stream, and to refine 400s).
_STATUS_NAMES: dict[str, type[ProviderError]] = {
    "INVALID_ARGUMENT": InvalidRequest,
    "FAILED_PRECONDITION": PermissionDenied,
    "OUT_OF_RANGE": InvalidRequest,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": ModelNotFound,
    "RESOURCE_EXHAUSTED": RateLimited,
    "INTERNAL": ProviderUnavailable,
    "UNAVAILABLE": ProviderUnavailable,
    "DEADLINE_EXCEEDED": ProviderUnavailable,
    "ABORTED": ProviderUnavailable,
    "CANCELLED": ProviderUnavailable,
}
_HTTP: dict[int, type[ProviderError]] = {
    401: AuthenticationError, 403: PermissionDenied, 404: ModelNotFound, 429: RateLimited,
}  # fmt: skip
#: ErrorInfo reasons that say the API key itself is wrong (Gemini answers those with 400).
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})


def gemini_error_fields(body: bytes) -> tuple[str | None, str | None, str | None, float | None]:
    """(message, status name, ErrorInfo reason, RetryInfo delay in seconds) from an error body."""
    try:
        data = from_json(body)
    except ValueError:
        return None, None, None, None
    if isinstance(data, list) and data:  # some endpoints wrap the error in a list
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, None, None, None
    message, status = error.get("message"), error.get("status")
    reason: str | None = None
    delay: float | None = None
    for detail in error.get("details") or ():
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.RetryInfo"):
            try:
                delay = parse_duration(detail.get("retryDelay"))
            except ValueError:
                delay = None
        elif kind.endswith("google.rpc.ErrorInfo") and isinstance(detail.get("reason"), str):
            reason = detail["reason"]
    return (
        message if isinstance(message, str) else None,
        status if isinstance(status, str) else None,
        reason,
        delay,
    )


def classify_gemini_error(status: int, name: str | None, reason: str | None) -> type[ProviderError]:
    """The error class from the HTTP status, the google.rpc status name and the ErrorInfo reason."""
    if reason in _KEY_REASONS:
        return AuthenticationError
    if status < 400 or status == 400:
        default = InvalidRequest if status == 400 else ProviderUnavailable
        return _STATUS_NAMES.get(name or "", default)
    if status in _HTTP:
        return _HTTP[status]
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable
    return InvalidRequest

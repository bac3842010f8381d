"""The simulated provider: an in-process OpenAI-compatible upstream.

`MockTransport` answers requests the way an OpenAI-compatible server would,
byte for byte (JSON bodies, SSE streams, error bodies, headers), with the
latency, failures and stream cuts its config asks for. It sits behind the
ordinary OpenAI adapter, so everything after the socket is exercised for real.
Time comes from the router's clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import struct
from collections.abc import AsyncIterator
from typing import Any

from multidict import CIMultiDict
from pydantic_core import from_json, to_json

from .._clock import Clock
from .._request import ChatRequest
from .._tokens import content_text, estimate_request_tokens, estimate_text_tokens
from .._transports import (
    ConnectFailed,
    ConnectionLost,
    HandlerResponse,
    HttpRequest,
    HttpResponse,
    TimedOut,
    Timeouts,
    Transport,
)
from .configs import MockOutcome, MockProviderConfig, OpenAIProviderConfig
from .openai import OpenAIAdapter

__all__ = ["MOCK_BASE_URL", "MockTransport", "mock_adapter"]

#: The base URL the mock provider's adapter builds requests for (never resolved).
MOCK_BASE_URL = "http://mock.llmroute.invalid/v1"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict",
    413: "request_too_large",
    429: "rate_limit_exceeded",
}
_DEFAULT_OUTCOME = MockOutcome()


def mock_adapter(name: str, config: MockProviderConfig) -> OpenAIAdapter:
    """The mock's adapter: the ordinary OpenAI adapter, so everything after the socket
    runs as it does for a real OpenAI-compatible service."""
    wire = OpenAIProviderConfig(
        type="openai", base_url=MOCK_BASE_URL, api_key="mock-key", stream_usage=config.stream_usage
    )
    adapter = OpenAIAdapter(name, wire)
    adapter.otel_name = "mock"
    adapter.prices_id = None
    return adapter


async def _cut_body() -> AsyncIterator[bytes]:
    """A non-streamed body whose connection drops before it is complete (a scripted cut)."""
    raise ConnectionLost("mock: connection dropped mid-body (scripted cut)")
    yield b""  # pragma: no cover - makes this an async generator


class MockTransport(Transport):
    """Answers OpenAI-format requests in process, as configured. One per mock provider."""

    def __init__(self, config: MockProviderConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._rng = random.Random(config.seed)
        self._position = 0
        self._counter = 0
        self.requests: list[dict[str, Any]] = []

    # -------------------------------------------------------------- decisions

    def _next_outcome(self) -> MockOutcome:
        script = self._config.script
        if script and (self._position < len(script) or self._config.repeat_script):
            outcome = script[self._position % len(script)]
            self._position += 1
            return outcome
        if self._config.failure_rate and self._rng.random() < self._config.failure_rate:
            return MockOutcome(status=self._config.failure_status)
        return _DEFAULT_OUTCOME

    def _headers(self, request_id: str, outcome: MockOutcome) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict(
            {"content-type": "application/json", "x-request-id": request_id}
        )
        headers.update(outcome.headers)
        return headers

    # -------------------------------------------------------------- sending

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        body: dict[str, Any] = from_json(request.body) if request.body else {}
        self.requests.append(body)
        self._counter += 1
        request_id = f"req_mock_{self._counter}"
        outcome = self._next_outcome()
        if outcome.drop:
            raise ConnectFailed("mock: connection refused (scripted drop)")
        config = self._config
        model = str(body.get("model", ""))
        headers = self._headers(request_id, outcome)
        latency = (outcome.latency or config.latency).sample(self._rng)
        if outcome.status >= 400:
            await self._wait(latency, timeouts)
            return self._error(outcome, headers)
        if config.models and model not in config.models:
            await self._wait(latency, timeouts)
            missing = MockOutcome(
                status=404, code="model_not_found",
                message=f"The model `{model}` does not exist (mock knows: {', '.join(config.models)})",
            )  # fmt: skip
            return self._error(missing, headers)
        if request.url.endswith("/embeddings"):
            await self._wait(latency, timeouts)
            return HandlerResponse(outcome.status, headers, self._embeddings(body))
        chat = ChatRequest.model_validate(body)
        if body.get("stream"):
            ttft_spec = outcome.ttft or config.ttft
            ttft = ttft_spec.sample(self._rng) if ttft_spec is not None else latency
            await self._wait(ttft, timeouts)
            headers["content-type"] = "text/event-stream"
            lines = self._stream(chat, outcome, request_id, timeouts)
            return HandlerResponse(outcome.status, headers, lines)
        await self._wait(latency, timeouts)
        if outcome.cut_after is not None:
            return HandlerResponse(outcome.status, headers, _cut_body())
        return HandlerResponse(outcome.status, headers, self._completion(chat, outcome, request_id))

    async def aclose(self) -> None:
        """Nothing to release: the mock holds no connections."""

    async def _wait(self, seconds: float, timeouts: Timeouts) -> None:
        read = timeouts.read
        if read is not None and seconds > read:
            await self._clock.sleep(read)
            raise TimedOut(f"mock: no answer within the read timeout of {read:g}s")
        if seconds > 0:
            await self._clock.sleep(seconds)

    def _error(self, outcome: MockOutcome, headers: CIMultiDict[str]) -> HandlerResponse:
        status = outcome.status
        kind = outcome.error_type or _ERROR_TYPES.get(status, "server_error")
        message = outcome.message or f"mock: scripted HTTP {status}"
        error = {"message": message, "type": kind, "param": outcome.param, "code": outcome.code}
        if outcome.retry_after is not None:
            headers["retry-after"] = f"{outcome.retry_after:g}"
        return HandlerResponse(status, headers, to_json({"error": error}))

    # -------------------------------------------------------------- answers

    def _answer(self, chat: ChatRequest, outcome: MockOutcome) -> tuple[str, list[dict[str, Any]]]:
        if chat.tools and chat.tool_choice != "none" and self._config.tool_calls:
            calls = []
            for i, call in enumerate(self._config.tool_calls):
                arguments = call.arguments
                text = arguments if isinstance(arguments, str) else json.dumps(arguments)
                calls.append({
                    "id": f"call_mock_{self._counter}_{i}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": text},
                })  # fmt: skip
            return "", calls
        if outcome.text is not None:
            return outcome.text, []
        if self._config.echo:
            users = [m for m in chat.messages if m.role == "user"]
            return (content_text(users[-1].content) if users else ""), []
        return self._config.text, []

    def _usage(self, chat: ChatRequest, text: str, calls: list[dict[str, Any]]) -> dict[str, int]:
        config = self._config
        prompt = config.prompt_tokens
        if prompt is None:
            prompt = estimate_request_tokens(chat)
        completion = config.completion_tokens
        if completion is None:
            produced = text + "".join(c["function"]["arguments"] for c in calls)
            completion = max(1, estimate_text_tokens(produced))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(self, chat: ChatRequest, outcome: MockOutcome, request_id: str) -> bytes:
        text, calls = self._answer(chat, outcome)
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        finish = "tool_calls" if calls else "stop"
        return to_json({
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(self._clock.time()),
            "model": chat.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}],
            "usage": self._usage(chat, text, calls),
            "system_fingerprint": "fp_mock",
        })  # fmt: skip

    def _stream_chunks(
        self, chat: ChatRequest, outcome: MockOutcome, request_id: str
    ) -> list[bytes]:
        text, calls = self._answer(chat, outcome)
        base = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": int(self._clock.time()),
            "model": chat.model,
            "system_fingerprint": "fp_mock",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return to_json({**base, "choices": [choice]})

        chunks = [chunk({"role": "assistant", "content": ""})]
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == len(words) - 1 else word + " "
            if piece:
                chunks.append(chunk({"content": piece}))
        for index, call in enumerate(calls):
            function = call["function"]
            head = {"index": index, "id": call["id"], "type": "function",
                    "function": {"name": function["name"], "arguments": ""}}  # fmt: skip
            chunks.append(chunk({"tool_calls": [head]}))
            arguments = function["arguments"]
            middle = len(arguments) // 2
            for part in (arguments[:middle], arguments[middle:]):
                if part:
                    fragment = {"index": index, "function": {"arguments": part}}
                    chunks.append(chunk({"tool_calls": [fragment]}))
        chunks.append(chunk({}, "tool_calls" if calls else "stop"))
        options = chat.stream_options
        if options is not None and options.include_usage:
            usage = self._usage(chat, text, calls)
            chunks.append(to_json({**base, "choices": [], "usage": usage}))
        return chunks

    async def _stream(
        self, chat: ChatRequest, outcome: MockOutcome, request_id: str, timeouts: Timeouts
    ) -> AsyncIterator[bytes]:
        chunks = self._stream_chunks(chat, outcome, request_id)
        delay = self._config.chunk_delay
        for i, data in enumerate(chunks):
            # chunk 0 carries only the role: cut_after counts content chunks
            if outcome.cut_after is not None and i > outcome.cut_after:
                raise ConnectionLost(
                    f"mock: stream cut after {outcome.cut_after} chunks (scripted)"
                )
            if i > 1:  # the role chunk and the first content arrive together, at ttft
                await self._wait(delay.sample(self._rng), timeouts)
            yield b"data: " + data + b"\n\n"
        yield b"data: [DONE]\n\n"

    def _embeddings(self, body: dict[str, Any]) -> bytes:
        raw = body.get("input")
        inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        dims = int(body.get("dimensions") or self._config.embedding_dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += max(1, estimate_text_tokens(text))
            vector = _vector(text, dims)
            packed: list[float] | str = vector
            if as_base64:
                packed = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": packed})
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return to_json({"object": "list", "data": data, "model": body.get("model"), "usage": usage})


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector derived from `text`."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]

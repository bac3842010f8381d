"""A loopback OpenAI-compatible upstream for tests: real sockets, scripted handlers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def completion_body(text: str = "Hello!", model: str = "up-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def chunk_body(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def sse(request: web.Request, events: list[dict[str, Any] | str]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        await response.write(f"data: {data}\n\n".encode())
    await response.write_eof()
    return response


@dataclass
class Upstream:
    """A real HTTP server on 127.0.0.1; tests set `handler` and read `requests`."""

    base_url: str
    handler: Handler | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)  # case-insensitive multidicts
    queries: list[str] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)


def one_read_router(body: bytes, route: dict[str, Any] | None = None) -> Any:
    """An `AsyncRouter` whose route ``chat`` has one openai-type target answering every
    request with `body` as an event stream, all of it in one network read (no sockets)."""
    from collections.abc import AsyncIterator

    from llmroute import AsyncRouter, HttpRequest, HttpResponse, Timeouts, Transport

    class OneRead(HttpResponse):
        status, headers = 200, {"content-type": "text/event-stream"}

        async def read(self) -> bytes:
            return body

        def aiter_lines(self) -> AsyncIterator[bytes]:
            raise AssertionError("streams are read in batches")

        async def aiter_bytes(self) -> AsyncIterator[bytes]:
            yield body

        async def aclose(self) -> None:
            return None

    class Canned(Transport):
        async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
            return OneRead()

        async def aclose(self) -> None:
            return None

    config = {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://up.invalid/v1"}},
        "routes": {"chat": {"targets": ["a/m"], **(route or {})}},
        "logging": {"store": None},
    }
    return AsyncRouter(config, env={}, transports={"a": Canned()})

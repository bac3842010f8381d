"""The pipeline's parts built alone, over a scripted upstream: for tests of the exchange,
the driver and the stream session without a router around them."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Mapping
from typing import Any

from _helpers import HI
from llmroute import (
    HttpRequest,
    HttpResponse,
    RequestOptions,
    SystemClock,
    Timeouts,
    Transport,
)
from llmroute._config_load import load_config
from llmroute._prices import PriceBook
from llmroute._request import ChatRequest, validate_chat_request
from llmroute.pipeline.driver import AttemptDriver
from llmroute.routing.catalog import Catalog
from llmroute.routing.health import HealthTracker
from llmroute.routing.model import Route
from llmroute.routing.rate_limits import RateLimitBoard
from llmroute.routing.select import Selector
from llmroute.routing.stats import LiveStats
from llmroute.routing.strategies import Strategy

NO_OPTIONS = RequestOptions()


class Canned(HttpResponse):
    """A response with a status, headers and a body in parts (one per network read)."""

    def __init__(
        self, status: int, parts: list[bytes], headers: Mapping[str, str] | None = None
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        self.parts = parts
        self.closed = False

    async def read(self) -> bytes:
        return b"".join(self.parts)

    def aiter_lines(self) -> AsyncIterator[bytes]:
        raise AssertionError("streams are read in batches")

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part

    async def aclose(self) -> None:
        self.closed = True


class Scripted(Transport):
    """Answers each request with the next of `answers`; keeps what was sent."""

    def __init__(self, *answers: Canned) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[HttpRequest, Timeouts]] = []

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        self.sent.append((request, timeouts))
        return self.answers.pop(0)

    async def aclose(self) -> None:
        return None


def completion(text: str = "Hello!", output: int = 2) -> Canned:
    message = {"role": "assistant", "content": text}
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": output, "total_tokens": 5 + output},
    }
    return Canned(200, [json.dumps(body).encode()], {"content-type": "application/json"})


def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunk["choices"] = [choice]
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def streamed(*parts: bytes) -> Canned:
    return Canned(200, list(parts), {"content-type": "text/event-stream"})


def failure(status: int, message: str = "no", headers: Mapping[str, str] | None = None) -> Canned:
    body = json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
    return Canned(status, [body], {"content-type": "application/json", **(headers or {})})


def catalog(
    route: dict[str, Any],
    *,
    routes: dict[str, Any] | None = None,
    strategies: Mapping[str, Strategy] | None = None,
    **upstreams: Scripted,
) -> Catalog:
    """A catalog of OpenAI-compatible providers named as `upstreams`, the route ``chat``
    and any other `routes`."""
    providers = {
        name: {"type": "openai", "api_key": "k", "base_url": "http://up.invalid/v1"}
        for name in upstreams
    }
    every = {"chat": route, **(routes or {})}
    config = load_config({"providers": providers, "routes": every}, env={})
    return Catalog(
        config,
        clock=SystemClock(),
        prices=PriceBook(),
        transports=dict(upstreams),
        env={},
        strategies=strategies,
    )


def driver() -> AttemptDriver:
    rng = random.Random(0)
    stats = LiveStats()
    health = HealthTracker(load_config({}, env={}).health)
    return AttemptDriver(
        SystemClock(), rng, health, stats, Selector(stats, PriceBook(), rng, RateLimitBoard())
    )


def chat_request(**params: Any) -> ChatRequest:
    return validate_chat_request({"model": "chat", "messages": HI, **params})


def route_of(built: Catalog) -> Route:
    return built.resolve("chat")

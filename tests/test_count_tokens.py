"""``POST /v1/messages/count_tokens``: counted by Anthropic targets, estimated for others.

Driven with the anthropic SDK's own ``client.messages.count_tokens`` over
``router.anthropic_client()`` (the gateway application, in process) against the
loopback upstream standing in for Anthropic.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from aiohttp import web

from _gateway import running_gateway
from _upstream import Upstream
from llmroute import AsyncRouter, RequestError

pytestmark = pytest.mark.anyio

MESSAGES: Any = [{"role": "user", "content": "How many tokens is this?"}]
TOOLS: Any = [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]


def config(upstream: Upstream, *targets: str) -> dict[str, Any]:
    base = upstream.base_url.removesuffix("/v1")
    return {
        "providers": {
            "claude": {"type": "anthropic", "base_url": base, "api_key": "sk-ant-test"},
            "other": {"type": "mock"},
        },
        "routes": {"chat": {"targets": list(targets)}},
    }


def counting(upstream: Upstream, tokens: int = 42) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.path == "/v1/messages/count_tokens"
        return web.json_response({"input_tokens": tokens})

    upstream.handler = handler


async def test_anthropic_targets_count_at_anthropic(upstream: Upstream) -> None:
    counting(upstream)
    # the first target cannot count: the route fails over to the one that can
    async with AsyncRouter(config(upstream, "other/m", "claude/claude-x")) as router:
        client = router.anthropic_client()
        raw = await client.messages.with_raw_response.count_tokens(
            model="chat", messages=MESSAGES, system="be brief", tools=TOOLS
        )
        assert (await raw.parse()).input_tokens == 42
        assert "x-llmroute-estimated" not in raw.headers
        assert await router.count_tokens(model="chat", messages=MESSAGES) == 42
    sent = upstream.requests[0]
    assert sent["model"] == "claude-x"
    assert sent["system"] == [{"type": "text", "text": "be brief"}]
    assert sent["tools"][0]["name"] == "f"
    assert "max_tokens" not in sent and "stream" not in sent
    assert upstream.headers[0]["x-api-key"] == "sk-ant-test"


async def test_other_targets_get_a_marked_estimate(upstream: Upstream) -> None:
    async with AsyncRouter(config(upstream, "other/m")) as router:
        client = router.anthropic_client()
        raw = await client.messages.with_raw_response.count_tokens(model="chat", messages=MESSAGES)
        assert raw.headers["x-llmroute-estimated"] == "true"
        assert (await raw.parse()).input_tokens > 0
        with pytest.raises(RequestError, match="does not count tokens"):
            await router.count_tokens(model="chat", messages=MESSAGES)
    assert upstream.requests == []


async def test_errors_on_messages_paths_are_anthropic_shaped(upstream: Upstream) -> None:
    async def failing(request: web.Request) -> web.StreamResponse:
        error = {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
        return web.json_response(error, status=400)

    upstream.handler = failing
    async with AsyncRouter(config(upstream, "claude/claude-x")) as router:
        client = router.anthropic_client()
        with pytest.raises(anthropic.NotFoundError) as unknown_model:
            await client.messages.count_tokens(model="nope", messages=MESSAGES)
        assert unknown_model.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.count_tokens(model="chat", messages=MESSAGES)
        assert refused.value.body["type"] == "error"  # type: ignore[index]
        with pytest.raises(anthropic.NotFoundError) as unknown_path:
            await client.post("/v1/messages/nope", body={}, cast_to=object)
        body = unknown_path.value.body
        assert body["error"]["type"] == "not_found_error"  # type: ignore[index]
        http = router.http_client()
        async with http:
            wrong = await http.get("/messages/count_tokens")
        assert wrong.status_code == 405 and json.loads(wrong.content)["type"] == "error"


# ---------------------------------------------------------------- over a real socket


async def test_count_tokens_through_a_real_gateway(upstream: Upstream) -> None:
    """The anthropic SDK over HTTP to uvicorn on loopback (not the app called in process):
    a count forwarded to the Anthropic upstream with the operator's key, an estimate marked
    in a header for a route without an Anthropic target, and an Anthropic-shaped error."""
    counting(upstream, tokens=17)
    routes = config(upstream)
    routes["routes"] = {
        "counted": {"targets": ["claude/claude-x"]},
        "other": {"targets": ["other/m"]},
    }
    async with (
        running_gateway(routes) as gateway,
        gateway.anthropic(api_key="client-key") as client,
    ):
        assert gateway.port
        raw = await client.messages.with_raw_response.count_tokens(
            model="counted", messages=MESSAGES, system="be brief"
        )
        counted = await raw.parse()
        assert isinstance(counted, anthropic.types.MessageTokensCount)
        assert counted.input_tokens == 17
        assert "x-llmroute-estimated" not in raw.headers
        assert raw.headers["request-id"].startswith("lr-")
        estimated = await client.messages.with_raw_response.count_tokens(
            model="other", messages=MESSAGES
        )
        assert estimated.headers["x-llmroute-estimated"] == "true"
        assert (await estimated.parse()).input_tokens > 0
        with pytest.raises(anthropic.NotFoundError) as unknown:
            await client.messages.count_tokens(model="nope", messages=MESSAGES)
        assert unknown.value.body["type"] == "error"  # type: ignore[index]
    assert len(upstream.requests) == 1  # the estimate and the unknown route sent nothing
    assert upstream.requests[0]["model"] == "claude-x"
    assert upstream.headers[0]["x-api-key"] == "sk-ant-test"  # the router's, not the client's

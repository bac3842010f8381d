"""`n` and output tokens are bounded by the gateway's config (issue 15, finding 5): each
multiplies what a request costs, and `n` had no upper bound."""

from __future__ import annotations

from typing import Any

import pytest

from _gateway import running_gateway

pytestmark = pytest.mark.anyio

CONFIG = {"routes": {"chat": {"targets": ["mock/m"]}}}
HI = [{"role": "user", "content": "hi"}]


async def post(server: dict[str, Any], path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with running_gateway(CONFIG, server=server) as gateway, gateway.http() as http:
        answer = await http.post(f"{gateway.root}{path}", json=body)
        return answer.status_code, answer.json()


async def test_n_is_bounded_by_default() -> None:
    status, body = await post(
        {}, "/v1/chat/completions", {"model": "chat", "messages": HI, "n": 17}
    )
    assert status == 400
    assert body["error"]["param"] == "n" and "server.max_n" in body["error"]["message"]
    status, body = await post({}, "/v1/chat/completions", {"model": "chat", "messages": HI, "n": 2})
    assert status == 200


async def test_output_tokens_are_bounded_when_configured() -> None:
    server = {"max_output_tokens": 100, "max_n": 4}
    chat = {"model": "chat", "messages": HI}
    for name in ("max_tokens", "max_completion_tokens"):
        status, body = await post(server, "/v1/chat/completions", {**chat, name: 101})
        assert status == 400 and body["error"]["param"] == name
    assert (await post(server, "/v1/chat/completions", {**chat, "max_tokens": 100}))[0] == 200
    assert (await post(server, "/v1/chat/completions", {**chat, "n": 5}))[0] == 400
    status, body = await post(server, "/v1/messages", {**chat, "max_tokens": 101})
    assert status == 400 and body["type"] == "error"  # Anthropic's shape on /v1/messages

"""Upstream error text reaches clients scrubbed (issue 15, finding 16).

An upstream 401 that quoted the ``Authorization`` header it received passed the
operator's provider key through to the client, and connection errors named
internal hosts and ports. `server.upstream_errors` now filters that text:
``scrub`` by default, ``generic`` or ``pass`` on request.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from _gateway import running_gateway
from _upstream import Upstream
from llmroute.server.scrub import ErrorText

pytestmark = pytest.mark.anyio

KEY = "sk-proj-operator-provider-key-0123456789"
HI = [{"role": "user", "content": "hi"}]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(upstream: Upstream, dead: int) -> dict[str, Any]:
    return {
        "providers": {
            "up": {"type": "openai", "base_url": upstream.base_url, "api_key": KEY},
            "gone": {"type": "openai", "base_url": f"http://10.1.2.3:{dead}/v1", "api_key": KEY},
            "near": {"type": "openai", "base_url": f"http://127.0.0.1:{dead}/v1", "api_key": "k"},
        },
        "routes": {"up": {"targets": ["up/m"]}, "near": {"targets": ["near/m"]}},
    }


async def quoting_401(request: web.Request) -> web.Response:
    """An upstream that quotes what it was sent, as some proxies do."""
    quoted = request.headers.get("authorization", "")
    message = f"invalid credentials: {quoted} (seen by http://10.9.8.7:8443/auth, api_key={KEY})"
    return web.json_response({"error": {"message": message, "type": "auth"}}, status=401)


async def ask(root: str, model: str, stream: bool = False) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as http:
        body = {"model": model, "messages": HI, "stream": stream}
        return await http.post(f"{root}/v1/chat/completions", json=body)


async def test_credentials_and_hosts_never_reach_the_client(upstream: Upstream) -> None:
    upstream.handler = quoting_401
    async with running_gateway(config(upstream, closed_port())) as gateway:
        quoted = await ask(gateway.root, "up")
        refused = await ask(gateway.root, "near")
    for answer in (quoted, refused):
        text = answer.text
        assert answer.status_code == 502, text
        assert KEY not in text and "sk-proj" not in text
        assert "127.0.0.1" not in text and "10.9.8.7" not in text and "http://" not in text
    assert "invalid credentials: Bearer [redacted]" in quoted.json()["error"]["message"]
    attempts = refused.json()["error"]["attempts"]
    assert attempts and all("127.0.0.1" not in (a["error"] or "") for a in attempts)


async def test_generic_and_pass_are_the_operators_choice(upstream: Upstream) -> None:
    upstream.handler = quoting_401
    dead = closed_port()
    async with running_gateway(
        config(upstream, dead), server={"upstream_errors": "generic"}
    ) as gateway:
        generic = (await ask(gateway.root, "up")).json()["error"]
    assert generic["message"] == "the upstream provider answered with an error"
    assert all(a["error"] == generic["message"] for a in generic.get("attempts", []))
    async with running_gateway(
        config(upstream, dead), server={"upstream_errors": "pass"}
    ) as gateway:
        passed = (await ask(gateway.root, "up")).json()["error"]
    assert "10.9.8.7:8443" in passed["message"]


SECRETISH = st.sampled_from([KEY, "Bearer abc.def-ghi", "AKIAABCDEFGHIJKLMNOP", "api_key=xyz"])


@given(st.text(max_size=40), SECRETISH, st.text(max_size=40))
def test_scrub_removes_secrets_wherever_they_sit(before: str, secret: str, after: str) -> None:
    shown = ErrorText("scrub", [KEY])(before + " " + secret + " " + after)
    for part in (KEY, "abc.def-ghi", "AKIAABCDEFGHIJKLMNOP", "=xyz"):
        if part in secret:  # the secret's own occurrence is gone (the rest may hold it by chance)
            assert shown.count(part) < (before + secret + after).count(part)

"""The provider's response headers: kept on the attempt records, on raw responses in process
(less hop-by-hop and cookie headers, llmroute's own taking precedence), and the gateway's
allow-list (docs/security.md#provider-response-headers).

The upstream is a real aiohttp server on loopback, so the headers are those a real HTTP
engine hands over (``content-length``, ``transfer-encoding`` and all).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from aiohttp import web

import llmroute
from _gateway import in_process_gateway
from _upstream import Upstream, chunk_body, completion_body
from llmroute import AsyncRouter, Router
from llmroute._config_load import load_config

pytestmark = pytest.mark.anyio

HI: Any = [{"role": "user", "content": "hi"}]

#: What the provider sends beside its answer.
PROVIDER = {
    "openai-processing-ms": "123",
    "openai-organization": "operator-org",
    "x-ratelimit-remaining-requests": "99",
    "x-request-id": "req_provider",
    "set-cookie": "__cf_bm=secret; path=/",
    "connection": "keep-alive, x-private-hop",
    "keep-alive": "timeout=5",
    "x-private-hop": "only for this connection",
}
#: Never on a raw response: hop-by-hop (those the connection header names too), the
#: body's framing and encoding (this response is not the provider's bytes), cookies.
DROPPED = {
    "set-cookie", "connection", "keep-alive", "x-private-hop", "content-length",
    "transfer-encoding", "content-encoding",
}  # fmt: skip


def config(upstream: Upstream, *targets: str, cache: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"}},
        "routes": {
            "chat": {"targets": list(targets or ["up/m"])},
            "emb": {"targets": ["up/emb"]},
        },
    }
    if cache:
        result["cache"] = {"backend": "memory://", "ttl": "1h"}
    return result


async def answer_with_headers(request: web.Request) -> web.StreamResponse:
    """Whole answers with `PROVIDER`'s headers (gzipped: a ``content-encoding`` too); a
    stream when asked; model ``down`` answers 503 with headers of its own."""
    body = json.loads(await request.read())
    if body.get("model") == "down":
        return web.json_response(
            {"error": {"message": "busy", "type": "server_error"}},
            status=503,
            headers={"x-which": "down", "openai-processing-ms": "1"},
        )
    if request.path.endswith("/embeddings"):
        embedding = {"object": "embedding", "index": 0, "embedding": [0.5]}
        data = {"object": "list", "data": [embedding], "model": "emb",
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}  # fmt: skip
        return web.json_response(data, headers={**PROVIDER, "x-which": "emb"})
    if body.get("stream"):
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", **PROVIDER, "x-which": "stream"}
        )
        await response.prepare(request)
        for event in (chunk_body({"role": "assistant", "content": "Hi"}), chunk_body({}, "stop")):
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    response = web.json_response(completion_body(), headers={**PROVIDER, "x-which": "up"})
    response.enable_compression(web.ContentCoding.gzip)
    return response


@pytest.fixture
def provider(upstream: Upstream) -> Upstream:
    upstream.handler = answer_with_headers
    return upstream


# ---------------------------------------------------------------- in process


async def test_attempts_keep_their_headers_and_the_served_ones_are_named(
    provider: Upstream,
) -> None:
    async with AsyncRouter(config(provider, "up/down", "up/m")) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
    info = reply.llmroute
    failed, served = info.attempts
    assert failed.headers is not None and failed.headers["x-which"] == "down"
    assert served.headers is not None and served.headers["X-Which"] == "up"  # any case
    assert info.provider_headers is served.headers
    assert info.provider_headers["openai-processing-ms"] == "123"


async def test_a_raw_response_has_the_providers_headers_and_llmroutes_first(
    provider: Upstream,
) -> None:
    async with AsyncRouter(config(provider, "up/down", "up/m")) as router:
        raw = await router.chat.completions.with_raw_response.create(model="chat", messages=HI)
    headers = raw.headers
    info = raw.parse().llmroute
    assert headers["x-which"] == "up"  # the served attempt's, not the failed one's
    assert headers["openai-processing-ms"] == "123"
    assert headers["openai-organization"] == "operator-org"
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert headers["date"]  # the provider's ordinary headers pass as they are
    # llmroute's take precedence over the provider's of the same name
    assert headers["x-request-id"] == info.request_id != "req_provider"
    assert headers["content-type"] == "application/json"
    assert headers["x-llmroute-attempts"] == "2"
    assert not DROPPED & set(headers)
    sent = {name.lower() for name in info.provider_headers or ()}
    assert DROPPED - {"transfer-encoding"} <= sent  # the provider did send them


async def test_streams_embeddings_and_streaming_responses_carry_them(
    provider: Upstream,
) -> None:
    async with AsyncRouter(config(provider)) as router:
        completions = router.chat.completions
        raw = await completions.with_raw_response.create(model="chat", messages=HI, stream=True)
        assert raw.headers["x-which"] == "stream"
        assert raw.headers["content-type"] == "text/event-stream"
        assert not DROPPED & set(raw.headers)
        async for _ in raw.parse():  # type: ignore[union-attr]
            pass
        embeddings = await router.embeddings.with_raw_response.create(model="emb", input="x")
        assert embeddings.headers["x-which"] == "emb"
        assert not DROPPED & set(embeddings.headers)
        streaming = completions.with_streaming_response
        async with streaming.create(model="chat", messages=HI, stream=True) as response:
            assert response.headers["x-which"] == "stream"
            assert [line async for line in response.iter_lines()][-1] == "data: [DONE]"
        async with router.embeddings.with_streaming_response.create(
            model="emb", input="x"
        ) as response:
            assert response.headers["openai-processing-ms"] == "123"


async def test_the_blocking_router_too(provider: Upstream) -> None:
    def use() -> None:
        with Router(config(provider)) as router:
            raw = router.chat.completions.with_raw_response.create(model="chat", messages=HI)
            assert raw.headers["x-which"] == "up" and not DROPPED & set(raw.headers)
            streaming = router.embeddings.with_streaming_response
            with streaming.create(model="emb", input="x") as response:
                assert response.headers["x-which"] == "emb"

    await anyio.to_thread.run_sync(use)


async def test_no_provider_answered_no_provider_headers(provider: Upstream) -> None:
    async with AsyncRouter(config(provider, cache=True)) as router:
        await router.chat.completions.create(model="chat", messages=HI)
        raw = await router.chat.completions.with_raw_response.create(model="chat", messages=HI)
    assert raw.parse().llmroute.cache == "hit"
    assert raw.parse().llmroute.provider_headers is None
    assert "x-which" not in raw.headers and raw.headers["x-llmroute-cache"] == "HIT"
    models = await router.models.with_raw_response.list()
    assert set(models.headers) == {"content-type"}


# ---------------------------------------------------------------- the gateway's allow-list


async def test_the_gateway_forwards_only_its_allow_list(provider: Upstream) -> None:
    gateway_config = config(provider, "up/down", "up/m")
    async with in_process_gateway(gateway_config) as gateway, gateway.http() as http:
        url = f"{gateway.base_url}/chat/completions"
        whole = await http.post(url, json={"model": "chat", "messages": HI})
        body = {"model": "chat", "messages": HI, "stream": True}
        async with http.stream("POST", url, json=body) as streamed:
            streamed_headers = streamed.headers
            await streamed.aread()
    for headers in (whole.headers, streamed_headers):
        assert headers["openai-processing-ms"] == "123"
        for name in ("x-which", "openai-organization", "x-ratelimit-remaining-requests",
                     "set-cookie", "x-private-hop", "keep-alive"):  # fmt: skip
            assert name not in headers, name
        assert headers["x-request-id"] != "req_provider"


async def test_the_operator_chooses_what_the_gateway_forwards(provider: Upstream) -> None:
    server = {"forward_provider_headers": ["X-Which", "x-which"]}
    async with (
        in_process_gateway(config(provider), server=server) as gateway,
        gateway.http() as http,
    ):
        url = f"{gateway.base_url}/chat/completions"
        whole = await http.post(url, json={"model": "chat", "messages": HI})
        body = {"model": "chat", "messages": HI, "stream": True}
        async with http.stream("POST", url, json=body) as streamed:
            streamed_headers = streamed.headers
            await streamed.aread()
    assert (whole.headers["x-which"], streamed_headers["x-which"]) == ("up", "stream")
    for headers in (whole.headers, streamed_headers):
        assert len(headers.get_list("x-which")) == 1
        assert headers["x-request-id"] != "req_provider"
        assert "openai-processing-ms" not in headers  # the default list is replaced
        assert "x-ratelimit-remaining-requests" not in headers


@pytest.mark.parametrize(
    ("name", "why"),
    [("Set-Cookie", "session"), ("x-ratelimit-remaining-requests", "operator's account"),
     ("anthropic-ratelimit-tokens-remaining", "operator's account"),
     ("x-llmroute-cost-usd", "gateway's own"), ("transfer-encoding", "connection"),
     ("proxy-authenticate", "connection"), ("retry-after", "own decision"),
     ("openai-organization", "organization"), ("X-Request-Id", "its own request id"),
     ("bad header", "not a header name")],
)  # fmt: skip
def test_headers_that_must_not_be_forwarded_are_refused_in_config(name: str, why: str) -> None:
    with pytest.raises(llmroute.ConfigError, match=why):
        load_config({"server": {"forward_provider_headers": [name]}}, env={})


async def test_the_sdk_client_in_process_sees_what_the_gateway_sends(provider: Upstream) -> None:
    async with AsyncRouter(config(provider)) as router:
        client = router.openai_client()
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HI)
    assert raw.headers["openai-processing-ms"] == "123"
    assert "openai-organization" not in raw.headers and "set-cookie" not in raw.headers
    assert raw.parse().choices[0].message.content == "Hello!"


async def test_a_forwarded_value_cannot_break_the_head(upstream: Upstream) -> None:
    async def odd(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response(completion_body(), headers={"openai-processing-ms": "1 2\t3é"})

    upstream.handler = odd
    async with in_process_gateway(config(upstream)) as gateway, gateway.http() as http:
        reply = await http.post(
            f"{gateway.base_url}/chat/completions", json={"model": "chat", "messages": HI}
        )
    assert reply.status_code == 200
    assert reply.headers["openai-processing-ms"].isascii()

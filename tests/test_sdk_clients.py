"""The genuine openai and anthropic SDK clients served by the router in process (issue 14).

Every test runs the real SDK over ``router.openai_client()`` /
``router.anthropic_client()`` / ``router.http_client()``: no socket between the
SDK and the router, a loopback upstream (or the ``mock`` provider) behind it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest
from aiohttp import web
from pydantic import BaseModel

from _model_upstream import answer, model_config
from _upstream import Upstream, chunk_body
from llmroute import AsyncRouter, Router
from llmroute.sdk import BASE_URL, AsyncInProcessTransport, httpx_transports
from llmroute.sdk import transports as sdk_transports
from llmroute.server.keys import hash_key

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

USER: Any = [{"role": "user", "content": "hello"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
MOCK: dict[str, Any] = {
    "providers": {
        "flaky": {"type": "mock", "failure_rate": 1.0},
        "m": {"type": "mock", "text": "one two three", "chunk_delay": 0.05},
        "tools": {
            "type": "mock",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        },
    },
    "routes": {
        "chat": {"targets": ["flaky/a", "m/b"]},
        "tooling": {"targets": ["tools/t"]},
    },
}


class City(BaseModel):
    name: str
    country: str


# ---------------------------------------------------------------- openai, async


async def test_openai_text_fails_over_with_the_gateway_headers(upstream: Upstream) -> None:
    upstream.handler = answer
    async with AsyncRouter(model_config(upstream)) as router:
        client = router.openai_client()
        assert isinstance(client, openai.AsyncOpenAI)
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=USER)
        reply = raw.parse()
        assert isinstance(reply, openai.types.chat.ChatCompletion)
        assert reply.choices[0].message.content == "Hello from the model upstream!"
        headers = raw.headers
        assert headers["x-llmroute-attempts"] == "2"  # the first target answered 503
        assert (headers["x-llmroute-provider"], headers["x-llmroute-route"]) == ("up", "chat")
        assert reply._request_id == headers["x-llmroute-request-id"]
        assert reply._request_id.startswith("lr-")
        assert len(upstream.requests) == 2  # no SDK retries on top of the router's


async def test_openai_stream_arrives_chunk_by_chunk(upstream: Upstream) -> None:
    """The first chunk is read while the upstream still holds the rest back."""
    first_read = asyncio.Event()
    upstream_gone = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + json.dumps(chunk_body({"content": "first"})).encode())
        await response.write(b"\n\n")
        await first_read.wait()
        for event in (chunk_body({"content": " last"}), chunk_body({}, "stop")):
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        upstream_gone.set()
        return response

    upstream.handler = slow
    async with AsyncRouter(model_config(upstream)) as router:
        client = router.openai_client()
        stream = await client.chat.completions.create(model="direct", messages=USER, stream=True)
        texts = []
        with anyio.fail_after(5):  # a buffering transport would wait here for ever
            async for chunk in stream:
                texts.append(chunk.choices[0].delta.content if chunk.choices else None)
                first_read.set()
        assert "".join(t or "" for t in texts) == "first last"
        assert upstream_gone.is_set()


async def test_closing_a_stream_early_reaches_the_upstream(upstream: Upstream) -> None:
    """Closing the SDK's stream is a client disconnect: the router drops the upstream request."""
    cut = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                event = json.dumps(chunk_body({"content": "more "}))
                await response.write(f"data: {event}\n\n".encode())
                await asyncio.sleep(0.01)
        except (ConnectionError, asyncio.CancelledError):
            cut.set()
            raise

    upstream.handler = endless
    async with AsyncRouter(model_config(upstream)) as router:
        client = router.openai_client()
        stream = await client.chat.completions.create(model="direct", messages=USER, stream=True)
        async for _ in stream:
            break
        await stream.close()
        with anyio.fail_after(5):
            await cut.wait()


async def test_openai_tools_parse_and_stream_helper(upstream: Upstream) -> None:
    upstream.handler = answer
    async with AsyncRouter(model_config(upstream)) as router:
        client = router.openai_client()
        called = await client.chat.completions.create(model="direct", messages=USER, tools=TOOLS)
        call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]

        parsed = await client.chat.completions.parse(
            model="direct", messages=USER, response_format=City
        )
        assert parsed.choices[0].message.parsed == City(name="Paris", country="Paris")

        async with client.chat.completions.stream(model="direct", messages=USER) as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_completion()
        assert "content.delta" in kinds
        assert final.choices[0].message.content == "Hello from the model upstream!"


async def test_openai_embeddings_and_models(upstream: Upstream) -> None:
    upstream.handler = answer
    async with AsyncRouter(model_config(upstream)) as router:
        client = router.openai_client()
        embedded = await client.embeddings.create(model="direct", input=["a", "b"])
        assert [e.embedding for e in embedded.data] == [[0.1, 0.2, 0.3]] * 2
        models = [m.id async for m in client.models.list()]
        assert {"chat", "direct"} <= set(models)
        assert (await client.models.retrieve("direct")).id == "direct"


async def test_openai_errors_are_the_sdks_own_classes() -> None:
    config = {**MOCK, "rate_limits": [{"per": "global", "requests": "1/min"}]}
    async with AsyncRouter(config) as router:
        client = router.openai_client()
        await client.chat.completions.create(model="tooling", messages=USER)
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model="tooling", messages=USER)
        assert limited.value.request_id is not None
        assert limited.value.response.headers["retry-after"]
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="no-such-route", messages=USER)
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="tooling", messages=[])


async def test_gateway_keys_apply_to_the_sdk_client() -> None:
    key = "in-process-key-0123456789abcdef"
    config = {**MOCK, "server": {"keys": [{"name": "app", "key": hash_key(key)}]}}
    async with AsyncRouter(config) as router:
        with pytest.raises(openai.AuthenticationError):
            await router.openai_client().chat.completions.create(
                model="tooling", messages=USER, tools=TOOLS
            )
        reply = await router.openai_client(api_key=key).chat.completions.create(
            model="tooling", messages=USER, tools=TOOLS
        )
        assert reply.choices[0].finish_reason == "tool_calls"


async def test_settings_that_would_bypass_the_router_are_refused() -> None:
    async with AsyncRouter(MOCK) as router:
        with pytest.raises(TypeError, match="base_url"):
            router.openai_client(base_url="https://api.openai.com/v1")
        with pytest.raises(TypeError, match="http_client"):
            router.anthropic_client(http_client=httpx2.AsyncClient())
        with pytest.raises(TypeError, match="transport"):
            router.http_client(transport=httpx2.AsyncHTTPTransport())
        assert router.openai_client().max_retries == 0
        assert router.openai_client(max_retries=3).max_retries == 3


async def test_one_gateway_per_router_closed_with_it() -> None:
    router = AsyncRouter(MOCK)
    assert router.gateway is router.gateway
    client = router.openai_client(max_retries=0)
    assert (await client.chat.completions.create(model="chat", messages=USER)).choices
    await router.aclose()
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="chat", messages=USER)


async def test_the_gateway_starts_ready_and_leaves_no_task_waiting() -> None:
    """Started and stopped as a lifespan would be, with no lifespan task waiting for as long
    as the router lives (a task that, holding the router, would be destroyed pending when a
    router is dropped unclosed)."""
    async with AsyncRouter(MOCK) as router, router.http_client() as http:
        before = asyncio.all_tasks()
        ready = await http.get("http://llmroute.local/ready")
        assert ready.status_code == 200, ready.text
        for _ in range(20):  # the request's own task ends just after its last byte
            if not asyncio.all_tasks() - before:
                break
            await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()


async def test_http_client_streams_and_serves_other_paths() -> None:
    async with AsyncRouter(MOCK) as router, router.http_client() as http:
        assert str(http.base_url).rstrip("/") == BASE_URL
        health = await http.get("http://llmroute.local/health")  # outside /v1 too
        assert health.status_code == 200
        body = {"model": "chat", "messages": USER, "stream": True}
        async with http.stream("POST", "/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"


async def test_a_streamed_request_body_is_received_in_parts() -> None:
    async def body() -> Any:
        text = json.dumps({"model": "chat", "messages": USER}).encode()
        yield text[:10]
        yield text[10:]

    async with AsyncRouter(MOCK) as router:
        transport = AsyncInProcessTransport(router.gateway)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            response = await http.post(
                "/chat/completions", content=body(), headers={"content-type": "application/json"}
            )
        assert response.json()["choices"][0]["message"]["content"] == "one two three"


async def test_older_sdks_on_httpx_get_an_httpx_client() -> None:
    """An SDK built on httpx 0.28 gets the httpx twin of the transport."""
    import httpx

    from llmroute.sdk import httpx_transports

    async with AsyncRouter(MOCK) as router:
        transport = httpx_transports.AsyncInProcessTransport(router.gateway)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            body = {"model": "chat", "messages": USER, "stream": True}
            async with http.stream("POST", "/chat/completions", json=body) as response:
                lines = [line async for line in response.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"


@pytest.mark.parametrize("library", ["httpx2", "httpx"])
async def test_both_libraries_async_transports(library: str) -> None:
    """The httpx2 transports and their httpx twins, written once: whole answers, streams,
    and the library's own ConnectError once the router is closed."""
    http = importlib.import_module(library)
    transports = sdk_transports if library == "httpx2" else httpx_transports
    router = AsyncRouter(MOCK)
    transport = transports.AsyncInProcessTransport(router.gateway)
    async with http.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        whole = await client.post("/chat/completions", json={"model": "chat", "messages": USER})
        assert whole.json()["choices"][0]["message"]["content"] == "one two three"
        body = {"model": "chat", "messages": USER, "stream": True}
        async with client.stream("POST", "/chat/completions", json=body) as response:
            lines = [line async for line in response.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]" and len(lines) > 2
        await router.aclose()
        with pytest.raises(http.ConnectError):
            await client.post("/chat/completions", json={"model": "chat", "messages": USER})


@pytest.mark.parametrize("library", ["httpx2", "httpx"])
def test_both_libraries_blocking_transports(library: str) -> None:
    http = importlib.import_module(library)
    transports = sdk_transports if library == "httpx2" else httpx_transports
    router = AsyncRouter(MOCK)
    with anyio.from_thread.start_blocking_portal() as portal:
        transport = transports.InProcessTransport(router.gateway, portal.call)
        with http.Client(transport=transport, base_url=BASE_URL) as client:
            whole = client.post("/chat/completions", json={"model": "chat", "messages": USER})
            assert whole.json()["choices"][0]["message"]["content"] == "one two three"
            body = {"model": "chat", "messages": USER, "stream": True}
            with client.stream("POST", "/chat/completions", json=body) as response:
                first = next(line for line in response.iter_lines() if line)
            assert first.startswith("data: ")  # left early: the stream is closed
            portal.call(router.aclose)
            with pytest.raises(http.ConnectError):
                client.post("/chat/completions", json={"model": "chat", "messages": USER})


# ---------------------------------------------------------------- openai, blocking


def test_sync_openai_client_text_stream_and_errors() -> None:
    with Router(MOCK) as router:
        client = router.openai_client()
        assert isinstance(client, openai.OpenAI)
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
        assert raw.headers["x-llmroute-attempts"] == "2"  # flaky failed first
        assert raw.parse().choices[0].message.content == "one two three"
        times = []
        stream = client.chat.completions.create(model="chat", messages=USER, stream=True)
        start = time.perf_counter()
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append(time.perf_counter() - start)
        assert len(times) == 3
        assert times[-1] - times[0] >= 0.08  # chunks came as the mock produced them
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-route", messages=USER)
        parsed = client.chat.completions.parse(
            model="tooling", messages=USER, tools=[openai.pydantic_function_tool(City)]
        )
        assert parsed.choices[0].finish_reason == "tool_calls"


async def test_sync_client_closing_a_stream_early(upstream: Upstream) -> None:
    """The blocking client over a real upstream (driven from a worker thread)."""
    cut = threading.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                event = json.dumps(chunk_body({"content": "more "}))
                await response.write(f"data: {event}\n\n".encode())
                await asyncio.sleep(0.01)
        except (ConnectionError, asyncio.CancelledError):
            cut.set()
            raise

    upstream.handler = endless

    def use() -> str:
        with Router(model_config(upstream)) as router:
            client = router.openai_client()
            stream = client.chat.completions.create(model="direct", messages=USER, stream=True)
            first = next(iter(stream))
            stream.close()
            assert cut.wait(5)
            return first.choices[0].delta.content or ""

    assert await anyio.to_thread.run_sync(use) == "more "


# ---------------------------------------------------------------- anthropic


async def test_anthropic_text_stream_tools_and_errors() -> None:
    async with AsyncRouter(MOCK) as router:
        client = router.anthropic_client()
        assert isinstance(client, anthropic.AsyncAnthropic)
        message = await client.messages.create(model="chat", max_tokens=64, messages=USER)
        assert message.content[0].text == "one two three"  # type: ignore[union-attr]
        assert message._request_id is not None and message._request_id.startswith("lr-")

        async with client.messages.stream(model="chat", max_tokens=64, messages=USER) as stream:
            texts = [text async for text in stream.text_stream]
        assert "".join(texts) == "one two three"

        tools: Any = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
        used = await client.messages.create(
            model="tooling", max_tokens=64, messages=USER, tools=tools
        )
        block = next(b for b in used.content if b.type == "tool_use")
        assert (block.name, block.input) == ("get_weather", {"city": "Paris"})  # type: ignore[union-attr]
        assert used.stop_reason == "tool_use"

        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(model="no-such-route", max_tokens=8, messages=USER)


def test_sync_anthropic_client() -> None:
    with Router(MOCK) as router:
        client = router.anthropic_client()
        assert isinstance(client, anthropic.Anthropic)
        message = client.messages.create(model="chat", max_tokens=64, messages=USER)
        assert message.content[0].text == "one two three"  # type: ignore[union-attr]
        with client.messages.stream(model="chat", max_tokens=64, messages=USER) as stream:
            assert "".join(stream.text_stream) == "one two three"

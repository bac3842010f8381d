"""The HTTP seam over real loopback sockets: aiohttp (default) and httpx/httpx2 clients, respx."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import sys
from typing import Any

import httpx
import httpx2
import pytest
import respx
from aiohttp import web

import llmroute
from _helpers import HI
from _upstream import Upstream, chunk_body, completion_body, sse
from llmroute import AsyncRouter

pytestmark = pytest.mark.anyio

TIMEOUTS = llmroute.Timeouts(connect=5.0, read=5.0)


def provider(upstream: Upstream, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "sk-test",
                             **extra}},
        "routes": {"chat": {"targets": ["up/up-model"], "retry": {"attempts": 1}}},
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_request_reaches_upstream_with_auth_and_body(upstream: Upstream) -> None:
    async with AsyncRouter(provider(upstream, headers={"X-Team": "core"})) as router:
        reply = await router.chat.completions.create(
            model="chat", messages=HI, temperature=0.5, extra_headers={"x-trace": "t1"},
            extra_query={"api-version": "2024"},
        )  # fmt: skip
    assert reply.choices[0].message.content == "Hello!"
    assert upstream.requests[0]["model"] == "up-model"
    assert upstream.requests[0]["temperature"] == 0.5
    headers = upstream.headers[0]
    assert headers["Authorization"] == "Bearer sk-test"
    assert headers["X-Team"] == "core"
    assert headers["x-trace"] == "t1"
    assert upstream.queries[0] == "api-version=2024"


async def test_connections_are_pooled_and_reused(upstream: Upstream) -> None:
    async with AsyncRouter(provider(upstream)) as router:
        for _ in range(5):
            await router.chat.completions.create(model="chat", messages=HI)
    assert len(set(upstream.peers)) == 1


async def test_a_cookie_one_answer_sets_is_not_sent_with_the_next_request(
    upstream: Upstream,
) -> None:
    """The default engine keeps no cookies: the pool serves every caller of the router."""

    async def with_cookie(request: web.Request) -> web.StreamResponse:
        response = web.json_response(completion_body())
        response.set_cookie("session", "caller-one", path="/")
        return response

    upstream.handler = with_cookie
    config = provider(upstream)  # by name: a cookie jar would keep no cookie of an IP address
    up = config["providers"]["up"]
    up["base_url"] = up["base_url"].replace("127.0.0.1", "localhost")
    async with AsyncRouter(config) as router:
        for _ in range(2):
            await router.chat.completions.create(model="chat", messages=HI)
    assert len(upstream.headers) == 2
    assert all("Cookie" not in headers for headers in upstream.headers)


async def test_rate_limit_headers_and_retry_after(upstream: Upstream) -> None:
    async def limited(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
            status=429,
            headers={"retry-after-ms": "1500", "x-ratelimit-remaining-requests": "0",
                     "x-ratelimit-reset-requests": "1s", "x-request-id": "req_9"},
        )  # fmt: skip

    upstream.handler = limited
    async with AsyncRouter(provider(upstream)) as router:
        with pytest.raises(llmroute.AllTargetsFailed) as caught:
            await router.chat.completions.create(model="chat", messages=HI)
        limits = router.stats()["up/up-model"].rate_limit
    error = caught.value.last_error
    assert isinstance(error, llmroute.RateLimited)
    assert error.retry_after == 1.5
    assert error.request_id == "req_9"
    assert error.status == 429
    assert limits is not None
    assert limits.remaining_requests == 0
    assert limits.reset_requests_s == 1.0


async def test_connection_refused_is_a_connection_error() -> None:
    config = {
        "providers": {"up": {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                             "api_key": "x"}},
        "routes": {"chat": {"targets": ["up/m"], "retry": {"attempts": 1}}},
    }  # fmt: skip
    async with AsyncRouter(config) as router:
        with pytest.raises(llmroute.AllTargetsFailed) as caught:
            await router.chat.completions.create(model="chat", messages=HI)
    assert isinstance(caught.value.last_error, llmroute.ProviderConnectionError)


async def test_slow_upstream_hits_the_attempt_timeout(upstream: Upstream) -> None:
    done = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await done.wait()  # answers only once the test is over: however late the timer fires
        return web.json_response(completion_body())

    upstream.handler = slow
    try:
        async with AsyncRouter(provider(upstream, timeout=0.1)) as router:
            with pytest.raises(llmroute.AllTargetsFailed) as caught:
                await router.chat.completions.create(model="chat", messages=HI)
    finally:
        done.set()
    assert isinstance(caught.value.last_error, llmroute.ProviderTimeout)


async def test_non_json_success_body_is_malformed_response(upstream: Upstream) -> None:
    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>gateway</html>", content_type="text/html")

    upstream.handler = html
    async with AsyncRouter(provider(upstream)) as router:
        with pytest.raises(llmroute.AllTargetsFailed) as caught:
            await router.chat.completions.create(model="chat", messages=HI)
    error = caught.value.last_error
    assert isinstance(error, llmroute.MalformedResponse)
    assert error.status == 200
    assert error.body == b"<html>gateway</html>"


async def test_stream_over_loopback_with_usage(upstream: Upstream) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        usage = {**chunk_body({}), "choices": [],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}  # fmt: skip
        return await sse(request, [chunk_body({"role": "assistant", "content": ""}),
                                   chunk_body({"content": "Hel"}), chunk_body({"content": "lo"}),
                                   chunk_body({}, "stop"), usage, "[DONE]"])  # fmt: skip

    upstream.handler = stream
    async with AsyncRouter(provider(upstream)) as router:
        result = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in result if c.choices])
    assert text == "Hello"
    assert upstream.requests[0]["stream_options"] == {"include_usage": True}
    assert upstream.headers[0]["Accept"] == "text/event-stream"
    assert result.llmroute.usage is not None
    assert (result.llmroute.usage.input, result.llmroute.usage.output) == (3, 2)


async def test_early_close_drops_the_upstream_connection(upstream: Upstream) -> None:
    disconnected = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(10_000):
                data = json.dumps(chunk_body({"content": f"c{i} "}))
                await response.write(f"data: {data}\n\n".encode())
                await asyncio.sleep(0.001)
        except (ConnectionResetError, asyncio.CancelledError):
            disconnected.set()
            raise
        return response

    upstream.handler = endless
    async with AsyncRouter(provider(upstream)) as router:
        result = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        async with result:
            async for _ in result:
                break
        with anyio_fail_after(5):
            await disconnected.wait()
    assert result.llmroute.attempts[-1].outcome == "cancelled"


async def test_upstream_dying_mid_stream_interrupts(upstream: Upstream) -> None:
    async def dies(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            b'data: {"id":"x","object":"chat.completion.chunk","created":1,'
            b'"model":"m","choices":[{"index":0,"delta":{"content":"part"}}]}\n\n'
        )
        assert request.transport is not None
        request.transport.abort()
        return response

    upstream.handler = dies
    async with AsyncRouter(provider(upstream)) as router:
        result = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        with pytest.raises(llmroute.StreamInterrupted) as caught:
            async for _ in result:
                pass
    assert caught.value.partial == "part"


async def json_or_sse(request: web.Request) -> web.StreamResponse:
    if (await request.json()).get("stream"):
        return await sse(request, [chunk_body({"content": "streamed"}, "stop"), "[DONE]"])
    return web.json_response(completion_body())


@pytest.mark.parametrize("module", [httpx, httpx2])
async def test_user_supplied_httpx_client(upstream: Upstream, module: Any) -> None:
    upstream.handler = json_or_sse
    async with module.AsyncClient(headers={"x-client": module.__name__}) as client:
        router = AsyncRouter(provider(upstream), transports={"up": client})
        reply = await router.chat.completions.create(model="chat", messages=HI)
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        chunks = [c async for c in stream]
        await router.aclose()
        assert not client.is_closed  # the caller's client stays open
    assert reply.choices[0].message.content == "Hello!"
    assert upstream.headers[0]["x-client"] == module.__name__
    assert [c.choices[0].delta.content for c in chunks] == ["streamed"]


async def test_respx_intercepts_provider_traffic(httpx2_mock: respx.Router) -> None:
    route = httpx2_mock.post("https://api.example.test/v1/chat/completions").mock(
        return_value=httpx.Response(200, json=completion_body("mocked"))
    )
    config = {"providers": {"ex": {"type": "openai", "base_url": "https://api.example.test/v1",
                                   "api_key": "k"}}}  # fmt: skip
    async with (
        httpx2.AsyncClient() as client,
        AsyncRouter(config, transports={"ex": client}) as router,
    ):
        reply = await router.chat.completions.create(model="ex/some-model", messages=HI)
    assert reply.choices[0].message.content == "mocked"
    assert route.call_count == 1


def anyio_fail_after(seconds: float) -> Any:
    import anyio

    return anyio.fail_after(seconds)


async def test_a_very_long_stream_line_is_not_refused(upstream: Upstream) -> None:
    big = "x" * 300_000  # one SSE line larger than aiohttp's readline buffer

    async def long_line(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk_body({"content": big}, "stop"), "[DONE]"])

    upstream.handler = long_line
    async with AsyncRouter(provider(upstream)) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == big


@pytest.mark.parametrize("engine", ["aiohttp", "httpx2"])
async def test_finished_streams_give_their_connection_back(upstream: Upstream, engine: str) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            f"data: {json.dumps(chunk_body({'content': 'hi'}, 'stop'))}\n\n".encode()
        )
        await response.write(b"data: [DONE]\n\n")
        await asyncio.sleep(0.01)  # the end of the chunked body comes a moment later
        await response.write_eof()
        return response

    upstream.handler = stream
    client = httpx2.AsyncClient() if engine == "httpx2" else None
    transports = {"up": client} if client is not None else None
    async with AsyncRouter(provider(upstream), transports=transports) as router:
        for _ in range(5):
            result = await router.chat.completions.create(model="chat", messages=HI, stream=True)
            assert [c.choices[0].delta.content async for c in result if c.choices] == ["hi"]
    if client is not None:
        await client.aclose()
    assert len(set(upstream.peers)) == 1  # one connection served all five streams


async def test_a_slow_end_of_body_does_not_hold_up_a_finished_stream(upstream: Upstream) -> None:
    async def lingering(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            f"data: {json.dumps(chunk_body({'content': 'hi'}, 'stop'))}\n\n".encode()
        )
        await response.write(b"data: [DONE]\n\n")
        await read.wait()  # the end of the body comes only after the client has read it all
        await response.write_eof()
        return response

    read = asyncio.Event()
    upstream.handler = lingering
    try:
        async with AsyncRouter(provider(upstream)) as router:
            stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
            # the answer is complete at [DONE]: waiting for the body's end would never return
            with anyio_fail_after(10):
                assert [c.choices[0].delta.content async for c in stream if c.choices] == ["hi"]
            assert stream.completed
    finally:
        read.set()


# ---------------------------------------------------------------- the contract


async def test_a_transport_needs_only_send() -> None:
    """`aclose` has a default, so a user's engine writes one method."""

    class OnlySend(llmroute.Transport):
        async def send(
            self, request: llmroute.HttpRequest, timeouts: llmroute.Timeouts
        ) -> llmroute.HttpResponse:
            return llmroute.HandlerResponse(200, json={"ok": True})

    transport = OnlySend()
    response = await transport.send(llmroute.HttpRequest("GET", "http://x.invalid/"), TIMEOUTS)
    assert await response.read() == b'{"ok":true}'
    await transport.aclose()


def test_engine_slots_take_effect() -> None:
    """The abstract bases declare empty slots, so per-request objects carry no __dict__."""
    from llmroute._request import validate_chat_request
    from llmroute._transports import AiohttpTransport
    from llmroute.providers.configs import OpenAIProviderConfig
    from llmroute.providers.openai import OpenAIAdapter

    adapter = OpenAIAdapter("up", OpenAIProviderConfig(type="openai", api_key="k"))
    chat = validate_chat_request({"model": "m", "messages": HI})
    for obj in (
        AiohttpTransport(),
        llmroute.HandlerResponse(),
        llmroute.HandlerTransport(lambda request: llmroute.HandlerResponse()),
        adapter.stream_decoder(chat, "m"),
    ):
        assert not hasattr(obj, "__dict__"), type(obj).__name__


@pytest.mark.parametrize("engine", ["aiohttp", "httpx", "httpx2"])
async def test_each_engine_raises_only_transport_errors(engine: str) -> None:
    """Connection refused, and a body cut short, come out as the exported error types."""
    from llmroute._transports import AiohttpTransport, transport_from_client

    clients = {"httpx": httpx.AsyncClient, "httpx2": httpx2.AsyncClient}
    client = clients[engine]() if engine in clients else None
    transport = AiohttpTransport() if client is None else transport_from_client(client)
    refused = llmroute.HttpRequest("GET", f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(llmroute.ConnectFailed) as failed:
        await transport.send(refused, TIMEOUTS)
    # the engine's own error stays the cause, and the message names the URL
    assert failed.value.__cause__ is not None
    assert not isinstance(failed.value.__cause__, llmroute.TransportError)
    assert refused.url in str(failed.value)

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-length": "100"})
        await response.prepare(request)
        await response.write(b"partial")
        request.transport.abort()  # type: ignore[union-attr]
        return response

    app = web.Application()
    app.router.add_get("/", cut)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        response = await transport.send(
            llmroute.HttpRequest("GET", f"http://127.0.0.1:{port}/"), TIMEOUTS
        )
        with pytest.raises(llmroute.ConnectionLost) as lost:
            await response.read()
        assert lost.value.__cause__ is not None
    finally:
        await transport.aclose()
        if client is not None:
            await client.aclose()
        await runner.cleanup()
    assert issubclass(llmroute.ConnectionLost, llmroute.TransportError)


@pytest.mark.parametrize("engine", ["aiohttp", "httpx2"])
async def test_a_finished_stream_leaves_no_generator_to_the_loops_finalizer(
    upstream: Upstream, engine: str
) -> None:
    """The body's iterators are closed when the stream ends, not by the garbage collector
    through the event loop's finalizer hook (a self-pipe write, a wake-up and a task each)."""

    async def stream(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk_body({"content": "hi"}, "stop"), "[DONE]"])

    upstream.handler = stream
    client = httpx2.AsyncClient() if engine == "httpx2" else None
    transports = {"up": client} if client is not None else None
    firstiter, finalizer = sys.get_asyncgen_hooks()
    finalized: list[str] = []

    def recording(agen: Any) -> None:
        finalized.append(agen.__qualname__)
        assert finalizer is not None
        finalizer(agen)

    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=recording)
    try:
        async with AsyncRouter(provider(upstream), transports=transports) as router:
            for _ in range(3):
                result = await router.chat.completions.create(
                    model="chat", messages=HI, stream=True
                )
                assert [c.choices[0].delta.content async for c in result if c.choices] == ["hi"]
                del result
                gc.collect()
    finally:
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
        if client is not None:
            await client.aclose()
    assert finalized == []

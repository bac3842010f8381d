"""Malformed and hostile input: bad JSON, huge and slow bodies, header injection, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from aiohttp import web

from _gateway import USER, Gateway, in_process_gateway, raw_request, running_gateway, status_of
from _upstream import Upstream, chunk_body
from llmroute import AsyncRouter
from llmroute.observe import RequestRecord

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {"routes": {"echo": {"targets": [{"provider": "mock", "model": "m"}]}}}
# uvicorn's two HTTP parsers: the pure-Python h11, and httptools when installed
PARSERS = [
    "h11",
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("httptools") is None, reason="httptools is not installed"
        ),
    ),
]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def http_request(path: str, body: bytes, *headers: str, length: int | None = None) -> bytes:
    """A raw HTTP/1.1 POST."""
    lines = [
        f"POST {path} HTTP/1.1", "host: 127.0.0.1", "connection: close",
        "content-type: application/json",
        f"content-length: {len(body) if length is None else length}", *headers,
    ]  # fmt: skip
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


CHAT = json.dumps({"model": "echo", "messages": USER}).encode()


async def post(gateway: Gateway, body: bytes, **headers: str) -> httpx.Response:
    async with gateway.http() as http:
        return await http.post(
            f"{gateway.base_url}/chat/completions",
            content=body, headers={"content-type": "application/json", **headers},
        )  # fmt: skip


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b'{"model": "echo", "messages": ', "invalid_json", None),
        (b"", "invalid_json", None),
        (b"\xff\xfe{}", "invalid_json", None),
        (b"[1, 2, 3]", "invalid_json", None),
        (b'"a string"', "invalid_json", None),
        (b'{"model": 5, "messages": []}', None, "model"),
        (b'{"model": "echo", "messages": "hello"}', None, "messages"),
        (b'{"model": "echo", "messages": [{"role": "wizard", "content": "x"}]}', None, "messages.0"),
        (b'{"model": "echo", "messages": [{"role": "user"}]}', None, "messages.0.user.content"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
         None, "stream"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": -1}', None, "n"),
    ],
)  # fmt: skip
async def test_malformed_bodies_are_400(body: bytes, code: str | None, param: str | None) -> None:
    async with in_process_gateway(CONFIG) as gateway:  # no socket needed
        response = await post(gateway, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param


async def test_a_declared_huge_body_is_refused_before_it_is_read(parser: str) -> None:
    async with running_gateway(CONFIG, server={"max_body_size": "1MB"}, http=parser) as gateway:
        # one byte of the declared gigabyte is sent, and never the rest: an answer at all
        # (before raw_request's 5 s) shows the server judged the declared length, unread
        answer = await raw_request(
            gateway.port, http_request("/v1/chat/completions", b"{", length=10**9)
        )
        assert status_of(answer) == 413
        assert b"request_too_large" in answer


async def test_a_chunked_body_growing_past_the_limit_is_413(parser: str) -> None:
    async with running_gateway(CONFIG, server={"max_body_size": "10KB"}, http=parser) as gateway:
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n"
            b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 4000
        body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(5))
        answer = await raw_request(gateway.port, head + body + b"0\r\n\r\n")
        assert status_of(answer) == 413


async def test_a_slow_body_is_cut_off_by_the_body_timeout(parser: str) -> None:
    """The timeout bounds the whole body, not the wait for each byte: a trickle that is never
    idle for long is still cut off.

    A real socket and the real clock (a slowloris is about wall time), with generous bounds:
    the 300 ms timer cannot fire early, and must fire before a trickle that would otherwise
    keep the body alive for several seconds has ended.
    """
    server = {"body_timeout": "300ms"}
    trickle = CHAT[:-1]  # one byte every 50 ms: never idle for 300 ms, and never complete
    async with running_gateway(CONFIG, server=server, http=parser) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        started = asyncio.get_running_loop().time()
        writer.write(http_request("/v1/chat/completions", b"", length=len(CHAT)))
        answering = asyncio.create_task(reader.read(65536))
        trickled = 0
        with contextlib.suppress(ConnectionError):  # the server hangs up on it
            for byte in trickle:
                if answering.done():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                trickled += 1
                await asyncio.sleep(0.05)
        answer = await asyncio.wait_for(answering, 5)
        took = asyncio.get_running_loop().time() - started
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status_of(answer) == 408
    assert b"request_timeout" in answer
    assert took >= 0.3 - 0.01  # not before the timeout (timers never fire early)
    assert trickled < len(trickle)  # cut off mid-trickle, not when the trickle stopped


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("x-llmroute-property-feature: one\x01two", b"control characters"),
        ("x-llmroute-property-feature: \x7f", b"control characters"),
        ("x-llmroute-property-a.b: x", b"property name"),
        ("x-llmroute-property-: x", b"property name"),
        ("x-llmroute-timeout: soon", b"duration"),
        ("x-llmroute-timeout: inf", b"expected a duration"),
        ("x-llmroute-timeout: -5s", b"duration"),
        ("x-llmroute-cache-ttl: 0", b"positive duration"),
        ("x-llmroute-cache: sometimes", b"no-cache"),
        ("x-llmroute-user: " + "u" * 300, b"longer than"),
        ("x-llmroute-tenant: acme", b"unknown control header"),
    ],
)
async def test_bad_control_headers_are_400(header: str, problem: bytes, parser: str) -> None:
    records: list[RequestRecord] = []
    async with running_gateway(CONFIG, http=parser) as gateway:
        gateway.router.add_hook("request_start", records.append)
        request = http_request("/v1/chat/completions", CHAT, header)
        answer = await raw_request(gateway.port, request)
        await gateway.router.flush()
    assert status_of(answer) == 400, answer
    refused_by_the_parser = b"Invalid HTTP request" in answer  # httptools, for control bytes
    assert (b"invalid_header" in answer and problem in answer) or (
        refused_by_the_parser and problem == b"control characters"
    )
    assert records == []  # refused before the router saw it


async def test_bytes_that_are_not_utf8_and_repeated_headers_are_400(parser: str) -> None:
    async with running_gateway(CONFIG, http=parser) as gateway:
        request = http_request("/v1/chat/completions", CHAT).replace(
            b"\r\n\r\n", b"\r\nx-llmroute-session: caf\xe9\r\n\r\n", 1
        )
        answer = await raw_request(gateway.port, request)
        assert status_of(answer) == 400 and b"UTF-8" in answer
        twice = http_request(
            "/v1/chat/completions", CHAT, "x-llmroute-user: a", "x-llmroute-user: b"
        )
        answer = await raw_request(gateway.port, twice)
        assert status_of(answer) == 400 and b"more than once" in answer
        many = [f"x-llmroute-property-p{i}: v" for i in range(33)]
        answer = await raw_request(gateway.port, http_request("/v1/chat/completions", CHAT, *many))
        assert status_of(answer) == 400 and b"at most 32" in answer


@pytest.mark.parametrize(
    "smuggled",
    [
        b"x-llmroute-property-a: b\rx-llmroute-user: admin",
        b"x-llmroute-property-a: b\x00c",
        b"x-llmroute-property-a: b\x0bc",
        b"x-llmroute-property-a: b\nx-llmroute-user: admin",
        b"x-llmroute-property-a: b\r\n folded: continuation",
    ],
)
async def test_header_injection_never_reaches_a_property(smuggled: bytes, parser: str) -> None:
    """A value never carries a line break or a control character into the router: the
    request is refused, or (a bare LF, an obsolete folded line, which HTTP parsers may accept)
    read as separate, clean headers."""
    records: list[RequestRecord] = []
    async with running_gateway(CONFIG, http=parser) as gateway:
        gateway.router.add_hook("request_start", records.append)
        request = http_request("/v1/chat/completions", CHAT).replace(
            b"\r\n\r\n", b"\r\n" + smuggled + b"\r\n\r\n", 1
        )
        answer = await raw_request(gateway.port, request)
        await gateway.router.flush()
    if status_of(answer) == 400:
        assert records == []
        return
    assert status_of(answer) == 200
    (record,) = records
    values = [*record.properties.values(), record.user or ""]
    assert all(v.isprintable() for v in values), values
    assert record.properties["a"] in ("b", "b folded: continuation")


async def test_hostile_model_names_are_escaped_in_response_headers(parser: str) -> None:
    async with running_gateway(CONFIG, http=parser) as gateway:
        body = {"model": "mock/evil\r\nset-cookie: a=b é", "messages": USER}
        refused = await post(gateway, json.dumps(body).encode())
        body = {"model": "mock/modèle-é", "messages": USER}
        served = await post(gateway, json.dumps(body).encode())
    # a CR or LF in a model name is refused before routing (docs/security.md) ...
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "model"
    assert "set-cookie" not in refused.headers
    # ... and what is allowed is still percent-encoded in the headers that echo it
    assert served.status_code == 200
    assert served.headers["x-llmroute-model"] == "mod%C3%A8le-%C3%A9"


# ---------------------------------------------------------------- disconnects


def recording_ends(router: AsyncRouter) -> tuple[list[RequestRecord], asyncio.Event]:
    """The records `router` ends requests with (``request_end`` hooks), and an event set at the
    first one (the recorder delivers them within its flush interval)."""
    records: list[RequestRecord] = []
    ended = asyncio.Event()

    def keep(record: RequestRecord) -> None:
        records.append(record)
        ended.set()

    router.add_hook("request_end", keep)
    return records, ended


async def test_a_client_leaving_mid_stream_cancels_the_upstream_stream(upstream: Upstream) -> None:
    upstream_closed = asyncio.Event()

    async def endless_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(
                f"data: {json.dumps(chunk_body({'role': 'assistant'}))}\n\n".encode()
            )
            for i in itertools.count():  # only the gateway letting go ends it
                event = chunk_body({"content": f"word{i} "})
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
                await asyncio.sleep(0.02)
        except (ConnectionError, asyncio.CancelledError):
            upstream_closed.set()
            raise
        return response  # pragma: no cover - never reached

    upstream.handler = endless_stream
    config = {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "x"}},
        "routes": {"chat": {"targets": ["up/up-model"]}},
    }
    async with running_gateway(config) as gateway:
        records, ended = recording_ends(gateway.router)
        async with httpx.AsyncClient() as http:
            body = {"model": "chat", "messages": USER, "stream": True}
            async with http.stream("POST", f"{gateway.base_url}/chat/completions", json=body) as r:
                lines = r.aiter_lines()
                received = [await anext(lines) for _ in range(6)]
        assert any("word" in line for line in received)
        await asyncio.wait_for(upstream_closed.wait(), 10)  # the gateway let go of the stream
        await asyncio.wait_for(ended.wait(), 10)
        assert gateway.app.metrics is not None
        metrics = gateway.app.metrics.exposition().decode()
    (record,) = records
    assert record.status == "cancelled"
    assert record.usage is not None and record.usage.output > 0  # what was used is counted
    assert 'status="499"' in metrics


async def test_a_client_leaving_before_the_answer_cancels_the_upstream_request(
    upstream: Upstream,
) -> None:
    abandoned = asyncio.Event()

    async def slow_answer(request: web.Request) -> web.StreamResponse:
        for _ in range(250):
            if request.transport is None or request.transport.is_closing():
                abandoned.set()
                break
            await asyncio.sleep(0.02)
        return web.json_response({})

    upstream.handler = slow_answer
    config = {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "x"}},
        "routes": {"chat": {"targets": ["up/up-model"]}},
    }
    async with running_gateway(config) as gateway, gateway.client(timeout=0.3) as client:
        records, ended = recording_ends(gateway.router)
        import openai

        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="chat", messages=USER)
        await asyncio.wait_for(abandoned.wait(), 10)
        await asyncio.wait_for(ended.wait(), 10)
    assert [r.status for r in records] == ["cancelled"]


# ---------------------------------------------------------------- imports


def test_importing_llmroute_and_its_server_package_loads_no_server_extra() -> None:
    code = (
        "import sys, llmroute, llmroute.server, llmroute._config;"
        "print(sorted(m for m in ('uvicorn', 'prometheus_client') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"

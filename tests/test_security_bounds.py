"""Issue 15's bounds on the real server (uvicorn on loopback, as `llmroute serve` runs it, with
each of its two HTTP parsers): request heads (finding 2), connections that never finish
their head (3), memory per request (9) and the keyless mode's Host, Origin and content type
checks (13). docs/security.md describes each."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
import uvicorn

from llmroute import AsyncRouter
from llmroute.server import ServerConfig, create_app
from llmroute.server.run import uvicorn_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

KEY = "test-gateway-key-0123456789abcdef"
CONFIG: dict[str, Any] = {"routes": {"echo": {"targets": [{"provider": "mock", "model": "m"}]}}}
SLOW: dict[str, Any] = {
    "providers": {"slow": {"type": "mock", "latency": "600ms"}},
    "routes": {"echo": {"targets": ["slow/m"]}},
}
CHAT = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hello"}]}).encode()
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


@contextlib.asynccontextmanager
async def serving(
    config: Mapping[str, Any] = CONFIG,
    *,
    server: Mapping[str, Any] | None = None,
    http: str = "auto",
) -> AsyncIterator[int]:
    """`config` served on 127.0.0.1 with the uvicorn configuration of `llmroute serve`; the
    port."""
    settings = ServerConfig.model_validate({"port": 0, **(server or {})})
    app = create_app(AsyncRouter(dict(config)), settings)
    uv = uvicorn.Server(
        uvicorn_config(app, settings, http=http, log_level="warning", timeout_graceful_shutdown=2)  # type: ignore[arg-type]
    )
    task = asyncio.create_task(uv.serve())
    try:
        while not uv.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        yield uv.servers[0].sockets[0].getsockname()[1]
    finally:
        uv.should_exit = True
        await task


def post(body: bytes = CHAT, *headers: str, host: str = "127.0.0.1", keep: bool = False) -> bytes:
    """A raw HTTP/1.1 POST to the chat endpoint."""
    lines = [
        "POST /v1/chat/completions HTTP/1.1", f"host: {host}",
        "connection: " + ("keep-alive" if keep else "close"),
        "content-type: application/json", f"content-length: {len(body)}", *headers,
    ]  # fmt: skip
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


async def exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send `data` on a new connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole response with a Content-Length, read from a kept-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it stayed open."""
    try:
        return await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return None
    except ConnectionError:
        return b""


# ---------------------------------------------------------------- finding 2: request heads


async def test_a_head_over_the_size_limit_is_431_before_the_key(parser: str) -> None:
    server = {"keys": [{"name": "a", "key": KEY}], "max_head_size": "8KiB"}
    async with serving(server=server, http=parser) as port:
        answer = await exchange(port, post(CHAT, "x-big: " + "v" * 20_000))
        fits = await exchange(port, post(CHAT, "x-big: " + "v" * 4_000))
    assert status_of(answer) == 431, answer[:300]
    assert b"max_head_size" in answer
    assert status_of(fits) == 401  # within the limit: on to the key check


async def test_a_malformed_head_before_a_large_body_is_400_not_431(parser: str) -> None:
    async with serving(server={"max_head_size": "8KiB"}, http=parser) as port:
        answer = await exchange(port, post(b"x" * 40_000, "bad header: v"))
    assert status_of(answer) == 400, answer[:300]


async def test_too_many_headers_are_431(parser: str) -> None:
    async with serving(server={"max_headers": 50}, http=parser) as port:
        many = [f"x-h{i}: v" for i in range(60)]
        answer = await exchange(port, post(CHAT, *many))
        fine = await exchange(port, post(CHAT, *many[:40]))
    assert status_of(answer) == 431, answer[:300]
    assert b"max_headers" in answer and b"connection: close" in answer.lower()
    assert status_of(fine) == 200


async def test_an_unterminated_head_is_cut_off_at_the_limit(parser: str) -> None:
    """Four connections each sending 4 MiB of one header line, never finished, and no key:
    each is answered 431 and closed after about the limit, not read to its end."""
    server = {"keys": [{"name": "a", "key": KEY}], "max_head_size": "16KiB"}
    async with serving(server=server, http=parser) as port:

        async def flood() -> tuple[bytes, int]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answering = asyncio.create_task(reader.read())
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ")
            sent = 0
            with contextlib.suppress(ConnectionError):
                for _ in range(64):  # 64 KiB at a time, up to 4 MiB
                    if answering.done():
                        break
                    writer.write(b"v" * 65536)
                    await writer.drain()
                    sent += 65536
                    await asyncio.sleep(0.01)
            try:
                answer = await asyncio.wait_for(answering, 3)
            except ConnectionError:
                answer = b""
            writer.close()
            return answer, sent

        results = await asyncio.gather(*(flood() for _ in range(4)))
    for answer, sent in results:
        assert status_of(answer) == 431, answer[:200]
        assert sent < 2 * 1024 * 1024  # refused long before the end


# ---------------------------------------------------------------- finding 3: slow and silent


async def test_silent_and_unfinished_connections_are_closed_after_the_head_timeout(
    parser: str,
) -> None:
    async with serving(server={"head_timeout": "500ms"}, http=parser) as port:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        partial = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        for _, writer in partial:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-a: ")
        started = asyncio.get_running_loop().time()
        answers = await asyncio.gather(*(closed_within(r, 3) for r, _ in silent + partial))
        took = asyncio.get_running_loop().time() - started
        for _, writer in silent + partial:
            writer.close()
    assert all(a is not None for a in answers), "a connection stayed open"
    assert answers[:10] == [b""] * 10  # nothing sent: closed without a word
    assert all(a is not None and status_of(a) == 408 for a in answers[10:])
    assert b"head_timeout" in (answers[10] or b"")
    assert took < 2.5


async def test_a_partial_head_after_a_kept_alive_response_times_out(parser: str) -> None:
    """uvicorn's keep-alive timer stops at the next head's first byte; the head deadline
    then runs from it."""
    server = {"head_timeout": "500ms", "keep_alive": "30s"}
    async with serving(server=server, http=parser) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(keep=True))
        assert status_of(await read_response(reader)) == 200
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        answer = await closed_within(reader, 3)
        writer.close()
    assert answer is not None and status_of(answer) == 408


async def test_an_idle_kept_alive_connection_lasts_keep_alive_not_head_timeout(
    parser: str,
) -> None:
    server = {"head_timeout": "300ms", "keep_alive": "3s"}
    async with serving(server=server, http=parser) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(keep=True))
        assert status_of(await read_response(reader)) == 200
        await asyncio.sleep(0.8)  # well past the head timeout, idle
        writer.write(post(keep=True))
        assert status_of(await read_response(reader)) == 200
        writer.close()


async def test_silent_connections_do_not_lock_real_clients_out(parser: str) -> None:
    async with serving(server={"max_connections": 5}, http=parser) as port:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(12)]
        await asyncio.sleep(0.05)
        answer = await exchange(port, post())
        for _, writer in silent:
            writer.close()
    assert status_of(answer) == 200, answer[:300]


async def test_max_connections_still_limits_requests_being_answered(parser: str) -> None:
    async with serving(SLOW, server={"max_connections": 2}, http=parser) as port:
        answers = await asyncio.gather(*(exchange(port, post(), timeout=15) for _ in range(4)))
    statuses = sorted(status_of(a) for a in answers)
    assert statuses.count(200) >= 1 and 503 in statuses, statuses


# ---------------------------------------------------------------- finding 9: memory per request


def chat(messages: list[Any], **extra: Any) -> bytes:
    return json.dumps({"model": "echo", "messages": messages, **extra}).encode()


async def test_a_body_of_millions_of_empty_objects_is_refused_before_it_is_parsed() -> None:
    body = b'{"model": "echo", "messages": [' + b",".join([b"{}"] * 3_000_000) + b"]}"
    async with serving() as port:
        started = asyncio.get_running_loop().time()
        answer = await exchange(port, post(body), timeout=10)
        took = asyncio.get_running_loop().time() - started
    assert status_of(answer) == 413, answer[:300]
    assert b"max_json_values" in answer
    assert took < 5


async def test_json_values_are_counted_outside_strings() -> None:
    text = 'a, b, [c], {d}, "e", \\" f, ' * 2000  # 12,000 commas and brackets in a string
    async with serving(server={"max_json_values": 100}) as port:
        inside = await exchange(port, post(chat([{"role": "user", "content": text}])))
        items = [{"role": "user", "content": "x"}] * 40  # a message is 3: itself, 2 members
        outside = await exchange(port, post(chat(items)))
    assert status_of(inside) == 200, inside[:300]
    assert status_of(outside) == 413 and b"max_json_values" in outside


async def test_messages_and_content_parts_are_bounded() -> None:
    server = {"max_messages": 10, "max_content_parts": 6}
    part = {"type": "text", "text": "x"}
    async with serving(server=server) as port:
        many = await exchange(port, post(chat([{"role": "user", "content": "x"}] * 11)))
        parts = await exchange(port, post(chat([{"role": "user", "content": [part] * 4}] * 2)))
        fine = await exchange(port, post(chat([{"role": "user", "content": [part] * 3}] * 2)))
    assert status_of(many) == 413 and b"max_messages" in many
    assert status_of(parts) == 413 and b"max_content_parts" in parts
    assert status_of(fine) == 200, fine[:300]


async def test_nesting_past_the_parsers_limit_is_400() -> None:
    deep = b'{"model": "echo", "messages": [], "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    async with serving() as port:
        answer = await exchange(port, post(deep))
    assert status_of(answer) == 400 and b"invalid_json" in answer


async def test_bodies_in_flight_are_bounded_across_requests() -> None:
    async with serving(SLOW, server={"max_body_in_flight": 300}) as port:
        first = asyncio.create_task(exchange(port, post()))  # ~70 bytes, answered in 600 ms
        await asyncio.sleep(0.2)
        big = chat([{"role": "user", "content": "x" * 200}])
        refused = await exchange(port, post(big))
        small = await exchange(port, post())  # fits beside the first
        assert status_of(await first) == 200
        again = await exchange(port, post(big))  # the first has given its bytes back
    assert status_of(refused) == 503, refused[:300]
    assert b"max_body_in_flight" in refused and b"retry-after: 1" in refused.lower()
    assert status_of(small) == 200 and status_of(again) == 200


# ---------------------------------------------------------------- finding 13: keyless mode


async def test_keyless_mode_requires_a_json_content_type() -> None:
    untyped = post().replace(b"content-type: application/json\r\n", b"")
    async with serving() as port:
        answer = await exchange(port, untyped)
    assert status_of(answer) == 415, answer[:300]
    assert b"Content-Type: application/json" in answer


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"host": "evil.example"}, 403),
        ({"host": "evil.example:{port}"}, 403),
        ({"host": "127.0.0.1.nip.io:{port}"}, 403),
        ({"host": "localhost:{port}"}, 200),
        ({"host": "LOCALHOST"}, 200),
        ({"host": "[::1]:{port}"}, 200),
        ({"origin": "http://evil.example"}, 403),
        ({"origin": "null"}, 403),
        ({"origin": "http://localhost:3000"}, 200),
        ({"origin": "https://127.0.0.1"}, 200),
    ],
)
async def test_keyless_mode_answers_loopback_names_only(
    headers: dict[str, str], status: int
) -> None:
    async with serving() as port:
        host = headers.get("host", "127.0.0.1").format(port=port)
        extra = [f"origin: {headers['origin']}"] if "origin" in headers else []
        answer = await exchange(port, post(CHAT, *extra, host=host))
        get = ["GET /v1/models HTTP/1.1", f"host: {host}", "connection: close", *extra]
        listing = await exchange(port, "\r\n".join(get).encode() + b"\r\n\r\n")
    assert status_of(answer) == status, answer[:300]
    assert status_of(listing) == status  # a rebound page cannot read anything either
    if status == 403:
        assert b"host_not_allowed" in answer and b"loopback" in answer


async def test_with_keys_or_opened_to_everyone_any_host_is_served() -> None:
    async with serving(server={"keys": [{"name": "a", "key": KEY}]}) as port:
        keyed = await exchange(
            port,
            post(CHAT, f"authorization: Bearer {KEY}", host="gateway.example").replace(
                b"content-type: application/json\r\n", b""
            ),
        )
    async with serving(server={"allow_unauthenticated": True}) as port:
        opened = await exchange(port, post(CHAT, "origin: http://app.example", host="api.example"))
    assert status_of(keyed) == 200, keyed[:300]  # a key is what a page cannot have
    assert status_of(opened) == 200, opened[:300]


async def test_the_openai_sdk_still_works_keyless() -> None:
    import openai

    async with serving() as port:
        client = openai.AsyncOpenAI(
            base_url=f"http://localhost:{port}/v1", api_key="x", max_retries=0
        )
        async with client:
            reply = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "hi"}]
            )
    assert reply.choices[0].message.content
    async with serving() as port, httpx.AsyncClient() as http:
        listed = await http.get(f"http://127.0.0.1:{port}/v1/models")
    assert listed.status_code == 200

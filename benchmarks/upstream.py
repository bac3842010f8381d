"""A loopback OpenAI-compatible upstream for the benchmarks.

An ``aiohttp.web`` server on 127.0.0.1 (a free port) answering
``POST /v1/chat/completions``:

- without ``"stream": true``: a small fixed chat completion (precomputed bytes);
- with ``"stream": true``: an SSE stream of a role chunk, ``chunks`` content
  chunks, a finish chunk, a usage chunk and ``data: [DONE]``, precomputed.
  Each event is written separately, as a real provider sends them (but with
  no pause between them), so the client reads them much as it would in
  production; the server's cost per event (one socket write) is small next to
  the client's. A request naming the model ``bench-short`` gets the same
  stream with a single content chunk.

The request body is read but parsed only far enough to see whether it asks for
a stream, so the server costs the same for every client.

It runs in its own process (``multiprocessing``, spawn) so that client and
server do not share an event loop. Use `running_upstream()`::

    with running_upstream(chunks=200) as port:
        ...  # http://127.0.0.1:{port}/v1

or run it by hand: ``python benchmarks/upstream.py --port 8000``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

CREATED = 1_700_000_000
MODEL = "bench-model"
#: Asking for this model gets a stream of `SHORT_CHUNKS` content chunks instead;
#: the difference between the two stream lengths isolates the per-chunk cost.
SHORT_MODEL = "bench-short"
SHORT_CHUNKS = 1


def completion_body() -> bytes:
    """The fixed non-streamed answer (about 400 bytes, like a short real reply)."""
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
            "system_fingerprint": "fp_bench",
        },
        separators=(",", ":"),
    ).encode()


def _chunk(delta: dict[str, object], finish: str | None = None, usage: object = None) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    payload: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": choices,
    }
    if usage:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def at_once_transport(chunks: int = 20) -> Any:
    """An llmroute `Transport` that answers every request at once, without a socket: with
    `completion_body()`, or a streamed request with `stream_events(chunks)` (an event per
    read). What is left to count is llmroute's own work (the ``own`` kinds of
    `count_instructions.py` and `count_gateway.py`)."""
    from llmroute import HttpResponse, Transport

    body, headers = completion_body(), {"content-type": "application/json"}
    events, sse = stream_events(chunks), {"content-type": "text/event-stream"}

    class Answer(HttpResponse):
        __slots__ = ("headers", "status")

        def __init__(self) -> None:
            self.status, self.headers = 200, headers

        async def read(self) -> bytes:
            return body

        async def aiter_bytes(self) -> AsyncIterator[bytes]:
            yield body

        async def aclose(self) -> None:
            return None

    class Streamed(Answer):
        __slots__ = ()

        def __init__(self) -> None:
            self.status, self.headers = 200, sse

        async def read(self) -> bytes:
            return b"".join(events)

        async def aiter_bytes(self) -> AsyncIterator[bytes]:
            for event in events:
                yield event

    class AtOnce(Transport):
        async def send(self, request: Any, timeouts: Any) -> HttpResponse:
            return Streamed() if b'"stream":true' in request.body else Answer()

    return AtOnce()


def stream_events(chunks: int) -> list[bytes]:
    """The SSE answer: a role chunk, `chunks` content chunks, a finish chunk, usage, [DONE].

    That is ``chunks + 4`` ``data:`` events in all (``chunks + 3`` JSON payloads).
    """
    parts = [_chunk({"role": "assistant", "content": ""})]
    parts += [_chunk({"content": f" tok{i % 100}"}) for i in range(chunks)]
    parts.append(_chunk({}, finish="stop"))
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    parts.append(_chunk({}, usage=usage))
    parts.append(b"data: [DONE]\n\n")
    return parts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(port: int, chunks: int, ready: object = None) -> None:
    """Run the server until the process is terminated."""
    import asyncio

    from aiohttp import web

    plain = completion_body()
    streamed = stream_events(chunks)
    short = stream_events(SHORT_CHUNKS)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        # cheap: every client serialises `"stream":true` without spaces, or
        # `"stream": true` (json.dumps default separators)
        if b'"stream":true' in body or b'"stream": true' in body:
            response = web.StreamResponse(
                headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
            )
            events = short if SHORT_MODEL.encode() in body else streamed
            response.content_length = sum(map(len, events))
            await response.prepare(request)
            for event in events:
                await response.write(event)
            await response.write_eof()
            return response
        return web.Response(body=plain, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        if ready is not None:
            ready.set()  # type: ignore[attr-defined]
        await asyncio.Event().wait()

    asyncio.run(main())


@contextlib.contextmanager
def running_upstream(chunks: int = 200) -> Iterator[int]:
    """Start the upstream in a child process; yield its port; stop it afterwards."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    ready = ctx.Event()
    process = ctx.Process(target=serve, args=(port, chunks, ready), daemon=True)
    process.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the benchmark upstream did not start")
        yield port
    finally:
        process.terminate()
        process.join(5)
        if process.is_alive():
            process.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--chunks", type=int, default=200)
    args = parser.parse_args()
    print(f"serving on http://127.0.0.1:{args.port}/v1 ({args.chunks} chunks per stream)")
    serve(args.port, args.chunks)

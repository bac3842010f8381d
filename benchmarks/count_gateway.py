"""Instructions per gateway request, counted with callgrind: the ASGI app driven in process.

    python benchmarks/count_gateway.py [--requests 300] [--kinds chat,stream,messages,refused]
        [--chunks 20]
        (also: own, own-stream, responses-stream; bare, bare-stream: the bare pass-through
        proxy, the floor)

The twin of `count_instructions.py` for the HTTP gateway. For each kind of request, runs
this script under ``valgrind --tool=callgrind`` twice: once with only the warm-up, once
with the warm-up and N more requests; the difference divided by N is what one request
costs the gateway and the router behind it (instruction counts do not move with load,
unlike time). No ASGI server runs: the app (`create_app`) is called directly with a
``receive`` that hands over the whole body at once and then waits, as uvicorn's does, for
the response to complete, so the body read, the disconnect watch, the endpoint, the
headers, the metrics and the SSE relay are all counted, and uvicorn's own work is not.
The upstream (`upstream.py`, 20-chunk streams) runs in a child process that callgrind
does not follow.

Kinds: ``chat`` (a non-streamed ``/v1/chat/completions``), ``stream`` (the same,
streamed, read to ``[DONE]``), ``messages`` (a non-streamed ``/v1/messages``),
``refused`` (a request without the gateway key: a 401 the router never sees);
``own`` (the ``chat`` request through a transport that answers at once with the
upstream's body: the gateway's and the router's own work, no socket; deterministic);
``own-stream`` (the ``stream`` request through the same transport, which answers it
with the upstream's events, one per read);
``responses-stream`` (a streamed ``/v1/responses`` translated for the same chat upstream,
its events written as SSE: printed with the extra instructions per event over
``stream``, when both are counted in the run).

Needs ``valgrind`` on the PATH. PYTHONHASHSEED is fixed so both runs hash alike.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream import MODEL, at_once_transport, running_upstream

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
WARMUP = 200
KINDS = ("chat", "stream", "messages", "refused")
#: The floor: bench_server.py's bare pass-through proxy (one aiohttp session, no parsing),
#: driven the same way, for a request and for a stream (printed as the share of the
#: gateway's count it is).
FLOORS = {"bare": "chat", "bare-stream": "stream"}
#: Events of a translated Responses stream of the upstream's 20 chunks (created, in
#: progress, item and part added, 20 deltas, text, part and item done, completed).
RESPONSES_EVENTS = 28
KEY = "count-gateway-key-0123456789abcdef"

Message = MutableMapping[str, Any]


def _config(port: int, kind: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "providers": {
            "up": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "x"}
        },
        "routes": {"chat": {"targets": [f"up/{MODEL}"]}},
    }
    if kind == "responses-stream":  # translated for the chat upstream
        config["providers"]["up"]["responses_api"] = False
    if kind == "refused":
        stored = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()
        config["server"] = {"keys": [{"name": "bench", "key": stored}]}
    return config


def _request(kind: str) -> tuple[str, bytes]:
    if kind.startswith("own"):
        kind = "stream" if kind == "own-stream" else "chat"
    body: dict[str, Any] = {"model": "chat", "messages": MESSAGES}
    if kind == "stream":
        body["stream"] = True
    if kind == "messages":
        body["max_tokens"] = 64
        return "/v1/messages", json.dumps(body).encode()
    if kind == "responses-stream":
        given = {"model": "chat", "input": MESSAGES[0]["content"], "stream": True, "store": False}
        return "/v1/responses", json.dumps(given).encode()
    return "/v1/chat/completions", json.dumps(body).encode()


async def _one(app: Any, path: str, body: bytes) -> tuple[int, int]:
    """One request through the app: uvicorn's message sequence, the answer discarded; its
    status and how many SSE ``event:`` lines it wrote."""
    done = asyncio.get_running_loop().create_future()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", b"Bearer none"),
            (b"user-agent", b"count-gateway"),
        ],
    }
    received = False
    status = events = 0

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done  # as uvicorn: the next message comes once the response is complete
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, events
        if message["type"] == "http.response.start":
            status = message["status"]
            return
        events += message.get("body", b"").count(b"event: ")
        if not message.get("more_body", False) and not done.done():
            done.set_result(None)

    await app(scope, receive, send)
    # as a server's loop would before the next request: run the callbacks the response
    # scheduled (the disconnect watch's); without this, a transport that never suspends
    # leaves them queued, and the objects they hold pile up for the collector
    await asyncio.sleep(0)
    return status, events


async def _run(kind: str, count: int) -> None:
    from llmroute import AsyncRouter
    from llmroute.server import create_app

    path, body = _request(FLOORS.get(kind, kind))
    expected = 401 if kind == "refused" else 200
    if kind in FLOORS:
        from bench_server import floor_app

        with running_upstream(chunks=_chunks()) as port:
            app = floor_app(port)
            for _ in range(WARMUP + count):
                status, _ = await _one(app, path, body)
                if status != expected:
                    raise RuntimeError(f"{kind}: status {status}, expected {expected}")
        return
    if kind.startswith("own"):
        await _run_own(kind, path, body, count)
        return
    with running_upstream(chunks=_chunks()) as port:
        async with AsyncRouter(_config(port, kind)) as router:
            app = create_app(router, close_router=False)
            for _ in range(WARMUP + count):
                status, events = await _one(app, path, body)
                if status != expected:
                    raise RuntimeError(f"{kind}: status {status}, expected {expected}")
                if kind == "responses-stream" and events != RESPONSES_EVENTS:
                    raise RuntimeError(f"{events} events, expected {RESPONSES_EVENTS}")


async def _run_own(kind: str, path: str, body: bytes, count: int) -> None:
    """The ``chat`` (or ``stream``) request through the gateway to a transport that answers
    at once."""
    from llmroute import AsyncRouter
    from llmroute.server import create_app

    transports = {"up": at_once_transport(_chunks())}
    async with AsyncRouter(_config(1, "own"), transports=transports) as router:
        app = create_app(router, close_router=False)
        for _ in range(WARMUP + count):
            status, _ = await _one(app, path, body)
            if status != 200:
                raise RuntimeError(f"{kind}: status {status}, expected 200")


def _chunks() -> int:
    """Content chunks per stream (``--chunks``; counting at two lengths separates what a
    stream costs once from what each chunk costs)."""
    return int(os.environ.get("COUNT_GATEWAY_CHUNKS", "20"))


def _count(kind: str, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                kind,
                str(requests),
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError("callgrind wrote no total")
        return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_run(args.child[0], int(args.child[1])))
        return
    os.environ["COUNT_GATEWAY_CHUNKS"] = str(args.chunks)  # for the counted children
    print(
        f"gateway instructions per request (callgrind; warm-up {WARMUP}, N = {args.requests},"
        f" streams of {args.chunks} content chunks)"
    )
    counted: dict[str, float] = {}
    for kind in args.kinds.split(","):
        base, loaded = _count(kind, 0), _count(kind, args.requests)
        counted[kind] = (loaded - base) / args.requests
        line = f"  {kind:16} {counted[kind]:12,.0f}"
        floor = FLOORS.get(kind)
        if floor in counted:
            line += f"   {counted[kind] / counted[floor]:.2f}x of {floor}'s"
        if kind == "responses-stream" and "stream" in counted:
            extra = (counted[kind] - counted["stream"]) / RESPONSES_EVENTS
            line += f"   {extra:,.0f} more per event than stream ({RESPONSES_EVENTS} events)"
        print(line)


if __name__ == "__main__":
    main()

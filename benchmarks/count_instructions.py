"""Instructions per request on llmroute's request path, counted with callgrind.

    python benchmarks/count_instructions.py [--requests 300] [--kinds chat,stream,hit]
        [--chunks 20] [--state redis://127.0.0.1:6379/0] [--log process|inline|default]
        [--priced] [--sampler RATIO]

For each kind of request (a non-streamed chat completion, a stream of ``--chunks``
content chunks read to its end, a memory cache hit; ``responses`` and
``responses-stream``: the same two as Responses API requests translated for the same
chat upstream, each printed with its ratio to the chat kind counted in the same run),
runs this script under ``valgrind --tool=callgrind`` twice: once
with only the warm-up, once with the warm-up and N more requests of that kind. The
difference divided by N is what one request costs in this process, whatever else the
machine is doing (instruction counts do not move with load, unlike time). The upstream
runs in a child process that callgrind does not follow, so its work is not counted.

Issue 16's budgets: ``responses`` at most 1.15x ``chat`` (PASS or FAIL printed);
``responses-stream`` at most 10 µs more per event than ``stream``. Time is not what
callgrind counts, so for the stream the extra instructions per Responses event (the
whole stream's difference over the events it delivers) are printed without a verdict;
``bench_responses.py`` times the same two streams and gives the verdict in µs.

With ``--state``, the router shares its health through that Redis (the ``state`` section):
the request path must cost what it costs without it (docs/reliability.md#shared-state).

With ``--log``, the router keeps the SQLite request log (a temporary file), its batches
written by a writer process (``process``, the default of ``logging.writer``) or by the
recorder's worker thread (``inline``); ``default`` leaves ``logging.writer`` unset (to
count older code, which has no such key, with the same script); each run ends with a flush, so every request's
record is built and handed to the store within what is counted. Callgrind counts every
thread of the router's process (the worker thread's rows and SQLite work included), not
the writer process: what the log costs the process that serves requests. The route's
target is the upstream's model, which genai-prices has no price for; with ``--priced`` it
is ``gpt-4o-mini``, priced flat, so a log prices each request (the ``own`` kind with
``--log`` counts the records flushed within the count).

With ``--sampler RATIO`` the ``own`` kind's router traces through an OpenTelemetry SDK
``TracerProvider`` sampling with ``TraceIdRatioBased(RATIO)``, with no span processor: at
0, what deciding that a request's span is dropped costs (issue 20's target 4).

Needs ``valgrind`` on the PATH. PYTHONHASHSEED is fixed so both runs hash alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream import MODEL, at_once_transport, running_upstream

#: The model the route's target names: the upstream's, which genai-prices has no price for,
#: or with ``--priced`` (``LLMROUTE_BENCH_PRICED=1`` in the child) one it prices flat, so
#: that a request log prices each request.
TARGET_MODEL = "gpt-4o-mini" if os.environ.get("LLMROUTE_BENCH_PRICED") == "1" else MODEL
#: With ``--sampler`` (``LLMROUTE_BENCH_SAMPLER`` in the child): the ratio of the
#: OpenTelemetry SDK's ``TraceIdRatioBased`` sampler the ``own`` kind's router traces with.
SAMPLER = os.environ.get("LLMROUTE_BENCH_SAMPLER")

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
WARMUP = 200
KINDS = ("chat", "stream", "hit")
#: ``raw``: the same request with aiohttp alone (post, read, ``json.loads``): the floor
#: llmroute's ``chat`` is compared with. ``own``: the chat request through a transport that
#: answers at once with the upstream's body: llmroute's own work alone, with no socket and
#: no wake-up of the loop, so the count does not move with the machine's load (``chat``'s
#: moves by a few percent: how many times epoll finds nothing ready varies).
#: What each Responses kind is compared with, and the budget the issue sets (issue 16).
COMPARED = {"responses": "chat", "responses-stream": "stream", "chat": "raw"}
BUDGET = 1.15
#: The kinds whose extra cost is counted per event delivered (their budget is in time).
PER_EVENT = frozenset({"responses-stream"})


def _config(
    port: int, kind: str, state: str | None = None, log: tuple[str, Path] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "providers": {
            "up": {
                "type": "openai",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "api_key": "x",
                "responses_api": False,
            },  # a Responses request is translated for it
        },
        "routes": {"chat": {"targets": [f"up/{TARGET_MODEL}"]}},
    }
    if kind == "hit":
        config["cache"] = {"backend": "memory://", "ttl": "1h"}
    if state is not None:
        config["state"] = state
    if log is not None:
        writer, path = log
        config["logging"] = {"store": f"sqlite:///{path}"}
        if writer != "default":
            config["logging"]["writer"] = writer
    return config


async def _run(
    kind: str,
    count: int,
    chunks: int,
    delivered: Path,
    state: str | None = None,
    log: str | None = None,
) -> None:
    from llmroute import AsyncRouter

    seen = 0  # what one request delivers: its stream's chunks or events (1 if not streamed)
    with running_upstream(chunks=chunks) as port:
        store = (log, delivered.with_name("log.db")) if log else None
        async with AsyncRouter(_config(port, kind, state, store)) as router:
            create = router.chat.completions.create
            respond = router.responses.create

            async def one() -> None:
                nonlocal seen
                seen = 1
                if kind == "responses":
                    await respond(model="chat", input=MESSAGES[0]["content"], store=False)
                elif kind == "responses-stream":
                    events = await respond(
                        model="chat", input=MESSAGES[0]["content"], store=False, stream=True
                    )
                    seen = 0
                    async for _ in events:
                        seen += 1
                elif kind == "stream":
                    stream = await create(model="chat", messages=MESSAGES, stream=True)
                    seen = 0
                    async for _ in stream:
                        seen += 1
                else:
                    reply = await create(model="chat", messages=MESSAGES)
                    if kind == "hit" and reply.llmroute.cache not in ("hit", "miss"):
                        raise RuntimeError(f"not a cache lookup: {reply.llmroute.cache}")

            for _ in range(WARMUP):
                await one()
            await router.flush()
            if kind == "hit":  # what is counted must be hits, not misses
                reply = await create(model="chat", messages=MESSAGES)
                if reply.llmroute.cache != "hit":
                    raise RuntimeError(f"the hit benchmark missed: {reply.llmroute.cache}")
            for _ in range(count):
                await one()
            await router.flush()
    delivered.write_text(str(seen))


async def _run_raw(count: int) -> None:
    import json

    import aiohttp

    with running_upstream() as port:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": MODEL, "messages": MESSAGES}
        async with aiohttp.ClientSession() as session:
            for _ in range(WARMUP + count):
                async with session.post(url, json=body) as response:
                    json.loads(await response.read())


async def _run_own(count: int, log: str | None = None, folder: Path | None = None) -> None:
    from llmroute import AsyncRouter

    store = (log, folder / "log.db") if log and folder is not None else None
    config = _config(1, "own", log=store)
    async with AsyncRouter(config, transports={"up": at_once_transport()}) as router:
        if SAMPLER is not None:
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

            router.use_telemetry(TracerProvider(sampler=TraceIdRatioBased(float(SAMPLER))))
        create = router.chat.completions.create
        for _ in range(WARMUP):
            await create(model="chat", messages=MESSAGES)
        await router.flush()
        for _ in range(count):
            await create(model="chat", messages=MESSAGES)
        await router.flush()  # every request's record handed to the store within the count


def _count(
    kind: str, requests: int, chunks: int, state: str | None, log: str | None = None
) -> tuple[int, int]:
    """Instructions of the child run, and what its last request delivered."""
    with tempfile.TemporaryDirectory() as tmp:
        out, delivered = Path(tmp) / "callgrind.out", Path(tmp) / "delivered"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             __file__, "--child", kind, str(requests), str(chunks), str(delivered),
             *(["--state", state] if state else []), *(["--log", log] if log else [])],
            check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError("callgrind wrote no total")
        return int(match.group(1)), int(delivered.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--state", help="share health through this Redis URL")
    parser.add_argument(
        "--priced",
        action="store_true",
        help="route to a model genai-prices prices (the log prices each request)",
    )
    parser.add_argument("--sampler", type=float, metavar="RATIO",
                        help="the own kind traces with this TraceIdRatioBased sampler")  # fmt: skip
    parser.add_argument("--log", choices=("process", "inline", "default"),
                        help="keep the SQLite request log, written by this writer")  # fmt: skip
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.priced:  # (the children read it: `TARGET_MODEL`)
        os.environ["LLMROUTE_BENCH_PRICED"] = "1"
    if args.sampler is not None:  # (`SAMPLER`)
        os.environ["LLMROUTE_BENCH_SAMPLER"] = str(args.sampler)
    if args.child:
        kind, count, chunks, delivered = args.child
        if kind == "raw":
            asyncio.run(_run_raw(int(count)))
            Path(delivered).write_text("1")
        elif kind == "own":
            asyncio.run(_run_own(int(count), args.log, Path(delivered).parent))
            Path(delivered).write_text("1")
        else:
            asyncio.run(_run(kind, int(count), int(chunks), Path(delivered), args.state, args.log))
        return
    print(
        f"instructions per request (callgrind; warm-up {WARMUP}, N = {args.requests}, "
        f"streams of {args.chunks} content chunks"
        + (f"; SQLite log, {args.log} writer" if args.log else "")
        + ("; a priced model" if args.priced else "")
        + (f"; sampled at {args.sampler}" if args.sampler is not None else "")
        + ")"
    )
    counted: dict[str, float] = {}
    for kind in args.kinds.split(","):
        base, _ = _count(kind, 0, args.chunks, args.state, args.log)
        loaded, delivered = _count(kind, args.requests, args.chunks, args.state, args.log)
        counted[kind] = (loaded - base) / args.requests
        line = f"  {kind:16} {counted[kind]:12,.0f}"
        other = COMPARED.get(kind)
        if other in counted:
            ratio = counted[kind] / counted[other]
            if other == "raw":  # the floor: a ratio to read, with no budget of its own
                line += f"   {ratio:.2f}x {other} ({counted[kind] - counted[other]:,.0f} more)"
            elif kind in PER_EVENT:
                extra = (counted[kind] - counted[other]) / delivered
                line += f"   {ratio:.3f}x {other}; {extra:,.0f} more per event ({delivered} events)"
            else:
                verdict = "PASS" if ratio <= BUDGET else "FAIL"
                line += f"   {ratio:.3f}x {other}: {verdict} (budget {BUDGET:.2f}x)"
        print(line)


if __name__ == "__main__":
    main()

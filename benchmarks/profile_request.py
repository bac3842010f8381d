"""Profile llmroute's per-request path against the loopback upstream.

    python benchmarks/profile_request.py [--requests 3000] [--streams 100] [--top 25]

Runs sequential in-process requests (and streams) through an `AsyncRouter`
with one ``openai``-type provider under cProfile and prints, per request (or
per stream chunk):

- the hottest functions by own time, wherever they live;
- llmroute's own functions by cumulative time (what each step costs,
  including what it calls);
- for a few known-expensive callees, which llmroute-reachable code calls them.

cProfile roughly doubles the cost of small Python calls: read the figures as
proportions, and time changes with bench_core.py.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import pstats
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream import MODEL, running_upstream

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
_SPEC = importlib.util.find_spec("llmroute")
#: Where the llmroute being profiled lives (this checkout's src/, or whatever is on the path).
SRC = str(Path(_SPEC.origin).parent) if _SPEC and _SPEC.origin else "llmroute"
#: Callees worth tracing back to their callers.
SUSPECTS = (
    "run_in_executor",
    "inspect.py:3278(signature)",
    "init_private_attributes",
    "anyio/_core/_tasks.py:127(fail_at)",
    "(start_soon)",
    "_reschedule_timeout",
)


def config(port: int) -> dict[str, Any]:
    return {
        "providers": {
            "up": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "x"}
        },
        "routes": {"chat": {"targets": [f"up/{MODEL}"]}},
    }


def _short(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename.startswith(SRC):
        filename = "llmroute/" + filename[len(SRC) + 1 :]
    elif "site-packages/" in filename:
        filename = filename.split("site-packages/", 1)[1]
    elif "/lib/python3" in filename:
        filename = "stdlib/" + filename.split("/lib/python3", 1)[1].split("/", 1)[1]
    return f"{filename}:{line}({name})" if line else name


def print_profile(stats: pstats.Stats, per: int, unit: str, top: int) -> None:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = [(func, cc, nc, tt, ct) for func, (cc, nc, tt, ct, _callers) in raw.items()]
    print(f"\n  hottest by own time (µs per {unit}; excludes waiting in epoll):")
    rows.sort(key=lambda r: r[3], reverse=True)
    shown = 0
    for func, _cc, nc, tt, ct in rows:
        if "poll' of 'select.epoll" in str(func):
            continue
        print(
            f"    {tt / per * 1e6:8.1f} own {ct / per * 1e6:8.1f} cum  {nc / per:5.1f}x  {_short(func)}"
        )
        shown += 1
        if shown >= top:
            break
    print(f"\n  llmroute's own functions by cumulative time (µs per {unit}):")
    own = [r for r in rows if r[0][0].startswith(SRC)]
    own.sort(key=lambda r: r[4], reverse=True)
    for func, _cc, nc, tt, ct in own[:top]:
        print(
            f"    {ct / per * 1e6:8.1f} cum {tt / per * 1e6:8.1f} own  {nc / per:5.1f}x  {_short(func)}"
        )
    print(f"\n  known-expensive callees and their callers (µs per {unit}, cumulative):")
    for func, (_cc, _nc, _tt, ct, callers) in raw.items():
        text = _short(func)
        if not any(s in text for s in SUSPECTS) or ct / per * 1e6 < 1:
            continue
        print(f"    {ct / per * 1e6:8.1f}  {text}")
        for caller, (_c, _n, _t, cct) in sorted(callers.items(), key=lambda kv: -kv[1][3])[:3]:
            print(f"              <- {cct / per * 1e6:6.1f}  {_short(caller)}")


async def profile(port: int, args: argparse.Namespace) -> None:
    import llmroute

    router = llmroute.AsyncRouter(config(port))
    create = router.chat.completions.create
    for _ in range(300):
        await create(model="chat", messages=MESSAGES)

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.requests):
        await create(model="chat", messages=MESSAGES)
    profiler.disable()
    print(f"non-streamed: {args.requests} sequential requests under cProfile")
    print_profile(pstats.Stats(profiler), args.requests, "request", args.top)

    chunks = 0
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.streams):
        stream = await create(model="chat", messages=MESSAGES, stream=True)
        async for _chunk in stream:
            chunks += 1
    profiler.disable()
    print(f"\nstreamed: {args.streams} streams, {chunks} chunks delivered, under cProfile")
    print_profile(pstats.Stats(profiler), chunks, "chunk", args.top)
    await router.aclose()


# ---------------------------------------------------------------- what-if


_ORIGINAL_PRIVATE: dict[type, Any] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with running_upstream(chunks=args.chunks) as port:
        asyncio.run(profile(port, args))


if __name__ == "__main__":
    main()

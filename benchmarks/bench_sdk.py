"""The openai SDK three ways: plain, over ``router.openai_client()`` in process, over ``llmroute serve``.

    python benchmarks/bench_sdk.py [--requests 2000 --sequential 400 --rounds 3 --profile]

The same ``openai.AsyncOpenAI`` code loads the same loopback upstream
(`upstream.py`, in its own process) three ways, in this one process:

- ``plain``: the SDK straight to the upstream (its own httpx2 pool and sockets);
- ``in-process``: ``router.openai_client()``, the router's gateway application
  called in this process (no socket between SDK and router), the router's
  route ``bench`` having the upstream as its single target;
- ``served``: the SDK to ``llmroute serve`` (a subprocess, one worker) with the
  same route.

Concurrency 1: ``--sequential`` requests one at a time, the three taking turns
request by request; the p50 of each. Concurrency ``--concurrency``: ``--rounds``
runs of ``--requests`` requests, the three taking turns run by run; requests
per second of each and the median of the per-round ratios to plain. Targets
(issue 14): the in-process p50 at most 1.15x the plain SDK's, its throughput
at least 0.85x; the exit status is 0 only if both pass.

``--profile`` runs one more in-process burst under cProfile and prints where
the CPU time goes, by package: the SDK, httpx2, llmroute's in-process glue
(`llmroute.sdk`), the gateway application (`llmroute.server`), the router
(the rest of llmroute), aiohttp and the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import running_gateway
from llmroute import AsyncRouter
from upstream import MODEL, running_upstream

MESSAGES: Any = [{"role": "user", "content": "Say hello in one short sentence."}]
TARGET_P50_RATIO = 1.15
TARGET_THROUGHPUT_RATIO = 0.85
Call = Callable[[], Awaitable[object]]


def calls(clients: dict[str, tuple[openai.AsyncOpenAI, str]]) -> dict[str, Call]:
    """One non-streamed chat completion per client, as a no-argument coroutine function."""

    def make(client: openai.AsyncOpenAI, model: str) -> Call:
        async def call() -> object:
            reply = await client.chat.completions.create(model=model, messages=MESSAGES)
            assert reply.choices[0].message.content
            return reply

        return call

    return {name: make(client, model) for name, (client, model) in clients.items()}


async def sequential(ways: dict[str, Call], count: int) -> dict[str, float]:
    """p50 (ms) of each way, taking turns request by request."""
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(count):
        for name, call in ways.items():
            start = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


async def burst(call: Call, requests: int, concurrency: int) -> float:
    """Requests per second of `requests` calls by `concurrency` workers."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - start)


async def measure(args: argparse.Namespace, upstream_port: int, served_port: int) -> int:
    up = f"http://127.0.0.1:{upstream_port}/v1"
    config = {
        "providers": {"up": {"type": "openai", "base_url": up, "api_key": "x"}},
        "routes": {"bench": {"targets": [f"up/{MODEL}"]}},
    }
    async with AsyncRouter(config) as router:
        clients = {
            "plain": (openai.AsyncOpenAI(base_url=up, api_key="x", max_retries=0), MODEL),
            "in-process": (router.openai_client(), "bench"),
            "served": (
                openai.AsyncOpenAI(
                    base_url=f"http://127.0.0.1:{served_port}/v1", api_key="x", max_retries=0
                ),
                "bench",
            ),
        }
        ways = calls(clients)
        for call in ways.values():  # warm up: connections, lazy imports, the gateway app
            await burst(call, 200, 20)
        p50 = await sequential(ways, args.sequential)
        rates: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            for name, call in ways.items():
                rates[name].append(await burst(call, args.requests, args.concurrency))
        status = report(p50, rates, args)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await burst(ways["in-process"], args.requests, args.concurrency)
            profiler.disable()
            report_profile(profiler, args.requests)
        for client, _ in clients.values():
            await client.close()
    return status


_GROUPS = (
    ("llmroute/sdk/", "llmroute.sdk (in-process glue)"),
    ("llmroute/server/", "llmroute.server (gateway app)"),
    ("llmroute/", "llmroute (router)"),
    ("/openai/", "openai SDK"),
    ("/httpx2/", "httpx2"),
    ("/httpcore2/", "httpcore2"),
    ("/aiohttp/", "aiohttp"),
    ("/pydantic", "pydantic"),
    ("asyncio/", "asyncio"),
)


def report_profile(profiler: cProfile.Profile, requests: int) -> None:
    """Own CPU time per request by package, and our glue's heaviest functions."""
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = defaultdict(float)
    ours: list[tuple[float, str]] = []
    for (path, line, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        group = next((g for key, g in _GROUPS if key in path), "other (builtins, stdlib)")
        groups[group] += own
        if "llmroute/sdk/" in path:
            ours.append((own, f"{Path(path).name}:{line} {name}"))
    total = sum(groups.values())
    print(f"\nCPU per in-process request under cProfile (its overhead inflates all): "
          f"{total / requests * 1e6:.0f} us")  # fmt: skip
    for group, own in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:32s} {own / requests * 1e6:7.1f} us  {own / total:6.1%}")
    print("  llmroute.sdk's heaviest functions (own time per request):")
    for own, where in sorted(ours, reverse=True)[:6]:
        print(f"    {own / requests * 1e6:6.1f} us  {where}")


def report(p50: dict[str, float], rates: dict[str, list[float]], args: argparse.Namespace) -> int:
    print(f"concurrency 1, {args.sequential} requests each, taking turns:")
    for name, value in p50.items():
        print(f"  {name:11s} p50 {value:7.3f} ms  ({value / p50['plain']:.2f}x plain)")
    print(f"\nconcurrency {args.concurrency}, {args.rounds} rounds of {args.requests} requests:")
    ratios: dict[str, float] = {}
    for name, values in rates.items():
        ratios[name] = statistics.median(v / p for v, p in zip(values, rates["plain"], strict=True))
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:11s} {shown} req/s  ({ratios[name]:.2f}x plain)")
    checks = [
        (f"in-process p50 <= {TARGET_P50_RATIO}x plain", p50["in-process"] / p50["plain"],
         p50["in-process"] / p50["plain"] <= TARGET_P50_RATIO),
        (f"in-process throughput >= {TARGET_THROUGHPUT_RATIO}x plain", ratios["in-process"],
         ratios["in-process"] >= TARGET_THROUGHPUT_RATIO),
    ]  # fmt: skip
    print()
    for label, value, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {label} ({value:.2f}x)")
    return 0 if all(passed for _, _, passed in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per burst")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--sequential", type=int, default=400, help="requests at concurrency 1")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per way")
    parser.add_argument("--profile", action="store_true", help="profile an in-process burst")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, openai {openai.__version__}, "
          f"{os.cpu_count()} cores\n")  # fmt: skip
    with (
        running_upstream(chunks=6) as upstream_port,
        running_gateway(upstream_port, []) as (
            served_port,
            _,
        ),
    ):
        return asyncio.run(measure(args, upstream_port, served_port))


if __name__ == "__main__":
    sys.exit(main())

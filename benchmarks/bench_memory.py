"""Does a router's memory grow with the requests it serves? 100,000 of them, in one process.

    python benchmarks/bench_memory.py [--requests 100000] [--settle 10000] [--concurrency 50]

One `AsyncRouter` with what a production process turns on: a per-user rate limit and a
per-user budget (in memory), the memory cache, the SQLite request log and a loopback
upstream. Every request has its own prompt (so its own cache key and record) and one of
1,000 users (whose limit and budget state must be kept, and is, from the start): what
per-request state is kept shows up as growth. The
resident set size (``/proc/self/statm``) is read after the first ``--settle`` requests
(pools, imports and caches warmed) and after all of them, the garbage collector run
before each reading; issue 20 asks that it stay within 5 MB. The memory cache is bounded
in bytes (``max_size``), so it is set small (4 MiB) for its bound to be reached, not
counted as growth. When the target fails, the run goes on under tracemalloc for twice
``--settle`` more requests and prints the ten largest growths by line over the second half
(so what replaces what the first half allocated nets out).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import llmroute
from upstream import MODEL, running_upstream

LIMIT_MB = 5.0
#: Users the requests take turns as: their limit and budget state is kept (a day's budget
#: must be), so it is all there after the first --settle requests and does not count.
USERS = 1000
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 1e6


def config(port: int, folder: Path, without: set[str]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "providers": {"up": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                             "api_key": "x"}},
        "routes": {"chat": {"targets": [{"provider": "up", "model": MODEL,
                                          "price": {"input": 1.0, "output": 2.0}}]}},
        "cache": {"backend": "memory://", "ttl": "1h", "max_size": "4MiB"},
        "rate_limits": [{"per": "user", "requests": "1000/min"}],
        "budgets": [{"per": "user", "usd": "100/day"}],
        "logging": {"store": f"sqlite:///{folder / 'log.db'}"},
    }  # fmt: skip
    for part in without:  # to tell which part grows
        found.pop({"store": "logging", "limits": "rate_limits"}.get(part, part))
    if "limits" in without:
        found.pop("budgets")
    return found


async def serve(router: llmroute.AsyncRouter, first: int, count: int, concurrency: int) -> None:
    create = router.chat.completions.create
    numbers = iter(range(first, first + count))

    async def worker() -> None:
        for i in numbers:
            await create(
                model="chat",
                messages=[{"role": "user", "content": f"Request number {i}: say hello."}],
                llmroute={"user": f"user-{i % USERS}"},
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await router.flush()


async def main(args: argparse.Namespace) -> int:
    with running_upstream() as port, tempfile.TemporaryDirectory() as tmp:
        async with llmroute.AsyncRouter(config(port, Path(tmp), set(args.without))) as router:
            began = time.perf_counter()
            await serve(router, 0, args.settle, args.concurrency)
            settled = rss_mb()
            await serve(router, args.settle, args.requests - args.settle, args.concurrency)
            after = rss_mb()
            took = time.perf_counter() - began
            status = router.recording
            growth = after - settled
            print(f"llmroute {llmroute.__version__}, Python {sys.version.split()[0]}: "
                  f"{args.requests:,} requests in {took:.1f} s, {status.recorded:,} recorded, "
                  f"{status.dropped:,} dropped")  # fmt: skip
            print(f"RSS after {args.settle:,}: {settled:.1f} MB; after {args.requests:,}: "
                  f"{after:.1f} MB; growth {growth:+.1f} MB "
                  f"({growth * 1e6 / (args.requests - args.settle):+.1f} bytes per request)")  # fmt: skip
            ok = growth <= LIMIT_MB
            print(f"  {'PASS' if ok else 'FAIL'}  growth from {args.settle:,} to "
                  f"{args.requests:,} requests within {LIMIT_MB:.0f} MB")  # fmt: skip
            if not ok:
                # traced from here on: what the next requests replace was allocated traced too
                tracemalloc.start(10)
                await serve(router, args.requests, args.settle, args.concurrency)
                gc.collect()
                before = tracemalloc.take_snapshot()
                await serve(router, args.requests + args.settle, args.settle, args.concurrency)
                gc.collect()
                grown = tracemalloc.take_snapshot().compare_to(before, "lineno")
                print(f"largest growths over {args.settle:,} more requests (tracemalloc):")
                for stat in grown[:10]:
                    print(f"  {stat}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--settle", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--without", action="append", default=[], choices=["store", "cache", "limits"],
        help="leave a part out, to tell which one grows",
    )  # fmt: skip
    sys.exit(asyncio.run(main(parser.parse_args())))

"""What a cache hit costs: memory and Redis, non-streamed and streamed.

    python benchmarks/bench_cache.py [--hits 20000 --rounds 5 --redis-url redis://host:6379/0]

Every figure is the median over ``--rounds`` rounds of ``--hits`` sequential
requests, the variants interleaved round by round (the machine is small and
noisy), in microseconds per request: CPU time of the process for the
in-process variants (so time spent waiting for a core on the shared machine
does not count), wall time for the Redis ones (which wait on a socket):

- ``floor``: the router's pipeline when a stage answers every request with a
  completion it already has (no key, no lookup, no parsing): request
  validation, routing metadata, the recorder stage. What any answer costs.
- ``memory hit``: the same request answered by a ``memory://`` cache.
  Its *cache overhead* is ``memory hit - floor``: the key, the lookup, the
  copy handed to the caller (parsed from the stored bytes) and the savings
  bookkeeping.
- ``memory hit, streamed``: a hit replayed as a stream, consumed whole.
- ``cache stage alone``: the cache stage's lookup for one request context,
  called directly (the key, the lookup, the fresh response, the bookkeeping):
  the cache's own share of a memory hit. The rest of ``memory hit - floor``
  is allocating and freeing a new response rather than handing out the same
  object.
- ``redis GET``: a bare ``redis.asyncio`` GET of the stored entry: one round trip.
- ``redis hit``: the request answered by a ``redis://`` cache. The hit takes
  one Redis command (checked with ``INFO stats`` over the run).

Redis is ``--redis-url``, else a ``redis-server`` started on a free port when
the binary is installed; without either the Redis rows are skipped.

Target: a memory hit adds under 30 us to the floor; a Redis hit is one round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from llmroute import AsyncRouter, ChatCompletion
from llmroute.pipeline.stage import Answer, RequestContext, Stage

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello in one short sentence."},
]
PROVIDERS = {"up": {"type": "mock", "text": "Hello there! Nice to meet you, friend."}}
QUIET = {"telemetry": {"enabled": False}}


class Canned(Stage):
    """Answers every request with the same completion: the pipeline's floor."""

    name = "canned"

    def __init__(self, completion: ChatCompletion) -> None:
        self.completion = completion

    async def before(self, ctx: RequestContext) -> Answer | None:
        return self.completion


def router(cache: dict[str, Any] | None) -> AsyncRouter:
    config: dict[str, Any] = {"providers": PROVIDERS, "routes": {"chat": {"targets": ["up/m"]}}}
    if cache is not None:
        config["cache"] = cache
    return AsyncRouter({**config, **QUIET}, env={})


async def per_request(call: Callable[[], Awaitable[object]], count: int, cpu: bool) -> float:
    """Microseconds per call: CPU time of this process for in-process variants (time spent
    waiting for a core on the shared machine does not count), wall time for Redis ones."""
    clock = time.process_time if cpu else time.perf_counter
    gc.collect()
    started = clock()
    for _ in range(count):
        await call()
    return (clock() - started) / count * 1e6


@asynccontextmanager
async def redis_url(given: str | None) -> AsyncIterator[str | None]:
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


async def ask(r: AsyncRouter) -> object:
    return await r.chat.completions.create(model="chat", messages=MESSAGES)


async def ask_stream(r: AsyncRouter) -> object:
    stream = await r.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
    return [chunk async for chunk in stream]


async def measure(
    variants: dict[str, Callable[[], Awaitable[object]]], hits: int, rounds: int
) -> dict[str, float]:
    """The median microseconds per request of each variant, interleaved round by round."""
    for call in variants.values():  # warm up
        for _ in range(500):
            await call()
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            remote = "redis" in name
            count = hits if not remote else max(1, hits // 10)
            results[name].append(await per_request(call, count, cpu=not remote))
    return {name: statistics.median(values) for name, values in results.items()}


async def commands_per_hit(client: Any, hit: Callable[[], Awaitable[object]]) -> float:
    """Redis commands processed per hit, from ``INFO stats`` (the INFO call counts once)."""

    async def processed() -> int:
        return int((await client.info("stats"))["total_commands_processed"])

    before, n = await processed(), 1000
    for _ in range(n):
        await hit()
    return (await processed() - before - 1) / n


def report(median: dict[str, float], rounds: int, per_hit: float | None) -> None:
    print(f"cache hits, median of {rounds} rounds (us per request)")
    for name, value in median.items():
        print(f"  {name:<22} {value:9.1f}")
    overhead = median["memory hit"] - median["floor"]
    own = median["cache stage alone"]
    verdict = "PASS" if overhead < 30 else "FAIL"
    print(f"memory hit: {overhead:.1f} us over the floor, {own:.1f} us of it in the cache stage "
          f"(target < 30 us over the floor): {verdict}")  # fmt: skip
    if per_hit is None:
        print("redis: skipped (no --redis-url and no redis-server installed)")
        return
    verdict = "PASS" if per_hit == 1 else "FAIL"
    extra = median["redis hit"] - median["redis GET"]
    print(f"redis hit: {per_hit:g} Redis command per hit, {extra:.1f} us over a bare GET "
          f"(target: one round trip): {verdict}")  # fmt: skip


async def stage_alone(memory: AsyncRouter) -> Callable[[], Awaitable[object]]:
    """The memory cache stage's `before()` on the context of one (hit) request."""
    stage = memory._limits.cache
    assert stage is not None
    seen: list[RequestContext] = []
    looked_up = stage.before

    async def spy(ctx: RequestContext) -> Answer | None:
        seen.append(ctx)
        return await looked_up(ctx)

    stage.before = spy  # type: ignore[method-assign]
    await ask(memory)
    stage.before = looked_up  # type: ignore[method-assign]
    (ctx,) = seen
    return lambda: looked_up(ctx)


async def main(args: argparse.Namespace) -> None:
    memory = router({})
    floor = router(None)
    first = await memory.chat.completions.create(model="chat", messages=MESSAGES)
    floor._stages.append(Canned(first))
    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "floor": lambda: ask(floor),
        "memory hit": lambda: ask(memory),
        "memory hit, streamed": lambda: ask_stream(memory),
        "cache stage alone": await stage_alone(memory),
    }
    assert (
        await memory.chat.completions.create(model="chat", messages=MESSAGES)
    ).llmroute.cache == "hit"
    per_hit = None
    async with redis_url(args.redis_url) as url:
        if url is None:
            median = await measure(variants, args.hits, args.rounds)
        else:
            import redis.asyncio as aioredis

            shared = router({"backend": url})
            await ask(shared)
            await shared._limits.cache.drain()  # type: ignore[union-attr]
            client = aioredis.Redis.from_url(url)
            (key,) = await client.keys("llmroute:cache:*")
            variants["redis GET"] = lambda: client.get(key)
            variants["redis hit"] = lambda: ask(shared)
            median = await measure(variants, args.hits, args.rounds)
            per_hit = await commands_per_hit(client, variants["redis hit"])
            await client.aclose()
            await shared.aclose()
    await memory.aclose()
    await floor.aclose()
    report(median, args.rounds, per_hit)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default=None)
    asyncio.run(main(parser.parse_args()))

"""One process of a multi-process test of Redis-shared state (run by tests/test_shared_state.py).

    python tests/_state_worker.py '<json job>'

Prints one JSON line with what happened. Jobs:

Every process first waits at a barrier (a file per process in `barrier`, until
there are `parties` of them), so that they start together.

- ``rate``: hammer a router whose global rate limit lives in Redis for
  `seconds`; report when each request passed.
- ``budget``: `workers` tasks ask until the Redis-shared budget refuses them;
  report how many passed and what each cost.
- ``cache``: ask each prompt, streamed and not; report cache statuses and answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import llmroute
from llmroute import AsyncRouter


async def rate(job: dict[str, Any], router: AsyncRouter) -> dict[str, Any]:
    passed: list[float] = []
    refused = 0
    end = time.time() + job["seconds"]

    async def worker() -> None:
        nonlocal refused
        messages = [{"role": "user", "content": "hi"}]
        while time.time() < end:
            try:
                await router.chat.completions.create(model="chat", messages=messages)
            except llmroute.LocalRateLimitExceeded:
                refused += 1
                await asyncio.sleep(0)  # straight back: as hard as it can go
            else:
                passed.append(time.time())

    await asyncio.gather(*(worker() for _ in range(job["workers"])))
    return {"passed": passed, "refused": refused}


async def budget(job: dict[str, Any], router: AsyncRouter) -> dict[str, Any]:
    costs: list[float] = []
    refused = 0

    async def worker(number: int) -> None:
        nonlocal refused
        asked = 0
        while True:
            messages = [{"role": "user", "content": f"q{number:03}-{asked:04}"}]
            asked += 1
            try:
                reply = await router.chat.completions.create(
                    model="chat", messages=messages, max_tokens=4
                )
            except llmroute.BudgetExceeded:
                refused += 1
                return
            costs.append(reply.llmroute.cost_usd or 0.0)

    await asyncio.gather(*(worker(i) for i in range(job["workers"])))
    return {"costs": costs, "refused": refused}


async def cache(job: dict[str, Any], router: AsyncRouter) -> dict[str, Any]:
    seen = []
    for prompt, streamed in job["asks"]:
        messages = [{"role": "user", "content": prompt}]
        if streamed:
            stream = await router.chat.completions.create(
                model="chat", messages=messages, stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
            chunks = [c async for c in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            usage = chunks[-1].usage.total_tokens if chunks[-1].usage else None
            seen.append([stream.llmroute.cache, text, usage])
        else:
            reply = await router.chat.completions.create(model="chat", messages=messages)
            total = reply.usage.total_tokens if reply.usage else None
            seen.append([reply.llmroute.cache, reply.choices[0].message.content, total])
    return {"seen": seen}


async def barrier(folder: str, parties: int) -> None:
    """Wait until `parties` processes have arrived."""
    Path(folder, str(os.getpid())).touch()
    while len(os.listdir(folder)) < parties:
        await asyncio.sleep(0.002)


async def main(job: dict[str, Any]) -> None:
    router = AsyncRouter(job["config"], env={})
    await router.check()  # connected before the start
    await barrier(job["barrier"], job["parties"])
    try:
        result = await {"rate": rate, "budget": budget, "cache": cache}[job["kind"]](job, router)
    finally:
        await router.aclose()  # waits for the stores and reconciliations in flight
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))

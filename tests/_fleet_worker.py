"""One router process of a fleet sharing provider state through Redis (tests/test_fleet_state.py).

    python tests/_fleet_worker.py '<json job>'

Prints one JSON line with what happened. Every process first waits at a barrier
(a file per process in `folder`/barrier, until there are `parties`). The route
``chat`` tries ``up/primary`` then ``up/backup``, both on one loopback upstream
that counts what it receives. Jobs (`kind`):

- ``cooldown``: the `first` process sends one request (the upstream answers the
  primary's first with 429 and ``Retry-After``); every process waits until it
  sees the primary cooling down, then sends requests for `seconds`; then waits
  for the cooldown's end and sends one more.
- ``circuit``: the `first` process sends `failures` requests (the primary fails
  each: its circuit opens); every process waits until it sees the circuit open,
  then sends requests for `seconds`, four at a time, through the half-open
  probe and the close.
- ``outage``: steps driven by flag files the test writes (``kill``, ``back``):
  requests and ``/ready`` before, during and after a Redis outage; the `first`
  process meets a 429 during it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from llmroute import AsyncRouter

PRIMARY = "up/primary"


async def barrier(folder: Path, name: str, parties: int) -> None:
    """Wait until `parties` processes have touched a file in `folder`/`name`."""
    where = folder / name
    where.mkdir(exist_ok=True)
    (where / str(os.getpid())).touch()
    while len(os.listdir(where)) < parties:
        await asyncio.sleep(0.002)


async def wait_for(check: Any, limit: float) -> float | None:
    """Seconds until `check()` is true (polled every 2 ms), None if not within `limit`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            return None
        await asyncio.sleep(0.002)
    return time.monotonic() - started


async def ask(router: AsyncRouter, content: str = "hi") -> str:
    """One request; the target that answered."""
    reply = await router.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": content}]
    )
    return reply.llmroute.target or ""


def cooling(router: AsyncRouter) -> bool:
    return router.health()[PRIMARY].cooldown_until is not None


async def cooldown(job: dict[str, Any], router: AsyncRouter) -> dict[str, Any]:
    first = job["first"]
    served: list[str] = []
    if first:
        served.append(await ask(router))
    learned = await wait_for(lambda: cooling(router), 5.0)
    learned_at = time.time()
    end = time.monotonic() + job["seconds"]
    while time.monotonic() < end:
        served.append(await ask(router))
        await asyncio.sleep(0.02)
    back = await wait_for(lambda: not cooling(router), 30.0)
    after = await ask(router)
    return {"learned": learned, "learned_at": learned_at, "served": served, "back": back,
            "after": after}  # fmt: skip


async def circuit(job: dict[str, Any], router: AsyncRouter) -> dict[str, Any]:
    if job["first"]:
        for _ in range(job["failures"]):
            await ask(router)
    learned = await wait_for(lambda: router.health()[PRIMARY].state == "open", 5.0)
    learned_at = time.time()
    until = learned_at + job["seconds"]
    served: list[tuple[float, str]] = []

    async def worker() -> None:
        while time.time() < until:
            served.append((time.time(), await ask(router)))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(worker() for _ in range(4)))
    status = await router.shared_state()
    assert status is not None
    return {
        "learned": learned,
        "learned_at": learned_at,
        "served": served,
        "granted": status.probes_granted,
        "denied": status.probes_denied,
        "state": router.health()[PRIMARY].state,
    }


class Warnings(logging.Handler):
    """Counts the shared state's Redis outage messages."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = self.back = 0
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.seen.append(f"{time.time():.3f} {message}")
        if message.startswith("llmroute state: Redis is unavailable"):
            self.lost += 1
        elif message.startswith("llmroute state: Redis is reachable again"):
            self.back += 1


async def outage(job: dict[str, Any], router: AsyncRouter) -> dict[str, Any]:
    folder = Path(job["folder"])
    parties = job["parties"]
    warnings = Warnings()
    logging.getLogger("llmroute.redis").addHandler(warnings)
    client = router.http_client()

    async def ready() -> dict[str, Any]:
        answer = await client.get(client.base_url.join("/ready"))
        return {"code": answer.status_code, **answer.json()}

    before = await ready()
    await ask(router)  # listening from here on
    await barrier(folder, "up", parties)
    while not (folder / "kill").exists():
        await asyncio.sleep(0.005)
    # Redis is gone: requests go on, on local state; /ready says so without failing
    during: list[str] = []
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        during.append(await ask(router))
        seen = await ready()
        if seen.get("degraded"):
            break
        await asyncio.sleep(0.05)
    if job["first"]:
        during.append(await ask(router, "please 429"))  # a cooldown while Redis is away
    local = cooling(router)
    for _ in range(5):
        during.append(await ask(router))
    await barrier(folder, "degraded", parties)
    while not (folder / "back").exists():
        await asyncio.sleep(0.005)

    # Redis is back: the change made during the outage reaches every process
    async def clean() -> bool:
        return not (await ready()).get("degraded")

    healed = None
    started = time.monotonic()
    while time.monotonic() - started < 10:
        await ask(router)
        if await clean():
            healed = time.monotonic() - started
            break
        await asyncio.sleep(0.05)
    shared = await wait_for(lambda: cooling(router), 10.0)
    after = await ask(router)
    await client.aclose()
    # what the last request changed is published off its path, soon after it: nothing is
    # left pending once that has had its moment (reading at once raced it)
    deadline = time.monotonic() + 5
    status = await router.shared_state()
    while status is not None and status.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        status = await router.shared_state()
    assert status is not None
    return {
        "before": before, "during": during, "degraded": seen, "local": local,
        "healed": healed, "shared": shared, "after": after, "lost": warnings.lost,
        "back": warnings.back, "seen": warnings.seen, "pending": status.pending, "published": status.published,
    }  # fmt: skip


async def main(job: dict[str, Any]) -> None:
    router = AsyncRouter(job["config"], env={})
    folder = Path(job["folder"])
    await router.check()  # starts listening to the fleet
    for _ in range(1000):  # ready as a load balancer would see it: listening (on a busy machine
        status = await router.shared_state()  # it may take longer than check() waits)
        if status is not None and status.connected:
            break
        await asyncio.sleep(0.01)
    await barrier(folder, "start", job["parties"])
    kinds = {"cooldown": cooldown, "circuit": circuit, "outage": outage}
    try:
        result = await kinds[job["kind"]](job, router)
    finally:
        await router.aclose()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))

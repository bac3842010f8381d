"""An experiment from configuration to report, over the mock provider (no network, no keys).

Two variants of the route ``chat``: ``control`` (the route as configured) and
``candidate`` (another target: faster and cheaper). 2,000 users ask two
questions each; a seeded rule gives thumbs-up feedback (control liked 60% of
the time, candidate 64%). Then ``llmroute experiments report`` prints what the
store holds. Run it from the repository: ``python docs/examples/experiment_demo.py``.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from llmroute import AsyncRouter
from llmroute.cli import main

LIKED = {"control": 0.60, "candidate": 0.64}


def config(store: Path) -> dict[str, Any]:
    def latency(median: float) -> dict[str, Any]:
        return {"distribution": "lognormal", "median": median, "sigma": 0.3}

    return {
        "providers": {
            "big": {"type": "mock", "latency": latency(0.030), "seed": 1, "echo": True},
            "small": {"type": "mock", "latency": latency(0.022), "seed": 2, "echo": True},
        },
        "routes": {
            "chat": {
                "targets": [
                    {"provider": "big", "model": "big-1", "price": {"input": 2.5, "output": 10}}
                ]
            }
        },
        "logging": {"store": f"sqlite:///{store}"},
        "experiments": {
            "big-vs-small": {
                "route": "chat",
                "sticky_by": "user",
                "variants": {
                    "control": {"weight": 50},
                    "candidate": {
                        "weight": 50,
                        "targets": [
                            {"provider": "small", "model": "small-1",
                             "price": {"input": 1.5, "output": 6}}
                        ],
                        "params": {"temperature": 0.2},
                    },
                },
            }
        },
    }  # fmt: skip


async def ask(router: AsyncRouter, user: str, words: int) -> tuple[str, str]:
    reply = await router.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": " ".join(["password"] * words)}],  # echoed
        llmroute={"user": user},
    )
    return reply.llmroute.request_id, reply.llmroute.variant or "control"


async def run(store: Path) -> None:
    rng = random.Random(2026)
    async with AsyncRouter(config(store), seed=7) as router:
        for batch in range(40):
            users = [f"user-{batch * 50 + i}" for i in range(50)]
            asked = [ask(router, user, rng.randint(5, 60)) for user in users for _ in range(2)]
            answers = await asyncio.gather(*asked)
            await router.flush()
            for request_id, variant in answers:
                if rng.random() < 0.5:  # half the answers get a thumbs up or down
                    liked = rng.random() < LIKED[variant]
                    await router.feedback(request_id, "thumbs_up", liked)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "demo.db"
        asyncio.run(run(path))
        sys.exit(main(["experiments", "report", "big-vs-small", "--store", str(path),
                       "--format", "plain"]))  # fmt: skip

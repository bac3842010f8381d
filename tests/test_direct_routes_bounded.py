"""Distinct ``provider/model`` names are not remembered forever (issue 15, finding 10).

Each name a client sent stayed in the catalog, with its statistics, health,
reported limits and price memos: 10,000 names added 97 MB to a gateway. The
catalog now keeps the most recently used `MAX_DIRECT_ROUTES` and the owners of
per-target state drop what it forgets.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from _helpers import HI
from llmroute import AsyncRouter
from llmroute.routing.catalog import MAX_DIRECT_ROUTES
from llmroute.routing.stats import LiveStats

pytestmark = pytest.mark.anyio

CONFIG = {
    "providers": {"a": {"type": "mock", "text": "ok"}},
    "routes": {"chat": {"targets": ["a/m"]}},
}


async def send(router: AsyncRouter, names: range) -> None:
    create = router.chat.completions.create
    for i in names:
        await create(model=f"a/model-{i}", messages=HI)


async def test_the_catalog_keeps_the_most_recent_direct_names() -> None:
    async with AsyncRouter(CONFIG, env={}) as router:
        await router.chat.completions.create(model="a/m", messages=HI)  # also a route's target
        await send(router, range(MAX_DIRECT_ROUTES + 100))
        known = set(router.stats())
        health = set(router.health())
    assert len(known) == MAX_DIRECT_ROUTES + 1  # the direct names kept, and the route's a/m
    assert "a/m" in known  # a configured route's target is never forgotten
    assert "a/model-0" not in known and f"a/model-{MAX_DIRECT_ROUTES + 99}" in known
    assert health == known


async def test_memory_stays_flat_as_new_names_keep_coming() -> None:
    # traced from the start: memory freed later counts only if its allocation was traced
    tracemalloc.start()
    try:
        async with AsyncRouter(CONFIG, env={}) as router:
            await send(router, range(MAX_DIRECT_ROUTES + 100))  # the catalog is full
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await send(router, range(10_000, 10_000 + MAX_DIRECT_ROUTES))
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # about 10 kB per remembered name before: over 10 MB for these 1,024
    assert grown < 2 * 1024 * 1024, f"grew {grown / 1e6:.1f} MB for names it should forget"


def test_statistics_of_an_attempt_under_way_are_kept() -> None:
    stats = LiveStats()
    stats.started("a/x")
    assert stats.forget("a/x") is False
    assert stats.target("a/x") is not None
    stats.ended("a/x")
    assert stats.forget("a/x") is True
    assert stats.target("a/x") is None

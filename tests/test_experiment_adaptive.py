"""Adaptive experiments through the real router on the mock provider: Thompson sampling moves
new keys to the better variant, keeps the floor, stops at the threshold with a stored winner;
keys keep their variant across refreshes and router instances."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from llmroute import AsyncRouter
from llmroute.experiments import sticky_digest
from llmroute.experiments.tables import report_lines
from llmroute.observe import open_store

pytestmark = pytest.mark.anyio

#: The true thumbs-up rate of each variant in the simulation.
RATES = {"control": 0.5, "candidate": 0.7}


def config(store: str, **adaptive: Any) -> dict[str, Any]:
    return {
        "providers": {"m": {"type": "mock", "latency": 0}},
        "routes": {"chat": {"targets": ["m/a"]}},
        "logging": {"store": store, "flush_interval": 0.05},
        "experiments": {
            "thumbs": {
                "route": "chat",
                "variants": {"control": {"weight": 50}, "candidate": {"weight": 50}},
                "mode": "adaptive",
                "metric": "thumbs_up",
                **adaptive,
            }
        },
    }


async def ask(router: AsyncRouter, user: str) -> tuple[str, str]:
    reply = await router.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], llmroute={"user": user}
    )
    assert reply.llmroute.variant is not None
    return reply.llmroute.request_id, reply.llmroute.variant


def assignments(store: str) -> list[tuple[str, str, str]]:
    """(sticky key digest, variant, assignment) of every record, oldest first."""
    with open_store(store).connect() as conn:
        rows = conn.execute(
            "SELECT sticky_key, variant, assignment FROM requests ORDER BY started_at"
        ).fetchall()
    return [(str(k), str(v), str(a)) for k, v, a in rows]


async def test_adaptive_mode_finds_the_better_variant_keeps_the_floor_and_stops(
    store_url: str,
) -> None:
    path = store_url  # SQLite, then PostgreSQL
    rng = random.Random(17)
    settings = {"floor": 0.1, "stop_at": 0.99, "min_samples": 200, "refresh": 0.02}
    batches: list[Counter[str]] = []
    async with AsyncRouter(config(path, **settings)) as router:
        for batch in range(40):  # 40 batches of 250 new users: 10,000 requests
            users = [f"user-{batch}-{i}" for i in range(250)]
            answers = await asyncio.gather(*(ask(router, user) for user in users))
            batches.append(Counter(variant for _, variant in answers))
            if batches[-1]["control"] == 0:
                continue  # stopped: feedback no longer moves anything (and takes time)
            await router.flush()
            for request_id, variant in answers:
                liked = rng.random() < RATES.get(variant, 0.0)
                await router.feedback(request_id, "thumbs_up", liked)
            await asyncio.sleep(0.03)  # a refresh reads this batch's feedback
        report = await router.experiment_report("thumbs")
    rows = assignments(path)
    assert len(rows) == 10_000
    stop = report.stopped
    assert stop is not None and stop.winner == "candidate" and stop.metric == "thumbs_up"
    assert stop.probability >= 0.99
    assert min(stop.samples.values()) >= 200 and set(stop.samples) == set(RATES)
    served = Counter(variant for _, variant, _ in rows)
    assert served["candidate"] > 0.8 * 10_000, served  # most traffic to the better arm
    # before the stop, the floor held: control kept at least about 10% of each batch
    first_winner = next(i for i, (_, _, how) in enumerate(rows) if how == "winner")
    adapting = batches[: first_winner // 250]
    assert adapting and all(b["control"] >= 0.1 * 250 * 0.6 for b in adapting), adapting
    # after it, everyone gets the winner, recorded as such (the batch it stopped in is mixed:
    # its requests were assigned as their lookups ended, some before the stop)
    after = rows[(first_winner // 250 + 1) * 250 :]
    assert after and {(v, how) for _, v, how in after} == {("candidate", "winner")}
    assert {v for _, v, how in rows if how == "winner"} == {"candidate"}
    assert report_lines(report)[0].startswith("Stopped at ")
    assert "candidate is the best variant on thumbs_up" in report_lines(report)[0]
    assert report.to_dict()["stopped"]["winner"] == "candidate"

    # a restarted router adopts the stored stop before its first request, even for a
    # user who was in control
    variant_of = {key: variant for key, variant, how in rows if how == "sticky"}
    control_user = next(
        user
        for user in (f"user-0-{i}" for i in range(250))
        if variant_of[sticky_digest("thumbs", user)] == "control"
    )
    async with AsyncRouter(config(path, **settings)) as again:
        _, variant = await ask(again, control_user)
        assert variant == "candidate"
    assert assignments(path)[-1][1:] == ("candidate", "winner")
    assert open_store(path).experiment_stop("thumbs") == stop


async def test_keys_keep_their_variant_across_refreshes_and_routers(store_url: str) -> None:
    path = store_url  # SQLite, then PostgreSQL
    settings = {"floor": 0.05, "min_samples": 1_000_000, "refresh": 0.02}
    users = [f"early-{i}" for i in range(200)]
    async with AsyncRouter(config(path, **settings)) as router:
        answers = await asyncio.gather(*map_ask(router, users))
        first = {user: variant for user, (_, variant) in zip(users, answers, strict=True)}
        assert 60 < Counter(first.values())["candidate"] < 140  # 50/50 before any feedback
        # the same new key asked 20 times at once: one variant
        same = await asyncio.gather(*(ask(router, "burst") for _ in range(20)))
        assert len({v for _, v in same}) == 1
        await router.flush()
        for user in users:  # the candidate is liked, control is not
            request_id, variant = await ask(router, user)
            assert variant == first[user]
            await router.flush()
            await router.feedback(request_id, "thumbs_up", variant == "candidate")
        # once a refresh (every 0.02 s) has read the feedback, new keys go mostly to the
        # candidate: waited for (a batch of new keys each 0.1 s, 5 s at most), not slept on
        for batch in range(50):
            await asyncio.sleep(0.1)
            fresh = await asyncio.gather(
                *map_ask(router, [f"late-{batch}-{i}" for i in range(400)])
            )
            if Counter(v for _, v in fresh)["candidate"] > 0.85 * 400:
                break
        else:
            raise AssertionError(
                f"new keys never went mostly to the candidate: {Counter(v for _, v in fresh)}"
            )
        again = await asyncio.gather(*map_ask(router, users))
        assert [v for _, v in again] == [first[u] for u in users]  # kept after the refresh
    async with AsyncRouter(config(path, **settings)) as second:  # a restart: the store says
        later = await asyncio.gather(*map_ask(second, users))
        assert [v for _, v in later] == [first[u] for u in users]
    assert {how for _, _, how in assignments(path)} == {"sticky"}


def map_ask(router: AsyncRouter, users: list[str]) -> list[Any]:
    return [ask(router, user) for user in users]


async def test_unkeyed_requests_get_the_winner_once_stopped(store_url: str) -> None:
    path = store_url  # SQLite, then PostgreSQL
    settings = {"min_samples": 5, "stop_at": 0.9, "refresh": 0.02}
    async with AsyncRouter(config(path, **settings)) as router:
        for i in range(40):
            request_id, variant = await ask(router, f"u{i}")
            await router.flush()
            await router.feedback(request_id, "thumbs_up", variant == "control")
        # a refresh (every 0.02 s) reads the feedback and stores the stop: waited for, not
        # slept on (a loaded machine's PostgreSQL took longer than a fixed 0.1 s once)
        for _ in range(500):
            if (await router.experiment_report("thumbs")).stopped is not None:
                break
            await asyncio.sleep(0.02)
        # the refresh that stored it adopts it as its read returns: an unkeyed request is
        # then the winner's (asked each 0.05 s, 5 s at most, until the store says so)
        for _ in range(100):
            await asyncio.sleep(0.05)
            reply = await router.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            await router.flush()
            if assignments(path)[-1][2] == "winner":
                break
        assert reply.llmroute.variant == "control"
    assert assignments(path)[-1][1:] == ("control", "winner")

"""Assignment to an experiment's variants: weights over many keys, stickiness across routers
and processes, how few keys a weight change moves, windows and per-request draws."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from _helpers import HI
from llmroute import AsyncRouter
from llmroute.experiments.assign import FixedAllocator, rendezvous, unit

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
KEYS = [f"user-{i}" for i in range(20_000)]


def shares(weights: list[tuple[str, float]], keys: list[str] = KEYS) -> dict[str, float]:
    counts = Counter(rendezvous("exp", key, weights) for key in keys)
    return {name: counts[name] / len(keys) for name, _ in weights}


@pytest.mark.parametrize(
    "weights",
    [
        [("control", 50), ("candidate", 50)],
        [("control", 70), ("candidate", 20), ("terse", 10)],
        [("control", 1), ("candidate", 1), ("terse", 1), ("long", 1)],
        [("control", 90), ("candidate", 10), ("off", 0)],
    ],
)
def test_weights_hold_within_two_points_over_20000_keys(
    weights: list[tuple[str, float]],
) -> None:
    total = sum(w for _, w in weights)
    for name, share in shares(weights).items():
        expected = dict(weights)[name] / total
        assert abs(share - expected) <= 0.02, (name, share, expected)


def test_a_variant_of_weight_zero_gets_no_key() -> None:
    assert shares([("control", 1), ("off", 0)])["off"] == 0


def test_unit_is_strictly_inside_zero_and_one_and_uniform() -> None:
    values = [unit("e", "v", key) for key in KEYS]
    assert all(0 < v < 1 for v in values)
    deciles = Counter(int(v * 10) for v in values)
    assert all(abs(deciles[d] / len(values) - 0.1) < 0.01 for d in range(10))


def moved(before: list[tuple[str, float]], after: list[tuple[str, float]]) -> float:
    changed = sum(rendezvous("exp", k, before) != rendezvous("exp", k, after) for k in KEYS)
    return changed / len(KEYS)


def least_to_move(before: list[tuple[str, float]], after: list[tuple[str, float]]) -> float:
    """The share of keys that must move: half the total change in the variants' shares."""
    b_total, a_total = sum(w for _, w in before), sum(w for _, w in after)
    b, a = dict(before), dict(after)
    names = set(b) | set(a)
    return sum(abs(b.get(n, 0) / b_total - a.get(n, 0) / a_total) for n in names) / 2


def test_moving_weight_between_two_variants_moves_only_the_keys_that_must_move() -> None:
    before = [("control", 50), ("candidate", 50)]
    after = [("control", 40), ("candidate", 60)]
    assert least_to_move(before, after) == pytest.approx(0.10)
    assert moved(before, after) == pytest.approx(0.10, abs=0.01)
    # and only from the variant that lost weight to the one that gained it
    for key in KEYS[:5_000]:
        if rendezvous("exp", key, before) == "candidate":
            assert rendezvous("exp", key, after) == "candidate"


def test_a_change_over_several_variants_moves_close_to_the_minimum() -> None:
    before = [("control", 50), ("candidate", 30), ("terse", 20)]
    after = [("control", 40), ("candidate", 30), ("terse", 30)]
    least = least_to_move(before, after)
    assert least == pytest.approx(0.10)
    # measured 0.122 over these keys: the docs quote it
    assert least <= moved(before, after) <= least + 0.03
    # turning a variant on moves keys only into it
    on = [("control", 50), ("candidate", 30), ("terse", 20), ("new", 10)]
    assert moved(before, on) == pytest.approx(least_to_move(before, on), abs=0.01)


def test_slices_would_move_more_keys() -> None:
    """The alternative the docs compare with: cutting [0, 1) by cumulative weight moves keys
    between variants whose weights did not change."""

    def by_slice(key: str, weights: list[tuple[str, float]]) -> str:
        point = unit("exp", "", key) * sum(w for _, w in weights)
        for name, weight in weights:
            point -= weight
            if point < 0:
                return name
        return weights[-1][0]

    before = [("control", 50), ("candidate", 30), ("terse", 20)]
    after = [("control", 40), ("candidate", 30), ("terse", 30)]
    sliced = sum(by_slice(k, before) != by_slice(k, after) for k in KEYS) / len(KEYS)
    assert sliced > moved(before, after) + 0.03


def test_unkeyed_draws_follow_the_weights() -> None:
    allocator = FixedAllocator("exp", [("control", 75), ("candidate", 25), ("off", 0)])
    rng = random.Random(7)
    draws = Counter(allocator.unkeyed(rng) for _ in range(20_000))
    assert set(draws) == {("control", "unkeyed"), ("candidate", "unkeyed")}
    assert draws[("candidate", "unkeyed")] / 20_000 == pytest.approx(0.25, abs=0.02)


def test_an_allocator_needs_a_positive_weight() -> None:
    with pytest.raises(ValueError, match="no variant has a positive weight"):
        FixedAllocator("exp", [("control", 0)])


# ---------------------------------------------------------------- through routers


def experiment_config(sticky_by: str = "user", **experiment: Any) -> dict[str, Any]:
    return {
        "providers": {"m": {"type": "mock"}},
        "routes": {"chat": {"targets": ["m/a"]}},
        "experiments": {
            "e": {
                "route": "chat",
                "sticky_by": sticky_by,
                "variants": {
                    "control": {"weight": 50},
                    "candidate": {"weight": 30, "targets": ["m/b"]},
                    "terse": {"weight": 20, "system": "Be terse."},
                },
                **experiment,
            }
        },
        "logging": {"store": None},
    }


async def variants_of(router: AsyncRouter, users: list[str], **options: Any) -> list[str]:
    found = []
    for user in users:
        reply = await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"user": user, **options}
        )
        assert reply.llmroute.experiment == "e"
        found.append(reply.llmroute.variant or "")
    return found


USERS = [f"u{i}" for i in range(60)]


async def test_a_user_keeps_their_variant_across_two_routers() -> None:
    async with AsyncRouter(experiment_config(), env={}) as first:
        one = await variants_of(first, USERS)
        assert await variants_of(first, USERS) == one  # and across requests
    async with AsyncRouter(experiment_config(), env={}, seed=99) as second:
        assert await variants_of(second, USERS) == one
    assert set(one) == {"control", "candidate", "terse"}


_CHILD = """
import asyncio, json, sys
from llmroute import AsyncRouter
config, users = json.loads(sys.argv[1]), json.loads(sys.argv[2])

async def main():
    async with AsyncRouter(config, env={}) as router:
        out = []
        for user in users:
            reply = await router.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "Hi"}],
                llmroute={"user": user})
            out.append(reply.llmroute.variant)
        print(json.dumps(out))

asyncio.run(main())
"""


def test_a_user_keeps_their_variant_across_processes() -> None:
    """Two processes with different hash seeds (Python's `hash()` differs between them)
    assign each user the same variant, as this one does."""
    config = experiment_config()
    results = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT / "src")}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(config), json.dumps(USERS)],
            capture_output=True, text=True, env=env, timeout=120, check=True,
        )  # fmt: skip
        results.append(json.loads(done.stdout))
    weights = [("control", 50), ("candidate", 30), ("terse", 20)]
    here = [rendezvous("e", user, weights) for user in USERS]
    assert results[0] == results[1] == here


async def test_sticky_by_session_and_key() -> None:
    async with AsyncRouter(experiment_config("session"), env={}) as router:
        sessions = [f"s{i}" for i in range(30)]
        found = []
        for session in sessions:
            reply = await router.chat.completions.create(
                model="chat", messages=HI, llmroute={"session": session, "user": "same"}
            )
            found.append(reply.llmroute.variant)
        weights = [("control", 50), ("candidate", 30), ("terse", 20)]
        assert found == [rendezvous("e", s, weights) for s in sessions]
    async with AsyncRouter(experiment_config("key"), env={}) as router:
        reply = await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"key": "team-key", "user": "x"}
        )
        assert reply.llmroute.variant == rendezvous("e", "team-key", weights)


async def test_the_request_user_parameter_is_the_user_when_no_option_names_one() -> None:
    weights = [("control", 50), ("candidate", 30), ("terse", 20)]
    async with AsyncRouter(experiment_config(), env={}) as router:
        for user in USERS[:20]:
            reply = await router.chat.completions.create(model="chat", messages=HI, user=user)
            assert reply.llmroute.variant == rendezvous("e", user, weights)


@pytest.mark.parametrize(
    ("sticky_by", "options"), [("user", {}), ("request", {"user": "same", "session": "s"})]
)
async def test_requests_without_a_sticky_key_are_drawn_one_by_one(
    tmp_path: Path, sticky_by: str, options: dict[str, str]
) -> None:
    config = experiment_config(sticky_by)
    config["logging"] = {"store": f"sqlite:///{tmp_path / 'log.db'}"}
    async with AsyncRouter(config, env={}, seed=3) as router:
        seen: Counter[str | None] = Counter()
        for _ in range(300):
            reply = await router.chat.completions.create(
                model="chat", messages=HI, llmroute=options
            )
            seen[reply.llmroute.variant] += 1
        await router.flush()
    assert set(seen) == {"control", "candidate", "terse"}
    assert seen["control"] / 300 == pytest.approx(0.5, abs=0.1)
    from llmroute.observe import SqliteStore

    records = list(SqliteStore(tmp_path / "log.db").records())
    assert {r.assignment for r in records} == {"unkeyed"}
    assert {r.sticky_key for r in records} == {None}


async def test_outside_its_window_an_experiment_does_not_apply() -> None:
    for window in ({"ends": "2001-01-01"}, {"starts": "2999-01-01"}):
        async with AsyncRouter(experiment_config(**window), env={}) as router:
            for user in USERS[:10]:
                reply = await router.chat.completions.create(
                    model="chat", messages=HI, llmroute={"user": user}
                )
                info = reply.llmroute
                assert (info.experiment, info.variant, info.target) == (None, None, "m/a")
    async with AsyncRouter(
        experiment_config(starts="2001-01-01", ends="2999-12-31"), env={}
    ) as router:
        assert set(await variants_of(router, USERS[:30])) == {"control", "candidate", "terse"}


async def test_a_route_without_an_experiment_is_untouched() -> None:
    config = experiment_config()
    config["routes"]["plain"] = {"targets": ["m/c"]}
    async with AsyncRouter(config, env={}) as router:
        reply = await router.chat.completions.create(
            model="plain", messages=HI, llmroute={"user": "u1"}
        )
        assert (reply.llmroute.experiment, reply.llmroute.target) == (None, "m/c")
        direct = await router.chat.completions.create(model="m/zz", messages=HI)
        assert direct.llmroute.experiment is None

"""The Responses API's conversation state: stored responses and conversations rebuilt from them.

One contract, run against each store: in memory, a real redis-server (the `redis_url`
fixture: skipped when absent, failing when LLMROUTE_REQUIRE_REDIS=1) and a real SQLite file.
Then what each store does on its own: the memory store's bounds, the SQLite file shared by
several store objects (and writers), Redis's keys, TTLs and outages; the `responses` section
of the configuration; `ResponseNotFound`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import llmroute
from llmroute import RequestError
from llmroute.responses.config import ResponsesConfig
from llmroute.responses.state import (
    MemoryResponseStore,
    RedisResponseStore,
    ResponseNotFound,
    ResponseNotStored,
    ResponseStore,
    ResponseStoreUnavailable,
    SqliteResponseStore,
    StoredResponse,
    conversation,
    input_items,
    store_from_config,
)
from llmroute.responses.state_base import dump_stored
from llmroute.responses.state_sqlite import PURGE_INTERVAL, SCHEMA_VERSION, WALK_QUERY
from llmroute.stores.redis import RedisConnection

pytestmark = pytest.mark.anyio

RETENTION = 3600.0


class FakeClock:
    """Unix time that moves only when told (from now, so that Redis TTLs are real ones);
    `monotonic` is the real one (the Redis outage breaker's)."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def redis_store(
    url: str, clock: Any, *, timeout: float = 2.0, **options: Any
) -> RedisResponseStore:
    connection = RedisConnection(
        url, timeout=timeout, retry_interval=1.0, purpose="responses", clock=clock
    )
    return RedisResponseStore(connection, clock=clock, **options)


@pytest.fixture(params=["memory", "redis", "redis-cluster", "redis-sentinel", "sqlite"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[ResponseStore]:
    made: ResponseStore
    if request.param == "memory":
        made = MemoryResponseStore(100, clock, retention=RETENTION)
    elif request.param == "redis":
        made = redis_store(request.getfixturevalue("redis_url"), clock, retention=RETENTION)
    elif request.param.startswith("redis-"):  # a conversation's keys share its scope's slot
        setup = request.getfixturevalue(request.param.replace("-", "_"))
        setup.flush()
        made = redis_store(setup.url, clock, retention=RETENTION)
    else:
        made = SqliteResponseStore(tmp_path / "state.db", clock=clock, retention=RETENTION)
    try:
        yield made
    finally:
        await made.aclose()


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant(text: str, item_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def turn(
    store: ResponseStore,
    clock: FakeClock,
    response_id: str,
    previous: str | None = None,
    *,
    scope: str = "",
    inputs: list[dict[str, Any]] | None = None,
) -> StoredResponse:
    """A stored response as the pipeline would make it: one question, one answer."""
    created = clock.time()
    output = [assistant(f"answer to {response_id}", f"msg_{response_id}")]
    return StoredResponse(
        id=response_id,
        scope=scope,
        created_at=created,
        expires_at=store.expires_at(created),
        previous_response_id=previous,
        model="chat",
        input_items=inputs if inputs is not None else [user(f"question of {response_id}")],
        output_items=output,
        response={
            "id": response_id,
            "object": "response",
            "created_at": created,
            "status": "completed",
            "model": "chat",
            "output": output,
            "previous_response_id": previous,
            "metadata": {"note": "ünïcode ✓"},
        },
    )


async def three_turns(store: ResponseStore, clock: FakeClock, scope: str = "") -> None:
    await store.put(turn(store, clock, "resp_1", scope=scope))
    await store.put(turn(store, clock, "resp_2", "resp_1", scope=scope))
    await store.put(turn(store, clock, "resp_3", "resp_2", scope=scope))


# ---------------------------------------------------------------- the contract, every store


async def test_put_get_delete(store: ResponseStore, clock: FakeClock) -> None:
    stored = turn(store, clock, "resp_a", scope="key-1")
    assert await store.get("key-1", "resp_a") is None
    await store.put(stored)
    assert await store.get("key-1", "resp_a") == stored
    assert await store.delete("key-1", "resp_a") is True
    assert await store.get("key-1", "resp_a") is None
    assert await store.delete("key-1", "resp_a") is False
    assert await store.check() is None


async def test_put_replaces_what_was_stored_under_the_id(
    store: ResponseStore, clock: FakeClock
) -> None:
    await store.put(turn(store, clock, "resp_a"))
    newer = turn(store, clock, "resp_a", inputs=[user("changed")])
    await store.put(newer)
    assert await store.get("", "resp_a") == newer


async def test_a_response_is_invisible_under_another_scope(
    store: ResponseStore, clock: FakeClock
) -> None:
    await three_turns(store, clock, scope="alice")
    for response_id in ("resp_1", "resp_2", "resp_3"):
        assert await store.get("bob", response_id) is None
        assert await store.get("", response_id) is None
    with pytest.raises(ResponseNotFound) as info:
        await conversation(store, "bob", "resp_3", max_turns=10)
    assert info.value.response_id == "resp_3"
    with pytest.raises(ResponseNotFound):
        await input_items(store, "bob", "resp_3")
    assert await store.delete("bob", "resp_3") is False
    assert await store.get("alice", "resp_3") is not None  # not deleted by bob's attempt

    # bob's own response under the same id is his, and leaves alice's alone
    await store.put(turn(store, clock, "resp_1", scope="bob", inputs=[user("bob's")]))
    assert len(await conversation(store, "alice", "resp_3", max_turns=10)) == 6
    assert await conversation(store, "bob", "resp_1", max_turns=10) == [
        user("bob's"),
        assistant("answer to resp_1", "msg_resp_1"),
    ]


async def test_a_link_is_followed_only_within_its_scope(
    store: ResponseStore, clock: FakeClock
) -> None:
    """bob's response naming alice's as its previous one finds nothing of alice's."""
    await store.put(turn(store, clock, "resp_1", scope="alice"))
    await store.put(turn(store, clock, "resp_2", "resp_1", scope="bob"))
    with pytest.raises(ResponseNotFound) as info:
        await conversation(store, "bob", "resp_2", max_turns=10)
    assert info.value.response_id == "resp_1"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a:b", "c"), ("a", "b:c")),
        (("a%3Ab", "c"), ("a:b", "c")),
        (("", "k:resp_1"), ("k", "resp_1")),
        (("ключ", "resp 1/x"), ("ключ", "resp%201%2Fx")),
    ],
)
async def test_scopes_and_ids_with_separators_never_meet(
    store: ResponseStore,
    clock: FakeClock,
    first: tuple[str, str],
    second: tuple[str, str],
) -> None:
    await store.put(turn(store, clock, first[1], scope=first[0]))
    assert await store.get(*second) is None
    await store.put(turn(store, clock, second[1], scope=second[0], inputs=[user("second")]))
    one, two = await store.get(*first), await store.get(*second)
    assert one is not None and two is not None
    assert (one.scope, one.id) == first and (two.scope, two.id) == second
    assert two.input_items == [user("second")] != one.input_items


async def test_an_expired_response_is_gone(store: ResponseStore, clock: FakeClock) -> None:
    await three_turns(store, clock)
    clock.advance(RETENTION - 1)
    assert await store.get("", "resp_3") is not None
    assert len(await conversation(store, "", "resp_3", max_turns=10)) == 6
    clock.advance(2)
    assert await store.get("", "resp_3") is None
    with pytest.raises(ResponseNotFound):
        await conversation(store, "", "resp_3", max_turns=10)
    assert await store.delete("", "resp_3") is False


async def test_a_response_stored_already_expired_is_not_kept(
    store: ResponseStore, clock: FakeClock
) -> None:
    await store.put(turn(store, clock, "resp_a"))
    await store.put(replace(turn(store, clock, "resp_a"), expires_at=clock.time() - 1))
    assert await store.get("", "resp_a") is None


async def test_three_turns_rebuild_the_conversation_root_first(
    store: ResponseStore, clock: FakeClock
) -> None:
    await three_turns(store, clock, scope="k")
    expected = [
        user("question of resp_1"),
        assistant("answer to resp_1", "msg_resp_1"),
        user("question of resp_2"),
        assistant("answer to resp_2", "msg_resp_2"),
        user("question of resp_3"),
        assistant("answer to resp_3", "msg_resp_3"),
    ]
    assert await conversation(store, "k", "resp_3", max_turns=3) == expected
    assert await conversation(store, "k", "resp_2", max_turns=3) == expected[:4]
    assert await conversation(store, "k", "resp_1", max_turns=1) == expected[:2]
    # the model's input for resp_3: the history, then resp_3's own input, not its output
    assert await input_items(store, "k", "resp_3") == expected[:5]
    assert await input_items(store, "k", "resp_1") == expected[:1]


async def test_a_missing_ancestor_is_not_found_by_its_id(
    store: ResponseStore, clock: FakeClock
) -> None:
    await three_turns(store, clock)
    assert await store.delete("", "resp_1")
    assert await store.get("", "resp_3") is not None
    with pytest.raises(ResponseNotFound) as info:
        await conversation(store, "", "resp_3", max_turns=10)
    assert info.value.response_id == "resp_1"
    assert str(info.value) == "Response with id 'resp_1' not found."
    assert info.value.param == "previous_response_id"
    with pytest.raises(ResponseNotFound) as unknown:
        await input_items(store, "", "resp_unknown")
    assert unknown.value.response_id == "resp_unknown"
    assert unknown.value.param is None


async def test_an_expired_ancestor_is_not_found(store: ResponseStore, clock: FakeClock) -> None:
    first = turn(store, clock, "resp_1")
    await store.put(replace(first, expires_at=clock.time() + 10))
    await store.put(turn(store, clock, "resp_2", "resp_1"))
    await store.put(turn(store, clock, "resp_3", "resp_2"))
    clock.advance(11)
    assert await store.get("", "resp_3") is not None
    with pytest.raises(ResponseNotFound) as info:
        await conversation(store, "", "resp_3", max_turns=10)
    assert info.value.response_id == "resp_1"


async def test_a_chain_longer_than_max_turns_is_refused(
    store: ResponseStore, clock: FakeClock
) -> None:
    await three_turns(store, clock)
    await store.put(turn(store, clock, "resp_4", "resp_3"))
    assert len(await conversation(store, "", "resp_4", max_turns=4)) == 8
    with pytest.raises(RequestError, match=r"more than 3 stored turns") as info:
        await conversation(store, "", "resp_4", max_turns=3)
    assert not isinstance(info.value, ResponseNotFound)
    assert info.value.param == "previous_response_id"
    with pytest.raises(RequestError, match="max_turns"):
        await input_items(store, "", "resp_4", max_turns=2)


async def test_a_cycle_of_links_ends_at_max_turns(store: ResponseStore, clock: FakeClock) -> None:
    await store.put(turn(store, clock, "resp_1", "resp_2"))
    await store.put(turn(store, clock, "resp_2", "resp_1"))
    with pytest.raises(RequestError, match="more than 5"):
        await conversation(store, "", "resp_1", max_turns=5)


async def test_what_is_stored_and_read_is_a_copy(store: ResponseStore, clock: FakeClock) -> None:
    stored = turn(store, clock, "resp_a")
    await store.put(stored)
    stored.input_items.append(user("added after put"))
    stored.response["status"] = "changed after put"
    got = await store.get("", "resp_a")
    assert got is not None
    assert got.input_items == [user("question of resp_a")]
    assert got.response["status"] == "completed"
    got.output_items.clear()
    (await conversation(store, "", "resp_a", max_turns=1)).clear()
    again = await store.get("", "resp_a")
    assert again is not None and again.output_items != []


async def test_a_response_over_the_size_bound_is_not_stored(
    store: ResponseStore, clock: FakeClock
) -> None:
    store.max_entry_size = 2_000  # type: ignore[attr-defined]
    await store.put(turn(store, clock, "resp_a"))
    with pytest.raises(ResponseNotStored, match="max_entry_size"):
        await store.put(turn(store, clock, "resp_a", inputs=[user("x" * 3_000)]))
    stored = await store.get("", "resp_a")  # the older one stays
    assert stored is not None and stored.input_items == [user("question of resp_a")]


async def test_what_is_not_json_is_not_stored(store: ResponseStore, clock: FakeClock) -> None:
    for bad in ({"type": "message", "content": {1, 2}}, {"type": "x", "n": float("nan")}):
        with pytest.raises(ResponseNotStored, match="not JSON"):
            await store.put(turn(store, clock, "resp_a", inputs=[bad]))
    assert await store.get("", "resp_a") is None


async def test_overlong_ids_find_nothing(store: ResponseStore, clock: FakeClock) -> None:
    long = "r" * 100_000
    assert await store.get("", long) is None
    assert await store.get(long, "resp_a") is None
    assert await store.delete("", long) is False
    with pytest.raises(ResponseNotFound):
        await conversation(store, "", long, max_turns=5)
    with pytest.raises(ResponseNotStored):
        await store.put(turn(store, clock, long))


# ---------------------------------------------------------------- the memory store


async def test_memory_evicts_the_least_recently_used_past_max_responses(
    clock: FakeClock,
) -> None:
    store = MemoryResponseStore(3, clock)
    for name in ("a", "b", "c"):
        await store.put(turn(store, clock, name))
    assert await store.get("", "a") is not None  # a is now more recent than b
    await store.put(turn(store, clock, "d"))
    assert len(store) == 3 and store.evictions == 1
    assert await store.get("", "b") is None
    assert [await store.get("", n) is not None for n in ("a", "c", "d")] == [True] * 3


async def test_memory_reading_a_conversation_keeps_it_from_eviction(clock: FakeClock) -> None:
    store = MemoryResponseStore(4, clock)
    await three_turns(store, clock)
    await store.put(turn(store, clock, "idle"))
    await conversation(store, "", "resp_3", max_turns=10)
    await store.put(turn(store, clock, "resp_4", "resp_3"))
    assert await store.get("", "idle") is None
    assert len(await conversation(store, "", "resp_4", max_turns=10)) == 8


async def test_memory_is_bounded_by_bytes(clock: FakeClock) -> None:
    store = MemoryResponseStore(1_000, clock, max_size=5_000)
    one = len(dump_stored(turn(store, clock, "r00")))
    for number in range(20):
        await store.put(turn(store, clock, f"r{number:02}"))
    assert store.size <= 5_000
    assert len(store) == 5_000 // one
    assert await store.get("", "r19") is not None and await store.get("", "r00") is None
    await store.delete("", "r19")
    assert store.size == (len(store)) * one


async def test_memory_sweeps_expired_responses_without_reading_them(clock: FakeClock) -> None:
    store = MemoryResponseStore(100, clock, retention=10)
    for name in ("a", "b", "c"):
        await store.put(turn(store, clock, name))
    clock.advance(11)
    assert len(store) == 3  # not read, not swept yet
    clock.advance(60)
    await store.put(turn(store, clock, "d"))  # a put sweeps, at most once a minute
    assert len(store) == 1
    clock.advance(11)
    assert store.sweep() == 1 and len(store) == 0 and store.size == 0


# ---------------------------------------------------------------- the SQLite store


def sqlite_store(path: Path, clock: Any, **options: Any) -> SqliteResponseStore:
    return SqliteResponseStore(path, clock=clock, retention=RETENTION, **options)


async def test_two_sqlite_stores_on_one_file_see_each_others_writes(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "shared" / "state.db"
    one, two = sqlite_store(path, clock), sqlite_store(path, clock)
    try:
        await one.put(turn(one, clock, "resp_1", scope="k"))
        await two.put(turn(two, clock, "resp_2", "resp_1", scope="k"))
        await one.put(turn(one, clock, "resp_3", "resp_2", scope="k"))
        assert len(await conversation(two, "k", "resp_3", max_turns=5)) == 6
        assert await two.delete("k", "resp_1") is True
        assert await one.get("k", "resp_1") is None
        with pytest.raises(ResponseNotFound):
            await conversation(one, "k", "resp_3", max_turns=5)
    finally:
        await one.aclose()
        await two.aclose()


async def test_sqlite_writers_take_turns(tmp_path: Path, clock: FakeClock) -> None:
    """Two store objects (two connections, two threads) writing at once lose nothing."""
    path = tmp_path / "state.db"
    one, two, reader = (sqlite_store(path, clock) for _ in range(3))
    try:
        await asyncio.gather(
            *(one.put(turn(one, clock, f"one_{n}")) for n in range(40)),
            *(two.put(turn(two, clock, f"two_{n}")) for n in range(40)),
        )
        found = [await reader.get("", f"{w}_{n}") for w in ("one", "two") for n in range(40)]
        assert all(found)
    finally:
        for store in (one, two, reader):
            await store.aclose()


async def test_sqlite_stores_opening_a_new_file_at_once(tmp_path: Path, clock: FakeClock) -> None:
    """Processes starting together on a new file: one turns it to WAL and creates the table,
    the others wait for it rather than fail ("database is locked")."""
    for attempt in range(10):
        path = tmp_path / f"new-{attempt}.db"
        stores = [sqlite_store(path, clock) for _ in range(6)]
        try:
            await asyncio.gather(*(s.put(turn(s, clock, f"r{n}")) for n, s in enumerate(stores)))
            assert all([await stores[0].get("", f"r{n}") for n in range(6)])
        finally:
            for store in stores:
                await store.aclose()


async def test_sqlite_file_layout(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "state.db"
    store = sqlite_store(path, clock)
    await store.put(turn(store, clock, "resp_1"))
    await store.aclose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM stored_responses_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(stored_responses)")}
        assert "stored_responses_expires" in indexes
        plan = conn.execute(
            "EXPLAIN QUERY PLAN DELETE FROM stored_responses WHERE rowid IN (SELECT rowid "
            "FROM stored_responses WHERE expires_at <= 1 LIMIT 5)"
        ).fetchall()
        assert "stored_responses_expires" in str(plan)
        # a conversation's every step is a lookup by (scope, id), never a scan of the table
        plan = conn.execute(
            "EXPLAIN QUERY PLAN " + WALK_QUERY, {"scope": "", "id": "r", "limit": 5, "now": 0}
        ).fetchall()
        steps = [row[-1] for row in plan if "stored_responses" in row[-1]]
        assert len(steps) == 2 and all("(scope=? AND id=?)" in step for step in steps), steps


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "state.db"
    first = sqlite_store(path, clock)
    assert await first.check() is None
    await first.aclose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE stored_responses_schema SET version = 99")
        conn.commit()
    store = sqlite_store(path, clock)
    try:
        problem = await store.check()
        assert problem is not None and "newer llmroute" in problem
        with pytest.raises(ResponseStoreUnavailable, match="newer llmroute"):
            await store.get("", "resp_1")
    finally:
        await store.aclose()


async def test_sqlite_shares_a_file_with_the_request_log(tmp_path: Path, clock: FakeClock) -> None:
    from llmroute.observe.sqlite import SCHEMA_VERSION as LOG_VERSION
    from llmroute.observe.sqlite import SqliteStore

    path = tmp_path / "llmroute.db"
    store = sqlite_store(path, clock)
    try:
        await store.put(turn(store, clock, "resp_1"))
        assert SqliteStore(path).schema_version() == LOG_VERSION
        assert await store.get("", "resp_1") is not None
    finally:
        await store.aclose()


async def test_sqlite_deletes_expired_rows(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "state.db"
    store = sqlite_store(path, clock)

    def rows() -> int:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return int(conn.execute("SELECT count(*) FROM stored_responses").fetchone()[0])

    try:
        for number in range(3):
            await store.put(turn(store, clock, f"old_{number}"))
        clock.advance(RETENTION + 1)
        assert rows() == 3
        assert await store.purge() == 3
        assert rows() == 0
        for number in range(3):
            await store.put(turn(store, clock, f"old_{number}"))
        clock.advance(RETENTION + PURGE_INTERVAL)
        await store.put(turn(store, clock, "new"))  # queues a purge on the store's thread...
        assert await store.get("", "new") is not None  # ...which runs before this get
        assert rows() == 1
    finally:
        await store.aclose()


async def test_sqlite_waits_for_a_lock_off_the_event_loop(tmp_path: Path, clock: FakeClock) -> None:
    """Another process holding the write lock: the loop runs on; the put fails after the
    timeout with a clear error."""
    path = tmp_path / "state.db"
    store = sqlite_store(path, clock, timeout=0.5)
    assert await store.check() is None
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    task = asyncio.create_task(ticker())
    try:
        started = time.monotonic()
        with pytest.raises(ResponseStoreUnavailable, match="locked"):
            await store.put(turn(store, clock, "resp_1"))
        waited = time.monotonic() - started
        assert 0.4 < waited < 5
        assert ticks >= 10  # the loop was not blocked while SQLite waited
    finally:
        task.cancel()
        holder.execute("ROLLBACK")
        holder.close()
    await store.put(turn(store, clock, "resp_1"))  # the lock is gone: it works again
    await store.aclose()
    with pytest.raises(ResponseStoreUnavailable, match="closed"):
        await store.get("", "resp_1")


# ---------------------------------------------------------------- the Redis store


async def test_redis_key_layout_and_ttl(redis_url: str, clock: FakeClock) -> None:
    import redis

    store = redis_store(redis_url, clock, retention=RETENTION)
    raw = redis.Redis.from_url(redis_url)
    try:
        await store.put(turn(store, clock, "resp_1", scope="team:a"))
        await store.put(turn(store, clock, "resp_2", "resp_1", scope="team:a"))
        key = "llmroute:responses:{scope:team%3Aa}:resp_2"
        assert store.key("team:a", "resp_2") == key
        assert sorted(raw.keys("*")) == [
            b"llmroute:responses:{scope:team%3Aa}:resp_1",
            key.encode(),
        ]
        assert RETENTION * 1000 - 5_000 < raw.pttl(key) <= RETENTION * 1000
        assert raw.get(key).startswith(b"1resp_1\n{")  # type: ignore[union-attr]
    finally:
        raw.close()
        await store.aclose()


async def test_redis_expires_keys_itself(redis_url: str) -> None:
    import redis

    store = redis_store(redis_url, llmroute.SystemClock(), retention=0.3)
    raw = redis.Redis.from_url(redis_url)
    try:
        created = time.time()
        stored = turn(store, FakeClock(), "resp_1")
        await store.put(replace(stored, created_at=created, expires_at=store.expires_at(created)))
        assert raw.exists("llmroute:responses:{scope:}:resp_1") == 1
        await asyncio.sleep(0.5)
        assert raw.exists("llmroute:responses:{scope:}:resp_1") == 0
        assert await store.get("", "resp_1") is None
    finally:
        raw.close()
        await store.aclose()


async def test_redis_reads_a_conversation_in_one_round_trip(
    redis_url: str, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock)
    try:
        await store.put(turn(store, clock, "resp_0"))
        for number in range(1, 150):
            await store.put(turn(store, clock, f"resp_{number}", f"resp_{number - 1}"))
        calls = 0
        call = store._redis.call

        async def counted(operation: Any) -> Any:
            nonlocal calls
            calls += 1
            return await call(operation)

        store._redis.call = counted  # type: ignore[method-assign]
        assert len(await conversation(store, "", "resp_149", max_turns=150)) == 300
        assert calls == 1
        with pytest.raises(RequestError, match="more than 149"):
            await conversation(store, "", "resp_149", max_turns=149)
    finally:
        await store.aclose()


async def test_redis_ignores_values_it_did_not_write(redis_url: str, clock: FakeClock) -> None:
    import redis

    store = redis_store(redis_url, clock)
    raw = redis.Redis.from_url(redis_url)
    try:
        await three_turns(store, clock)
        raw.set("llmroute:responses:{scope:}:resp_2", b"not a stored response")
        assert await store.get("", "resp_2") is None
        with pytest.raises(ResponseNotFound) as info:
            await conversation(store, "", "resp_3", max_turns=10)
        assert info.value.response_id == "resp_2"
        # a value copied under another scope's key is not that scope's
        raw.copy("llmroute:responses:{scope:}:resp_1", "llmroute:responses:{scope:bob}:resp_1")
        assert await store.get("bob", "resp_1") is None
        with pytest.raises(ResponseNotFound):
            await conversation(store, "bob", "resp_1", max_turns=10)
    finally:
        raw.close()
        await store.aclose()


def need_redis_package() -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        if os.environ.get("LLMROUTE_REQUIRE_REDIS") == "1":
            pytest.fail("LLMROUTE_REQUIRE_REDIS=1 but the redis package is not installed")
        pytest.skip("the redis package is not installed (pip install 'llmroute[redis]')")


@pytest.mark.parametrize("server", ["dead_redis", "silent_redis"])
async def test_redis_unavailable_is_a_clear_error_not_a_hang(
    request: pytest.FixtureRequest, server: str, clock: FakeClock
) -> None:
    store = redis_store(request.getfixturevalue(server), clock, timeout=0.2)
    stored = turn(store, clock, "resp_1")
    try:
        started = time.monotonic()
        with pytest.raises(ResponseStoreUnavailable, match="responses: Redis is unavailable"):
            await store.get("", "resp_1")
        assert time.monotonic() - started < 2
        for operation in (
            store.put(stored),
            store.delete("", "resp_1"),
            conversation(store, "", "resp_1", max_turns=5),
        ):  # resting after the failure: refused at once
            started = time.monotonic()
            with pytest.raises(ResponseStoreUnavailable):
                await operation
            assert time.monotonic() - started < 0.1
        problem = await store.check()
        assert problem is not None and "Redis is unavailable" in problem
    finally:
        await store.aclose()


# ---------------------------------------------------------------- configuration


def test_the_responses_section_defaults() -> None:
    config = llmroute.Config().responses
    assert config.store == "memory"
    assert config.retention == 30 * 86_400
    assert (config.max_responses, config.max_turns) == (10_000, 100)


@pytest.mark.parametrize(
    ("text", "store"),
    [
        ("store: off", "off"),
        ("store: null", "off"),
        ("store: memory", "memory"),
        ("store: redis://localhost:6379/2", "redis://localhost:6379/2"),
        ("store: rediss://h:6380", "rediss://h:6380"),
        ("store: unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("store: sqlite:///state.db", "sqlite:///state.db"),
    ],
)
def test_the_store_is_named_by_url(text: str, store: str) -> None:
    document = {"responses": yaml.safe_load(text)}
    config = llmroute.Config.model_validate(document)
    assert config.responses.store == store
    jsonschema.validate(document, llmroute.Config.model_json_schema())


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"store": "memory://"}, "responses.store"),
        ({"store": "postgres://db"}, "responses.store"),
        ({"store": "sqlite:///"}, "responses.store"),
        ({"store": True}, "responses.store"),
        ({"retention": "forever"}, "responses.retention"),
        ({"retention": 0}, "responses.retention"),
        ({"max_turns": 0}, "responses.max_turns"),
        ({"max_responses": 0}, "responses.max_responses"),
        ({"max_entry_size": "lots"}, "responses.max_entry_size"),
        ({"colour": "red"}, "responses.colour"),
    ],
)
def test_a_bad_responses_section_names_the_field(section: dict[str, Any], path: str) -> None:
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.AsyncRouter({"responses": section}, env={})
    assert info.value.path == path


def test_durations_and_sizes_are_parsed() -> None:
    config = llmroute.Config.model_validate(
        {"responses": {"retention": "7d", "timeout": "500ms", "max_entry_size": "1MiB"}}
    ).responses
    assert (config.retention, config.timeout, config.max_entry_size) == (604_800, 0.5, 1_048_576)


async def test_store_from_config(tmp_path: Path, clock: FakeClock) -> None:
    assert store_from_config(ResponsesConfig(store="off"), clock) is None
    memory = store_from_config(ResponsesConfig(max_responses=7, retention=60), clock)
    assert isinstance(memory, MemoryResponseStore)
    assert (memory.max_responses, memory.retention) == (7, 60)
    assert memory.expires_at(100.0) == 160.0
    path = tmp_path / "x.db"
    sqlite = store_from_config(ResponsesConfig(store=f"sqlite:///{path}"), clock)
    assert isinstance(sqlite, SqliteResponseStore) and sqlite.path == path
    assert not path.exists()  # created on first use
    await sqlite.aclose()
    need_redis_package()
    remote = store_from_config(
        ResponsesConfig(store="redis://127.0.0.1:1/0", prefix="app:state"), clock
    )
    assert isinstance(remote, RedisResponseStore)
    assert remote.key("k", "resp_1") == "app:state:{scope:k}:resp_1"
    await remote.aclose()


# ---------------------------------------------------------------- the error


def test_response_not_found_is_a_documented_404() -> None:
    import openai

    from llmroute.server.errors import from_exception

    error = ResponseNotFound("resp_x")
    assert type(error).__bases__ == (llmroute.RequestError,)
    assert str(error) == "Response with id 'resp_x' not found."
    served = from_exception(error)
    assert served.status == 404
    assert served.error_object() == {
        "message": "Response with id 'resp_x' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert isinstance(llmroute.to_openai_error(error), openai.NotFoundError)
    tree = inspect.getdoc(importlib.import_module("llmroute._errors")) or ""
    assert "│   ├── ResponseNotFound " in tree
    docs = (Path(__file__).parent.parent / "docs" / "errors.md").read_text()
    assert "│   ├── ResponseNotFound " in docs and "| `ResponseNotFound` | 404 |" in docs

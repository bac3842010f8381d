"""The PostgreSQL store: its schema, its writer (batches, outages, backlog), retention,
feedback and stops, and several processes writing one database; against a real server."""

from __future__ import annotations

import logging
import multiprocessing
import random
import time
from typing import Any

import pytest

import llmroute
from _store_race import reads_beside_a_writer
from llmroute import TokenUsage
from llmroute.observe import AttemptRecord, Feedback, RequestRecord, SqliteStore
from llmroute.observe.analytics import Filters, query_stats
from llmroute.observe.dialect import StoreUnavailable
from llmroute.observe.explore import series
from llmroute.observe.feedback import ExperimentStop
from llmroute.observe.pg_schema import SCHEMA_VERSION
from llmroute.observe.postgres import PostgresStore
from llmroute.observe.rows import MAX_FEEDBACK_PER_REQUEST
from llmroute.observe.sinks import open_store
from llmroute.observe.sqlite import SCHEMA_VERSION as SQLITE_VERSION

T0 = 1_700_000_000.0


def record(i: int, **changes: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": f"r{i:05d}", "operation": "chat", "started_at": T0 + i,
        "request_model": "chat", "ended_at": T0 + i + 0.5, "route": "chat",
        "target": "p/m", "provider": "p", "model": "m", "status": "ok", "latency_s": 0.5,
        "usage": TokenUsage(10, 5), "cost_usd": 0.001, "properties": {"team": "a"},
        "attempts": [AttemptRecord("p/m", "p", "m", "first", latency_s=0.5)],
    }  # fmt: skip
    values.update(changes)
    return RequestRecord(**values)


def full_record() -> RequestRecord:
    return record(
        0, stream=True, ttft_s=0.1, usage=TokenUsage(100, 20, 30, 5, 7, estimated=True),
        finish_reasons=["stop"], user="ann", key="backend", team="search", session="s1",
        cache="miss", experiment="exp", variant="b", assignment="sticky", sticky_key="k1",
        off_variant=True, saved_usd=0.25, limit="rate", error_type="RateLimited",
        error="slow down", answered_by="p/m", strategy="latency", response_model="m-1",
        response_id="resp-1", prompt=[{"role": "user", "content": "hi"}],
        completion=[{"role": "assistant"}],
        attempts=[AttemptRecord("p/m", "p", "m", "first", "error", 429, "RateLimited",
                                "slow", 0.0, 0.1),
                  AttemptRecord("q/n", "q", "n", "failover", latency_s=0.4, started_s=0.1)],
    )  # fmt: skip


# ---------------------------------------------------------------- schema and round trip


def test_records_round_trip_as_in_sqlite(postgres_url: str, tmp_path: Any) -> None:
    store = PostgresStore(postgres_url)
    lite = SqliteStore(tmp_path / "same.db")
    batch = [full_record(), record(1, cost_usd=None, usage=None, attempts=[], properties={})]
    for each in (store, lite):
        each.write(batch)
        each.write([record(1)])  # the same request id again is skipped
        each.close()
    assert store.records() == lite.records() == batch
    assert store.records(since=T0 + 1) == [batch[1]]
    assert store.records(limit=1) == [batch[0]]
    assert store.schema_version() == SCHEMA_VERSION == SQLITE_VERSION
    assert store.status().written == 3 and store.status().waiting == 0


def test_a_read_beside_a_writer_sees_each_batch_whole(postgres_url: str) -> None:
    reads_beside_a_writer(lambda: PostgresStore(postgres_url), record)


def test_text_postgresql_cannot_hold_is_stored_replaced(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    store.write([record(1, error="bad\x00byte", user="a\x00b", properties={"k\x00": "v"})])
    (back,) = store.records()
    # JSON columns escape it (\u0000) and keep it; plain text has it replaced
    assert (back.error, back.user, back.properties) == ("bad\ufffdbyte", "a\ufffdb", {"k\x00": "v"})
    with store.connect() as conn:
        assert conn.execute("SELECT key FROM properties").fetchall() == [("k\ufffd",)]
    store.close()


def test_a_newer_or_foreign_database_is_refused(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE requests (id integer)")
    with pytest.raises(llmroute.ConfigError, match="not an llmroute store"):
        PostgresStore(postgres_url).records()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE requests")
    store = PostgresStore(postgres_url)
    assert store.records() == []
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE llmroute_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(llmroute.ConfigError, match="newer llmroute"):
        store.records()


def test_bad_urls_are_refused_and_passwords_never_shown(postgres_server: Any) -> None:
    with pytest.raises(llmroute.ConfigError, match="postgresql://"):
        PostgresStore("mysql://u:p@h/db")
    with pytest.raises(llmroute.ConfigError, match="invalid PostgreSQL URL"):
        PostgresStore("postgresql://u:secret@h:notaport:/db?x")
    store = PostgresStore(f"postgresql://llmroute:hunter2@127.0.0.1:{postgres_server.port}/nodb")
    assert "hunter2" not in repr(store) and "hunter2" not in store.location
    with pytest.raises(llmroute.ConfigError, match="cannot reach") as caught:
        store.records()
    assert "hunter2" not in str(caught.value)


def test_processes_opening_a_new_database_together_migrate_it_once(postgres_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        versions = pool.map(_open_and_write, [(postgres_url, n) for n in range(3)])
    assert versions == [SCHEMA_VERSION] * 3
    store = PostgresStore(postgres_url)
    assert len(store.records()) == 3 * 400
    # three writers' rollups add up to the rows: no lost or doubled update
    report = query_stats(store)
    sums = series(store, Filters(since=T0 - 86400, until=T0 + 86400), origin=T0 - 86400,
                  width=86400 * 2)  # fmt: skip
    assert sums[0].requests == report.total.requests == 1200
    assert sums[0].cost_usd == pytest.approx(report.total.cost_usd)


def _open_and_write(args: tuple[str, int]) -> int:
    url, n = args
    store = PostgresStore(url)
    rng = random.Random(n)
    records = [
        record(n * 1000 + i, started_at=T0 + rng.uniform(0, 3600), cost_usd=rng.randrange(1, 99) / 1024)
        for i in range(400)
    ]  # fmt: skip
    for i in range(0, 400, 50):
        store.write(records[i : i + 50])
    store.close()
    return store.schema_version()


# ---------------------------------------------------------------- outages


@pytest.fixture
def own_server(postgres_server: Any) -> Any:
    """A server of this test's own, which it may stop and start again."""
    from _postgres import PostgresServer

    server = PostgresServer(postgres_server.bindir)
    server.start()
    yield server
    server.stop()


def test_an_outage_keeps_the_records_and_writes_them_when_the_server_returns(
    own_server: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmroute.observe.postgres as pg

    url = own_server.create_database()
    monkeypatch.setattr(pg, "RETRY_FIRST", 0.0)  # retry on each batch: no waiting in a test
    store = PostgresStore(url)
    store.write([record(0)])
    own_server.stop(remove=False)
    with caplog.at_level(logging.WARNING, logger="llmroute.observe"):
        store.write([record(1), record(2)])  # kept, not raised: the request path never sees it
        store.write([record(3)])
        status = store.status()
        assert (status.waiting, status.outages, status.dropped) == (3, 1, 0)
        assert sum("unreachable" in r.message for r in caplog.records) == 1  # logged once
        own_server.launch()
        store.write([record(4)])
    assert store.status().waiting == 0
    assert "reachable again" in caplog.text
    assert [r.request_id for r in store.records()] == [f"r{i:05d}" for i in range(5)]
    store.close()


def test_a_full_backlog_drops_the_oldest_and_counts_them(
    own_server: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmroute.observe.postgres as pg

    url = own_server.create_database()
    monkeypatch.setattr(pg, "RETRY_FIRST", 0.0)
    store = PostgresStore(url, backlog=5)
    store.write([record(0)])
    own_server.stop(remove=False)
    with caplog.at_level(logging.ERROR, logger="llmroute.observe"):
        store.write([record(i) for i in range(1, 9)])
    assert (store.status().waiting, store.status().dropped) == (5, 3)
    assert "dropped" in caplog.text
    own_server.launch()
    store.close()  # writes what is kept
    assert [r.request_id for r in store.records()] == ["r00000"] + [
        f"r{i:05d}" for i in range(4, 9)
    ]
    assert store.status().dropped == 3


def test_closing_while_unreachable_counts_and_logs_the_loss(
    own_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(own_server.create_database())
    own_server.stop(remove=False)
    store.write([record(1), record(2)])
    with caplog.at_level(logging.ERROR, logger="llmroute.observe"):
        store.close()
    assert store.status().dropped == 2 and "2 kept record(s) lost" in caplog.text


def test_a_batch_the_server_refuses_is_raised_and_counted(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    with pytest.raises(Exception, match="out of range"):
        store.write([record(1, usage=TokenUsage(2**70, 1))])
    assert store.status().failed == 1 and store.status().waiting == 0
    store.write([record(2)])  # the next batch is written
    assert [r.request_id for r in store.records()] == ["r00002"]


# ---------------------------------------------------------------- retention


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_retention_deletes_what_is_older(
    kind: str, request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also on a machine booted seconds ago: the monotonic clock counts from boot, so a
    fresh container's is under the pruning interval, and "never pruned" must not read as
    "pruned at 0" (how CI on a new machine once kept the old record)."""
    from conftest import new_store_url

    real = time.monotonic
    since = real()
    monkeypatch.setattr(time, "monotonic", lambda: 5.0 + real() - since)  # 5 s after boot
    now = time.time()
    store = open_store(new_store_url(request, kind, tmp_path), retention=3600)
    old = record(1, started_at=now - 7200, properties={"a": "b"})
    store.write([old, record(2, started_at=now - 60)])
    assert [r.request_id for r in store.records()] == ["r00002"]
    store.close()
    reopened = open_store(new_store_url(request, kind, tmp_path) if kind == "sqlite" else store.url)
    with reopened.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM properties").fetchone()[0] == 1
        minutes = conn.execute("SELECT SUM(requests) FROM rollup_minute").fetchone()[0]
        hours = conn.execute("SELECT SUM(requests) FROM rollup_hour").fetchone()[0]
    assert (minutes, hours) == (1, 2)  # minute rollups go with the rows; hour and day stay


def test_a_retention_must_be_positive(postgres_url: str) -> None:
    with pytest.raises(llmroute.ConfigError, match="positive"):
        PostgresStore(postgres_url, retention=0)


# ---------------------------------------------------------------- feedback and stops


def test_feedback_and_stops(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    store.write([record(1, experiment="e", variant="a", sticky_key="k", key="app")])
    given = Feedback("fb-1", "thumbs", 1.0, "boolean", T0 + 5, "r00001")
    assert store.add_feedback(given)
    assert not store.add_feedback(Feedback("fb-2", "x", 1.0, "number", T0, "nope"))
    assert not store.add_feedback(Feedback("fb-3", "x", 1.0, "number", T0, "r00001"),
                                  scope="other-key")  # fmt: skip
    on_key = Feedback("fb-4", "score", 0.5, "number", T0 + 6, experiment="e", sticky_key="k")
    assert store.add_feedback(on_key)
    assert store.feedback() == [given, on_key]
    assert store.feedback(since=T0 + 6) == [on_key]
    for n in range(MAX_FEEDBACK_PER_REQUEST - 1):
        assert store.add_feedback(Feedback(f"fb-n{n}", "n", 1.0, "number", T0 + 7, "r00001"))
    with pytest.raises(llmroute.RequestError, match="feedback entries already"):
        store.add_feedback(Feedback("fb-over", "n", 1.0, "number", T0 + 8, "r00001"))
    first = ExperimentStop("e", "a", T0, 0.97, "thumbs", {"a": 10})
    assert store.stop_experiment(first) == first
    assert store.stop_experiment(ExperimentStop("e", "b", T0 + 1, 0.99, "x", {})) == first
    assert store.experiment_stop("e") == first and store.experiment_stop("f") is None


@pytest.mark.anyio
async def test_a_router_answers_through_an_outage_and_its_log_catches_up(
    own_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests are answered at full speed while the database is down; the recorder's
    status shows what the store keeps, and every request is in the log once it is back."""
    import llmroute.observe.postgres as pg

    monkeypatch.setattr(pg, "RETRY_FIRST", 0.0)
    url = own_server.create_database()
    config = {
        "providers": {"m": {"type": "mock", "latency": 0}},
        "routes": {"chat": {"targets": ["m/echo"]}},
        "logging": {"store": url, "flush_interval": 0.01},
    }
    messages = [{"role": "user", "content": "hi"}]
    async with llmroute.AsyncRouter(config) as router:
        ids = [(await router.chat.completions.create(model="chat", messages=messages))
               .llmroute.request_id for _ in range(3)]  # fmt: skip
        await router.flush()
        own_server.stop(remove=False)
        began = time.monotonic()
        for _ in range(20):
            reply = await router.chat.completions.create(model="chat", messages=messages)
            ids.append(reply.llmroute.request_id)
        assert time.monotonic() - began < 1.0  # no request waited for the database
        await router.flush()
        status = router.recording
        assert (status.store_waiting, status.store_outages, status.dropped) == (20, 1, 0)
        own_server.launch()
        reply = await router.chat.completions.create(model="chat", messages=messages)
        ids.append(reply.llmroute.request_id)
        await router.flush()
        assert router.recording.store_waiting == 0
        report = await router.analytics()
    assert report.total.requests == len(ids) == 24
    assert sorted(r.request_id for r in PostgresStore(url).records()) == sorted(ids)


def test_readers_are_kept_open_and_a_dead_one_is_replaced(own_server: Any) -> None:
    url = own_server.create_database()
    store = PostgresStore(url)
    store.write([record(1)])
    with store.connect() as first:
        pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]
    with store.connect(read_only=True) as again:  # the same session, now read-only
        assert again.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        with pytest.raises(Exception, match="read-only"):
            again.execute("DELETE FROM requests")
    own_server.stop(remove=False)
    own_server.launch()
    assert [r.request_id for r in store.records()] == ["r00001"]  # a new connection
    store.close()


@pytest.mark.anyio
async def test_an_adaptive_experiment_and_the_dashboard_through_an_outage(
    own_server: Any,
) -> None:
    """With the database down, an adaptive experiment assigns new sticky keys by its weights
    (the request is answered) and the dashboard's API says 503, not 404."""
    from llmroute.dashboard.api import DashboardSource, answer

    url = own_server.create_database()
    config = {
        "providers": {"m": {"type": "mock", "latency": 0}},
        "routes": {"chat": {"targets": ["m/a"]}},
        "logging": {"store": url, "flush_interval": 0.01},
        "experiments": {
            "thumbs": {
                "route": "chat", "mode": "adaptive", "metric": "thumbs_up", "refresh": 0.05,
                "variants": {"control": {"weight": 50}, "candidate": {"weight": 50}},
            }
        },
    }  # fmt: skip
    messages = [{"role": "user", "content": "hi"}]
    async with llmroute.AsyncRouter(config) as router:
        await router.chat.completions.create(model="chat", messages=messages,
                                             llmroute={"user": "ann"})  # fmt: skip
        await router.flush()
        own_server.stop(remove=False)
        reply = await router.chat.completions.create(
            model="chat", messages=messages, llmroute={"user": "bob"}
        )
        assert reply.llmroute.variant in ("control", "candidate")
        status, body = answer(DashboardSource(PostgresStore(url)), "overview", {})
        assert status == 503 and b"cannot reach" in body
        with pytest.raises(StoreUnavailable, match="cannot store feedback"):
            await router.feedback(reply.llmroute.request_id, "thumbs_up", True)
        own_server.launch()

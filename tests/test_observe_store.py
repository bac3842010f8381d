"""The SQLite store: migrations, crash safety, percentiles, ``llmroute stats``, cost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmroute
from _store_race import reads_beside_a_writer
from llmroute import Router, TokenUsage
from llmroute._prices import PriceBook, _calc
from llmroute.cli import main
from llmroute.observe import AttemptRecord, RequestRecord, SqliteStore, open_store, percentile
from llmroute.observe.sqlite import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from llmroute.routing import Target


def record(i: int, **changes: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": f"r{i}", "operation": "chat", "started_at": 1_700_000_000.0 + i,
        "request_model": "chat", "ended_at": 1_700_000_000.5 + i, "route": "chat",
        "target": "p/m", "provider": "p", "model": "m", "status": "ok", "latency_s": 0.5,
        "usage": TokenUsage(10, 5), "cost_usd": 0.001, "properties": {"team": "a"},
        "attempts": [AttemptRecord("p/m", "p", "m", "first", latency_s=0.5)],
    }  # fmt: skip
    values.update(changes)
    return RequestRecord(**values)


# ---------------------------------------------------------------- schema


def test_a_store_of_an_older_schema_opens_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with (
        contextlib.closing(sqlite3.connect(path)) as conn,
        conn,
    ):  # what llmroute's schema version 1 wrote
        conn.executescript(MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO requests (request_id, operation, started_at, request_model, stream, "
            "status, latency_s, provider, cost_usd) VALUES ('old', 'chat', 1.0, 'chat', 0, 'ok', "
            "0.25, 'p', 0.5)"
        )
    conn.close()
    store = SqliteStore(path)
    (old,) = store.records()
    assert (old.request_id, old.latency_s, old.cost_usd, old.experiment) == ("old", 0.25, 0.5, None)
    assert store.schema_version() == SCHEMA_VERSION == 9
    store.write([record(1, experiment="exp", variant="b", saved_usd=0.25)])
    store.close()
    new = SqliteStore(path).records()[1]
    assert (new.experiment, new.variant, new.saved_usd) == ("exp", "b", 0.25)


def test_a_store_of_schema_version_2_gains_key_and_team(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v2.db"
    with (
        contextlib.closing(sqlite3.connect(path)) as conn,
        conn,
    ):  # what llmroute's schema version 2 wrote
        for step in MIGRATIONS[:2]:
            conn.executescript(step)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(
            "INSERT INTO requests (request_id, operation, started_at, request_model, stream, "
            "status, latency_s, user, experiment) VALUES ('old', 'chat', 1.0, 'chat', 0, 'ok', "
            "0.25, 'ann', 'exp')"
        )
    conn.close()
    store = SqliteStore(path)
    (old,) = store.records()  # opening migrates
    assert (old.request_id, old.user, old.experiment, old.key, old.team) == (
        "old", "ann", "exp", None, None,
    )  # fmt: skip
    assert store.schema_version() == SCHEMA_VERSION
    with store.connect() as conn:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(requests)")}
    assert {"requests_key", "requests_team"} <= indexes
    store.write([record(1, key="backend", team="search"), record(2, key="ci")])
    store.close()
    (_, first, second) = SqliteStore(path).records()
    assert (first.key, first.team, second.key, second.team) == ("backend", "search", "ci", None)
    assert main(["stats", str(path), "--by", "key", "--by", "team", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {(r["group"]["key"], r["group"]["team"]): r["requests"] for r in rows} == {
        (None, None): 1, ("backend", "search"): 1, ("ci", None): 1,
    }  # fmt: skip
    assert main(["stats", str(path), "--where", "team=search", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["requests"] == 1


def test_a_store_of_schema_version_3_gains_the_experiment_columns(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    with (
        contextlib.closing(sqlite3.connect(path)) as conn,
        conn,
    ):  # what llmroute's schema version 3 wrote
        for step in MIGRATIONS[:3]:
            conn.executescript(step)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(
            "INSERT INTO requests (request_id, operation, started_at, request_model, stream, "
            "status, experiment, variant) VALUES ('old', 'chat', 1.0, 'chat', 0, 'ok', 'exp', 'a')"
        )
    conn.close()
    store = SqliteStore(path)
    (old,) = store.records()  # opening migrates
    assert (old.variant, old.assignment, old.sticky_key, old.off_variant) == (
        "a",
        None,
        None,
        False,
    )
    store.write(
        [record(1, experiment="exp", variant="b", assignment="sticky", sticky_key="k1",
                off_variant=True),
         record(2, experiment="exp", variant="a", assignment="forced")]
    )  # fmt: skip
    store.close()
    (_, first, second) = SqliteStore(path).records()
    assert (first.assignment, first.sticky_key, first.off_variant) == ("sticky", "k1", True)
    assert (second.assignment, second.sticky_key, second.off_variant) == ("forced", None, False)


def write_at_once(stores: list[SqliteStore]) -> list[BaseException]:
    """Each store writes two records, all starting together; what each write raised."""
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def write(n: int) -> None:
        start.wait()
        try:
            stores[n].write([record(n), record(100 + n)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    return errors


def test_stores_writing_one_new_file_at_once_lose_nothing(tmp_path: Path) -> None:
    """Gateway workers start together on one log: each batch waits its turn for the write
    lock. (A deferred transaction, which reads the stored ids first, failed "database is
    locked" without waiting when another writer committed first: about one round in three.)"""
    for attempt in range(12):
        path = tmp_path / f"new-{attempt}.db"
        assert write_at_once([SqliteStore(path) for _ in range(6)]) == []
        assert len(SqliteStore(path).records()) == 12


def test_a_newer_or_foreign_database_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with contextlib.closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(llmroute.ConfigError, match="newer llmroute"):
        SqliteStore(newer).records()
    foreign = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(foreign)) as conn, conn:
        conn.execute("PRAGMA application_id = 42")
        conn.execute("PRAGMA user_version = 1")
    with pytest.raises(llmroute.ConfigError, match="not an llmroute store"):
        SqliteStore(foreign).records()


def test_records_round_trip(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    full = record(
        0, stream=True, ttft_s=0.1, usage=TokenUsage(100, 20, 30, 5, 7, estimated=True),
        finish_reasons=["stop"], user="ann", key="backend", team="search", session="s1",
        cache="miss", error=None,
        prompt=[{"role": "user", "content": "hi"}], completion=[{"role": "assistant"}],
    )  # fmt: skip
    store.write([full, record(1, cost_usd=None, usage=None, attempts=[])])
    store.write([record(1)])  # the same request id again is ignored
    store.close()
    assert store.records() == [full, record(1, cost_usd=None, usage=None, attempts=[])]
    assert store.records(since=1_700_000_001.0) == [store.records()[1]]


def test_a_new_store_and_its_wal_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: without care the files would be 0644
    try:
        store = SqliteStore(tmp_path / "logs" / "s.db")
        store.write([record(0)])
        files = sorted(tmp_path.glob("logs/s.db*"))
        assert [f.name for f in files] == ["s.db", "s.db-shm", "s.db-wal"]
        assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}
        store.close()
    finally:
        os.umask(old)


def test_an_existing_store_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    first.write([record(0)])
    first.close()
    path.chmod(0o640)  # an operator's choice, e.g. a group that reads the log
    store = SqliteStore(path)
    store.write([record(1)])
    store.close()
    assert path.stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- crash safety


CHILD = """
import asyncio, sys
from llmroute import AsyncRouter

async def main():
    router = AsyncRouter({
        "providers": {"p": {"type": "mock", "latency": "2ms"}},
        "routes": {"chat": {"targets": ["p/m"]}},
        "logging": {"store": "sqlite:///" + sys.argv[1], "batch_size": 20,
                    "flush_interval": "10ms"},
    }, env={})
    done = 0
    while True:
        await router.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
        done += 1
        print(done, flush=True)

asyncio.run(main())
"""


def writers_gone(db: Path, timeout: float = 30.0) -> None:
    """Wait until no process runs with `db` on its command line (a store's writer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = []
        for proc in Path("/proc").iterdir():
            try:
                running.append(str(db).encode() in (proc / "cmdline").read_bytes())
            except OSError:  # not a process, or it ended meanwhile
                continue
        if not any(running):
            return
        time.sleep(0.05)
    raise AssertionError(f"a writer of {db} still runs after {timeout} s")


def test_a_killed_process_loses_at_most_its_last_batch(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(db)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as child:  # fmt: skip
        assert child.stdout is not None
        done = 0
        deadline = time.monotonic() + 30
        while done < 300 and time.monotonic() < deadline:
            done = int(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read().split()
    done = int(rest[-1]) if rest else done
    assert done >= 300
    writers_gone(db)  # the orphaned writer process writes what its pipe still held
    stored = len(SqliteStore(db).records())
    assert done - 20 <= stored <= done + 1  # batch_size 20; the last request may be unprinted


def test_a_read_beside_a_writer_sees_each_batch_whole(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    reads_beside_a_writer(lambda: SqliteStore(path), record)


# ---------------------------------------------------------------- percentiles and stats


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=200), st.floats(0, 100))
def test_percentile_is_numpys_linear_interpolation(values: list[float], p: float) -> None:
    got = percentile(sorted(values), p)
    assert got == pytest.approx(float(np.percentile(values, p)), rel=1e-9, abs=1e-9)


def test_llmroute_stats_cli(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``llmroute stats`` over SQLite, then PostgreSQL: the same figures."""
    store = open_store(store_url)
    latencies = {"p": [0.1 * (i + 1) for i in range(10)], "q": [0.05, 0.5, 5.0]}
    records = [
        record(i * 10 + j, provider=name, target=f"{name}/m", latency_s=lat,
               status="error" if name == "q" and j == 0 else "ok",
               error_type="RateLimited" if name == "q" and j == 0 else None)
        for i, (name, values) in enumerate(latencies.items())
        for j, lat in enumerate(values)
    ]  # fmt: skip
    store.write(records)
    store.close()
    assert main(["stats", store_url, "--by", "provider", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["group"]["provider"]: row for row in report["rows"]}
    for name, values in latencies.items():
        assert rows[name]["requests"] == len(values)
        assert rows[name]["latency"]["p95"] == pytest.approx(np.percentile(values, 95))
    assert rows["q"]["error_rate"] == pytest.approx(1 / 3)
    assert report["total"]["cost_usd"] == pytest.approx(0.001 * 13)

    args = ["stats", store_url, "--where", "provider=q", "--format", "plain"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("Requests\n")
    assert "1 (33.3%)" in out and "4910 ms" in out  # p99 of 0.05, 0.5, 5
    assert main(["stats", "--store", store_url, "--by", "day", "--format", "plain"]) == 0
    assert "2023-11-14" in capsys.readouterr().out
    assert main(["stats", str(tmp_path / "missing.db")]) == 1
    assert "no llmroute store" in capsys.readouterr().err
    assert main(["stats", store_url, "--where", "colour=red"]) == 1
    assert "unknown filter 'colour'" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "other.db"), "--store", store_url]) == 1
    assert "give the store once" in capsys.readouterr().err


# ---------------------------------------------------------------- the blocking router


def test_the_blocking_router_records_on_its_loop(tmp_path: Path) -> None:
    ended: list[str] = []
    config = {
        "routes": {"chat": {"targets": ["mock/m"]}},
        "logging": {"store": f"sqlite:///{tmp_path / 'sync.db'}", "flush_interval": "1h"},
    }
    with Router(config, env={}) as router:
        router.add_hook("request_end", lambda r: ended.append(r.request_id))
        ids = [
            router.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}],
                llmroute={"properties": {"n": str(n)}},
            ).llmroute.request_id
            for n in range(3)
        ]  # fmt: skip
        report = router.analytics(by="property.n")
        assert ended == ids  # flushed by analytics()
        assert [r.group for r in report.rows] == [{"property.n": str(n)} for n in range(3)]
    assert [r.request_id for r in SqliteStore(tmp_path / "sync.db").records()] == ids


# ---------------------------------------------------------------- cost


@given(
    st.sampled_from([("openai", "gpt-4o-mini"), ("openai", "o3-mini"),
                     ("anthropic", "claude-3-5-sonnet-latest"), ("google", "gemini-1.5-pro")]),
    st.integers(0, 400_000), st.integers(0, 100), st.integers(0, 100), st.integers(0, 20_000),
    st.integers(0, 100), st.sampled_from([None, "flex", "priority"]),
)  # fmt: skip
def test_fast_prices_equal_genai_prices(
    model: tuple[str, str], tokens: int, read: int, write: int, output: int, reasoning: int,
    tier: str | None,
) -> None:  # fmt: skip
    book = PriceBook()
    cache_read = tokens * read // 100
    cache_write = (tokens - cache_read) * write // 100
    usage = TokenUsage(tokens, output, cache_read, cache_write, output * reasoning // 100)
    found = book._model(*model)
    assert found is not None
    from datetime import UTC, datetime

    context = {"service_tier": tier} if tier else None
    expected = _calc(found[1], found[0], usage, context, datetime.now(tz=UTC))
    assert book.cost(*model, usage, service_tier=tier) == pytest.approx(expected, rel=1e-9)


def test_unknown_models_cost_none_and_overrides_cost_their_price() -> None:
    book = PriceBook()
    usage = TokenUsage(1000, 200, cache_read=400)
    assert book.cost("openai", "no-such-model", usage) is None
    assert book.cost(None, "gpt-4o-mini", usage) is None
    ollama: Any = SimpleNamespace(name="ollama", adapter=SimpleNamespace(prices_id=None))
    # no price to compute: none is left for when the cost is read (each request's end, with
    # a log), for a provider genai-prices does not know or a model it has no price for
    assert book.pricer(Target("ollama/llama", ollama, "llama"), usage) is None
    openai: Any = SimpleNamespace(name="openai", adapter=SimpleNamespace(prices_id="openai"))
    unseen = book.pricer(Target("openai/other-model", openai, "other-model"), usage)
    assert unseen is not None and unseen() is None  # looked up when first read
    assert book.pricer(Target("openai/other-model", openai, "other-model"), usage) is None
    assert book.pricer(Target("openai/no-such-model", openai, "no-such-model"), usage) is None
    known = book.pricer(Target("openai/gpt-4o-mini", openai, "gpt-4o-mini"), usage)
    assert known is not None and known() == book.cost("openai", "gpt-4o-mini", usage) > 0
    price = llmroute.TargetConfig.model_validate(
        {
            "provider": "ollama",
            "model": "llama",
            "price": {"input": 2, "output": 8, "cache_read": 1},
        }
    ).price
    pricer = book.pricer(Target("ollama/llama", ollama, "llama", price=price), usage)
    assert pricer is not None
    assert pricer() == pytest.approx((600 * 2 + 400 * 1 + 200 * 8) / 1e6)

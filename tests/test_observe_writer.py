"""The SQLite store's writer process: the same rows and rollups as writing inline, nothing
lost on close, a dead child reported and replaced, a router's store written by it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import marshal
import os
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import llmroute
from llmroute import TokenUsage
from llmroute._config import LoggingConfig
from llmroute.observe import AttemptRecord, RequestRecord, SqliteStore
from llmroute.observe.rows import decode_record, encode_record
from llmroute.observe.sqlite import PLAN
from llmroute.observe.sqlite_writer import Plan, WriterProcess


def record(i: int, **changes: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": f"r{i}", "operation": "chat", "started_at": 1_700_000_000.0 + i * 7.5,
        "request_model": "chat", "ended_at": 1_700_000_000.5 + i * 7.5, "route": "chat",
        "target": f"p/m{i % 3}", "provider": "p", "model": f"m{i % 3}",
        "status": "error" if i % 5 == 0 else "ok", "latency_s": 0.01 * (1 + i % 17),
        "ttft_s": 0.002 * (1 + i % 4) if i % 2 else None, "usage": TokenUsage(10 + i, 5),
        "cost_usd": 0.001 * i if i % 4 else None, "properties": {"team": f"t{i % 2}"},
        "attempts": [AttemptRecord(f"p/m{i % 3}", "p", f"m{i % 3}", "first", latency_s=0.5)],
    }  # fmt: skip
    values.update(changes)
    return RequestRecord(**values)


def store_with_writer(path: Path) -> WriterProcess:
    """A store at `path` holding ``r0`` (created and migrated), and a writer process for it
    (not started)."""
    SqliteStore(path).write([record(0)])
    return WriterProcess(path, PLAN, timeout=1.0, cached_statements=4)


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted (rowids aside)."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        rows = {t: sorted(conn.execute(f"SELECT * FROM {t}"), key=repr) for t in tables}
    conn.close()
    return rows


def test_a_process_writes_what_inline_writes_rollups_and_histograms_included(
    tmp_path: Path,
) -> None:
    batches = [[record(i) for i in range(j, j + 40)] for j in range(0, 400, 40)]
    batches.append([record(3), record(999)])  # r3 is stored already: skipped
    stores = {w: SqliteStore(tmp_path / f"{w}.db", writer=w) for w in ("inline", "process")}
    for store in stores.values():
        for batch in batches:
            store.write(batch)
        store.close()
    inline, process = dump(tmp_path / "inline.db"), dump(tmp_path / "process.db")
    assert len(process["requests"]) == 401
    assert len(process["rollup_latency_minute"]) > 0 and len(process["rollup_hour"]) > 0
    assert process == inline
    assert [r.request_id for r in stores["process"].records()][:3] == ["r0", "r1", "r2"]


def test_close_ends_the_child_after_its_last_batch(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", writer="process")
    store.write([record(i) for i in range(5)])
    pid = store.writer_pid
    assert pid is not None and pid != os.getpid()
    store.close()
    assert store.writer_pid is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left
    assert len(store.records()) == 5
    store.write([record(5)])  # a write after close starts a new child
    store.close()
    assert len(store.records()) == 6


def test_a_dead_childs_batch_is_sent_again_to_a_new_child_and_stored_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    writer = store_with_writer(path)
    writer.start()
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert writer.write([encode_record(record(1))], None) == 1
    assert writer.pid not in (None, first)
    # a batch sent again after its commit (its answer lost) is not stored twice
    assert writer.write([encode_record(record(1)), encode_record(record(2))], None) == 1
    writer.close()
    assert [r.request_id for r in SqliteStore(path).records()] == ["r0", "r1", "r2"]


def test_a_child_that_keeps_dying_fails_the_batch_and_the_next_batch_starts_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    writer = store_with_writer(path)
    started = writer.start

    def start_and_kill() -> Any:  # every child dies before it can answer the batch
        child = started()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        return child

    monkeypatch.setattr(writer, "start", start_and_kill)
    with pytest.raises(RuntimeError, match=r"writer process .* ended twice"):
        writer.write([encode_record(record(1))], None)
    assert writer.pid is None
    monkeypatch.setattr(writer, "start", started)
    assert writer.write([encode_record(record(2))], None) == 1
    writer.close()
    assert [r.request_id for r in SqliteStore(path).records()] == ["r0", "r2"]


def test_the_child_outlives_a_sigterm_meant_for_its_parent(tmp_path: Path) -> None:
    """systemd stops a service by sending SIGTERM to all of its processes at once: the
    child goes on until its parent closes its input (or is gone)."""
    path = tmp_path / "s.db"
    writer = store_with_writer(path)
    writer.start()
    pid = writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    assert writer.write([encode_record(record(1))], None) == 1
    assert writer.pid == pid  # the same child answered
    writer.close()
    assert len(SqliteStore(path).records()) == 2


def test_an_error_in_the_child_rolls_its_batch_back_and_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).write([record(0)])
    broken = Plan(("request_id", "no_such_column"), (), (), (), ())
    writer = WriterProcess(path, broken, timeout=1.0, cached_statements=4)
    with pytest.raises(sqlite3.OperationalError, match="no_such_column"):
        writer.write([marshal.dumps((("r1", 1), [], []))], None)
    writer.close()
    assert [r.request_id for r in SqliteStore(path).records()] == ["r0"]


def test_values_of_subclasses_are_stored_as_their_base_type(tmp_path: Path) -> None:
    class Name(str):
        __slots__ = ()

    store = SqliteStore(tmp_path / "s.db", writer="process")
    store.write([record(1, user=Name("ann"), properties={"team": Name("a")})])
    store.close()
    (stored,) = store.records()
    assert (stored.user, stored.properties) == ("ann", {"team": "a"})


@pytest.mark.parametrize("python", ["missing", "not python", "uwsgi", "frozen"])
def test_without_a_process_the_store_writes_inline(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    python: str,
) -> None:
    # a missing interpreter; a program called python that is not one (it exits at once);
    # a host embedding Python (uWSGI) or a frozen application, whose executable would
    # start the application again: never run
    executable = {
        "missing": tmp_path / "python3",
        "not python": tmp_path / "python3.11",
        "uwsgi": tmp_path / "uwsgi",
        "frozen": tmp_path / "python",
    }[python]
    false = shutil.which("false")
    assert false is not None
    if python != "missing":
        executable.symlink_to(false)
    if python == "frozen":
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(executable))
    store = SqliteStore(tmp_path / "s.db", writer="process")
    with caplog.at_level(logging.WARNING, logger="llmroute.observe"):
        store.write([record(1)])
    assert store.writer == "inline"
    assert "cannot start a writer process" in caplog.text
    store.close()
    assert len(store.records()) == 1


@pytest.mark.anyio
async def test_a_routers_store_is_written_by_a_process_and_loses_nothing_on_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    router = llmroute.AsyncRouter(
        {
            "providers": {"p": {"type": "mock", "latency": "0ms"}},
            "routes": {"chat": {"targets": ["p/m"]}},
            "logging": {"store": f"sqlite:///{path}", "batch_size": 7},
            "telemetry": {"enabled": False},
        },
        env={},
    )
    assert LoggingConfig().writer == "process"  # the default this router has
    for _ in range(50):
        await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )
    await router.aclose()  # no flush: closing writes what is queued
    assert len(SqliteStore(path).records()) == 50
    assert router.recording.dropped == 0 and router.recording.sink_errors == 0


def test_an_encoded_record_decodes_to_itself() -> None:
    records = [
        record(1),
        record(2, stream=True, ttft_s=0.01, finish_reasons=["stop", "length"], user="ann",
               session="s", key="k", team="t", experiment="e", variant="b",
               assignment="sticky", sticky_key="d", off_variant=True, saved_usd=0.5,
               cache="hit", answered_by="cache", usage=None, properties={}, attempts=[]),
        record(3, status="error", error_type="ProviderTimeout", error="slow", limit=None,
               attempts=[AttemptRecord("p/m", "p", "m", "first", "error", 504, "ProviderTimeout",
                                       "slow", 0.0, 1.5),
                         AttemptRecord("p/n", "p", "n", "fallback", "ok", None, None, None,
                                       1.5, 0.25)]),
    ]  # fmt: skip
    for original in records:
        assert decode_record(encode_record(original)) == original


@pytest.mark.anyio
async def test_records_queued_encoded_reach_a_redactor_and_hooks_added_before_the_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    router = llmroute.AsyncRouter(
        {
            "providers": {"p": {"type": "mock", "latency": "0ms"}},
            "routes": {"chat": {"targets": ["p/m"]}},
            "logging": {"store": f"sqlite:///{path}", "flush_interval": "60s"},
            "telemetry": {"enabled": False},
        },
        env={},
    )
    ask = [{"role": "user", "content": "x"}]
    for _ in range(3):  # the store is all that reads them: queued encoded
        await router.chat.completions.create(model="chat", messages=ask, user="ann")
    ended: list[RequestRecord] = []
    router.add_hook("request_end", ended.append)
    router.set_redactor(lambda r: dataclasses.replace(r, user="redacted"))
    await router.chat.completions.create(model="chat", messages=ask, user="bob")
    await router.aclose()
    assert [r.user for r in ended] == ["redacted"] * 4
    stored = SqliteStore(path).records()
    assert [r.user for r in stored] == ["redacted"] * 4
    assert {r.status for r in stored} == {"ok"} and all(r.attempts for r in stored)


def test_a_forked_process_starts_its_own_writer(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", writer="process")
    store.write([record(1)])
    parents = store.writer_pid
    pid = os.fork()
    if pid == 0:  # the fork: its own child, not its parent's pipe
        code = 1
        try:
            store.write([record(2)])
            code = 0 if store.writer_pid not in (None, parents) else 1
            store.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.writer_pid == parents
    store.write([record(3)])
    store.close()
    assert [r.request_id for r in store.records()] == ["r1", "r2", "r3"]


def test_a_fork_that_never_writes_does_not_hold_up_its_parents_close(tmp_path: Path) -> None:
    """A fork holds copies of the pipe to its parent's writer: let go of at once, or the
    parent's close would wait (30 s, then kill) for a child that never sees its input end."""
    store = SqliteStore(tmp_path / "s.db", writer="process")
    store.write([record(1)])
    pid = os.fork()
    if pid == 0:  # the fork lives on without touching the store
        time.sleep(10)
        os._exit(0)
    try:
        started = time.monotonic()
        store.close()
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert took < 5
    assert [r.request_id for r in store.records()] == ["r1"]


@pytest.mark.anyio
async def test_the_first_request_queued_encoded_is_priced_by_the_worker_later_ones_at_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    router = llmroute.AsyncRouter(
        {
            "providers": {"p": {"type": "mock", "prompt_tokens": 100, "completion_tokens": 10}},
            "routes": {"chat": {"targets": [{"provider": "p", "model": "m",
                                             "price": {"input": 1.0, "output": 2.0}}]}},
            "logging": {"store": f"sqlite:///{path}", "flush_interval": "60s"},
        },
        env={},
    )  # fmt: skip
    reply = await router.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "x"}]
    )
    info = reply.llmroute
    assert info.pending_cost() is not None  # queued (encoded) without pricing it
    await router.flush()
    assert info.pending_cost() is not None  # the worker priced it with its own call
    # the prices loaded, a request is priced at its end (microseconds): nothing kept
    later = await router.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "x"}]
    )
    assert later.llmroute.pending_cost() is None
    await router.aclose()
    price = (100 * 1.0 + 10 * 2.0) / 1e6
    assert [r.cost_usd for r in SqliteStore(path).records()] == pytest.approx([price] * 2)
    assert info.cost_usd == pytest.approx(price)

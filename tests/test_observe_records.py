"""Stored records and analytics, checked against ground truth computed here.

The event loop runs on virtual time (looptime), so the mock providers'
scripted latencies are exactly the latencies llmroute measures.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmroute
from _helpers import HI
from _pipeline_parts import NO_OPTIONS, Scripted, catalog, chat_request, route_of
from llmroute import AsyncRouter, RouteInfo
from llmroute._types import ChatCompletion
from llmroute._wire_completion import wire_completion
from llmroute.experiments import sticky_digest
from llmroute.observe import RequestRecord, SqliteStore
from llmroute.observe.analytics import parse_time
from llmroute.observe.record import EXPERIMENT_STATE, ExperimentTag, build_record, response_facts
from llmroute.pipeline.stage import Outcome, RequestContext

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

N_CHAT = 40
N_SOLO = 12
A_PRICE = {"input": 1.0, "output": 2.0}
B_PRICE = {"input": 3.0, "output": 4.0, "cache_read": 0.5}


def a_latency(i: int) -> float:
    return (10 + (7 * i) % 50) / 1000


def a_fails(i: int) -> bool:
    return i % 5 == 0


def solo_fails(i: int) -> bool:
    return i % 4 == 0


def config(tmp_path: Path, **logging: Any) -> dict[str, Any]:
    a_script = [
        {"status": 503 if a_fails(i) else 200, "latency": f"{a_latency(i) * 1000:g}ms"}
        for i in range(N_CHAT)
    ]
    solo_script = [{"status": 400 if solo_fails(i) else 200} for i in range(N_SOLO)]
    return {
        "providers": {
            "a": {"type": "mock", "script": a_script, "prompt_tokens": 100, "completion_tokens": 50},
            "b": {"type": "mock", "latency": "30ms", "prompt_tokens": 100, "completion_tokens": 20},
            "c": {"type": "mock", "latency": "20ms", "script": solo_script},
        },
        "routes": {
            "chat": {"targets": [{"provider": "a", "model": "m", "price": A_PRICE},
                                 {"provider": "b", "model": "m", "price": B_PRICE}]},
            "solo": {"targets": ["c/m"]},
        },
        "logging": {"store": f"sqlite:///{tmp_path / 'log.db'}", **logging},
    }  # fmt: skip


def options(i: int) -> dict[str, Any]:
    return {
        "user": f"u{i % 3}", "key": f"key{i % 4}", "team": team_of(i),
        "properties": {"team": "red" if i % 2 else "blue"},
    }  # fmt: skip


def team_of(i: int) -> str | None:
    return None if i % 5 == 4 else "ops" if i % 2 else "dev"


async def run_traffic(router: AsyncRouter) -> dict[str, dict[str, Any]]:
    """Send the scripted traffic one request at a time; the truth about each, by request id."""
    truth: dict[str, dict[str, Any]] = {}
    for i in range(N_CHAT):
        reply = await router.chat.completions.create(model="chat", messages=HI, llmroute=options(i))
        failed_over = a_fails(i)
        latency = a_latency(i) + (0.030 if failed_over else 0.0)
        cost = (100 * 3.0 + 20 * 4.0) / 1e6 if failed_over else (100 * 1.0 + 50 * 2.0) / 1e6
        truth[reply.llmroute.request_id] = {
            "i": i, "route": "chat", "provider": "b" if failed_over else "a", "status": "ok",
            "latency": latency, "cost": cost, "attempts": 2 if failed_over else 1,
            "tokens": (100, 20) if failed_over else (100, 50),
        }  # fmt: skip
    ids_before = set(truth)
    seen: list[RequestRecord] = []
    router.add_hook("request_start", seen.append)
    for i in range(N_SOLO):
        try:
            reply = await router.chat.completions.create(
                model="solo", messages=HI, llmroute=options(i)
            )
        except llmroute.InvalidRequest:
            assert solo_fails(i)
            request_id = seen[-1].request_id
            truth[request_id] = {"i": i, "route": "solo", "provider": None, "status": "error",
                                 "latency": 0.020, "cost": None, "attempts": 1, "tokens": None}  # fmt: skip
        else:
            assert not solo_fails(i)
            truth[reply.llmroute.request_id] = {
                "i": i, "route": "solo", "provider": "c", "status": "ok", "latency": 0.020,
                "cost": None, "attempts": 1, "tokens": (reply.usage.prompt_tokens,
                                                         reply.usage.completion_tokens),
            }  # fmt: skip
    assert len(seen) == N_SOLO and not ids_before & {r.request_id for r in seen}
    return truth


async def test_stored_records_match_what_happened(tmp_path: Path) -> None:
    router = AsyncRouter(config(tmp_path), env={})
    async with router:
        truth = await run_traffic(router)
    records = {r.request_id: r for r in SqliteStore(tmp_path / "log.db").records()}
    assert set(records) == set(truth)
    for request_id, expected in truth.items():
        record = records[request_id]
        i = expected["i"]
        assert record.route == expected["route"]
        assert record.provider == expected["provider"]
        assert record.status == expected["status"]
        assert record.latency_s == pytest.approx(expected["latency"], abs=1e-6)
        assert record.ended_at == pytest.approx(record.started_at + record.latency_s)
        assert len(record.attempts) == expected["attempts"]
        assert record.user == f"u{i % 3}"
        assert (record.key, record.team) == (f"key{i % 4}", team_of(i))
        assert record.properties == {"team": "red" if i % 2 else "blue"}
        assert record.stream is False and record.operation == "chat"
        if expected["cost"] is None:
            assert record.cost_usd is None  # unknown stays unknown, never 0
        else:
            assert record.cost_usd == pytest.approx(expected["cost"])
        if expected["tokens"] is None:
            assert record.usage is None
        else:
            assert record.usage is not None
            assert (record.usage.input, record.usage.output) == expected["tokens"]
        if expected["route"] == "chat" and expected["attempts"] == 2:
            first, second = record.attempts
            assert (first.target, first.outcome, first.status) == ("a/m", "error", 503)
            assert first.error_type == "ProviderUnavailable"
            assert first.latency_s == pytest.approx(a_latency(i), abs=1e-6)
            assert (second.target, second.kind, second.outcome) == ("b/m", "fallback", "ok")
            assert second.started_s == pytest.approx(a_latency(i), abs=1e-6)
        if expected["status"] == "error":
            assert record.error_type == "InvalidRequest"
            assert record.attempts[0].status == 400
            assert record.limit is None


def truth_percentiles(values: list[float]) -> list[float]:
    return [float(np.percentile(values, p)) for p in (50, 90, 95, 99)]


async def test_analytics_match_ground_truth(tmp_path: Path) -> None:
    router = AsyncRouter(config(tmp_path), env={})
    async with router:
        truth = await run_traffic(router)
        report = await router.analytics(by="provider")
        by_user = await router.analytics(by=["user", "property.team"])
        by_key = await router.analytics(by=["key", "team"])
        key_team = await router.analytics(key="key1", where=["team=ops"])
        chat_only = await router.analytics(route="chat", where=["property.team=red"])
        by_day = await router.analytics(by="day")
        nothing = await router.analytics(since="2000-01-01", until="2000-01-02")

    everything = list(truth.values())
    assert report.total.requests == len(everything)
    assert report.total.errors == sum(t["status"] == "error" for t in everything)
    got = report.total.latency
    assert [got.p50, got.p90, got.p95, got.p99] == pytest.approx(
        truth_percentiles([t["latency"] for t in everything]), abs=1e-6
    )
    known = [t["cost"] for t in everything if t["cost"] is not None]
    assert report.total.cost_usd == pytest.approx(sum(known))
    assert report.total.cost_unknown == len(everything) - len(known)
    assert report.total.input_tokens == sum(t["tokens"][0] for t in everything if t["tokens"])

    rows = {r.group["provider"]: r for r in report.rows}
    assert set(rows) == {"a", "b", "c", None}
    for provider, row in rows.items():
        mine = [t for t in everything if t["provider"] == provider]
        assert row.requests == len(mine)
        lat = row.latency
        assert [lat.p50, lat.p90, lat.p95, lat.p99] == pytest.approx(
            truth_percentiles([t["latency"] for t in mine]), abs=1e-6
        )
    assert rows[None].errors == rows[None].requests == sum(solo_fails(i) for i in range(N_SOLO))
    assert rows[None].error_rate == 1.0

    errors = {(e.provider, e.error_type): e for e in report.errors}
    a_failures = sum(a_fails(i) for i in range(N_CHAT))
    assert errors["a", "ProviderUnavailable"].count == a_failures
    assert errors["a", "ProviderUnavailable"].attempts == N_CHAT
    assert errors["a", "ProviderUnavailable"].rate == pytest.approx(a_failures / N_CHAT)
    solo_failures = sum(solo_fails(i) for i in range(N_SOLO))
    assert errors["c", "InvalidRequest"].rate == pytest.approx(solo_failures / N_SOLO)

    for row in by_user.rows:
        mine = [t for t in everything
                if f"u{t['i'] % 3}" == row.group["user"]
                and ("red" if t["i"] % 2 else "blue") == row.group["property.team"]]  # fmt: skip
        assert row.requests == len(mine)
        assert row.errors == sum(t["status"] == "error" for t in mine)
        assert row.cost_usd == pytest.approx(sum(t["cost"] or 0 for t in mine))
    assert sum(r.requests for r in by_user.rows) == len(everything)
    assert len(by_user.rows) == 6

    for row in by_key.rows:
        group = (row.group["key"], row.group["team"])
        mine = [t for t in everything if (f"key{t['i'] % 4}", team_of(t["i"])) == group]
        assert row.requests == len(mine) > 0
        assert row.errors == sum(t["status"] == "error" for t in mine)
        assert row.cost_usd == pytest.approx(sum(t["cost"] or 0 for t in mine))
    assert sum(r.requests for r in by_key.rows) == len(everything)
    assert None in {r.group["team"] for r in by_key.rows}
    mine = [t for t in everything if t["i"] % 4 == 1 and team_of(t["i"]) == "ops"]
    assert key_team.total.requests == len(mine) > 0
    assert key_team.total.latency.p50 == pytest.approx(
        np.percentile([t["latency"] for t in mine], 50), abs=1e-6
    )

    red_chat = [t for t in everything if t["route"] == "chat" and t["i"] % 2]
    assert chat_only.total.requests == len(red_chat)
    assert chat_only.total.latency.p95 == pytest.approx(
        np.percentile([t["latency"] for t in red_chat], 95), abs=1e-6
    )
    assert [r.requests for r in by_day.rows] == [len(everything)]
    assert nothing.total.requests == 0 and nothing.total.latency.p50 is None


async def test_streams_record_ttft_and_kept_finish_reasons(tmp_path: Path) -> None:
    cfg = {
        "providers": {"s": {"type": "mock", "ttft": "40ms", "chunk_delay": "5ms"}},
        "routes": {"stream": {"targets": ["s/m"]}},
        "logging": {"store": f"sqlite:///{tmp_path / 'log.db'}", "capture_content": True},
    }
    ttfts = []
    async with AsyncRouter(cfg, env={}) as router:
        for _ in range(5):
            stream = await router.chat.completions.create(model="stream", messages=HI, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            ttfts.append(stream.llmroute.ttft_s)
        report = await router.analytics()
    records = SqliteStore(tmp_path / "log.db").records()
    assert [r.ttft_s for r in records] == pytest.approx(ttfts)
    assert report.total.ttft.p50 == pytest.approx(float(np.percentile(ttfts, 50)))
    record = records[0]
    assert record.stream and record.status == "ok"
    assert record.finish_reasons == ["stop"]
    assert record.completion == [{"role": "assistant", "content": text}]
    assert record.prompt == [{"role": "user", "content": "Hi"}]


async def test_content_capture_is_off_by_default_and_switchable_per_request(
    tmp_path: Path,
) -> None:
    router = AsyncRouter(config(tmp_path), env={})
    async with router:
        plain = await router.chat.completions.create(model="chat", messages=HI)
        plain_id = plain.llmroute.request_id
        captured = await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"capture_content": True}
        )
    records = {r.request_id: r for r in SqliteStore(tmp_path / "log.db").records()}
    assert records[plain_id].prompt is None and records[plain_id].completion is None
    got = records[captured.llmroute.request_id]
    assert got.prompt == [{"role": "user", "content": "Hi"}]
    assert got.completion == [captured.choices[0].message.model_dump(exclude_none=True)]


async def test_redactor_runs_before_anything_is_stored(tmp_path: Path) -> None:
    jsonl = tmp_path / "log.jsonl"
    router = AsyncRouter(
        config(tmp_path, capture_content=True, sinks=[f"jsonl:///{jsonl}"]), env={}
    )
    ended: list[RequestRecord] = []

    def redact(record: RequestRecord) -> RequestRecord | None:
        if record.user == "drop-me":
            return None
        for message in record.prompt or []:
            message["content"] = "[redacted]"
        return record

    router.set_redactor(redact)
    router.add_hook("request_end", ended.append)
    async with router:
        await router.chat.completions.create(model="chat", messages=HI, llmroute={"user": "ann"})
        await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"user": "drop-me"}
        )
    stored = SqliteStore(tmp_path / "log.db").records()
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r.user for r in stored] == ["ann"] == [line["user"] for line in lines]
    assert stored[0].prompt == [{"role": "user", "content": "[redacted]"}]
    assert lines[0]["prompt"] == [{"role": "user", "content": "[redacted]"}]
    assert [r.prompt for r in ended] == [[{"role": "user", "content": "[redacted]"}]]
    assert RequestRecord.from_dict(lines[0]) == stored[0]


async def test_hooks_sinks_and_failures_never_reach_the_request(tmp_path: Path) -> None:
    router = AsyncRouter(config(tmp_path), env={})
    events: list[tuple[str, str]] = []
    batches: list[int] = []

    async def on_end(record: RequestRecord) -> None:
        events.append(("end", record.request_id))

    def on_attempt(record: RequestRecord, attempt: Any) -> None:
        events.append(("attempt", attempt.target))

    def broken(record: RequestRecord) -> None:
        raise RuntimeError("a broken hook")

    class BrokenSink:
        def write(self, records: Any) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    router.add_hook("request_start", lambda r: events.append(("start", r.request_id)))
    router.add_hook("request_start", broken)
    router.add_hook("attempt_end", on_attempt)
    router.add_hook("request_end", on_end)
    router.add_sink(lambda records: batches.append(len(records)))
    router.add_sink(BrokenSink())
    async with router:
        reply = await router.chat.completions.create(model="chat", messages=HI)  # a fails over
        await router.flush()
        status = router.recording
    rid = reply.llmroute.request_id
    assert events == [("start", rid), ("attempt", "a/m"), ("attempt", "b/m"), ("end", rid)]
    assert batches == [1]
    assert (status.recorded, status.hook_errors, status.sink_errors) == (1, 1, 1)
    assert len(SqliteStore(tmp_path / "log.db").records()) == 1


async def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    router = AsyncRouter(config(tmp_path, queue_size=3, flush_interval="1h", batch_size=100),
                         env={})  # fmt: skip
    async with router:
        for _ in range(5):
            await router.chat.completions.create(model="chat", messages=HI)
        assert router.recording.dropped == 2
        assert router.recording.queued == 3
    assert len(SqliteStore(tmp_path / "log.db").records()) == 3  # close flushed the rest


async def test_refusals_by_a_limit_are_recorded(tmp_path: Path) -> None:
    class Limit(llmroute.Stage):
        name = "limit"

        async def before(self, ctx: Any) -> None:
            raise llmroute.BudgetExceeded("over budget")

    router = AsyncRouter(config(tmp_path), env={})
    router.add_stage(Limit())
    async with router:
        with pytest.raises(llmroute.BudgetExceeded):
            await router.chat.completions.create(model="chat", messages=HI)
    (record,) = SqliteStore(tmp_path / "log.db").records()
    assert (record.status, record.limit, record.error_type) == ("error", "BudgetExceeded",
                                                                "BudgetExceeded")  # fmt: skip
    assert record.attempts == [] and record.cost_usd is None


async def test_no_store_means_analytics_explain_themselves() -> None:
    async with AsyncRouter({"routes": {"chat": {"targets": ["mock/m"]}}}, env={}) as router:
        with pytest.raises(llmroute.ConfigError, match=r"logging\.store"):
            await router.analytics()


async def test_loop_shutdown_without_close_still_writes(tmp_path: Path) -> None:
    router = AsyncRouter(config(tmp_path, flush_interval="1h"), env={})
    await router.chat.completions.create(model="chat", messages=HI)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "llmroute-recorder"]
    await asyncio.sleep(0)  # the task is waiting for its flush interval
    task.cancel()  # what asyncio.run does to leftover tasks
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(SqliteStore(tmp_path / "log.db").records()) == 1
    await router.aclose()


async def test_cache_hits_cost_nothing_and_count_their_savings(tmp_path: Path) -> None:
    cfg = {
        "providers": {"p": {"type": "mock", "prompt_tokens": 100, "completion_tokens": 10}},
        "routes": {"chat": {"targets": [{"provider": "p", "model": "m",
                                         "price": {"input": 1.0, "output": 2.0}}]}},
        "cache": {},
        "logging": {"store": f"sqlite:///{tmp_path / 'log.db'}"},
    }  # fmt: skip
    one = (100 * 1.0 + 10 * 2.0) / 1e6
    async with AsyncRouter(cfg, env={}) as router:
        for _ in range(4):  # a miss, then three hits
            await router.chat.completions.create(model="chat", messages=HI)
        report = await router.analytics()
    records = SqliteStore(tmp_path / "log.db").records()
    assert [(r.cache, r.cost_usd) for r in records] == [("miss", pytest.approx(one))] + [
        ("hit", 0.0)
    ] * 3
    assert [r.saved_usd for r in records[1:]] == pytest.approx([one] * 3)
    total = report.total
    assert (total.cache_hits, total.cache_hit_rate) == (3, 0.75)
    assert total.cost_usd == pytest.approx(one)
    assert total.saved_usd == pytest.approx(3 * one)


# ---------------------------------------------------------------- experiment tags


@pytest.mark.parametrize(
    ("target", "off"), [("p/a", False), ("p/b", False), ("p/c", True), (None, False)]
)
def test_the_record_carries_the_experiment_tag_and_flags_a_target_outside_the_variant(
    target: str | None, off: bool
) -> None:
    info = RouteInfo(request_id="r", stream=False)
    info.target = target
    route = route_of(catalog({"targets": ["p/a"]}, p=Scripted()))
    ctx = RequestContext("chat", chat_request(), NO_OPTIONS, route, info, False, 0.0, 0.0)
    ctx.state[EXPERIMENT_STATE] = ExperimentTag(
        "exp", "candidate", "sticky", "d1g35t", frozenset({"p/a", "p/b"})
    )
    record = build_record(ctx, Outcome(completed=True), 1.0)
    assert (record.experiment, record.variant, record.assignment, record.sticky_key) == (
        "exp", "candidate", "sticky", "d1g35t",
    )  # fmt: skip
    assert record.off_variant is off
    assert RequestRecord.from_dict(record.to_dict()) == record


def test_the_sticky_digest_is_stable_salted_by_experiment_and_hides_the_key() -> None:
    digest = sticky_digest("exp", "user-42")
    assert digest == sticky_digest("exp", "user-42")
    assert len(digest) == 16 and "user-42" not in digest
    assert digest != sticky_digest("other", "user-42")
    assert digest != sticky_digest("exp", "user-43")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1700000000", 1_700_000_000.0), ("1700000000.5", 1_700_000_000.5),
     ("2023-11-14T22:13:20Z", 1_700_000_000.0), ("90m", 1_800_000_000.0 - 5400),
     ("7d", 1_800_000_000.0 - 7 * 86400)],
)  # fmt: skip
def test_a_time_is_unix_seconds_a_date_or_a_duration_ago(text: str, expected: float) -> None:
    assert parse_time(text, now=1_800_000_000.0) == expected


@given(reasons=st.lists(st.none() | st.sampled_from(["stop", "length", "tool_calls"]), max_size=4))
def test_a_completions_finish_reasons_are_its_choices_in_order_without_the_missing(
    reasons: list[str | None],
) -> None:
    """`response_facts` reads one choice inline and several in C: both give every choice's
    reason in order, leaving out the missing ones, as the wire completion's facts do."""
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": "hi"}, "finish_reason": r}
            for i, r in enumerate(reasons)
        ],
    }  # fmt: skip
    expected = ("m", "chatcmpl-1", [reason for reason in reasons if reason])
    assert response_facts(ChatCompletion.model_validate(body)) == expected
    wire = wire_completion(json.dumps(body).encode())
    if wire is not None:  # (a completion its strict schema takes)
        assert response_facts(wire) == expected

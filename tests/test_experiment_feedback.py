"""Feedback: on requests a real router answered over a loopback upstream, late, per sticky
key, refused when unknown or malformed, and scoped by gateway key through the real gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gateway import KEY, OTHER_KEY, running_gateway
from _helpers import ask
from _upstream import Upstream
from llmroute import (
    AsyncRouter,
    ConfigError,
    Feedback,
    RequestError,
    Router,
    TokenUsage,
    UnknownRequest,
)
from llmroute.experiments import sticky_digest
from llmroute.observe import RequestRecord, SqliteStore
from llmroute.observe.sqlite import (
    APPLICATION_ID,
    MAX_FEEDBACK_PER_REQUEST,
    MIGRATIONS,
    SCHEMA_VERSION,
)

pytestmark = pytest.mark.anyio


def config(upstream: Upstream, store: Path, **logging: Any) -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": upstream.base_url}},
        "routes": {"chat": {"targets": ["a/m"]}},
        "logging": {"store": f"sqlite:///{store}", **logging},
    }


def record(request_id: str, **changes: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": request_id, "operation": "chat", "started_at": time.time(),
        "request_model": "chat", "ended_at": time.time(), "route": "chat", "target": "a/m",
        "provider": "a", "model": "m", "status": "ok", "latency_s": 0.2,
        "usage": TokenUsage(10, 5), "cost_usd": 0.001,
    }  # fmt: skip
    values.update(changes)
    return RequestRecord(**values)


class LaterClock:
    """The system clock, `ahead` seconds in the future (feedback given hours later)."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time() + self.ahead

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# ---------------------------------------------------------------- in process


async def test_feedback_joins_a_request_answered_a_moment_ago(
    upstream: Upstream, tmp_path: Path
) -> None:
    path = tmp_path / "log.db"
    async with AsyncRouter(config(upstream, path, flush_interval=30)) as router:
        answer = await ask(router)
        request_id = answer.llmroute.request_id
        assert router.recording.queued == 1  # not written yet: feedback flushes it first
        thumbs = await router.feedback(request_id, "thumbs_up", True, comment="spot on")
        rating = await router.feedback(request_id, "rating", 4.5)
        again = await router.feedback(request_id, "thumbs_up", False)
    stored = SqliteStore(path).feedback()
    assert stored == [thumbs, rating, again]
    assert (thumbs.request_id, thumbs.name, thumbs.value, thumbs.kind) == (
        request_id, "thumbs_up", 1.0, "boolean",
    )  # fmt: skip
    assert thumbs.comment == "spot on" and thumbs.key is None
    assert (rating.value, rating.kind) == (4.5, "number")
    assert thumbs.feedback_id.startswith("fb-") and len({f.feedback_id for f in stored}) == 3
    assert thumbs.to_dict()["value"] is True and rating.to_dict()["value"] == 4.5


async def test_late_feedback_from_another_router_joins(upstream: Upstream, tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with AsyncRouter(config(upstream, path)) as router:
        request_id = (await ask(router)).llmroute.request_id
    hours = 5 * 3600
    later = AsyncRouter(config(upstream, path), clock=LaterClock(hours))
    async with later:  # a restarted process, five hours on
        given = await later.feedback(request_id, "resolved", True)
    assert given.created_at - time.time() > hours - 60
    (stored,) = SqliteStore(path).feedback(since=time.time() + hours - 60)
    assert stored.request_id == request_id


async def test_feedback_waits_for_a_record_another_process_is_writing(
    upstream: Upstream, tmp_path: Path
) -> None:
    """A gateway's other worker writes its records within its flush interval: feedback
    for one of its requests waits for it rather than calling it unknown."""
    path = tmp_path / "log.db"
    async with AsyncRouter(config(upstream, path, flush_interval=0.5)) as router:
        await ask(router)  # the store exists
        await router.flush()
        other = SqliteStore(path)
        writer = threading.Timer(0.3, lambda: other.write([record("lr-other-worker")]))
        writer.start()
        try:
            given = await router.feedback("lr-other-worker", "thumbs_up", True)
        finally:
            writer.join()
            other.close()
    assert given.request_id == "lr-other-worker"


async def test_feedback_on_an_unknown_request_is_a_clear_error(
    upstream: Upstream, tmp_path: Path
) -> None:
    path = tmp_path / "log.db"
    async with AsyncRouter(config(upstream, path, flush_interval=0.05)) as router:
        await ask(router)
        started = time.monotonic()
        with pytest.raises(UnknownRequest, match="unknown request 'lr-nope'") as info:
            await router.feedback("lr-nope", "thumbs_up", True)
        assert time.monotonic() - started >= 0.1  # it waited twice the flush interval
        assert (info.value.request_id, info.value.param) == ("lr-nope", "request_id")
    assert SqliteStore(path).feedback() == []


async def test_feedback_on_a_store_that_does_not_exist_yet_is_unknown(
    upstream: Upstream, tmp_path: Path
) -> None:
    path = tmp_path / "never.db"
    async with AsyncRouter(config(upstream, path, flush_interval=0.02)) as router:
        with pytest.raises(UnknownRequest):
            await router.feedback("lr-nope", "thumbs_up", True)
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "kwargs", "param"),
    [
        (("lr-1", "thumbs_up", float("nan")), {}, "value"),
        (("lr-1", "thumbs_up", float("inf")), {}, "value"),
        (("lr-1", "thumbs_up", 10**400), {}, "value"),  # no float holds it
        (("lr-1", "thumbs_up", -1e13), {}, "value"),  # its square would overflow the sums
        (("lr-1", "thumbs_up", "yes"), {}, "value"),
        (("lr-1", "thumbs_up", None), {}, "value"),
        (("lr-1", "", 1), {}, "name"),
        (("lr-1", "x" * 65, 1), {}, "name"),
        (("lr-1", "thumbs up", 1), {}, "name"),
        (("lr-1", "-dash-first", 1), {}, "name"),
        (("lr-1", "ok", 1), {"comment": "c" * 2_001}, "comment"),
        (("lr-1", "ok", 1), {"comment": 12}, "comment"),
        (("lr 1", "ok", 1), {}, "request_id"),
        (("r" * 129, "ok", 1), {}, "request_id"),
    ],
)
async def test_malformed_feedback_is_refused_before_the_store(
    tmp_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any], param: str
) -> None:
    router = AsyncRouter({"logging": {"store": f"sqlite:///{tmp_path / 'log.db'}"}})
    async with router:
        with pytest.raises(RequestError) as info:
            await router.feedback(*args, **kwargs)
    assert info.value.param == param
    assert not (tmp_path / "log.db").exists()


async def test_feedback_needs_the_log_store() -> None:
    async with AsyncRouter({}) as router:
        with pytest.raises(ConfigError, match=r"logging\.store"):
            await router.feedback("lr-1", "thumbs_up", True)


async def test_feedback_per_sticky_key_joins_the_keys_requests(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = SqliteStore(path)
    digest = sticky_digest("haiku-vs-mini", "user-42")
    store.write(
        [record("lr-1", experiment="haiku-vs-mini", variant="candidate", assignment="sticky",
                sticky_key=digest, key="team-a")]
    )  # fmt: skip
    store.close()
    logging = {"store": f"sqlite:///{path}", "flush_interval": 0.02}
    async with AsyncRouter({"logging": logging}) as router:
        given = await router.sticky_feedback("haiku-vs-mini", "user-42", "converted", True)
        assert (given.experiment, given.sticky_key, given.request_id) == (
            "haiku-vs-mini", digest, None,
        )  # fmt: skip
        with pytest.raises(UnknownRequest, match="haiku-vs-mini") as info:
            await router.sticky_feedback("haiku-vs-mini", "user-43", "converted", True)
        assert info.value.param == "sticky_key"
        with pytest.raises(UnknownRequest):  # the same user in another experiment
            await router.sticky_feedback("other", "user-42", "converted", True)
        with pytest.raises(UnknownRequest):  # another gateway key's user
            await router.sticky_feedback("haiku-vs-mini", "user-42", "c", True, key="team-b")
        scoped = await router.sticky_feedback("haiku-vs-mini", "user-42", "c", 2, key="team-a")
        assert scoped.key == "team-a"
        with pytest.raises(RequestError) as bad:
            await router.sticky_feedback("haiku-vs-mini", "", "converted", True)
        assert bad.value.param == "sticky_key"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        raw = conn.execute("SELECT sticky_key FROM feedback").fetchall()
    assert raw == [(digest,), (digest,)]  # the key itself is never stored


def test_the_blocking_router_gives_feedback(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with Router(
        {"providers": {"m": {"type": "mock"}}, "routes": {"chat": {"targets": ["m/echo"]}},
         "logging": {"store": f"sqlite:///{path}", "flush_interval": 0.02}}
    ) as router:  # fmt: skip
        answer = router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}]
        )
        given = router.feedback(answer.llmroute.request_id, "thumbs_up", False)
        assert isinstance(given, Feedback) and given.value == 0.0
        with pytest.raises(UnknownRequest):
            router.feedback("lr-unknown", "thumbs_up", False)


def test_feedback_on_one_request_is_bounded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "log.db")
    store.write([record("lr-1")])
    for n in range(MAX_FEEDBACK_PER_REQUEST):
        assert store.add_feedback(Feedback(f"fb-{n}", "thumbs_up", 1.0, "boolean", 2.0, "lr-1"))
    with pytest.raises(RequestError, match="100 feedback entries already") as info:
        store.add_feedback(Feedback("fb-x", "thumbs_up", 0.0, "boolean", 3.0, "lr-1"))
    assert info.value.param == "request_id"
    assert not store.add_feedback(Feedback("fb-y", "thumbs_up", 0.0, "boolean", 3.0, "lr-2"))
    assert len(store.feedback()) == MAX_FEEDBACK_PER_REQUEST


# ---------------------------------------------------------------- the store's migration


def test_a_store_of_schema_version_4_gains_the_feedback_table(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    with (
        contextlib.closing(sqlite3.connect(path)) as conn,
        conn,
    ):  # what llmroute's schema version 4 wrote
        for step in MIGRATIONS[:4]:
            conn.executescript(step)
        conn.execute("PRAGMA user_version = 4")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(
            "INSERT INTO requests (request_id, operation, started_at, request_model, stream, "
            "status) VALUES ('old', 'chat', 1.0, 'chat', 0, 'ok')"
        )
    conn.close()
    store = SqliteStore(path)
    assert store.feedback() == []  # opening migrates
    assert store.schema_version() == SCHEMA_VERSION
    stored = store.add_feedback(Feedback("fb-1", "thumbs_up", 1.0, "boolean", 2.0, "old"))
    assert stored and not store.add_feedback(Feedback("fb-2", "x", 1.0, "boolean", 2.0, "new"))
    store.close()
    assert [f.feedback_id for f in SqliteStore(path).feedback()] == ["fb-1"]


# ---------------------------------------------------------------- through the gateway


async def post(
    http: httpx.AsyncClient, base: str, body: Any, key: str | None = KEY
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(
        f"{base}/feedback",
        content=data,
        headers={**headers, "content-type": "application/json"},
        timeout=10,
    )


async def test_the_gateway_scopes_feedback_by_key(upstream: Upstream, tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    server = {"keys": [{"name": "a", "key": KEY}, {"name": "b", "key": OTHER_KEY}]}
    routed = config(upstream, path, flush_interval=0.05)
    async with (
        running_gateway(routed, server=server) as gateway,
        gateway.http() as http,
        gateway.client(KEY) as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}]
        )
        request_id = raw.headers["x-llmroute-request-id"]
        mine = await post(
            http, gateway.base_url,
            {"request_id": request_id, "name": "thumbs_up", "value": True, "comment": "good"},
        )  # fmt: skip
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert body["object"] == "feedback" and body["id"].startswith("fb-")
        assert (body["request_id"], body["name"], body["value"], body["kind"]) == (
            request_id, "thumbs_up", True, "boolean",
        )  # fmt: skip
        assert "key" not in body and mine.headers["x-llmroute-request-id"]
        # another key's request is unknown, exactly as a request that never existed
        theirs = await post(
            http, gateway.base_url, {"request_id": request_id, "name": "x", "value": 1}, OTHER_KEY
        )
        nobody = await post(http, gateway.base_url, {"request_id": "lr-0", "name": "x", "value": 1})
        for refused in (theirs, nobody):
            assert refused.status_code == 404
            error = refused.json()["error"]
            assert (error["code"], error["param"], error["type"]) == (
                "request_not_found", "request_id", "invalid_request_error",
            )  # fmt: skip
        assert theirs.json()["error"]["message"].replace(request_id, "ID") == nobody.json()[
            "error"
        ]["message"].replace("lr-0", "ID")
        unauthenticated = await post(http, gateway.base_url, {"request_id": request_id}, None)
        assert unauthenticated.status_code == 401
    (stored,) = SqliteStore(path).feedback()
    assert (stored.key, stored.comment) == ("a", "good")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"request_id": "lr-1", "name": "x", "value": "yes"}, 400, "value"),
        ({"request_id": "lr-1", "name": "x", "value": 1e400}, 400, "value"),
        ({"request_id": "lr-1", "name": "x", "value": 10**400}, 400, "value"),
        ({"request_id": "lr-1", "name": "x", "value": 2e12}, 400, "value"),
        ({"request_id": "lr-1", "name": "x y", "value": 1}, 400, "name"),
        ({"request_id": "lr-1", "value": 1}, 400, "name"),
        ({"request_id": "lr-1", "name": "x"}, 400, "value"),
        ({"name": "x", "value": 1}, 400, "request_id"),
        ({"request_id": "lr-1", "experiment": "e", "name": "x", "value": 1}, 400, "request_id"),
        ({"experiment": "e", "name": "x", "value": 1}, 400, "sticky_key"),
        ({"request_id": "lr-1", "name": "x", "value": 1, "colour": "red"}, 400, "colour"),
        ({"request_id": "lr-1", "name": "x", "value": 1, "comment": "c" * 2_001}, 400, "comment"),
        ({"request_id": 12, "name": "x", "value": 1}, 400, "request_id"),
    ],
)
async def test_the_gateway_answers_bad_feedback_with_400s(
    tmp_path: Path, body: dict[str, Any], status: int, param: str
) -> None:
    server = {"keys": [{"name": "a", "key": KEY}]}
    routed = {"logging": {"store": f"sqlite:///{tmp_path / 'log.db'}"}}
    async with running_gateway(routed, server=server) as gateway, gateway.http() as http:
        answer = await post(http, gateway.base_url, body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_the_gateway_bounds_feedback_bodies_and_needs_a_store(tmp_path: Path) -> None:
    server = {"keys": [{"name": "a", "key": KEY}]}
    routed = {"logging": {"store": f"sqlite:///{tmp_path / 'log.db'}"}}
    async with running_gateway(routed, server=server) as gateway, gateway.http() as http:
        big = {"request_id": "lr-1", "name": "x", "value": 1, "comment": "c" * 20_000}
        too_large = await post(http, gateway.base_url, big)
        assert too_large.status_code == 413
        assert too_large.json()["error"]["code"] == "request_too_large"
        not_json = await post(http, gateway.base_url, b"{not json")
        assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
        listed = await post(http, gateway.base_url, [1, 2])
        assert listed.status_code == 400
    async with running_gateway({}, server=server) as gateway, gateway.http() as http:
        off = await post(http, gateway.base_url, {"request_id": "lr-1", "name": "x", "value": 1})
    assert off.status_code == 404
    assert off.json()["error"]["code"] == "feedback_unavailable"

"""The dashboard's JSON API through the real gateway, over a store seeded with known data.

Every figure is checked against what the test computes from the seeded records
themselves (numpy's percentiles for latency), then access (admin keys,
loopback without keys) and the bounds of every parameter.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from _dashboard_seed import EXPERIMENT, FAILOVER_ID, seed, thumbs_up
from _dashboard_server import dashboard_command
from _gateway import IN_PROCESS, KEY, OTHER_KEY, in_process_gateway
from llmroute import AsyncRouter
from llmroute.cli import main
from llmroute.dashboard.api import DashboardSource
from llmroute.dashboard.app import DashboardApp
from llmroute.observe import RequestRecord, SqliteStore, open_store
from llmroute.observe.histogram import RELATIVE_ERROR
from llmroute.server.keys import hash_key

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def router_config(store: Path | str) -> dict[str, Any]:
    """A gateway's configuration logging to `store` (a SQLite file's path, or a URL)."""
    url = store if isinstance(store, str) else f"sqlite:///{store}"
    return {
        "providers": {"alpha": {"type": "mock"}, "beta": {"type": "mock"}},
        "routes": {"chat": {"targets": ["alpha/a-1", "beta/b-2"]}},
        "logging": {"store": url},
    }


@pytest.fixture
def seeded(store_url: str) -> tuple[str, list[RequestRecord]]:
    """A store seeded with known records (SQLite, then PostgreSQL: every test that reads
    it runs over both, against the same figures): its URL and the records."""
    return store_url, seed(store_url)


def recent(records: list[RequestRecord]) -> list[RequestRecord]:
    """The records of the default range (the last 24 hours)."""
    return [r for r in records if r.started_at >= time.time() - 86400 + 60]


async def get(gateway: Any, path: str, **params: Any) -> dict[str, Any]:
    async with gateway.http() as http:
        response = await http.get(f"{gateway.root}{path}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


async def test_overview_figures_match_the_seeded_records(seeded: Any) -> None:
    path, records = seeded
    mine = recent(records)
    async with in_process_gateway(router_config(path)) as gateway:
        data = await get(gateway, "/api/overview")
        totals = data["totals"]
        assert totals["requests"] == len(mine) == 39
        assert totals["errors"] == sum(r.status == "error" for r in mine) == 2
        assert totals["input_tokens"] == sum(r.usage.input for r in mine if r.usage)
        assert totals["output_tokens"] == sum(r.usage.output for r in mine if r.usage)
        assert totals["cost_usd"] == pytest.approx(sum(r.cost_usd or 0 for r in mine))
        assert totals["cache_hits"] == sum(r.cache == "hit" for r in mine) == 4
        hits_and_misses = sum(r.cache in ("hit", "miss") for r in mine)
        assert totals["cache_hit_rate"] == pytest.approx(4 / hits_and_misses)
        assert totals["saved_usd"] == pytest.approx(sum(r.saved_usd or 0 for r in mine))
        # the series: 24 hours in 15-minute buckets, aligned to the bucket width
        width = data["bucket_s"]
        assert width == 900
        expected = Counter(math.floor(r.started_at / width) * width for r in mine)
        got = {b["start"]: b["requests"] for b in data["series"]}
        assert got == pytest.approx(dict(expected))
        assert sum(b["cost_usd"] for b in data["series"]) == pytest.approx(totals["cost_usd"])

        # a filter: one provider's figures only
        beta = await get(gateway, "/api/overview", provider="beta")
        assert beta["totals"]["requests"] == sum(r.provider == "beta" for r in mine)
        assert beta["filters"] == {"provider": "beta"}
        reports = await get(gateway, "/api/overview", **{"property.feature": "reports"})
        assert reports["totals"]["requests"] == sum(
            r.properties.get("feature") == "reports" for r in mine
        )
        # a wider range takes the old request in, with an explicit bucket
        week = await get(gateway, "/api/overview", since="9d", bucket="1d")
        assert week["totals"]["requests"] == len(records)
        assert week["bucket_s"] == 86400


@pytest.mark.parametrize("exact", [False, True], ids=["binned", "exact"])
async def test_latency_percentiles_by_provider_and_model(seeded: Any, exact: bool) -> None:
    """From the rollups' histograms, each percentile within the bins' relative error of
    numpy's; with ``exact=1``, from the rows: numpy's own."""
    path, records = seeded
    mine = recent(records)
    tolerance = 1e-9 if exact else RELATIVE_ERROR
    async with in_process_gateway(router_config(path)) as gateway:
        data = await get(gateway, "/api/latency", **({"exact": "1"} if exact else {}))
    assert data["exact"] is exact
    assert data["relative_error"] == (0.0 if exact else RELATIVE_ERROR)
    groups = {(g["provider"], g["model"]): g for g in data["groups"]}
    for (provider, model), group in groups.items():
        latencies = [r.latency_s for r in mine if r.provider == provider and r.model == model]
        assert group["requests"] == len(latencies)
        for p in (50, 95, 99):
            expected = np.percentile(latencies, p)
            assert group["latency"][f"p{p}"] == pytest.approx(expected, rel=tolerance)
        ttfts = [r.ttft_s for r in mine if r.provider == provider and r.ttft_s is not None]
        if ttfts:
            expected = np.percentile(ttfts, 50)
            assert group["ttft"]["p50"] == pytest.approx(expected, rel=tolerance)
    assert ("alpha", "a-1") in groups and ("beta", "b-2") in groups
    assert sum(b["requests"] for b in data["series"]) == len(mine)
    everything = [r.latency_s for r in mine if r.latency_s is not None]
    expected = np.percentile(everything, 95)
    assert data["total"]["latency"]["p95"] == pytest.approx(expected, rel=tolerance)


async def test_errors_count_failed_attempts_and_limit_refusals(seeded: Any) -> None:
    path, records = seeded
    async with in_process_gateway(router_config(path)) as gateway:
        data = await get(gateway, "/api/errors")
    mine = recent(records)
    alpha_attempts = sum(a.target == "alpha/a-1" for r in mine for a in r.attempts)
    assert data["attempts"] == [
        {"provider": "alpha", "target": "alpha/a-1", "error_type": "ProviderTimeout", "count": 1,
         "attempts": alpha_attempts, "rate": pytest.approx(1 / alpha_attempts)},
        {"provider": "alpha", "target": "alpha/a-1", "error_type": "ServerError", "count": 1,
         "attempts": alpha_attempts, "rate": pytest.approx(1 / alpha_attempts)},
    ]  # fmt: skip
    assert sorted(data["requests"], key=lambda e: e["error_type"]) == [
        {"error_type": "BudgetExceeded", "limit": "BudgetExceeded", "count": 1},
        {"error_type": "ProviderTimeout", "limit": None, "count": 1},
    ]


async def test_cost_top_n_and_cache_by_route(seeded: Any) -> None:
    path, records = seeded
    mine = recent(records)
    async with in_process_gateway(router_config(path)) as gateway:
        data = await get(gateway, "/api/cost", by="user", limit="2")
        cache = await get(gateway, "/api/cache")
        by_feature = await get(gateway, "/api/cost", by="property.feature")
    cost: dict[str, float] = {}
    for r in mine:
        cost[r.user or ""] = cost.get(r.user or "", 0.0) + (r.cost_usd or 0.0)
    top = sorted(cost.items(), key=lambda kv: -kv[1])[:2]
    assert [(row["value"], pytest.approx(row["cost_usd"])) for row in data["rows"]] == top
    assert data["groups"] == len(cost) == 3
    first = data["rows"][0]
    assert first["requests"] == sum(r.user == first["value"] for r in mine)
    assert first["input_tokens"] == sum(r.usage.input for r in mine
                                        if r.user == first["value"] and r.usage)  # fmt: skip
    (chat,) = cache["rows"]
    assert chat["value"] == "chat" and chat["cache_hits"] == 4
    assert chat["saved_usd"] == pytest.approx(sum(r.saved_usd or 0 for r in mine))
    features = {row["value"]: row["requests"] for row in by_feature["rows"]}
    assert features == dict(Counter(r.properties.get("feature") for r in mine))


async def test_request_browser_pages_searches_and_opens_a_request(seeded: Any) -> None:
    path, records = seeded
    mine = sorted(recent(records), key=lambda r: (-r.started_at, r.request_id))
    async with in_process_gateway(router_config(path)) as gateway:
        page = await get(gateway, "/api/requests", limit="10", offset="5")
        assert page["total"] == len(mine)
        assert [r["request_id"] for r in page["requests"]] == [r.request_id for r in mine[5:15]]
        found = await get(gateway, "/api/requests", search="FAILOVER")
        assert [r["request_id"] for r in found["requests"]] == [FAILOVER_ID]
        wild = await get(gateway, "/api/requests", search="%")  # a literal %, not a wildcard
        assert wild["total"] == 0
        errors = await get(gateway, "/api/requests", status="error")
        assert {r["request_id"] for r in errors["requests"]} == {"lr-seed-refused",
                                                                  "lr-seed-failed"}  # fmt: skip
        detail = await get(gateway, f"/api/requests/{FAILOVER_ID}")
    assert detail["request_id"] == FAILOVER_ID and detail["provider"] == "beta"
    assert [(a["target"], a["kind"], a["outcome"], a["started_s"]) for a in detail["attempts"]] == [
        ("alpha/a-1", "first", "error", 0.0), ("beta/b-2", "fallback", "ok", 0.45)
    ]  # fmt: skip
    assert detail["attempts"][0]["error_type"] == "ServerError"


async def test_live_health_shows_the_routers_targets(seeded: Any) -> None:
    path, _ = seeded
    async with in_process_gateway(router_config(path)) as gateway:
        gateway.router.cool_down("alpha/a-1", 30, "maintenance")
        data = await get(gateway, "/api/health")
    assert data["live"] is True
    targets = {t["target"]: t for t in data["targets"]}
    assert targets["beta/b-2"]["state"] == "closed"
    assert targets["beta/b-2"]["cooldown_remaining_s"] == 0
    assert 0 < targets["alpha/a-1"]["cooldown_remaining_s"] <= 30
    assert data["worker"] == {"pid": os.getpid(), "workers": 1}


async def test_live_health_says_it_is_one_workers_of_several(seeded: Any) -> None:
    """Each gateway worker keeps its own health and counters: the answer says whose."""
    async with in_process_gateway(router_config(seeded[0]), server={"workers": 3}) as gateway:
        data = await get(gateway, "/api/health")
    assert data["worker"] == {"pid": os.getpid(), "workers": 3}


# ---------------------------------------------------------------- access


async def test_with_keys_only_admin_keys_read_the_api(seeded: Any) -> None:
    path, _ = seeded
    server = {"keys": [{"name": "ops", "key": hash_key(KEY), "admin": True},
                       {"name": "app", "key": hash_key(OTHER_KEY)}]}  # fmt: skip
    gateway_context = in_process_gateway(router_config(path), server=server)
    async with gateway_context as gateway, gateway.http() as http:
        url = f"{IN_PROCESS}/api/overview"
        assert (await http.get(url)).status_code == 401
        other = await http.get(url, headers={"authorization": f"Bearer {OTHER_KEY}"})
        assert other.status_code == 403
        assert other.json()["error"]["code"] == "admin_key_required"
        admin = await http.get(url, headers={"authorization": f"Bearer {KEY}"})
        assert admin.status_code == 200 and admin.json()["totals"]["requests"] == 39
        # the page holds no data: anyone may load it; it asks for a key
        page = await http.get(f"{IN_PROCESS}/dashboard")
        assert page.status_code == 200 and b"<title>" in page.content


async def test_without_keys_only_loopback_clients_read_the_api(seeded: Any) -> None:
    path, _ = seeded
    async with in_process_gateway(router_config(path)) as gateway:
        remote = httpx.ASGITransport(app=gateway.app, client=("192.0.2.7", 5000))
        async with httpx.AsyncClient(transport=remote) as http:
            response = await http.get(f"{IN_PROCESS}/api/overview")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "loopback_only"
        local = httpx.ASGITransport(app=gateway.app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=local) as http:
            assert (await http.get(f"{IN_PROCESS}/api/overview")).status_code == 200


async def test_experiments_report_each_variant_with_feedback_and_sentences(seeded: Any) -> None:
    path, records = seeded
    mine = [r for r in recent(records) if r.experiment == EXPERIMENT]
    async with in_process_gateway(router_config(path)) as gateway:
        data = await get(gateway, "/api/experiments")
        named = await get(gateway, "/api/experiments", experiment="nothing-here", since="2h")
    assert data["count"] == 1
    (found,) = data["experiments"]
    assert len(mine) == 36 and (found["name"], found["requests"]) == (EXPERIMENT, 36)
    report = found["report"]
    variants = {v["variant"]: v for v in report["variants"]}
    assert list(variants) == ["control", "friendly"]
    for name, parity in (("control", 0), ("friendly", 1)):
        theirs = [r for i, r in enumerate(mine) if i % 2 == parity]
        assert variants[name]["requests"] == len(theirs) == 18
        latencies = [r.latency_s for r in theirs]
        assert variants[name]["latency_p50"] == pytest.approx(np.percentile(latencies, 50))
        given = [thumbs_up(i) for i in range(parity, 36, 2) if thumbs_up(i) is not None]
        (thumbs,) = variants[name]["feedback"]
        assert (thumbs["name"], thumbs["n"]) == ("thumbs_up", len(given))
        assert thumbs["mean"] == pytest.approx(sum(given) / len(given))
    metrics = {c["metric"] for c in report["comparisons"]}
    assert {"error_rate", "latency_p50", "cost_per_request", "thumbs_up"} <= metrics
    assert len(report["sentences"]) == len(report["comparisons"]) >= 5
    assert all(c["variant"] == "friendly" for c in report["comparisons"])
    # an experiment asked for by name, without requests in the range: an empty report
    (nothing,) = named["experiments"]
    assert nothing["name"] == "nothing-here" and nothing["requests"] == 0
    assert nothing["report"]["variants"] == nothing["report"]["comparisons"] == []


# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("path", "params", "status", "param"),
    [
        ("/api/requests", {"limit": "201"}, 400, "limit"),
        ("/api/requests", {"limit": "ten"}, 400, "limit"),
        ("/api/requests", {"offset": "100001"}, 400, "offset"),
        ("/api/requests", {"search": "x" * 201}, 400, "search"),
        ("/api/cost", {"limit": "0"}, 400, "limit"),
        ("/api/cost", {"by": "prompt"}, 400, "by"),
        ("/api/cost", {"order": "latency"}, 400, "order"),
        ("/api/latency", {"by": "provider,model,route"}, 400, "by"),
        ("/api/latency", {"exact": "yes"}, 400, "exact"),
        ("/api/overview", {"since": "401d"}, 400, "since"),
        ("/api/overview", {"since": "1h", "until": "2h"}, 400, "since"),
        ("/api/overview", {"since": "yesterday-ish"}, 400, "since"),
        ("/api/overview", {"bucket": "1s"}, 400, "bucket"),
        ("/api/overview", {"bucket": "0"}, 400, "bucket"),
        ("/api/overview", {"bucket": "soon"}, 400, "bucket"),
        ("/api/overview", {"limit": "5"}, 400, "limit"),
        ("/api/overview", {"provider": "p" * 501}, 400, "provider"),
        ("/api/experiments", {"provider": "alpha"}, 400, "provider"),
        ("/api/experiments", {"property.feature": "inbox"}, 400, "property.feature"),
        ("/api/experiments", {"limit": "21"}, 400, "limit"),
        ("/api/requests/lr-nowhere", {}, 404, None),
        ("/api/nothing", {}, 404, None),
    ],
)
async def test_every_parameter_is_bounded(
    seeded: Any, path: str, params: dict[str, str], status: int, param: str | None
) -> None:
    async with in_process_gateway(router_config(seeded[0])) as gateway, gateway.http() as http:
        response = await http.get(f"{IN_PROCESS}{path}", params=params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"]


async def test_repeated_parameters_other_methods_and_no_store(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    seed(path)
    async with in_process_gateway(router_config(path)) as gateway, gateway.http() as http:
        twice = await http.get(f"{IN_PROCESS}/api/overview?provider=a&provider=b")
        assert twice.status_code == 400 and "twice" in twice.json()["error"]["message"]
        post = await http.post(f"{IN_PROCESS}/api/overview", json={})
        assert post.status_code == 405
    config = router_config(path)
    config["logging"] = None
    async with in_process_gateway(config) as gateway, gateway.http() as http:
        response = await http.get(f"{IN_PROCESS}/api/overview")
    assert response.status_code == 404
    assert "logging.store" in response.json()["error"]["message"]


# ---------------------------------------------------------------- llmroute dashboard's app


async def test_the_standalone_app_serves_the_same_views_read_only(seeded: Any) -> None:
    path, records = seeded
    app = DashboardApp(DashboardSource(open_store(path)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8081") as http:
        overview = (await http.get("/api/overview")).json()
        assert overview["totals"]["requests"] == len(recent(records))
        page = await http.get("/dashboard")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = await http.get("/dashboard/dashboard.js")
        assert script.headers["content-type"].startswith("text/javascript")
        health = (await http.get("/api/health")).json()
        assert health == {"live": False, "targets": []}
        assert (await http.get("/dashboard/../../etc/passwd")).status_code == 404
        assert (await http.post("/api/overview")).status_code == 405
        # a DNS-rebound name or another site's page is refused
        rebound = await http.get("/api/overview", headers={"host": "evil.example"})
        assert rebound.status_code == 403
        cross = await http.get("/api/overview", headers={"origin": "http://evil.example"})
        assert cross.status_code == 403
    assert open_store(path).records(limit=1000) and len(open_store(path).records()) == 40


async def test_a_live_router_writing_while_the_dashboard_reads(tmp_path: Path) -> None:
    """The router's own requests show up, read through WAL while its writer stays open."""
    path = tmp_path / "live.db"
    router = AsyncRouter(router_config(path))
    async with in_process_gateway({}, router=router) as gateway:
        client = gateway.client()
        for _ in range(3):
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        await router.flush()
        app = DashboardApp(DashboardSource(SqliteStore(path)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            overview = (await http.get("/api/overview")).json()
        assert overview["totals"]["requests"] == 3
        served = await get(gateway, "/api/overview")
        assert served["totals"] == overview["totals"]


# ---------------------------------------------------------------- the command


def test_the_dashboard_command_serves_a_store_read_only(seeded: Any) -> None:
    path, records = seeded
    with dashboard_command(path) as (root, output):
        overview = httpx.get(f"{root}/api/overview", timeout=10).json()
        page = httpx.get(f"{root}/dashboard", timeout=10)
    assert overview["totals"]["requests"] == len(recent(records))
    assert page.status_code == 200 and b"dashboard.js" in page.content
    assert f"llmroute dashboard on {root}/dashboard" in output[0] and "read-only" in output[0]


def test_the_dashboard_command_refuses_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard", "--store", str(tmp_path / "none.db")]) == 1
    assert "no llmroute store" in capsys.readouterr().err

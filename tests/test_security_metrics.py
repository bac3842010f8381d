"""`/metrics` names every key, its volumes and costs: with keys configured it needs an
admin key by default (issue 15, finding 12)."""

from __future__ import annotations

from typing import Any

import pytest

from _gateway import running_gateway
from llmroute.server import ServerConfig
from llmroute.server.keys import hash_key
from llmroute.server.run import ServeSource, summary

pytestmark = pytest.mark.anyio

ADMIN, TENANT = "admin-key-0123456789abcdef", "tenant-key-0123456789abcdef"
CONFIG = {"routes": {"chat": {"targets": ["mock/m"]}}}
KEYS = [
    {"name": "ops", "key": hash_key(ADMIN), "admin": True},
    {"name": "acme", "key": hash_key(TENANT)},
]


async def statuses(server: dict[str, Any]) -> dict[str, int]:
    async with running_gateway(CONFIG, server=server) as gateway, gateway.http() as http:
        url = f"{gateway.root}/metrics"
        found = {"none": (await http.get(url)).status_code}
        for name, key in (("admin", ADMIN), ("tenant", TENANT)):
            answer = await http.get(url, headers={"authorization": f"Bearer {key}"})
            found[name] = answer.status_code
            if answer.status_code == 403:
                assert answer.json()["error"]["code"] == "admin_key_required"
    return found


async def test_with_keys_only_an_admin_key_reads_the_metrics() -> None:
    assert await statuses({"keys": KEYS}) == {"none": 401, "admin": 200, "tenant": 403}


async def test_the_operator_may_open_them_to_any_key_or_everyone() -> None:
    assert await statuses({"keys": KEYS, "metrics": "key"}) == {
        "none": 401, "admin": 200, "tenant": 200,
    }  # fmt: skip
    assert await statuses({"keys": KEYS, "metrics": "public"}) == {
        "none": 200, "admin": 200, "tenant": 200,
    }  # fmt: skip


async def test_without_keys_they_stay_public_on_loopback() -> None:
    async with running_gateway(CONFIG) as gateway, gateway.http() as http:
        assert (await http.get(f"{gateway.root}/metrics")).status_code == 200


async def test_the_summary_says_who_may_read_them() -> None:
    from llmroute import AsyncRouter

    async with AsyncRouter(CONFIG) as router:
        text = summary(ServeSource("demo"), router, ServerConfig.model_validate({"keys": KEYS}))
    assert "(needs an admin key)" in text


async def test_the_summary_states_each_safety_and_money_policy() -> None:
    from llmroute import AsyncRouter

    config = {
        **CONFIG,
        "cache": {},
        "budgets": [{"per": "user", "usd": "5/day"}],
        "rate_limits": [{"per": "key", "requests": "10/min"}],
    }
    async with AsyncRouter(config) as router:
        text = summary(ServeSource("demo"), router, ServerConfig())
    (line,) = [line for line in text.splitlines() if line.startswith("  policies:")]
    assert line == (
        "  policies: only configured providers; upstream errors scrubbed; cache shared per "
        "key; budgets: unpriced targets refused, refuse when Redis is lost; rate limits: "
        "allow when Redis is lost"
    )

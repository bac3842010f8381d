"""Issue 15's tenancy findings on the real gateway: one tenant's cache, users, TTLs,
deadlines and model listings never reach another (findings 1, 7, 8, 11 and 17)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, get_args

import httpx
import pytest

from _gateway import KEY, OTHER_KEY, Gateway, in_process_gateway, running_gateway
from llmroute import AsyncRouter, CacheControl
from llmroute.cache.config import CacheScope
from llmroute.cache.keys import scope_line
from llmroute.server import GatewayKeyConfig

pytestmark = pytest.mark.anyio

THIRD_KEY = "test-gateway-key-third-555555555"

CONFIG: dict[str, Any] = {
    "providers": {
        "steady": {"type": "mock", "text": "the balance is 12 EUR"},
        "secretprov": {"type": "mock"},
    },
    "routes": {
        "chat": {"targets": ["steady/m"]},
        "internal-billing": {"targets": ["secretprov/m"]},
    },
}


def keys(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(entries)}


async def chat(
    http: httpx.AsyncClient,
    gateway: Gateway,
    key: str,
    content: str = "balance of account 1234?",
    *,
    model: str = "chat",
    body: dict[str, Any] | None = None,
    **headers: str,
) -> httpx.Response:
    return await http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}], **(body or {})},
        headers={"authorization": f"Bearer {key}", **headers},
        timeout=10,
    )


def cache_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-llmroute-cache"]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


class ManualClock:
    """A clock the test moves by hand (the memory cache's TTLs follow it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


# ---------------------------------------------------------------- finding 1: cache scope


@pytest.mark.parametrize(
    ("scope", "shared"), [(None, False), ("key", False), ("team", True), ("global", True)]
)
async def test_finding_1_a_key_never_sees_another_keys_cached_answer(
    scope: str | None, shared: bool
) -> None:
    cache: dict[str, Any] = {"ttl": "10m", **({"scope": scope} if scope else {})}
    server = keys(
        {"name": "a", "key": KEY, "team": "blue"}, {"name": "b", "key": OTHER_KEY, "team": "blue"}
    )
    async with (
        running_gateway({**CONFIG, "cache": cache}, server=server) as gateway,
        gateway.http() as http,
    ):
        first, again = await chat(http, gateway, KEY), await chat(http, gateway, KEY)
        assert (cache_of(first), cache_of(again)) == ("MISS", "HIT")
        assert again.json()["id"] == first.json()["id"]
        probe = await chat(http, gateway, OTHER_KEY)  # B asks what A asked
        if shared:  # an explicit opt-in: team mates, or everyone
            assert cache_of(probe) == "HIT" and probe.json()["id"] == first.json()["id"]
            return
        assert cache_of(probe) == "MISS"  # no membership oracle: A's question stays A's
        assert probe.json()["id"] != first.json()["id"]
        assert probe.json()["created"] >= first.json()["created"]
        own = await chat(http, gateway, OTHER_KEY)
        assert cache_of(own) == "HIT" and own.json()["id"] == probe.json()["id"]


async def test_finding_1_redis_entries_are_scoped_by_key_too(redis_url: str) -> None:
    cache = {"backend": redis_url, "ttl": "10m"}
    server = keys({"name": "a", "key": KEY}, {"name": "b", "key": OTHER_KEY})
    async with (
        running_gateway({**CONFIG, "cache": cache}, server=server) as gateway,
        gateway.http() as http,
    ):
        first = await chat(http, gateway, KEY)
        await gateway.router.drain()  # Redis stores run off the request's path
        again = await chat(http, gateway, KEY)
        assert (cache_of(first), cache_of(again)) == ("MISS", "HIT")
        probe = await chat(http, gateway, OTHER_KEY)
        assert cache_of(probe) == "MISS" and probe.json()["id"] != first.json()["id"]
        await gateway.router.drain()
        assert cache_of(await chat(http, gateway, OTHER_KEY)) == "HIT"


async def test_finding_1_in_process_a_request_can_scope_by_user() -> None:
    config = {**CONFIG, "cache": {"ttl": "10m"}}
    user_scope: dict[str, Any] = {"scope": "user"}
    async with AsyncRouter(config, env={}) as router:
        create = router.chat.completions.create
        hi = [{"role": "user", "content": "hi"}]

        async def status(**options: Any) -> str | None:
            reply = await create(model="chat", messages=hi, llmroute=options)
            return reply.llmroute.cache

        assert await status(user="alice", cache=user_scope) == "miss"
        assert await status(user="alice", cache=user_scope) == "hit"
        assert await status(user="bob", cache=user_scope) == "miss"
        # without a scope of its own, a request without a key shares the unscoped entries
        assert await status() == "miss"
        assert await status(user="carol") == "hit"


def test_cache_scopes_agree_and_nest() -> None:
    per_request = get_args(CacheControl.model_fields["scope"].annotation)[0]
    assert get_args(CacheScope) == get_args(per_request)
    assert scope_line("global", "a", "t", "u") == b""
    assert scope_line("key", None, None, "u") == b""  # nobody to scope by: shared
    assert scope_line("team", "a", None, None) == scope_line("key", "a", None, None)
    assert scope_line("team", "a", "t", None) == scope_line("team", "b", "t", None)
    assert scope_line("user", "a", None, "u") != scope_line("user", "b", None, "u")
    assert scope_line("user", "a", None, None) == scope_line("key", "a", None, None)


# ---------------------------------------------------------------- finding 8: cache TTL, refusals


async def test_finding_8_a_client_ttl_never_outlives_the_routes() -> None:
    clock = ManualClock()
    router = AsyncRouter({**CONFIG, "cache": {"ttl": "10m"}}, env={}, clock=clock)
    async with in_process_gateway({}, router=router) as gateway, gateway.http() as http:
        asked = {"x-llmroute-cache-ttl": "1d"}
        assert cache_of(await chat(http, gateway, "none", **asked)) == "MISS"
        assert cache_of(await chat(http, gateway, "none")) == "HIT"
        clock.now += 11 * 60
        assert cache_of(await chat(http, gateway, "none")) == "MISS"  # 10 minutes, not a day
        # in process too: a request's ttl is cut to the route's
        hi = [{"role": "user", "content": "in process"}]
        long_ttl = {"cache": {"ttl": 1e9}}
        create = router.chat.completions.create
        assert (await create(model="chat", messages=hi, llmroute=long_ttl)).llmroute.cache == "miss"
        clock.now += 11 * 60
        assert (await create(model="chat", messages=hi)).llmroute.cache == "miss"


async def test_finding_8_redis_keeps_an_entry_no_longer_than_the_route_says(
    redis_url: str,
) -> None:
    import redis.asyncio as aioredis

    cache = {"backend": redis_url, "ttl": "10m"}
    async with running_gateway({**CONFIG, "cache": cache}) as gateway, gateway.http() as http:
        asked = await chat(http, gateway, "none", **{"x-llmroute-cache-ttl": "300d"})
        assert cache_of(asked) == "MISS"
        await gateway.router.drain()
        client = aioredis.Redis.from_url(redis_url)
        try:
            names = [name async for name in client.scan_iter("llmroute:cache*")]
            assert names
            for name in names:
                assert 0 < await client.pttl(name) <= 600_000
        finally:
            await client.aclose()


@pytest.fixture
def refusing_redis(redis_url: str) -> Iterator[str]:
    """Redis out of memory under ``noeviction``: it answers reads and refuses writes."""
    import redis

    client = redis.Redis.from_url(redis_url)
    policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        yield redis_url
    finally:
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", policy)
        client.close()


async def test_finding_8_a_write_redis_refuses_is_a_failed_write_not_an_outage(
    refusing_redis: str,
) -> None:
    cache = {"backend": refusing_redis, "ttl": "10m", "retry_interval": "1h"}
    async with running_gateway({**CONFIG, "cache": cache}) as gateway, gateway.http() as http:
        assert cache_of(await chat(http, gateway, "none", "one")) == "MISS"
        await gateway.router.drain()
        stats = gateway.router.cache_stats()
        assert stats is not None and (stats.errors, stats.not_stored, stats.stores) == (1, 1, 0)
        # Redis answered: it is not taken for down, and every tenant still looks up
        assert cache_of(await chat(http, gateway, "none", "two")) == "MISS"
        assert stats.bypasses == 0


# ---------------------------------------------------------------- findings 8 and 11: client durations

OUT_OF_RANGE = ["1e308", "1e300", "1e999", "400d", "-5", "0", "nan", "inf", "-inf"]


@pytest.mark.parametrize("header", ["x-llmroute-cache-ttl", "x-llmroute-timeout"])
async def test_findings_8_and_11_durations_out_of_range_are_a_400_naming_the_header(
    header: str,
) -> None:
    async with (
        running_gateway({**CONFIG, "cache": {"ttl": "10m"}}) as gateway,
        gateway.http() as http,
    ):
        for value in OUT_OF_RANGE:
            error = error_of(await chat(http, gateway, "none", **{header: value}), 400)
            assert error["param"] == header and header in error["message"], value
            assert error["code"] == "invalid_header"


# ---------------------------------------------------------------- finding 11: timeout


async def test_finding_11_a_client_deadline_never_outlasts_the_routes() -> None:
    config = {
        "providers": {"slow": {"type": "mock", "latency": "2s"}},
        "routes": {"chat": {"targets": ["slow/m"], "timeout": "300ms"}},
    }
    async with running_gateway(config) as gateway, gateway.http() as http:
        started = time.monotonic()
        reply = await chat(http, gateway, "none", **{"x-llmroute-timeout": "1m"})
        took = time.monotonic() - started
        assert reply.status_code == 504, reply.text
        assert took < 1.5
        # shorter than the route's: still the client's to ask
        started = time.monotonic()
        reply = await chat(http, gateway, "none", **{"x-llmroute-timeout": "100ms"})
        assert reply.status_code == 504 and time.monotonic() - started < 0.3 + 0.5


# ---------------------------------------------------------------- finding 7: identity


async def test_finding_7_a_key_not_bound_to_a_user_names_none_by_default() -> None:
    server = keys(
        {"name": "alice-laptop", "key": KEY, "user": "alice"}, {"name": "plain", "key": OTHER_KEY}
    )
    alice = {"x-llmroute-user": "alice"}
    async with running_gateway(CONFIG, server=server) as gateway, gateway.http() as http:
        error = error_of(await chat(http, gateway, OTHER_KEY, **alice), 403)
        assert (error["code"], error["param"]) == ("user_not_allowed", "x-llmroute-user")
        assert "users" in error["message"]
        # a bound key still acts for its own user only
        assert (await chat(http, gateway, KEY, **alice)).status_code == 200
        error_of(await chat(http, gateway, KEY, **{"x-llmroute-user": "bob"}), 403)


async def test_finding_7_a_key_never_spends_the_quota_of_another_keys_user() -> None:
    config = {**CONFIG, "rate_limits": [{"per": "user", "requests": "1/min"}]}
    server = keys(
        {"name": "alice-laptop", "key": KEY, "user": "alice"}, {"name": "plain", "key": OTHER_KEY}
    )
    async with running_gateway(config, server=server) as gateway, gateway.http() as http:
        # the body's OpenAI `user` names alice: that is plain's alice, not alice herself
        named = await chat(http, gateway, OTHER_KEY, body={"user": "alice"})
        assert named.status_code == 200
        assert (await chat(http, gateway, KEY)).status_code == 200
        assert (await chat(http, gateway, KEY)).status_code == 429  # her own quota, spent
        again = await chat(http, gateway, OTHER_KEY, body={"user": "alice"})
        assert again.status_code == 429  # plain's alice has had her one request too


async def test_finding_7_users_any_or_a_list_counted_within_the_key() -> None:
    config = {**CONFIG, "rate_limits": [{"per": "user", "requests": "1/min"}]}
    server = keys(
        {"name": "alice-laptop", "key": KEY, "user": "alice"},
        {"name": "svc", "key": OTHER_KEY, "users": "any"},
        {"name": "listed", "key": THIRD_KEY, "users": ["team-*", "ops"]},
    )
    alice = {"x-llmroute-user": "alice"}
    async with running_gateway(config, server=server) as gateway, gateway.http() as http:
        assert (await chat(http, gateway, OTHER_KEY, **alice)).status_code == 200
        assert (await chat(http, gateway, KEY)).status_code == 200
        assert (await chat(http, gateway, OTHER_KEY, **alice)).status_code == 429
        for user in ("team-x", "ops"):
            named = await chat(http, gateway, THIRD_KEY, **{"x-llmroute-user": user})
            assert named.status_code == 200
        error_of(await chat(http, gateway, THIRD_KEY, **alice), 403)


def test_users_is_refused_on_a_key_bound_to_a_user() -> None:
    with pytest.raises(ValueError, match="bound to user"):
        GatewayKeyConfig.model_validate({"name": "k", "key": KEY, "user": "a", "users": "any"})
    assert GatewayKeyConfig.model_validate({"name": "k", "key": KEY}).users == "none"


# ---------------------------------------------------------------- finding 17: listings


async def test_finding_17_a_restricted_key_sees_only_what_it_may_use() -> None:
    server = keys(
        {"name": "r", "key": KEY, "routes": ["chat", "c*", "nowhere/*", "steady/m"]},
        {"name": "u", "key": OTHER_KEY},
    )
    async with running_gateway(CONFIG, server=server) as gateway, gateway.http() as http:
        for model in ("codex", "nowhere/model"):
            error = error_of(await chat(http, gateway, KEY, model=model), 404)
            message = error["message"]
            assert error["code"] == "model_not_found", message
            assert "internal-billing" not in message and "secretprov" not in message, message
            assert "chat" in message and "steady/m" in message
        anthropic = await http.post(
            f"{gateway.root}/v1/messages",
            json={
                "model": "codex",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers={"x-api-key": KEY},
        )
        assert anthropic.status_code == 404
        assert "internal-billing" not in anthropic.text and "secretprov" not in anthropic.text
        listed = await http.get(
            f"{gateway.base_url}/models", headers={"authorization": f"Bearer {KEY}"}
        )
        assert [m["id"] for m in listed.json()["data"]] == ["chat", "steady/m"]
        # a key that may use everything is told everything
        error = error_of(await chat(http, gateway, OTHER_KEY, model="codex"), 404)
        assert "internal-billing" in error["message"]

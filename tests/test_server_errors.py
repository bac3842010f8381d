"""Every error the gateway answers, with the status and body an OpenAI SDK expects (in process)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from _gateway import KEY, OTHER_KEY, USER, in_process_gateway
from llmroute.observe import SqliteStore
from llmroute.server.keys import hash_key

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "providers": {
        "down1": {"type": "mock", "failure_rate": 1.0, "failure_status": 503, "retry_after": None},
        "down2": {"type": "mock", "failure_rate": 1.0, "failure_status": 503},
        "dropping": {"type": "mock", "script": ["drop"], "repeat_script": True},
        "invalid": {
            "type": "mock",
            "script": [{"status": 400, "message": "bad temperature", "param": "temperature"}],
        },
        "badkey": {"type": "mock", "script": [401], "repeat_script": True},
        "cut": {
            "type": "mock",
            "script": [{"cut_after": 2}],
            "repeat_script": True,
            "text": "one two three four five",
        },
        "echo": {"type": "mock", "echo": True},
    },
    "routes": {
        "down": {"targets": ["down1/a", "down2/b"], "retry": {"attempts": 1}},
        "dropped": {"targets": ["dropping/a"], "retry": {"attempts": 1}},
        "invalid": {"targets": ["invalid/a"]},
        "badkey": {"targets": ["badkey/a"], "failover_on": [], "retry": {"attempts": 1}},
        "cut": {"targets": ["cut/a"]},
        "echo": {"targets": ["echo/a"]},
        "chat": {"targets": ["echo/b"]},
    },
}
# the mock's `failure_rate` has no retry_after field: drop the placeholder above
CONFIG["providers"]["down1"].pop("retry_after")

KEYS = {
    "keys": [
        {"name": "full", "key": hash_key(KEY), "user": "alice", "team": "blue"},
        {"name": "echo-only", "key": OTHER_KEY, "routes": ["echo", "mock/*"]},
    ]
}


def error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict), body
    assert set(body) >= {"message", "type", "param", "code"}
    return body


#: The form of a request id: the router's (``new_request_id``), or the gateway's for a request
#: refused before it reached the router.
REQUEST_ID = re.compile(r"lr-[0-9a-f]{28}")


def request_id_of(response: httpx.Response) -> str:
    """The response's ``x-llmroute-request-id``, checked; and, for an error, its body's."""
    request_id = response.headers["x-llmroute-request-id"]
    assert REQUEST_ID.fullmatch(request_id), request_id
    if response.status_code >= 400:
        body = response.json()
        inner = (
            body.get("request_id")
            if body.get("type") == "error"
            else body["error"].get("request_id")
        )  # /v1/messages: Anthropic's shape, the id at the top level
        assert inner == request_id, body
    return request_id


# ---------------------------------------------------------------- 400


async def test_invalid_parameters_are_400_with_the_param() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="echo", messages=USER, temperature=5)
        assert error_body(info.value)["param"] == "temperature"
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="echo", messages=[])
        assert error_body(info.value)["param"] == "messages"
        with pytest.raises(openai.BadRequestError) as info:
            await client.embeddings.create(model="echo", input=[])
        assert error_body(info.value)["param"] == "input"


async def test_a_request_the_provider_calls_invalid_is_400() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="invalid", messages=USER)
        body = error_body(info.value)
        assert "bad temperature" in body["message"]
        assert body["param"] == "temperature"  # the field the provider blamed


async def test_llmroute_options_in_the_body_are_refused() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="echo", messages=USER, extra_body={"llmroute": {"team": "someone-else"}}
            )
        assert error_body(info.value)["param"] == "llmroute"


# ---------------------------------------------------------------- 401, 403


async def test_missing_or_wrong_keys_are_401() -> None:
    async with in_process_gateway(CONFIG, server=KEYS) as gateway:
        async with gateway.client("not-a-key") as client:
            with pytest.raises(openai.AuthenticationError) as info:
                await client.chat.completions.create(model="echo", messages=USER)
            assert error_body(info.value)["code"] == "invalid_api_key"
        async with gateway.http() as http:
            response = await http.post(
                f"{gateway.base_url}/chat/completions", json={"model": "echo", "messages": USER}
            )
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            response = await http.get(
                f"{gateway.base_url}/models", headers={"authorization": f"Basic {KEY}"}
            )
            assert response.status_code == 401
        for key in (KEY, OTHER_KEY):  # a hashed key and a plain one
            async with gateway.client(key) as client:
                reply = await client.chat.completions.create(model="echo", messages=USER)
                assert reply.choices[0].message.content == "hello"


async def test_a_route_the_key_may_not_use_is_403() -> None:
    async with in_process_gateway(CONFIG, server=KEYS) as gateway:
        async with gateway.client(OTHER_KEY) as client:
            with pytest.raises(openai.PermissionDeniedError) as info:
                await client.chat.completions.create(model="chat", messages=USER)
            assert error_body(info.value)["code"] == "route_not_allowed"
            await client.chat.completions.create(model="mock/anything", messages=USER)
            assert [m.id async for m in client.models.list()] == ["echo"]
        async with gateway.client(KEY) as client:
            with pytest.raises(openai.PermissionDeniedError) as info:
                await client.chat.completions.create(
                    model="echo", messages=USER, extra_headers={"x-llmroute-user": "mallory"}
                )
            assert error_body(info.value)["code"] == "user_not_allowed"
            await client.chat.completions.create(
                model="echo", messages=USER, extra_headers={"x-llmroute-user": "alice"}
            )


async def test_the_key_identity_reaches_the_router() -> None:
    records: list[Any] = []
    config = {**CONFIG, "rate_limits": {"rules": [{"per": "team", "requests": "1/min"}]}}
    async with in_process_gateway(config, server=KEYS) as gateway, gateway.client(KEY) as client:
        gateway.router.add_hook("request_end", records.append)
        await client.chat.completions.create(model="echo", messages=USER)
        with pytest.raises(openai.RateLimitError):  # team "blue" has had its request
            await client.chat.completions.create(model="echo", messages=USER)
        async with gateway.client(OTHER_KEY) as other:  # a key without a team: not counted
            for _ in range(2):
                await other.chat.completions.create(model="echo", messages=USER)
        await gateway.router.flush()
    assert records[0].user == "alice"


async def test_the_request_log_records_the_key_name_and_team(tmp_path: Path) -> None:
    store = tmp_path / "log.db"
    config = {
        **CONFIG,
        "rate_limits": {"rules": [{"per": "team", "requests": "1/min"}]},
        "logging": {"store": f"sqlite:///{store}", "sinks": [f"jsonl:///{tmp_path / 'log.jsonl'}"]},
    }  # fmt: skip
    truth: dict[str, tuple[str, str | None, str]] = {}  # id: key name, team, status
    async with in_process_gateway(config, server=KEYS) as gateway:
        async with gateway.client(KEY) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="echo", messages=USER
            )
            truth[raw.headers["x-llmroute-request-id"]] = ("full", "blue", "ok")
            with pytest.raises(openai.RateLimitError) as info:  # team "blue" has had its request
                await client.chat.completions.create(model="echo", messages=USER, stream=True)
            truth[info.value.response.headers["x-llmroute-request-id"]] = ("full", "blue", "error")
        async with gateway.client(OTHER_KEY) as client:
            for _ in range(2):
                reply = await client.embeddings.with_raw_response.create(model="echo", input="x")
                truth[reply.headers["x-llmroute-request-id"]] = ("echo-only", None, "ok")
        async with gateway.client("not-a-key") as client:  # refused before the router: no record
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model="echo", messages=USER)
        report = await gateway.router.analytics(by=["key", "team"])
        blue = await gateway.router.analytics(team="blue", where=["key=full"])
    records = SqliteStore(store).records()
    assert {r.request_id: (r.key, r.team, r.status) for r in records} == truth
    assert {(r.group["key"], r.group["team"]): r.requests for r in report.rows} == {
        ("full", "blue"): 2, ("echo-only", None): 2,
    }  # fmt: skip
    assert (blue.total.requests, blue.total.errors) == (2, 1)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {(d["key"], d["team"]) for d in lines} == {("full", "blue"), ("echo-only", None)}
    for secret in (KEY, OTHER_KEY, hash_key(KEY).removeprefix("sha256:")):  # names only
        for path in tmp_path.iterdir():
            assert secret.encode() not in path.read_bytes()


# ---------------------------------------------------------------- 404, 405


async def test_unknown_model_and_unknown_path_are_404() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(model="no-such-route", messages=USER)
        body = error_body(info.value)
        assert (body["code"], body["param"]) == ("model_not_found", "model")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("no-such-route")
        async with gateway.http() as http:
            response = await http.post(f"{gateway.base_url}/completions", json={})
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "invalid_request_error"
            response = await http.get(f"{gateway.base_url}/chat/completions")
            assert response.status_code == 405
            assert response.headers["allow"] == "POST"


# ---------------------------------------------------------------- 413, 415


async def test_a_body_over_the_limit_is_413() -> None:
    server = {"max_body_size": "64KiB"}
    async with in_process_gateway(CONFIG, server=server) as gateway, gateway.client() as client:
        big = [{"role": "user", "content": "x" * 70_000}]
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="echo", messages=big)
        assert info.value.status_code == 413
        assert error_body(info.value)["code"] == "request_too_large"
        small = [{"role": "user", "content": "x" * 60_000}]
        await client.chat.completions.create(model="echo", messages=small)


async def test_a_body_that_is_not_json_is_415() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.http() as http:
        url = f"{gateway.base_url}/chat/completions"
        response = await http.post(
            url, content=b"model=echo", headers={"content-type": "text/plain"}
        )
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "unsupported_media_type"
        response = await http.post(
            url,
            content=b"{}",
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert response.status_code == 415
        charset = {"content-type": "application/json; charset=utf-8"}
        body = b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}]}'
        assert (await http.post(url, content=body, headers=charset)).status_code == 200


# ---------------------------------------------------------------- 429


async def test_a_local_rate_limit_is_429_with_retry_after() -> None:
    config = {**CONFIG, "rate_limits": {"rules": [{"per": "key", "requests": "2/min"}]}}
    async with in_process_gateway(config, server=KEYS) as gateway, gateway.client(KEY) as client:
        for _ in range(2):
            await client.chat.completions.create(model="echo", messages=USER)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="echo", messages=USER)
        assert error_body(info.value)["code"] == "rate_limit_exceeded"
        headers = info.value.response.headers
        assert 1 <= int(headers["retry-after"]) <= 30
        assert int(headers["retry-after-ms"]) > 0
        async with gateway.client(OTHER_KEY) as other:  # another key: its own limit
            await other.chat.completions.create(model="echo", messages=USER)


async def test_an_exhausted_budget_is_429_not_to_be_retried() -> None:
    config = {
        "providers": {"echo": {"type": "mock", "echo": True}},
        "routes": {
            "paid": {
                "targets": [
                    {"provider": "echo", "model": "a", "price": {"input": 5e3, "output": 5e3}}
                ]
            }
        },
        "budgets": {"rules": [{"per": "global", "usd": "0.01/day"}]},
    }
    started: list[Any] = []
    async with in_process_gateway(config) as gateway, gateway.client(max_retries=2) as client:
        gateway.router.add_hook("request_start", started.append)
        await client.chat.completions.create(model="paid", messages=USER, max_tokens=100)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="paid", messages=USER, max_tokens=100)
        body = error_body(info.value)
        assert (body["type"], body["code"]) == ("insufficient_quota", "budget_exceeded")
        assert info.value.response.headers["x-should-retry"] == "false"
        await gateway.router.flush()
    assert len(started) == 2  # the SDK, allowed 2 retries, did not retry the refusal


# ---------------------------------------------------------------- 5xx


async def test_every_target_overloaded_is_503_with_the_attempts() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="down", messages=USER)
        assert info.value.status_code == 503
        body = error_body(info.value)
        assert body["code"] == "all_targets_failed"
        assert [a["target"] for a in body["attempts"]] == ["down1/a", "down2/b"]
        assert {a["status"] for a in body["attempts"]} == {503}
        assert "down1/a" in body["message"] and "down2/b" in body["message"]
        with pytest.raises(openai.InternalServerError) as info:  # a stream that never started
            await client.chat.completions.create(model="down", messages=USER, stream=True)
        assert info.value.status_code == 503


async def test_connection_failures_are_502_and_bad_upstream_credentials_too() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="dropped", messages=USER)
        assert info.value.status_code == 502
        # the provider refused the gateway's own key: not the client's fault, so not a 401
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="badkey", messages=USER)
        assert info.value.status_code == 502
        assert error_body(info.value)["type"] == "upstream_error"


async def test_every_attempt_timing_out_is_504() -> None:
    config = {
        "providers": {"slow": {"type": "mock", "latency": "1s"}},
        "routes": {
            "slow": {
                "targets": ["slow/a"],
                "attempt_timeout": "50ms",
                "retry": {"attempts": 2, "initial": "1ms"},
            }
        },
    }
    async with in_process_gateway(config) as gateway, gateway.client() as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="slow", messages=USER)
        assert info.value.status_code == 504
        assert len(error_body(info.value)["attempts"]) == 2


async def test_a_stream_failing_after_its_first_chunk_ends_with_an_error_event() -> None:
    async with in_process_gateway(CONFIG) as gateway:
        async with gateway.client() as client:
            stream = await client.chat.completions.create(model="cut", messages=USER, stream=True)
            received = []

            async def read_all() -> None:
                async for chunk in stream:
                    received.append(chunk)

            with pytest.raises(openai.APIError) as info:
                await read_all()
            assert received  # the first chunks did arrive
            assert isinstance(info.value.body, dict)
            assert info.value.body["type"] == "stream_interrupted"
        async with gateway.http() as http:  # the raw events: an error, and no [DONE]
            body = {"model": "cut", "messages": USER, "stream": True}
            raw = (await http.post(f"{gateway.base_url}/chat/completions", json=body)).text
        assert raw.rstrip().split("\n\n")[-1].startswith('data: {"error":')
        assert "[DONE]" not in raw


# ---------------------------------------------------------------- request ids


async def test_every_response_carries_a_request_id_early_errors_included() -> None:
    server = {**KEYS, "max_body_size": "1KiB"}
    async with in_process_gateway(CONFIG, server=server) as gateway, gateway.http() as http:
        url = f"{gateway.base_url}/chat/completions"
        auth = {"authorization": f"Bearer {KEY}"}
        other = {"authorization": f"Bearer {OTHER_KEY}"}
        text = {**auth, "content-type": "text/plain"}
        good = {"model": "echo", "messages": USER}
        answered = await http.post(url, json=good, headers=auth)
        refused = [
            (401, await http.post(url, json=good)),
            (401, await http.post(url, json=good, headers={"authorization": "Bearer wrong"})),
            (400, await http.post(url, content=b"{not json", headers=auth)),
            (400, await http.post(url, json={**good, "temperature": 5}, headers=auth)),
            (400, await http.post(url, json=good, headers={**auth, "x-llmroute-cahce": "1"})),
            (403, await http.post(url, json={**good, "model": "chat"}, headers=other)),
            (404, await http.post(url, json={**good, "model": "no-such-route"}, headers=auth)),
            (404, await http.get(f"{gateway.base_url}/nowhere")),
            (405, await http.get(url)),
            (413, await http.post(
                url, json={**good, "messages": [{"role": "user", "content": "x" * 2000}]},
                headers=auth,
            )),
            (415, await http.post(url, content=b"x", headers=text)),
            (401, await http.post(
                f"{gateway.root}/v1/messages",
                json={"model": "echo", "max_tokens": 5, "messages": USER},
            )),
        ]  # fmt: skip
        ids = [request_id_of(answered)]
        for status, response in refused:
            assert response.status_code == status, response.text
            ids.append(request_id_of(response))
        for path in ("/health", "/ready", "/metrics", "/v1/models"):
            ids.append(request_id_of(await http.get(gateway.root + path, headers=auth)))
        assert len(set(ids)) == len(ids)  # a new id for each
        async with gateway.client("not-a-key") as client:
            with pytest.raises(openai.AuthenticationError) as info:
                await client.chat.completions.create(model="echo", messages=USER)
        request_id = info.value.response.headers["x-llmroute-request-id"]
        assert REQUEST_ID.fullmatch(request_id)
        assert error_body(info.value)["request_id"] == request_id
        assert info.value.request_id == request_id  # the SDK reads it from x-request-id
        async with gateway.client(KEY) as client:
            completion = await client.chat.completions.create(model="echo", messages=USER)
            raw = await client.chat.completions.with_raw_response.create(
                model="echo", messages=USER
            )
        assert completion._request_id is not None
        assert REQUEST_ID.fullmatch(completion._request_id)
        assert raw.headers["x-request-id"] == raw.headers["x-llmroute-request-id"]


async def test_a_router_failure_names_the_request_in_the_log(tmp_path: Path) -> None:
    store = tmp_path / "log.db"
    config = {
        **CONFIG,
        "providers": {**CONFIG["providers"], "priced": {"type": "mock", "echo": True}},
        "routes": {**CONFIG["routes"], "paid": {"targets": [
            {"provider": "priced", "model": "a", "price": {"input": 5e3, "output": 5e3}}
        ]}},
        "rate_limits": {"rules": [{"per": "user", "requests": "1/min"}]},
        "budgets": {"rules": [{"per": "property:tenant", "usd": "0.01/day"}]},
        "logging": {"store": f"sqlite:///{store}"},
    }  # fmt: skip
    expected: dict[str, tuple[str, str | None, str | None]] = {}  # id: status, error type, limit

    async def fails(status: int, error_type: str, limit: str | None = None, **kw: Any) -> None:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(messages=USER, **kw)
        assert info.value.status_code == status
        request_id = info.value.response.headers["x-llmroute-request-id"]
        assert error_body(info.value)["request_id"] == request_id
        expected[request_id] = ("error", error_type, limit)

    async with in_process_gateway(config) as gateway, gateway.client() as client:
        await fails(503, "AllTargetsFailed", model="down")
        await fails(503, "AllTargetsFailed", model="down", stream=True)
        await fails(400, "InvalidRequest", model="invalid")
        await fails(502, "AuthenticationError", model="badkey")
        user = {"x-llmroute-user": "ann"}
        await client.chat.completions.create(model="echo", messages=USER, extra_headers=user)
        await fails(429, "LocalRateLimitExceeded", "LocalRateLimitExceeded", model="echo",
                    extra_headers=user)  # fmt: skip
        tenant = {"x-llmroute-property-tenant": "t1"}
        await client.chat.completions.create(
            model="paid", messages=USER, max_tokens=100, extra_headers=tenant
        )
        await fails(429, "BudgetExceeded", "BudgetExceeded", model="paid", max_tokens=100,
                    extra_headers=tenant)  # fmt: skip
        async with gateway.http() as http:
            anthropic = await http.post(
                f"{gateway.root}/v1/messages",
                json={"model": "down", "max_tokens": 5, "messages": USER},
            )
            assert anthropic.status_code == 529
            expected[request_id_of(anthropic)] = ("error", "AllTargetsFailed", None)
            body = {"model": "cut", "messages": USER, "stream": True}
            cut = await http.post(f"{gateway.base_url}/chat/completions", json=body)
        last = json.loads(cut.text.rstrip().split("\n\n")[-1].removeprefix("data: "))
        assert last["error"]["request_id"] == request_id_of(cut)
        expected[request_id_of(cut)] = ("error", "StreamInterrupted", None)
        await gateway.router.flush()
    records = {r.request_id: r for r in SqliteStore(store).records()}
    assert len(expected) == 8
    for request_id, (status, error_type, limit) in expected.items():
        record = records[request_id]
        assert (record.status, record.error_type, record.limit) == (status, error_type, limit)

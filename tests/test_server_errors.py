"""Every error the gateway answers, with the status and body an OpenAI SDK expects."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from _gateway import KEY, OTHER_KEY, USER, running_gateway
from llmroute.server.keys import hash_key

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "providers": {
        "down1": {"type": "mock", "failure_rate": 1.0, "failure_status": 503, "retry_after": None},
        "down2": {"type": "mock", "failure_rate": 1.0, "failure_status": 503},
        "dropping": {"type": "mock", "script": ["drop"], "repeat_script": True},
        "invalid": {"type": "mock", "script": [{"status": 400, "message": "bad temperature"}]},
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


# ---------------------------------------------------------------- 400


async def test_invalid_parameters_are_400_with_the_param() -> None:
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
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
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="invalid", messages=USER)
        assert "bad temperature" in error_body(info.value)["message"]


async def test_llmroute_options_in_the_body_are_refused() -> None:
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="echo", messages=USER, extra_body={"llmroute": {"team": "someone-else"}}
            )
        assert error_body(info.value)["param"] == "llmroute"


# ---------------------------------------------------------------- 401, 403


async def test_missing_or_wrong_keys_are_401() -> None:
    async with running_gateway(CONFIG, server=KEYS) as gateway:
        async with gateway.client("not-a-key") as client:
            with pytest.raises(openai.AuthenticationError) as info:
                await client.chat.completions.create(model="echo", messages=USER)
            assert error_body(info.value)["code"] == "invalid_api_key"
        async with httpx.AsyncClient() as http:
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
    async with running_gateway(CONFIG, server=KEYS) as gateway:
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
    async with running_gateway(config, server=KEYS) as gateway, gateway.client(KEY) as client:
        gateway.router.add_hook("request_end", records.append)
        await client.chat.completions.create(model="echo", messages=USER)
        with pytest.raises(openai.RateLimitError):  # team "blue" has had its request
            await client.chat.completions.create(model="echo", messages=USER)
        async with gateway.client(OTHER_KEY) as other:  # a key without a team: not counted
            for _ in range(2):
                await other.chat.completions.create(model="echo", messages=USER)
        await gateway.router.flush()
    assert records[0].user == "alice"


# ---------------------------------------------------------------- 404, 405


async def test_unknown_model_and_unknown_path_are_404() -> None:
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(model="no-such-route", messages=USER)
        body = error_body(info.value)
        assert (body["code"], body["param"]) == ("model_not_found", "model")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("no-such-route")
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{gateway.base_url}/completions", json={})
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "invalid_request_error"
            response = await http.get(f"{gateway.base_url}/chat/completions")
            assert response.status_code == 405
            assert response.headers["allow"] == "POST"


# ---------------------------------------------------------------- 413, 415


async def test_a_body_over_the_limit_is_413() -> None:
    server = {"max_body_size": "64KiB"}
    async with running_gateway(CONFIG, server=server) as gateway, gateway.client() as client:
        big = [{"role": "user", "content": "x" * 70_000}]
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="echo", messages=big)
        assert info.value.status_code == 413
        assert error_body(info.value)["code"] == "request_too_large"
        small = [{"role": "user", "content": "x" * 60_000}]
        await client.chat.completions.create(model="echo", messages=small)


async def test_a_body_that_is_not_json_is_415() -> None:
    async with running_gateway(CONFIG) as gateway, httpx.AsyncClient() as http:
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
    async with running_gateway(config, server=KEYS) as gateway, gateway.client(KEY) as client:
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
    async with running_gateway(config) as gateway, gateway.client(max_retries=2) as client:
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
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
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
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
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
    async with running_gateway(config) as gateway, gateway.client() as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="slow", messages=USER)
        assert info.value.status_code == 504
        assert len(error_body(info.value)["attempts"]) == 2


async def test_a_stream_failing_after_its_first_chunk_ends_with_an_error_event() -> None:
    async with running_gateway(CONFIG) as gateway:
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
        async with httpx.AsyncClient() as http:  # the raw events: an error, and no [DONE]
            body = {"model": "cut", "messages": USER, "stream": True}
            raw = (await http.post(f"{gateway.base_url}/chat/completions", json=body)).text
        assert raw.rstrip().split("\n\n")[-1].startswith('data: {"error":')
        assert "[DONE]" not in raw

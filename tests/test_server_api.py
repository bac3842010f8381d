"""The gateway's OpenAI-compatible API through the official openai SDK: headers, metrics and
health in process, the answers and streams themselves also over a real socket."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _gateway import USER, in_process_gateway, running_gateway
from _upstream import Upstream
from llmroute import ChatCompletion, Outcome, RequestContext, Stage
from llmroute.observe import RequestRecord

pytestmark = pytest.mark.anyio

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]

CONFIG: dict[str, Any] = {
    "providers": {
        "flaky": {"type": "mock", "script": [503], "text": "from flaky"},
        "steady": {"type": "mock", "echo": True},
        "tools": {
            "type": "mock",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        },
    },
    "routes": {
        "chat": {"targets": ["flaky/m1", "steady/m2"]},
        "echo": {"targets": ["steady/echo-model"]},
        "tooling": {"targets": ["tools/tool-model"]},
        "embed": {"targets": ["steady/embed-model"]},
    },
}


async def test_chat_completion_with_failover_and_route_headers() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "ping"}]
        )
        reply = raw.parse()
        assert reply.choices[0].message.content == "ping"  # steady echoes; flaky failed first
        headers = raw.headers
        assert headers["x-llmroute-provider"] == "steady"
        assert headers["x-llmroute-model"] == "m2"
        assert headers["x-llmroute-route"] == "chat"
        assert headers["x-llmroute-attempts"] == "2"
        assert headers["x-llmroute-cache"] == "MISS"
        assert headers["x-llmroute-request-id"].startswith("lr-")
        assert float(headers["x-llmroute-latency-ms"]) >= 0
        assert "x-llmroute-cost-usd" not in headers  # the mock has no price


async def test_every_parameter_reaches_the_provider(upstream: Upstream) -> None:
    config = {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "sk-up"}},
        "routes": {"chat": {"targets": ["up/up-model"]}},
    }
    async with running_gateway(config) as gateway, gateway.client("client-key") as client:
        reply = await client.chat.completions.create(
            model="chat", messages=USER, temperature=0.3, max_tokens=50, seed=7, tools=TOOLS,
            response_format={"type": "json_object"},
            extra_body={"unknown_vendor_param": {"nested": True}},
        )  # fmt: skip
    assert reply.choices[0].message.content == "Hello!"
    (sent,) = upstream.requests
    assert sent["model"] == "up-model"
    assert sent["messages"] == USER
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.3, 50, 7)
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["unknown_vendor_param"] == {"nested": True}
    # the gateway's client key never reaches the provider: the provider's own key does
    assert upstream.headers[0]["authorization"] == "Bearer sk-up"


async def test_cost_header_when_the_price_is_known() -> None:
    config = {
        "routes": {
            "priced": {
                "targets": [
                    {"provider": "mock", "model": "p", "price": {"input": 1.0, "output": 2.0}}
                ]
            }
        }
    }
    async with in_process_gateway(config) as gateway, gateway.client() as client:
        raw = await client.chat.completions.with_raw_response.create(model="priced", messages=USER)
        usage = raw.parse().usage
        assert usage is not None
        expected = (usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6
        assert float(raw.headers["x-llmroute-cost-usd"]) == pytest.approx(expected, abs=1e-8)


async def test_streamed_chat_with_tool_calls() -> None:
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="tooling", messages=USER, tools=TOOLS, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.headers["x-llmroute-provider"] == "tools"
        assert float(raw.headers["x-llmroute-ttft-ms"]) >= 0
        stream = raw.parse()
        calls: dict[int, dict[str, str]] = {}
        finish = usage = None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                    if delta.function and delta.function.name:
                        call["name"] += delta.function.name
                    if delta.function and delta.function.arguments:
                        call["arguments"] += delta.function.arguments
                finish = choice.finish_reason or finish
        assert finish == "tool_calls"
        assert calls[0]["name"] == "get_weather"
        assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
        assert usage is not None and usage.total_tokens > 0


async def test_streamed_chat_text_ends_with_done() -> None:
    async with running_gateway(CONFIG) as gateway, httpx.AsyncClient() as http:
        body = {"model": "echo", "messages": USER, "stream": True}
        response = await http.post(f"{gateway.base_url}/chat/completions", json=body)
        events = [line for line in response.text.split("\n\n") if line]
        assert events[-1] == "data: [DONE]"
        text = "".join(
            json.loads(e.removeprefix("data: "))["choices"][0]["delta"].get("content") or ""
            for e in events[:-1]
            if json.loads(e.removeprefix("data: "))["choices"]
        )
        assert text == "hello"


async def test_embeddings() -> None:
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
        raw = await client.embeddings.with_raw_response.create(
            model="embed", input=["one", "two"], dimensions=4
        )
        result = raw.parse()
        assert [e.index for e in result.data] == [0, 1]
        assert all(len(e.embedding) == 4 for e in result.data)
        assert raw.headers["x-llmroute-provider"] == "steady"


async def test_models_list_and_retrieve() -> None:
    async with running_gateway(CONFIG) as gateway, gateway.client() as client:
        ids = [m.id async for m in client.models.list()]
        assert ids[:4] == ["chat", "echo", "embed", "tooling"]
        assert "steady/m2" in ids
        model = await client.models.retrieve("chat")
        assert (model.id, model.owned_by) == ("chat", "llmroute")


async def test_health_ready_and_the_v1_prefix_is_optional() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.http() as http:
        assert (await http.get(f"{gateway.root}/health")).json() == {"status": "ok"}
        assert (await http.get(f"{gateway.root}/ready")).json() == {"status": "ready"}
        body = {"model": "echo", "messages": USER}
        answer = await http.post(f"{gateway.root}/chat/completions", json=body)
        assert answer.json()["choices"][0]["message"]["content"] == "hello"


async def test_ready_reports_what_the_router_cannot_reach() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.http() as http:

        class Unreachable(Stage):
            name = "store"

            async def check(self) -> str:
                return "cannot reach redis://10.0.0.1"

        gateway.router.add_stage(Unreachable())
        response = await http.get(f"{gateway.root}/ready")
        assert response.status_code == 503
        assert response.json()["problems"] == ["store: cannot reach redis://10.0.0.1"]


# ---------------------------------------------------------------- control headers


async def test_control_headers_reach_the_request_record() -> None:
    records: list[RequestRecord] = []
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        gateway.router.add_hook("request_end", records.append)
        await client.chat.completions.create(
            model="echo", messages=USER,
            extra_headers={
                "x-llmroute-user": "alice", "x-llmroute-session": "s-1",
                "x-llmroute-property-feature": "search", "x-llmroute-property-env": "prod",
                "x-llmroute-timeout": "20s",
            },
        )  # fmt: skip
        await gateway.router.flush()
    (record,) = records
    assert (record.user, record.session) == ("alice", "s-1")
    assert record.properties == {"feature": "search", "env": "prod"}


async def test_timeout_header_bounds_the_request() -> None:
    config = {"routes": {"slow": {"targets": [{"provider": "mock", "model": "slow"}]}}}
    config["providers"] = {"mock": {"type": "mock", "latency": "2s"}}
    async with in_process_gateway(config) as gateway, gateway.client() as client:
        import openai

        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(
                model="slow", messages=USER, extra_headers={"x-llmroute-timeout": "150ms"}
            )
        assert info.value.status_code == 504


async def test_cache_headers() -> None:
    config = {**CONFIG, "cache": {"ttl": "1m"}}
    async with in_process_gateway(config) as gateway, gateway.client() as client:

        async def cache_status(**headers: str) -> str:
            raw = await client.chat.completions.with_raw_response.create(
                model="echo", messages=[{"role": "user", "content": "cache me"}],
                extra_headers=headers,
            )  # fmt: skip
            return raw.headers["x-llmroute-cache"]

        assert await cache_status(**{"x-llmroute-cache": "no-store"}) == "MISS"
        assert await cache_status() == "MISS"  # not stored by the first
        assert await cache_status() == "HIT"
        assert await cache_status(**{"x-llmroute-cache": "no-cache"}) in ("MISS", "BYPASS")
        assert await cache_status(**{"x-llmroute-cache-ttl": "5m"}) == "HIT"


# ---------------------------------------------------------------- metrics


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


async def test_metrics_count_requests_tokens_attempts_and_errors() -> None:
    async with in_process_gateway(CONFIG) as gateway, gateway.client() as client:
        await client.chat.completions.create(model="chat", messages=USER)
        stream = await client.chat.completions.create(model="echo", messages=USER, stream=True)
        async for _ in stream:
            pass
        with pytest.raises(Exception, match="unknown model"):
            await client.chat.completions.create(model="nope", messages=USER)
        async with gateway.http() as http:
            response = await http.get(f"{gateway.root}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    ok = {"endpoint": "chat", "route": "chat", "provider": "steady", "model": "m2", "status": "200",
          "key": ""}  # fmt: skip
    assert samples[("llmroute_requests_total", frozenset(ok.items()))] == 1
    failed = {"route": "chat", "provider": "flaky", "model": "m1", "outcome": "error"}
    assert samples[("llmroute_attempts_total", frozenset(failed.items()))] == 1
    labels = {"route": "echo", "provider": "steady", "model": "echo-model"}
    assert samples[("llmroute_time_to_first_token_seconds_count", frozenset(labels.items()))] == 1
    assert samples[("llmroute_tokens_total", frozenset({**labels, "type": "output"}.items()))] > 0
    unknown = {"endpoint": "chat", "route": "", "provider": "", "model": "", "type": "UnknownModel"}
    assert samples[("llmroute_errors_total", frozenset(unknown.items()))] == 1
    assert samples[("llmroute_requests_in_flight", frozenset())] == 0


async def test_metrics_show_whether_the_request_log_keeps_up(tmp_path: Any) -> None:
    logged = {**CONFIG, "logging": {"store": f"sqlite:///{tmp_path / 'log.db'}"}}
    async with in_process_gateway(logged) as gateway, gateway.client() as client:
        for _ in range(3):
            await client.chat.completions.create(model="echo", messages=USER)
        await gateway.router.flush()
        async with gateway.http() as http:
            samples = _samples((await http.get(f"{gateway.root}/metrics")).text)
    log = {name: value for (name, _), value in samples.items() if name.startswith("llmroute_log_")}
    assert log == {
        "llmroute_log_records_queued": 0, "llmroute_log_store_waiting": 0,
        "llmroute_log_records_recorded_total": 3, "llmroute_log_records_dropped_total": 0,
        "llmroute_log_records_failed_total": 0, "llmroute_log_sink_errors_total": 0,
        "llmroute_log_store_outages_total": 0, "llmroute_log_store_dropped_total": 0,
    }  # fmt: skip


async def test_metrics_can_need_a_key_or_be_off() -> None:
    server = {"keys": [{"name": "k", "key": "a-long-enough-plain-key"}], "metrics": "key"}
    async with in_process_gateway(CONFIG, server=server) as gateway, gateway.http() as http:
        assert (await http.get(f"{gateway.root}/metrics")).status_code == 401
        auth = {"authorization": "Bearer a-long-enough-plain-key"}
        assert (await http.get(f"{gateway.root}/metrics", headers=auth)).status_code == 200
    off = {"metrics": "off"}
    async with in_process_gateway(CONFIG, server=off) as gateway, gateway.http() as http:
        assert (await http.get(f"{gateway.root}/metrics")).status_code == 404


async def test_a_stage_that_changes_a_completion_changes_what_the_gateway_sends(
    upstream: Upstream,
) -> None:
    """A stage's change to the completion in `after()` is what the gateway's client gets
    (the gateway serialises the completion the router returned, not the provider's body)."""

    class Redact(Stage):
        name = "redact"

        async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
            response = outcome.response
            if isinstance(response, ChatCompletion):
                response.choices[0].message.content = "[redacted]"

    config = {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"}},
        "routes": {"chat": {"targets": ["up/up-model"]}},
        "logging": {"store": None},
    }
    async with in_process_gateway(config) as gateway, gateway.http() as http:
        body = {"model": "chat", "messages": USER}
        plain = await http.post(f"{gateway.root}/v1/chat/completions", json=body)
        assert plain.json()["choices"][0]["message"]["content"] == "Hello!"
        gateway.router.add_stage(Redact())
        redacted = await http.post(f"{gateway.root}/v1/chat/completions", json=body)
        assert redacted.json()["choices"][0]["message"]["content"] == "[redacted]"

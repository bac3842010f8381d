"""``/v1/messages``: the official anthropic SDK as a client of the gateway (in process, and on loopback
in front of an upstream server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from aiohttp import web

from _gateway import KEY, Gateway, in_process_gateway, running_gateway
from _upstream import Upstream, chunk_body, completion_body, sse
from llmroute.server.keys import hash_key

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "providers": {
        "steady": {"type": "mock", "echo": True, "prompt_tokens": 12, "completion_tokens": 3},
        "fixed": {"type": "mock", "text": "Hello from the mock"},
        "tools": {
            "type": "mock",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        },
        "down": {"type": "mock", "failure_rate": 1.0, "failure_status": 503},
        "cut": {"type": "mock", "text": "one two three four", "script": [{"cut_after": 2}]},
    },
    "routes": {
        "echo": {"targets": ["steady/echo-model"]},
        "fixed": {"targets": ["fixed/fixed-model"]},
        "tooling": {"targets": ["tools/tool-model"]},
        "down": {"targets": ["down/m"]},
        "cut": {"targets": ["cut/m"]},
    },
}
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
KEYS = {"keys": [{"name": "full", "key": hash_key(KEY)}]}


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with in_process_gateway(CONFIG) as gateway:
        yield gateway


def upstream_config(upstream: Upstream) -> dict[str, Any]:
    return {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "sk"}},
        "routes": {"chat": {"targets": ["up/up-model"]}},
    }


# ---------------------------------------------------------------- text


async def test_a_text_message_and_its_usage(gateway: Gateway) -> None:
    async with gateway.anthropic() as client:
        raw = await client.messages.with_raw_response.create(
            model="echo", max_tokens=100, messages=[{"role": "user", "content": "ping"}]
        )
        message = await raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "echo-model"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "ping")]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)
    assert message.usage.cache_read_input_tokens == 0
    assert raw.headers["x-llmroute-route"] == "echo"
    assert raw.headers["content-type"] == "application/json"
    # the anthropic SDK's request id is llmroute's
    assert raw.headers["request-id"] == raw.headers["x-llmroute-request-id"]
    assert message._request_id == raw.headers["x-llmroute-request-id"]


async def test_system_prompt_multi_turn_and_parameters_reach_the_provider(
    upstream: Upstream,
) -> None:
    async with running_gateway(upstream_config(upstream)) as gateway, gateway.anthropic() as client:
        message = await client.messages.create(
            model="chat", max_tokens=64, system="Be brief.", stop_sequences=["END"],
            metadata={"user_id": "u-7"}, service_tier="auto",
            # sampling parameters: gone from this SDK's signature, still in the API
            extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 5},
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
                {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
            ],
        )  # fmt: skip
    assert message.content[0].type == "text" and message.content[0].text == "Hello!"
    (sent,) = upstream.requests
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (64, 0.2, 0.9)
    assert (sent["stop"], sent["user"]) == (["END"], "u-7")
    # Anthropic-only options (top_k, service_tier) do not reach an OpenAI upstream
    assert not {"top_k", "anthropic", "gemini", "service_tier"} & sent.keys()
    assert "stream" not in sent


async def test_system_blocks_and_images(upstream: Upstream) -> None:
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    async with running_gateway(upstream_config(upstream)) as gateway, gateway.anthropic() as client:
        await client.messages.create(
            model="chat", max_tokens=10,
            system=[{"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": [
                {"type": "image", "source": image},
                {"type": "text", "text": "What is this?"},
            ]}],
        )  # fmt: skip
    system, user = upstream.requests[0]["messages"]
    assert system["content"] == [
        {"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}}
    ]
    assert user["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }


# ---------------------------------------------------------------- streaming


async def test_stream_helper_gives_text_and_the_final_message(gateway: Gateway) -> None:
    async with (
        gateway.anthropic() as client,
        client.messages.stream(
            model="fixed", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "Hello from the mock"
    assert len(pieces) > 1  # streamed, not in one piece
    assert final.content[0].type == "text" and final.content[0].text == "Hello from the mock"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


async def test_create_with_stream_true_follows_anthropics_event_sequence(
    gateway: Gateway,
) -> None:
    async with gateway.anthropic() as client:
        stream = await client.messages.create(
            model="echo", max_tokens=50, stream=True,
            messages=[{"role": "user", "content": "a b c"}],
        )  # fmt: skip
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    start = events[0]
    assert start.type == "message_start" and start.message.content == []
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "a b c"
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == (12, 3)


async def test_raw_stream_has_event_lines_and_a_ping(gateway: Gateway) -> None:
    body = {"model": "fixed", "max_tokens": 5, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    async with gateway.http() as http:
        response = await http.post(f"{gateway.base_url}/messages", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-1] == "message_stop"
    assert "[DONE]" not in response.text


async def test_an_error_after_the_stream_started_is_an_error_event(gateway: Gateway) -> None:
    async with gateway.anthropic() as client:
        stream = await client.messages.create(
            model="cut", max_tokens=50, stream=True, messages=[{"role": "user", "content": "hi"}]
        )
        seen: list[str] = []

        async def read() -> None:
            async for event in stream:
                seen.append(event.type)

        with pytest.raises(anthropic.APIStatusError) as info:
            await read()
    assert seen[0] == "message_start"
    assert "message_stop" not in seen
    assert isinstance(info.value.body, dict)
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "api_error"


# ---------------------------------------------------------------- tools


async def test_tool_use_round_trip(upstream: Upstream) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        sent = await request.json()
        if sent["messages"][-1]["role"] == "tool":
            return web.json_response(completion_body("It is sunny in Paris."))
        body = completion_body()
        body["choices"][0]["message"] = {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}],
        }  # fmt: skip
        body["choices"][0]["finish_reason"] = "tool_calls"
        return web.json_response(body)

    upstream.handler = handler
    question: Any = {"role": "user", "content": "Weather in Paris?"}
    async with running_gateway(upstream_config(upstream)) as gateway, gateway.anthropic() as client:
        first = await client.messages.create(
            model="chat", max_tokens=100, tools=[WEATHER],
            tool_choice={"type": "any", "disable_parallel_tool_use": True}, messages=[question],
        )  # fmt: skip
        assert first.stop_reason == "tool_use"
        text, call = first.content
        assert text.type == "text" and text.text == "Let me check."
        assert call.type == "tool_use"
        assert (call.id, call.name, call.input) == ("call_1", "get_weather", {"city": "Paris"})
        result: Any = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 24C"}
        second = await client.messages.create(
            model="chat", max_tokens=100, tools=[WEATHER],
            messages=[
                question,
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": [result]},
            ],
        )  # fmt: skip
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text" and second.content[0].text == "It is sunny in Paris."
    offered, answered = upstream.requests
    assert offered["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"],
        "description": "The weather in a city"}}]  # fmt: skip
    assert offered["tool_choice"] == "required"
    assert offered["parallel_tool_calls"] is False
    assistant, tool = answered["messages"][1:]
    assert assistant["content"] == "Let me check."
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24C"}


async def test_tool_choice_for_one_tool_and_none(upstream: Upstream) -> None:
    async with running_gateway(upstream_config(upstream)) as gateway, gateway.anthropic() as client:
        for choice in ({"type": "tool", "name": "get_weather"}, {"type": "none"}):
            await client.messages.create(
                model="chat", max_tokens=10, tools=[WEATHER], tool_choice=choice,  # type: ignore[arg-type]
                messages=[{"role": "user", "content": "hi"}],
            )  # fmt: skip
    forced, none = (r["tool_choice"] for r in upstream.requests)
    assert forced == {"type": "function", "function": {"name": "get_weather"}}
    assert none == "none"


async def test_streamed_tool_use(gateway: Gateway) -> None:
    async with (
        gateway.anthropic() as client,
        client.messages.stream(
            model="tooling",
            max_tokens=50,
            tools=[WEATHER],
            messages=[{"role": "user", "content": "Weather in Paris?"}],
        ) as stream,  # fmt: skip
    ):
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert "input_json" in kinds  # input_json_delta events, surfaced by the helper
    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use"
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    assert call.id.startswith("call_mock_")


async def test_streamed_usage_with_cache_reads(upstream: Upstream) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
             "prompt_tokens_details": {"cached_tokens": 30}}  # fmt: skip

    async def handler(request: web.Request) -> web.StreamResponse:
        last = chunk_body({}, "stop")
        tail = {**chunk_body({}), "choices": [], "usage": usage}
        return await sse(request, [chunk_body({"content": "Hi"}), last, tail, "[DONE]"])

    upstream.handler = handler
    async with running_gateway(upstream_config(upstream)) as gateway, gateway.anthropic() as client:
        async with client.messages.stream(
            model="chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            final = await stream.get_final_message()
        assert upstream.requests[0]["stream_options"] == {"include_usage": True}
        # and not streamed: the same numbers
        upstream.handler = None
        body = completion_body()
        body["usage"] = usage

        async def plain(request: web.Request) -> web.StreamResponse:
            return web.json_response(body)

        upstream.handler = plain
        message = await client.messages.create(
            model="chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    for result in (final.usage, message.usage):
        assert result.input_tokens == 70  # without the cache reads
        assert result.cache_read_input_tokens == 30
        assert result.cache_creation_input_tokens == 0
        assert result.output_tokens == 7


# ---------------------------------------------------------------- errors and keys


async def test_keys_in_x_api_key_or_bearer() -> None:
    async with in_process_gateway(CONFIG, server=KEYS) as gateway:
        user: Any = [{"role": "user", "content": "hi"}]
        async with gateway.anthropic(KEY) as client:
            assert (await client.messages.create(model="echo", max_tokens=5, messages=user)).content
        async with gateway.anthropic(None, auth_token=KEY) as bearer:
            assert (await bearer.messages.create(model="echo", max_tokens=5, messages=user)).content
        async with gateway.anthropic("wrong") as client:
            with pytest.raises(anthropic.AuthenticationError) as info:
                await client.messages.create(model="echo", max_tokens=5, messages=user)
        assert info.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid API key",
                      "code": "invalid_api_key"},
            "request_id": info.value.response.headers["x-llmroute-request-id"],
        }  # fmt: skip
        async with gateway.http() as http:
            response = await http.post(f"{gateway.base_url}/messages", json={})
        assert response.status_code == 401
        assert "x-api-key" in response.json()["error"]["message"]


async def test_errors_map_to_the_sdks_exceptions(gateway: Gateway) -> None:
    user: Any = [{"role": "user", "content": "hi"}]
    async with gateway.anthropic() as client:
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.messages.create(model="no-such-route", max_tokens=5, messages=user)
        assert missing.value.type == "not_found_error"
        with pytest.raises(anthropic.BadRequestError) as bad:
            await client.messages.create(
                model="echo", max_tokens=5, messages=user, extra_body={"temperature": 3}
            )
        assert bad.value.type == "invalid_request_error"
        assert "temperature" in str(bad.value.api_message)
        with pytest.raises(anthropic.BadRequestError) as block:
            await client.messages.create(
                model="echo", max_tokens=5,
                messages=[{"role": "assistant", "content": [
                    {"type": "tool_result", "tool_use_id": "x", "content": "y"}]}],
            )  # fmt: skip
        assert "assistant message cannot hold a tool_result" in str(block.value.api_message)
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            await client.messages.create(model="down", max_tokens=5, messages=user)
        assert overloaded.value.type == "overloaded_error"


async def test_a_local_rate_limit_is_a_rate_limit_error() -> None:
    config = {**CONFIG, "rate_limits": {"rules": [{"per": "key", "requests": "1/min"}]}}
    user: Any = [{"role": "user", "content": "hi"}]
    async with in_process_gateway(config, server=KEYS) as gateway, gateway.anthropic(KEY) as client:
        await client.messages.create(model="echo", max_tokens=5, messages=user)
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model="echo", max_tokens=5, messages=user)
    assert info.value.type == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) >= 1


async def test_the_openai_endpoints_keep_their_error_shape(gateway: Gateway) -> None:
    async with gateway.http() as http:
        response = await http.post(f"{gateway.base_url}/chat/completions", json={"model": "x"})
    assert "type" not in response.json()  # {"error": {...}}, OpenAI's shape
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_a_wrong_method_or_an_unknown_path_keeps_the_shape_of_its_endpoint(
    gateway: Gateway,
) -> None:
    async with gateway.http() as http:
        wrong = await http.get(f"{gateway.base_url}/messages")
        unknown = await http.post(f"{gateway.base_url}/messages/batches", json={})
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    assert wrong.json()["type"] == "error"  # Anthropic's shape: the path is /v1/messages
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert unknown.status_code == 404  # no endpoint, but under /v1/messages: Anthropic's shape
    assert unknown.json()["type"] == "error"
    assert unknown.json()["error"]["type"] == "not_found_error"


# ---------------------------------------------------------------- the translation, directly


def _events(data: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:]) for line in data.decode().splitlines() if line.startswith("data: ")
    ]


def test_parallel_tool_calls_become_one_block_each() -> None:
    from llmroute._types import ChatCompletionChunk, RouteInfo
    from llmroute.server.endpoints.messages import MessageEvents

    def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(chunk_body(delta, finish))

    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    events = MessageEvents(RouteInfo(request_id="lr-1"))
    out = b"".join([
        events.chunk(chunk({"role": "assistant", "content": "Checking."})),
        events.chunk(chunk(call(0, id="c0", type="function", function={"name": "a", "arguments": ""}))),
        events.chunk(chunk(call(0, function={"arguments": '{"x":'}))),
        events.chunk(chunk(call(1, id="c1", type="function", function={"name": "b", "arguments": "{}"}))),
        events.chunk(chunk(call(0, function={"arguments": "1}"}))),  # late: still block 1
        events.chunk(chunk({}, "tool_calls")),
        events.end(),
    ])  # fmt: skip
    seen = [(e["type"], e.get("index")) for e in _events(out)]
    assert seen == [
        ("message_start", None), ("ping", None),
        ("content_block_start", 0), ("content_block_delta", 0),
        ("content_block_stop", 0), ("content_block_start", 1), ("content_block_delta", 1),
        ("content_block_stop", 1), ("content_block_start", 2), ("content_block_delta", 2),
        ("content_block_delta", 1),
        ("content_block_stop", 2), ("message_delta", None), ("message_stop", None),
    ]  # fmt: skip
    parts = [
        e["delta"]["partial_json"] for e in _events(out) if e.get("index") == 1 and "delta" in e
    ]
    assert "".join(parts) == '{"x":1}'
    assert _events(out)[-2]["delta"]["stop_reason"] == "tool_use"


def test_an_empty_stream_still_starts_and_stops() -> None:
    from llmroute._types import RouteInfo
    from llmroute.server.endpoints.messages import MessageEvents

    kinds = [e["type"] for e in _events(MessageEvents(RouteInfo(request_id="lr-2")).end())]
    assert kinds == ["message_start", "ping", "message_delta", "message_stop"]


def test_output_config_and_anthropic_only_options() -> None:
    from llmroute.server._anthropic_wire import read_request, to_chat_params

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    params = to_chat_params(read_request({
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}},
        "cache_control": {"type": "ephemeral"}, "top_k": 3, "thinking": {"type": "disabled"},
    }))  # fmt: skip
    assert params["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True},
    }  # fmt: skip
    assert params["reasoning_effort"] == "low"
    assert params["anthropic"] == {"top_k": 3, "cache_control": {"type": "ephemeral"}}
    assert params["gemini"] == {"top_k": 3}
    assert "thinking" not in params

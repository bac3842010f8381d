"""The Anthropic adapter against realistic payloads (tests/fixtures/anthropic), no network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from llmroute import HttpRequest
from llmroute._errors import (
    AuthenticationError,
    InvalidRequest,
    MalformedResponse,
    ModelNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestError,
)
from llmroute._request import ChatRequest, validate_chat_request
from llmroute._types import ChatCompletionChunk, TokenUsage
from llmroute.providers._base import ExtraRequest, RateLimitState
from llmroute.providers.anthropic import AnthropicAdapter, parse_rfc3339_reset
from llmroute.providers.configs import AnthropicProviderConfig

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "claude-sonnet-4-5-20250929"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"}},
    "required": ["city", "temperature_c"],
}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}}


def raw(name: str) -> bytes:
    return (FIXTURES / "anthropic" / name).read_bytes()


def recorded_error(name: str) -> tuple[int, CIMultiDict[str], bytes]:
    doc = json.loads(raw(name))
    body = doc["body_text"] if "body_text" in doc else json.dumps(doc["body"])
    return doc["status"], CIMultiDict(doc["headers"]), body.encode()


def make_adapter(**config: Any) -> AnthropicAdapter:
    config.setdefault("api_key", "sk-ant-test")
    return AnthropicAdapter("anthropic", AnthropicProviderConfig(type="anthropic", **config))


def chat(**params: Any) -> ChatRequest:
    return validate_chat_request({"model": "route", "messages": MESSAGES, **params})


def body_of(http: HttpRequest) -> Any:
    return json.loads(http.body or b"")


def build(request: ChatRequest, adapter: AnthropicAdapter | None = None, **kw: Any) -> Any:
    return body_of((adapter or make_adapter()).chat_request(request, MODEL, stream=False, **kw))


def decode(name: str, request: ChatRequest | None = None) -> tuple[Any, list[ChatCompletionChunk]]:
    decoder = make_adapter().stream_decoder(request or chat(), MODEL)
    chunks = [c for line in raw(name).split(b"\n") for c in decoder.feed(line)]
    return decoder, chunks + decoder.finish()


def tool_calls_of(chunks: list[ChatCompletionChunk]) -> dict[int, dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for fragment in choice.delta.tool_calls or []:
                assert fragment.function is not None
                if fragment.index not in calls:
                    assert fragment.id and fragment.function.name
                    calls[fragment.index] = {"id": fragment.id, "name": fragment.function.name,
                                             "args": ""}  # fmt: skip
                else:
                    assert fragment.id is None and fragment.function.name is None
                calls[fragment.index]["args"] += fragment.function.arguments or ""
    return calls


def text_of(chunks: list[ChatCompletionChunk], key: str = "content") -> str:
    return "".join(
        getattr(c.choices[0].delta, key, None)
        or (c.choices[0].delta.model_extra or {}).get(key, "")
        for c in chunks
        if c.choices
    )


# ---------------------------------------------------------------- requests
def test_plain_request_url_headers_and_default_max_tokens() -> None:
    http = make_adapter().chat_request(chat(temperature=0.5, top_p=0.9, user="u-7"), MODEL,
                                       stream=False)  # fmt: skip
    assert (http.method, http.url) == ("POST", "https://api.anthropic.com/v1/messages")
    assert http.headers["x-api-key"] == "sk-ant-test"
    assert http.headers["anthropic-version"] == "2023-06-01"
    assert http.headers["content-type"] == "application/json"
    assert body_of(http) == {
        "model": MODEL,
        "max_tokens": 4096,  # Anthropic requires it: the provider's default
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user",
                      "content": [{"type": "text", "text": "What is the weather in Paris?"}]}],
        "temperature": 0.5,
        "top_p": 0.9,
        "metadata": {"user_id": "u-7"},
    }  # fmt: skip


def test_max_tokens_from_request_config_and_thinking_budget() -> None:
    assert build(chat(max_completion_tokens=300))["max_tokens"] == 300
    assert build(chat(max_tokens=77))["max_tokens"] == 77
    assert build(chat(), make_adapter(max_tokens=1000))["max_tokens"] == 1000
    thinking = {"anthropic": {"thinking": {"type": "enabled", "budget_tokens": 2048}}}
    body = build(chat(**thinking), make_adapter(max_tokens=1000))
    assert body["max_tokens"] == 3048  # the budget counts toward max_tokens
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_stream_request_and_extra_headers_query_and_base_url() -> None:
    adapter = make_adapter(base_url="http://proxy.local/anthropic/", betas=["beta-a"],
                           headers={"X-Team": "search"})  # fmt: skip
    extra = ExtraRequest(headers={"X-Trace": "t1"}, query={"debug": "1"})
    request = chat(anthropic={"betas": ["beta-b"]})
    http = adapter.chat_request(request, MODEL, stream=True, extra=extra)
    assert http.url == "http://proxy.local/anthropic/v1/messages?debug=1"
    assert body_of(http)["stream"] is True
    assert http.headers["accept"] == "text/event-stream"
    assert http.headers["anthropic-beta"] == "beta-a,beta-b"
    assert (http.headers["x-team"], http.headers["x-trace"]) == ("search", "t1")


def test_tool_round_trip_request_matches_the_messages_shape() -> None:
    request = validate_chat_request(
        json.loads((FIXTURES / "common" / "request_tools.json").read_bytes())
    )
    expected = json.loads(raw("expected_request_tools.json"))
    assert build(request) == expected


def test_consecutive_turns_merge_and_stop_string() -> None:
    request = chat(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": ""},  # empty text is not sent
            {"role": "assistant", "content": [{"type": "text", "text": "three"}]},
            {"role": "system", "content": "late system"},
        ],
        stop="END",
    )
    body = build(request)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "three"}]},
    ]
    assert body["system"] == [{"type": "text", "text": "late system"}]
    assert body["stop_sequences"] == ["END"]


TOOL_CHOICES = [
    ("none", {"type": "none"}),
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    (
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "tool", "name": "get_weather"},
    ),
]


@pytest.mark.parametrize(("choice", "expected"), TOOL_CHOICES)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = build(chat(tools=[WEATHER_TOOL], tool_choice=choice))
    assert body["tool_choice"] == expected
    assert body["tools"][0]["name"] == "get_weather"


def test_parallel_tool_calls_false_and_strict_tools() -> None:
    strict = {"type": "function", "function": {**WEATHER_TOOL["function"], "strict": True}}
    body = build(chat(tools=[strict], parallel_tool_calls=False))
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["tools"][0]["strict"] is True
    body = build(chat(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False))
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_choice_must_name_a_known_function() -> None:
    with pytest.raises(RequestError, match="not among the request's tools"):
        build(
            chat(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "x"}})
        )


# ---------------------------------------------------------------- structured output
def test_json_schema_becomes_a_forced_tool() -> None:
    body = build(chat(response_format=JSON_SCHEMA_FORMAT))
    assert body["tools"] == [{
        "name": "json_response",
        "description": "Give the final answer by calling this tool with the weather object.",
        "input_schema": SCHEMA,
    }]  # fmt: skip
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}


def test_json_schema_with_the_callers_tools_lets_the_model_call_them_first() -> None:
    body = build(chat(response_format=JSON_SCHEMA_FORMAT, tools=[WEATHER_TOOL]))
    assert [t["name"] for t in body["tools"]] == ["get_weather", "json_response"]
    assert body["tool_choice"] == {"type": "any"}
    body = build(chat(response_format=JSON_SCHEMA_FORMAT, tools=[WEATHER_TOOL], tool_choice="none"))
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}


def test_json_object_and_native_structured_output() -> None:
    body = build(chat(response_format={"type": "json_object"}))
    assert body["tools"][0]["input_schema"] == {"type": "object"}
    native = make_adapter(structured_output="native")
    body = build(chat(response_format=JSON_SCHEMA_FORMAT, reasoning_effort="high"), native)
    assert "tools" not in body
    assert body["output_config"] == {"effort": "high",
                                     "format": {"type": "json_schema", "schema": SCHEMA}}  # fmt: skip
    assert build(chat(response_format={"type": "text"})).get("tools") is None


REFUSED_FORMATS = [
    ({"type": "json_schema", "json_schema": {"name": "l", "schema": {"type": "array"}}}, {}, "root is not an object"),
    (JSON_SCHEMA_FORMAT, {"anthropic": {"thinking": {"type": "adaptive"}}}, "extended thinking"),
    (JSON_SCHEMA_FORMAT, {"tools": [{"type": "function", "function": {"name": "json_response"}}]}, "may not be called"),
    ({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, {}, "needs a json_schema object with a name"),
    ({"type": "grammar", "grammar": "x"}, {}, "response_format type 'grammar'"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "extra", "message"), REFUSED_FORMATS)
def test_structured_output_refusals(fmt: Any, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        build(chat(response_format=fmt, **extra))


def test_parse_json_tool_answer_as_content() -> None:
    completion = make_adapter().parse_chat(raw("chat_json_tool.json"), MODEL)
    choice = completion.choices[0]
    assert json.loads(choice.message.content or "") == {
        "city": "Paris", "temperature_c": 18.5, "conditions": ["cloudy", "light rain"]
    }  # fmt: skip
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"


# ---------------------------------------------------------------- content parts and options
def test_images_documents_and_cache_control_parts() -> None:
    content = [
        {
            "type": "text",
            "text": "Compare these.",
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        },
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "a.pdf"},
        },
    ]
    body = build(chat(messages=[{"role": "user", "content": content}]))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
    ]  # fmt: skip


def test_anthropic_options() -> None:
    options = {"thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5,
               "cache_control": {"type": "ephemeral"}, "service_tier": "standard_only"}  # fmt: skip
    body = build(chat(anthropic=options, max_tokens=4000))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert (body["top_k"], body["service_tier"]) == (5, "standard_only")
    assert body["cache_control"] == {"type": "ephemeral"}
    assert "anthropic" not in body


INVALID_OPTIONS = [
    ({"thinking": {"type": "enabled"}}, "anthropic.thinking"),
    ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "anthropic.thinking.budget_tokens"),
    ({"top_k": 5, "temperature": 1}, "anthropic.temperature"),
    ({"cache_control": {"type": "permanent"}}, "anthropic.cache_control.type"),
    ("not a table", "anthropic"),
]


@pytest.mark.parametrize(("options", "param"), INVALID_OPTIONS)
def test_invalid_options_are_refused_before_sending(options: Any, param: str) -> None:
    with pytest.raises(RequestError) as info:
        build(chat(anthropic=options))
    assert info.value.param == param
    assert "invalid anthropic options" in str(info.value)


UNSUPPORTED = [
    ({"n": 2}, "n > 1", "n"),
    ({"logprobs": True}, "logprobs", "logprobs"),
    ({"seed": 7}, "seed", "seed"),
    ({"frequency_penalty": 0.5}, "frequency_penalty", "frequency_penalty"),
    ({"temperature": 1.5}, "temperature 1.5", "temperature"),
    ({"reasoning_effort": "minimal"}, "reasoning_effort 'minimal'", "reasoning_effort"),
    ({"top_q": 3}, "parameter\\(s\\) top_q", "top_q"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}]}, "input_audio", "messages"),
    ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}, "image_url content in system", "messages"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}, "not valid JSON", "messages"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "message", "param"), UNSUPPORTED)
def test_unsupported_features_are_refused(params: dict[str, Any], message: str, param: str) -> None:
    with pytest.raises(RequestError, match=message) as info:
        build(chat(**params))
    assert info.value.param == param


def test_harmless_openai_only_parameters_are_dropped() -> None:
    body = build(chat(n=1, frequency_penalty=0, store=True, metadata={"k": "v"}, verbosity="low",
                      gemini={"top_k": 3}, service_tier="flex", prompt_cache_key="k",
                      prompt_cache_retention="24h", safety_identifier="s"))  # fmt: skip
    assert set(body) == {"model", "max_tokens", "system", "messages"}


# ---------------------------------------------------------------- responses
def test_parse_plain() -> None:
    completion = make_adapter().parse_chat(raw("chat_plain.json"), MODEL)
    assert (completion.id, completion.model) == ("msg_01XFDUDYJgAACzvnptvVoYEL", MODEL)
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == (
        "Hello! How can I help you today?",
        "stop",
    )
    assert completion.usage is not None
    assert completion.usage.normalised() == TokenUsage(input=12, output=12)


def test_parse_parallel_tool_calls_and_follow_up() -> None:
    adapter = make_adapter()
    completion = adapter.parse_chat(raw("chat_tool_use.json"), MODEL)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the weather in both cities."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.type, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_01A09q90qw90lq917835lq9", "function", "get_weather",
         {"location": "Paris, France", "unit": "celsius"}),
        ("toolu_01Bx7Yq2Lm5Nz8Kc3Vp6Rt4W", "function", "get_weather",
         {"location": "Tokyo, Japan", "unit": "celsius"}),
    ]  # fmt: skip
    # the answer goes back as the next request's history, with the results
    history = [*MESSAGES, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": calls[0].id, "content": "18C"},
               {"role": "tool", "tool_call_id": calls[1].id, "content": "22C"}]  # fmt: skip
    body = build(chat(messages=history, tools=[WEATHER_TOOL]))
    assert body["messages"][1]["content"][1:] == [
        {"type": "tool_use", "id": calls[0].id, "name": "get_weather",
         "input": {"location": "Paris, France", "unit": "celsius"}},
        {"type": "tool_use", "id": calls[1].id, "name": "get_weather",
         "input": {"location": "Tokyo, Japan", "unit": "celsius"}},
    ]  # fmt: skip
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": calls[0].id, "content": "18C"},
        {"type": "tool_result", "tool_use_id": calls[1].id, "content": "22C"},
    ]


def test_usage_with_cache_and_thinking_and_the_thinking_round_trip() -> None:
    completion = make_adapter().parse_chat(raw("chat_thinking_cache.json"), MODEL)
    assert completion.usage is not None
    usage = completion.usage
    assert usage.prompt_tokens == 21 + 188 + 2048  # input includes cache reads and writes
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2048
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 131
    assert usage.normalised() == TokenUsage(input=2257, output=153, cache_read=2048,
                                            cache_write=188, reasoning=131)  # fmt: skip
    message = completion.choices[0].message
    extra = message.model_extra or {}
    assert extra["reasoning_content"].startswith("The user asks for the sum")
    assert extra["thinking_blocks"][0]["signature"].startswith("EqQBCgIYAh")
    assert message.content == "The sum of the primes below 20 is 77."
    follow = chat(messages=[*MESSAGES, message.model_dump(exclude_none=True),
                            {"role": "user", "content": "And below 30?"}])  # fmt: skip
    assistant = build(follow)["messages"][1]
    assert assistant["content"][0] == extra["thinking_blocks"][0]
    assert assistant["content"][1] == {
        "type": "text",
        "text": "The sum of the primes below 20 is 77.",
    }


@pytest.mark.parametrize(("name", "finish"), [("chat_max_tokens.json", "length"),
                                              ("chat_refusal.json", "content_filter")])  # fmt: skip
def test_finish_reasons(name: str, finish: str) -> None:
    assert make_adapter().parse_chat(raw(name), MODEL).choices[0].finish_reason == finish


@pytest.mark.parametrize("body", [b"<html>", b"{}", b'{"id": "m", "model": "x", "content": {}}'])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(MalformedResponse) as info:
        make_adapter().parse_chat(body, MODEL)
    assert (info.value.status, info.value.body) == (200, body)


# ---------------------------------------------------------------- streams
def test_stream_text_and_cumulative_usage() -> None:
    decoder, chunks = decode("stream_text.sse")
    assert text_of(chunks) == "Why did the scarecrow win an award?"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {"msg_01Rt6Yu9Io2Pa5Sd8Fg1Hj4K"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert decoder.done is True
    assert decoder.usage.normalised() == TokenUsage(input=25 + 1024, output=15, cache_read=1024)


def test_stream_parallel_tool_call_arguments() -> None:
    decoder, chunks = decode("stream_tool_use.sse")
    assert text_of(chunks) == "Checking both cities."
    calls = tool_calls_of(chunks)
    assert {i: (c["id"], c["name"], json.loads(c["args"])) for i, c in calls.items()} == {
        0: ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "Paris, France"}),
        1: ("toolu_01Mn8Bv5Cx2Za9Sd6Fg3Hj0K", "get_time", {"timezone": "Asia/Tokyo"}),
    }
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert decoder.usage.normalised() == TokenUsage(input=472, output=89)


def test_stream_thinking_and_structured_output() -> None:
    request = chat(response_format=JSON_SCHEMA_FORMAT)
    decoder, chunks = decode("stream_thinking_json.sse", request)
    assert json.loads(text_of(chunks)) == {"city": "Paris", "temperature_c": 18.5}
    assert tool_calls_of(chunks) == {}
    assert text_of(chunks, "reasoning_content") == "Paris is 18.5C and cloudy."
    blocks = [
        b
        for c in chunks
        if c.choices
        for b in (c.choices[0].delta.model_extra or {}).get("thinking_blocks", [])
    ]
    assert blocks == [{"type": "thinking", "thinking": "Paris is 18.5C and cloudy.",
                       "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}]  # fmt: skip
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert decoder.usage.normalised() == TokenUsage(input=1509, output=211, cache_write=1500,
                                                    reasoning=160)  # fmt: skip


def test_stream_error_after_200_raises_the_mapped_error() -> None:
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    lines = raw("stream_error.sse").split(b"\n")
    before = [c for line in lines[:9] for c in decoder.feed(line)]
    assert text_of(before) == "Once upon"
    assert decoder.feed(lines[9]) == decoder.feed(lines[10]) == []  # event: and data: lines
    with pytest.raises(ProviderError) as info:
        decoder.feed(lines[11])  # the blank line completes the event
    error = info.value
    assert type(error) is ProviderUnavailable
    assert (error.code, error.status, error.message) == ("overloaded_error", 200, "Overloaded")
    assert error.retryable and decoder.done is False


STREAM_ERRORS = [
    ("overloaded_error", ProviderUnavailable), ("api_error", ProviderUnavailable),
    ("rate_limit_error", RateLimited), ("invalid_request_error", InvalidRequest),
    ("authentication_error", AuthenticationError), ("permission_error", PermissionDenied),
    ("not_found_error", ModelNotFound), ("billing_error", PermissionDenied),
    ("a_brand_new_error", ProviderUnavailable),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "cls"), STREAM_ERRORS)
def test_stream_error_types(kind: str, cls: type[ProviderError]) -> None:
    event = {"type": "error", "error": {"type": kind, "message": "m"}}
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    decoder.feed(b"event: error")
    decoder.feed(b"data: " + json.dumps(event).encode())
    with pytest.raises(ProviderError) as info:
        decoder.feed(b"")
    assert type(info.value) is cls


def test_stream_malformed_event() -> None:
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    decoder.feed(b"event: content_block_delta")
    decoder.feed(b'data: {"type": "content_block_delta", "index": 0}')
    with pytest.raises(MalformedResponse):
        decoder.feed(b"")


# ---------------------------------------------------------------- errors and rate limits
ERRORS = [
    ("error_400.json", InvalidRequest, "invalid_request_error", None),
    ("error_401.json", AuthenticationError, "authentication_error", None),
    ("error_402.json", PermissionDenied, "billing_error", None),
    ("error_403.json", PermissionDenied, "permission_error", None),
    ("error_404.json", ModelNotFound, "not_found_error", None),
    ("error_413.json", InvalidRequest, "request_too_large", None),
    ("error_429.json", RateLimited, "rate_limit_error", 17.0),
    ("error_500.json", ProviderUnavailable, "api_error", None),
    ("error_504.json", ProviderUnavailable, "timeout_error", None),
    ("error_529.json", ProviderUnavailable, "overloaded_error", None),
    ("error_502_html.json", ProviderUnavailable, None, None),
]


@pytest.mark.parametrize(("name", "cls", "code", "retry_after"), ERRORS)
def test_map_error(
    name: str, cls: type[ProviderError], code: str | None, retry_after: float | None
) -> None:
    status, headers, body = recorded_error(name)
    error = make_adapter().map_error(status, headers, body)
    assert type(error) is cls
    assert (error.status, error.code, error.retry_after) == (status, code, retry_after)
    assert error.request_id == headers.get("request-id")
    assert error.retryable is (cls in (RateLimited, ProviderUnavailable))
    if code is None:
        assert error.message.startswith("HTTP 502 with a non-Anthropic error body: <html>")
    else:
        assert error.message == json.loads(body)["error"]["message"]


def _stamp(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_rate_limit_state_from_headers() -> None:
    headers = CIMultiDict({
        "anthropic-ratelimit-requests-limit": "4000", "anthropic-ratelimit-requests-remaining": "3998",
        "anthropic-ratelimit-requests-reset": _stamp(0.5),
        "anthropic-ratelimit-tokens-limit": "2400000", "anthropic-ratelimit-tokens-remaining": "2397800",
        "anthropic-ratelimit-tokens-reset": _stamp(6),
        "anthropic-ratelimit-input-tokens-remaining": "1",
    })  # fmt: skip
    state = make_adapter().rate_limit_state(headers)
    assert state == RateLimitState(4000, 3998, pytest.approx(0.5, abs=0.5), 2400000, 2397800,
                                   pytest.approx(6, abs=0.5))  # fmt: skip
    # without the combined tokens headers, the input-token limit is the one reported
    _, recorded, _ = recorded_error("ratelimit_headers.json")
    del recorded["anthropic-ratelimit-tokens-remaining"]
    state = make_adapter().rate_limit_state(recorded)
    assert state is not None
    assert (state.limit_tokens, state.remaining_tokens) == (2000000, 1998000)
    assert state.reset_tokens_s == 0.0  # a reset in the past: no wait
    assert make_adapter().rate_limit_state(CIMultiDict({"request-id": "r"})) is None


RESETS = [
    ("2026-11-27T12:00:06Z", 6.0), ("2026-11-27T12:00:00.5Z", 0.5), ("2026-11-27T13:00:00+01:00", 0.0),
    ("2026-11-27T11:59:00Z", 0.0), ("2026-11-27T12:00:06", None), ("soon", None), ("", None), (None, None),
]  # fmt: skip


@pytest.mark.parametrize(("value", "seconds"), RESETS)
def test_parse_rfc3339_reset(value: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_rfc3339_reset(value, now=now) == seconds
    assert parse_rfc3339_reset(_stamp(30)) == pytest.approx(30, abs=1)


# ---------------------------------------------------------------- the vendor's own types
def test_fixtures_have_the_shapes_of_the_anthropic_sdk_types() -> None:
    anthropic = pytest.importorskip("anthropic")
    from pydantic import TypeAdapter

    for name in ("chat_plain.json", "chat_tool_use.json", "chat_json_tool.json",
                 "chat_thinking_cache.json", "chat_max_tokens.json", "chat_refusal.json"):  # fmt: skip
        anthropic.types.Message.model_validate_json(raw(name))
    events = TypeAdapter(anthropic.types.RawMessageStreamEvent)
    for name in ("stream_text.sse", "stream_tool_use.sse", "stream_thinking_json.sse"):
        for line in raw(name).split(b"\n"):
            if line.startswith(b"data: ") and b'"ping"' not in line:
                events.validate_json(line[6:])
    for name in ("error_400.json", "error_429.json", "error_529.json"):
        anthropic.types.ErrorResponse.model_validate(json.loads(raw(name))["body"])

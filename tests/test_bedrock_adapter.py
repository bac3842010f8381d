"""The Bedrock adapter: Converse payloads, binary event streams built in the test, SigV4, no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from _eventstream import event_frame, exception_frame, frame, frames_from
from llmroute import HttpRequest
from llmroute._errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequest,
    MalformedResponse,
    ModelNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestError,
)
from llmroute._request import ChatRequest, validate_chat_request, validate_embeddings_request
from llmroute._types import ChatCompletionChunk, TokenUsage
from llmroute.providers.bedrock import BedrockAdapter
from llmroute.providers.configs import BedrockProviderConfig

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
BASE = "https://bedrock-runtime.us-east-1.amazonaws.com"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather",
                 "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}},
}  # fmt: skip
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}}
KEYS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}


def raw(name: str) -> bytes:
    return (FIXTURES / "bedrock" / name).read_bytes()


def make_adapter(**config: Any) -> BedrockAdapter:
    config.setdefault("region", "us-east-1")
    if "api_key" not in config and "profile" not in config:
        for key, value in KEYS.items():
            config.setdefault(key, value)
    return BedrockAdapter("bedrock", BedrockProviderConfig(type="bedrock", **config))


def chat(**params: Any) -> ChatRequest:
    return validate_chat_request({"model": "route", "messages": MESSAGES, **params})


def body_of(http: HttpRequest) -> Any:
    return json.loads(http.body or b"")


def build(request: ChatRequest, adapter: BedrockAdapter | None = None) -> Any:
    return body_of((adapter or make_adapter()).chat_request(request, MODEL, stream=False))


def decode(stream: bytes, request: ChatRequest | None = None, *, step: int | None = None
           ) -> tuple[Any, list[ChatCompletionChunk]]:  # fmt: skip
    decoder = make_adapter().stream_decoder(request or chat(), MODEL)
    step = step or len(stream)
    chunks = [c for i in range(0, len(stream), step) for c in decoder.feed(stream[i : i + step])]
    return decoder, chunks + decoder.finish()


def stream_of(name: str) -> bytes:
    return b"".join(frames_from(FIXTURES / "bedrock" / name))


def content(chunks: list[ChatCompletionChunk], key: str = "content") -> str:
    return "".join(
        (getattr(c.choices[0].delta, key, None) or (c.choices[0].delta.model_extra or {}).get(key))
        or "" for c in chunks if c.choices
    )  # fmt: skip


# ---------------------------------------------------------------- requests
def test_plain_request_url_and_body() -> None:
    http = make_adapter().chat_request(chat(max_tokens=200, top_p=0.9), MODEL, stream=False)
    assert (http.method, http.url) == ("POST", f"{BASE}/model/{MODEL}/converse")
    assert body_of(http) == {
        "messages": [{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}],
        "system": [{"text": "You are terse."}],
        "inferenceConfig": {"maxTokens": 200, "topP": 0.9},
    }


def test_stream_url_and_model_ids_that_are_arns() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    http = make_adapter(base_url="http://vpce.local/").chat_request(chat(), arn, stream=True)
    assert http.url == (
        "http://vpce.local/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile"
        "%2Fus.anthropic.claude-sonnet-4-5-20250929-v1:0/converse-stream"
    )
    assert http.headers["accept"] == "application/vnd.amazon.eventstream"


def test_tool_round_trip_request() -> None:
    params = json.loads((FIXTURES / "common" / "request_tools.json").read_bytes())
    assert build(validate_chat_request(params)) == json.loads(raw("expected_request_tools.json"))


TOOL_CHOICES = [
    ("auto", {"auto": {}}), ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
]  # fmt: skip


@pytest.mark.parametrize(("choice", "expected"), TOOL_CHOICES)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = build(chat(tools=[WEATHER_TOOL], tool_choice=choice))
    assert body["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none() -> None:
    assert "toolConfig" not in build(chat(tools=[WEATHER_TOOL], tool_choice="none"))
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    history = [*MESSAGES, {"role": "assistant", "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "c1", "content": "18C"}]  # fmt: skip
    with pytest.raises(RequestError, match="tool_choice 'none' in a conversation with tool calls"):
        build(chat(messages=history, tools=[WEATHER_TOOL], tool_choice="none"))


def test_structured_output_as_a_forced_tool_or_native() -> None:
    body = build(chat(response_format=JSON_FORMAT))
    assert body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "json_response", "inputSchema": {"json": SCHEMA},
                   "description": "Give the final answer by calling this tool with the weather object."}}],
        "toolChoice": {"tool": {"name": "json_response"}},
    }  # fmt: skip
    body = build(chat(response_format=JSON_FORMAT, tools=[WEATHER_TOOL]))
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    body = build(chat(response_format=JSON_FORMAT), make_adapter(structured_output="native"))
    assert body["outputConfig"] == {"textFormat": {"type": "json_schema", "structure": {
        "jsonSchema": {"schema": json.dumps(SCHEMA, separators=(",", ":")), "name": "weather"}}}}  # fmt: skip
    assert "toolConfig" not in body


def test_images_documents_and_cache_points() -> None:
    content_parts = [
        {"type": "text", "text": "Compare.", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x",
                                  "filename": "Q3 report.pdf"}},
    ]  # fmt: skip
    body = build(chat(messages=[{"role": "user", "content": content_parts}]))
    assert body["messages"][0]["content"] == [
        {"text": "Compare."},
        {"cachePoint": {"type": "default"}},
        {"image": {"format": "webp", "source": {"bytes": "UklGRg=="}}},
        {"document": {"format": "pdf", "name": "Q3 report", "source": {"bytes": "JVBERi0x"}}},
    ]


def test_bedrock_options_and_thinking_round_trip() -> None:
    options = {"additional_model_request_fields": {"top_k": 5},
               "guardrail_config": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
               "performance_config": {"latency": "optimized"}, "request_metadata": {"team": "a"}}  # fmt: skip
    thinking = [{"type": "thinking", "thinking": "77.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "EmwKAhgB"}]  # fmt: skip
    history = [*MESSAGES, {"role": "assistant", "content": "77", "thinking_blocks": thinking},
               {"role": "user", "content": "thanks"}]  # fmt: skip
    body = build(chat(messages=history, bedrock=options))
    assert body["additionalModelRequestFields"] == {"top_k": 5}
    assert body["guardrailConfig"] == {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}
    assert body["performanceConfig"] == {"latency": "optimized"}
    assert body["requestMetadata"] == {"team": "a"}
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "77.", "signature": "sig"}}},
        {"reasoningContent": {"redactedContent": "EmwKAhgB"}},
        {"text": "77"},
    ]


REFUSED = [
    ({"reasoning_effort": "high"}, "reasoning_effort", "reasoning_effort"),
    ({"temperature": 1.2}, "temperature 1.2", "temperature"),
    ({"n": 3}, "n > 1", "n"),
    ({"seed": 1}, "seed", "seed"),
    ({"bedrock": {"top_k": 5}}, "invalid bedrock options", "bedrock.top_k"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]}, "images by URL", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,PHN2Zz4="}}]}]}, "image/svg", "messages"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "message", "param"), REFUSED)
def test_refusals(params: dict[str, Any], message: str, param: str) -> None:
    with pytest.raises(RequestError, match=message) as info:
        build(chat(**params))
    assert info.value.param == param


# ---------------------------------------------------------------- responses
def test_parse_plain_and_tool_use() -> None:
    adapter = make_adapter()
    completion = adapter.parse_chat(raw("converse_plain.json"), MODEL)
    assert completion.id.startswith("bedrock-") and completion.model == MODEL
    assert completion.choices[0].message.content == "Hello! How can I help you today?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.normalised() == TokenUsage(input=12, output=11)
    completion = adapter.parse_chat(raw("converse_tool_use.json"), MODEL)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments))
            for c in choice.message.tool_calls or []] == [
        ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather", {"location": "Paris, France"}),
        ("tooluse_Qv3nB8xLT0yWm2Rk7Hs5Zg", "get_weather", {"location": "Tokyo, Japan"}),
    ]  # fmt: skip


def test_parse_json_tool_cache_usage_reasoning_and_guardrail() -> None:
    adapter = make_adapter()
    answer = adapter.parse_chat(raw("converse_json_tool.json"), MODEL).choices[0]
    assert json.loads(answer.message.content or "") == {"city": "Paris", "temperature_c": 18.5}
    assert (answer.message.tool_calls, answer.finish_reason) == (None, "stop")
    completion = adapter.parse_chat(raw("converse_cache_reasoning.json"), MODEL)
    assert completion.usage is not None
    assert completion.usage.normalised() == TokenUsage(input=21 + 2048 + 188, output=153,
                                                       cache_read=2048, cache_write=188)  # fmt: skip
    extra = completion.choices[0].message.model_extra or {}
    assert extra["reasoning_content"] == "2+3+5+7+11+13+17+19 = 77."
    assert extra["thinking_blocks"] == [{"type": "thinking", "thinking": "2+3+5+7+11+13+17+19 = 77.",
                                         "signature": "ErUBCkgIBhABGAIiQK2k"}]  # fmt: skip
    guarded = adapter.parse_chat(raw("converse_guardrail.json"), MODEL)
    assert guarded.choices[0].finish_reason == "content_filter"
    with pytest.raises(ProviderUnavailable, match="malformed"):
        adapter.parse_chat(raw("converse_malformed.json"), MODEL)
    with pytest.raises(MalformedResponse):
        adapter.parse_chat(b'{"output": {}}', MODEL)


# ---------------------------------------------------------------- event streams
@pytest.mark.parametrize("step", [None, 1, 7, 64])
def test_stream_text_from_frames_split_anywhere(step: int | None) -> None:
    decoder, chunks = decode(stream_of("stream_text.jsonl"), step=step)
    assert content(chunks) == "Why did the scarecrow win an award?"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert decoder.done is True
    assert decoder.usage.normalised() == TokenUsage(input=1049, output=15, cache_read=1024)


def test_stream_tool_call_arguments() -> None:
    decoder, chunks = decode(stream_of("stream_tool_use.jsonl"), step=11)
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for fragment in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert fragment.function is not None
            if fragment.id:
                calls[fragment.index] = [fragment.id, fragment.function.name or "", ""]
            calls[fragment.index][2] += fragment.function.arguments or ""
    assert {i: (c[0], c[1], json.loads(c[2])) for i, c in calls.items()} == {
        0: ("tooluse_9dYh2Lk4Qe6Rw8Tz1Xc3Vb", "get_weather", {"location": "Paris, France"}),
        1: ("tooluse_Fg5Hj7Kl9Mn1Bv3Cx5Za7S", "get_time", {"timezone": "Asia/Tokyo"}),
    }
    assert content(chunks) == "Checking both cities."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert decoder.usage.normalised() == TokenUsage(input=480, output=95)


def test_stream_reasoning_and_structured_output() -> None:
    request = chat(response_format=JSON_FORMAT)
    decoder, chunks = decode(stream_of("stream_reasoning_json.jsonl"), request)
    assert json.loads(content(chunks)) == {"city": "Paris", "temperature_c": 18.5}
    assert content(chunks, "reasoning_content") == "Paris is 18.5C and cloudy."
    blocks = [b for c in chunks if c.choices
              for b in (c.choices[0].delta.model_extra or {}).get("thinking_blocks", [])]  # fmt: skip
    assert blocks == [{"type": "thinking", "thinking": "Paris is 18.5C and cloudy.",
                       "signature": "ErUBCkgIBhABGAIiQK2k"}]  # fmt: skip
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert decoder.usage.normalised() == TokenUsage(input=1509, output=211, cache_write=1500)


def test_stream_exception_after_content() -> None:
    frames = frames_from(FIXTURES / "bedrock" / "stream_throttled.jsonl")
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    assert content(decoder.feed(b"".join(frames[:2]))) == "Once upon"
    with pytest.raises(RateLimited) as info:
        decoder.feed(frames[2])
    assert (info.value.code, info.value.status) == ("throttlingException", 200)
    assert info.value.message == "Too many tokens, please wait before trying again."


STREAM_EXCEPTIONS = [
    ("throttlingException", RateLimited), ("modelStreamErrorException", ProviderUnavailable),
    ("validationException", InvalidRequest), ("internalServerException", ProviderUnavailable),
    ("serviceUnavailableException", ProviderUnavailable), ("somethingNewException", ProviderUnavailable),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "cls"), STREAM_EXCEPTIONS)
def test_stream_exception_types(kind: str, cls: type[ProviderError]) -> None:
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    with pytest.raises(ProviderError) as info:
        decoder.feed(exception_frame(kind, {"message": "m"}))
    assert type(info.value) is cls


def test_stream_error_frame_and_broken_frames() -> None:
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    error = frame({":message-type": "error", ":error-code": "InternalFailure",
                   ":error-message": "An internal error occurred"}, b"")  # fmt: skip
    with pytest.raises(ProviderUnavailable, match="An internal error occurred"):
        decoder.feed(error)
    good = event_frame("messageStart", {"role": "assistant"})
    corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])
    with pytest.raises(MalformedResponse, match="bad frame"):
        make_adapter().stream_decoder(chat(), MODEL).feed(corrupt)
    with pytest.raises(MalformedResponse):
        make_adapter().stream_decoder(chat(), MODEL).feed(event_frame("contentBlockDelta", {}))
    assert make_adapter().stream_decoder(chat(), MODEL).feed(event_frame("newEvent", {})) == []


def test_stream_malformed_stop_is_retryable() -> None:
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    with pytest.raises(ProviderUnavailable):
        decoder.feed(event_frame("messageStop", {"stopReason": "malformed_model_output"}))


# ---------------------------------------------------------------- errors
ERRORS = [
    ("error_400.json", InvalidRequest), ("error_403.json", PermissionDenied),
    ("error_403_signature.json", AuthenticationError), ("error_404.json", ModelNotFound),
    ("error_408.json", ProviderUnavailable), ("error_424.json", ProviderUnavailable),
    ("error_429.json", RateLimited), ("error_500.json", ProviderUnavailable),
    ("error_503.json", ProviderUnavailable),
]  # fmt: skip


@pytest.mark.parametrize(("name", "cls"), ERRORS)
def test_map_error(name: str, cls: type[ProviderError]) -> None:
    doc = json.loads(raw(name))
    headers = CIMultiDict(doc["headers"])
    error = make_adapter().map_error(doc["status"], headers, json.dumps(doc["body"]).encode())
    assert type(error) is cls
    assert error.code == headers["x-amzn-errortype"].split(":")[0]
    assert (error.message, error.request_id) == (
        doc["body"]["message"],
        headers["x-amzn-requestid"],
    )


def test_map_error_without_the_type_header() -> None:
    body = b'{"__type": "com.amazon.coral.availability#ThrottlingException", "message": "slow"}'
    assert type(make_adapter().map_error(400, {}, body)) is RateLimited
    error = make_adapter().map_error(502, {"retry-after": "3"}, b"<html>bad gateway</html>")
    assert (type(error), error.retry_after) == (ProviderUnavailable, 3.0)


# ---------------------------------------------------------------- credentials
@pytest.mark.anyio
async def test_sigv4_signing_with_static_keys() -> None:
    adapter = make_adapter(aws_session_token="FwoGZXIvYXdzEJr")
    http = adapter.chat_request(chat(), MODEL, stream=False)
    signed = await adapter.prepare(http)
    authorization = signed.headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    assert "SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token" in authorization
    assert signed.headers["x-amz-security-token"] == "FwoGZXIvYXdzEJr"
    assert signed.headers["x-amz-date"].endswith("Z")
    assert (signed.url, signed.body) == (http.url, http.body)


@pytest.mark.anyio
async def test_bedrock_api_key_is_a_bearer_token_and_needs_no_signing() -> None:
    adapter = make_adapter(api_key="ABSKQmVkcm9ja0FQSUtleQ")
    http = adapter.chat_request(chat(), MODEL, stream=False)
    assert http.headers["authorization"] == "Bearer ABSKQmVkcm9ja0FQSUtleQ"
    assert await adapter.prepare(http) is http


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with no AWS credentials, no config files and no metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_BEARER_TOKEN_BEDROCK"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.mark.anyio
async def test_credential_chain_from_the_environment(no_aws: pytest.MonkeyPatch) -> None:
    no_aws.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    no_aws.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    adapter = BedrockAdapter("b", BedrockProviderConfig(type="bedrock", region="eu-west-3"))
    signed = await adapter.prepare(adapter.chat_request(chat(), MODEL, stream=False))
    assert "Credential=AKIDFROMENV/" in signed.headers["authorization"]
    assert "/eu-west-3/bedrock/" in signed.headers["authorization"]
    assert "x-amz-security-token" not in signed.headers


@pytest.mark.anyio
async def test_no_credentials_is_an_authentication_error(no_aws: pytest.MonkeyPatch) -> None:
    adapter = BedrockAdapter("b", BedrockProviderConfig(type="bedrock", region="eu-west-3"))
    with pytest.raises(AuthenticationError, match="no AWS credentials"):
        await adapter.prepare(adapter.chat_request(chat(), MODEL, stream=False))


def test_region_from_the_profile_or_a_config_error(
    no_aws: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no AWS region"):
        BedrockAdapter("b", BedrockProviderConfig(type="bedrock"))
    (tmp_path / "config").write_text("[profile work]\nregion = ap-southeast-2\n")
    adapter = BedrockAdapter("b", BedrockProviderConfig(type="bedrock", profile="work"))
    assert adapter.base_url == "https://bedrock-runtime.ap-southeast-2.amazonaws.com"


# ---------------------------------------------------------------- embeddings
def test_titan_and_cohere_embeddings() -> None:
    adapter = make_adapter()
    titan = "amazon.titan-embed-text-v2:0"
    http = adapter.embeddings_request(validate_embeddings_request(
        {"model": "e", "input": "hello", "dimensions": 256}), titan)  # fmt: skip
    assert http.url == f"{BASE}/model/{titan}/invoke"
    assert body_of(http) == {"inputText": "hello", "dimensions": 256}
    result = adapter.parse_embeddings(raw("titan_embed.json"), titan)
    assert result.data[0].embedding == [0.0123, -0.0456, 0.0789, 0.1011]
    assert result.usage is not None and result.usage.prompt_tokens == 5
    cohere = "cohere.embed-english-v3"
    request = validate_embeddings_request({"model": "e", "input": ["a", "b"],
                                           "bedrock": {"input_type": "search_query"}})  # fmt: skip
    assert body_of(adapter.embeddings_request(request, cohere)) == {
        "texts": ["a", "b"], "input_type": "search_query"}  # fmt: skip
    result = adapter.parse_embeddings(raw("cohere_embed.json"), cohere)
    assert [d.embedding for d in result.data] == [[0.01, 0.02], [0.03, -0.04]]


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [("amazon.titan-embed-text-v2:0", {"input": ["a", "b"]}, "one text per call"),
     ("meta.llama3-8b-instruct-v1:0", {"input": "a"}, "Titan and Cohere"),
     ("amazon.titan-embed-text-v2:0", {"input": "a", "encoding_format": "base64"}, "base64"),
     ("cohere.embed-english-v3", {"input": [[1, 2]]}, "token-id")],
)  # fmt: skip
def test_embeddings_refusals(model: str, params: dict[str, Any], message: str) -> None:
    request = validate_embeddings_request({"model": "e", **params})
    with pytest.raises(RequestError, match=message):
        make_adapter().embeddings_request(request, model)


def test_openai_only_service_hints_are_dropped_not_refused() -> None:
    hints = {"prompt_cache_key": "k", "prompt_cache_retention": "24h",
             "safety_identifier": "s", "verbosity": "low", "store": True}  # fmt: skip
    assert build(chat(**hints)) == build(chat())

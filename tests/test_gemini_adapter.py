"""The Gemini adapter against realistic payloads (tests/fixtures/gemini), no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from llmroute import HttpRequest
from llmroute._errors import (
    AuthenticationError,
    ContentFiltered,
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
from llmroute.providers._base import ExtraRequest
from llmroute.providers.configs import GeminiProviderConfig
from llmroute.providers.gemini import GeminiAdapter

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "gemini-2.5-flash"
BASE = "https://generativelanguage.googleapis.com/v1beta"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                       "additionalProperties": False},
    },
}  # fmt: skip
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def raw(name: str) -> bytes:
    return (FIXTURES / "gemini" / name).read_bytes()


def recorded_error(name: str) -> tuple[int, CIMultiDict[str], bytes]:
    doc = json.loads(raw(name))
    return doc["status"], CIMultiDict(doc["headers"]), json.dumps(doc["body"]).encode()


def make_adapter(**config: Any) -> GeminiAdapter:
    config.setdefault("api_key", "AIza-test")
    return GeminiAdapter("gemini", GeminiProviderConfig(type="gemini", **config))


def chat(**params: Any) -> ChatRequest:
    return validate_chat_request({"model": "route", "messages": MESSAGES, **params})


def body_of(http: HttpRequest) -> Any:
    return json.loads(http.body or b"")


def build(request: ChatRequest, model: str = MODEL) -> Any:
    return body_of(make_adapter().chat_request(request, model, stream=False))


def decode(name: str) -> tuple[Any, list[ChatCompletionChunk]]:
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    chunks = [c for line in raw(name).split(b"\n") for c in decoder.feed(line)]
    return decoder, chunks + decoder.finish()


# ---------------------------------------------------------------- requests
def test_plain_request() -> None:
    http = make_adapter().chat_request(chat(temperature=0.3, max_tokens=100), MODEL, stream=False)
    assert (http.method, http.url) == ("POST", f"{BASE}/models/{MODEL}:generateContent")
    assert http.headers["x-goog-api-key"] == "AIza-test"
    assert body_of(http) == {
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 100},
    }


def test_stream_url_extra_query_headers_and_model_paths() -> None:
    extra = ExtraRequest(headers={"X-Trace": "t"}, query={"debug": "1"})
    http = make_adapter(base_url="http://gw.local/v1beta/").chat_request(
        chat(), "models/gemini-2.5-pro", stream=True, extra=extra
    )
    assert (
        http.url
        == "http://gw.local/v1beta/models/gemini-2.5-pro:streamGenerateContent?debug=1&alt=sse"
    )
    assert (http.headers["accept"], http.headers["x-trace"]) == ("text/event-stream", "t")
    tuned = make_adapter().chat_request(chat(), "tunedModels/my-model-7", stream=False)
    assert tuned.url == f"{BASE}/tunedModels/my-model-7:generateContent"


def test_tool_round_trip_request() -> None:
    params = json.loads((FIXTURES / "common" / "request_tools.json").read_bytes())
    assert build(validate_chat_request(params)) == json.loads(raw("expected_request_tools.json"))


GENERATION = [
    ({"n": 2, "seed": 7, "top_p": 0.5, "stop": "END", "presence_penalty": 0.5,
      "frequency_penalty": -0.5, "max_completion_tokens": 64},
     {"candidateCount": 2, "seed": 7, "topP": 0.5, "stopSequences": ["END"], "presencePenalty": 0.5,
      "frequencyPenalty": -0.5, "maxOutputTokens": 64}),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}}},
     {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}),
    ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
    ({"reasoning_effort": "low"}, {"thinkingConfig": {"thinkingLevel": "LOW"}}),
    ({"reasoning_effort": "none"}, {"thinkingConfig": {"thinkingBudget": 0}}),
    ({"reasoning_effort": "high", "gemini": {"top_k": 40, "thinking_config": {
        "include_thoughts": True, "thinking_budget": 1024}}},
     {"topK": 40, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024}}),
]  # fmt: skip


@pytest.mark.parametrize(("params", "expected"), GENERATION)
def test_generation_config(params: dict[str, Any], expected: dict[str, Any]) -> None:
    assert build(chat(**params))["generationConfig"] == expected


def test_gemini_options_safety_and_cache() -> None:
    options = {"safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
               "cached_content": "cachedContents/abc123"}  # fmt: skip
    body = build(chat(gemini=options))
    assert body["safetySettings"] == options["safety_settings"]
    assert body["cachedContent"] == "cachedContents/abc123"
    assert "gemini" not in body
    with pytest.raises(RequestError, match=r"gemini\.thinking_config\.thinking_level") as info:
        build(chat(gemini={"thinking_config": {"thinking_level": "enormous"}}))
    assert info.value.param == "gemini.thinking_config.thinking_level"


TOOL_CHOICES = [
    ("none", {"mode": "NONE"}), ("auto", {"mode": "AUTO"}), ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
]  # fmt: skip


@pytest.mark.parametrize(("choice", "expected"), TOOL_CHOICES)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = build(chat(tools=[WEATHER_TOOL], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"] == WEATHER_TOOL["function"]["parameters"]


def test_images_audio_and_files_inline() -> None:
    content = [
        {"type": "text", "text": "Describe."},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x"}},
    ]
    parts = build(chat(messages=[{"role": "user", "content": content}]))["contents"][0]["parts"]
    assert parts == [
        {"text": "Describe."},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0x"}},
    ]


REFUSED = [
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}, "images by URL", "messages"),
    ({"messages": [{"role": "tool", "tool_call_id": "call_x", "content": "1"}]}, "answers no earlier tool call", "messages"),
    ({"logprobs": True}, "logprobs", "logprobs"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort 'extreme'", "reasoning_effort"),
    ({"anthropic_beta": "x"}, "anthropic_beta", "anthropic_beta"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "message", "param"), REFUSED)
def test_refusals(params: dict[str, Any], message: str, param: str) -> None:
    with pytest.raises(RequestError, match=message) as info:
        build(chat(**params))
    assert info.value.param == param


# ---------------------------------------------------------------- responses
def test_parse_plain() -> None:
    completion = make_adapter().parse_chat(raw("chat_plain.json"), MODEL)
    assert (completion.id, completion.model) == ("fC5taKnKLYPwnvgP0v6b2Ac", "gemini-2.5-flash")
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == (
        "Hello! How can I help you today?",
        "stop",
    )
    assert completion.usage is not None
    assert completion.usage.normalised() == TokenUsage(input=8, output=9)


def test_function_calls_get_stable_ids_and_keep_their_signatures() -> None:
    adapter = make_adapter()
    first = adapter.parse_chat(raw("chat_function_calls.json"), "gemini-3-pro-preview")
    again = adapter.parse_chat(raw("chat_function_calls.json"), "gemini-3-pro-preview")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"location": "Paris, France"}), ("get_weather", {"location": "Tokyo, Japan"}),
    ]  # fmt: skip
    ids = [c.id for c in calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    assert ids == [c.id for c in again.choices[0].message.tool_calls or []]  # stable
    signature = "CiQB0e2Kb5JxTb2aZ3qP9fLw8mYk1Nc4Vt7Rs0Xu6Ij2Oe8="
    assert (calls[0].model_extra or {}) == {
        "extra_content": {"google": {"thought_signature": signature}}
    }
    assert first.usage is not None
    assert first.usage.normalised() == TokenUsage(input=96, output=87, reasoning=57)
    # the follow-up sends the signature back with the call, and names the function results
    history = [*MESSAGES, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": ids[0], "content": "18C"},
               {"role": "tool", "tool_call_id": ids[1], "content": '{"temp": 22}'}]  # fmt: skip
    contents = build(chat(messages=history, tools=[WEATHER_TOOL]), "gemini-3-pro-preview")[
        "contents"
    ]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris, France"}},
         "thoughtSignature": signature},
        {"functionCall": {"name": "get_weather", "args": {"location": "Tokyo, Japan"}}},
    ]}  # fmt: skip
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
        {"functionResponse": {"name": "get_weather", "response": {"temp": 22}}},
    ]


def test_calls_from_another_model_get_the_documented_placeholder_signature_on_gemini_3() -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}  # fmt: skip
    history = [*MESSAGES, {"role": "assistant", "tool_calls": [call, {**call, "id": "call_2"}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "x"},
               {"role": "tool", "tool_call_id": "call_2", "content": "y"}]  # fmt: skip
    parts = build(chat(messages=history), "gemini-3-flash-preview")["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in parts[1]
    parts = build(chat(messages=history), "gemini-2.5-flash")["contents"][1]["parts"]
    assert all("thoughtSignature" not in part for part in parts)


def test_json_thinking_cache_and_several_candidates() -> None:
    adapter = make_adapter()
    completion = adapter.parse_chat(raw("chat_json.json"), MODEL)
    assert json.loads(completion.choices[0].message.content or "") == {
        "city": "Paris",
        "temperature_c": 18.5,
    }
    completion = adapter.parse_chat(raw("chat_thinking_cache.json"), MODEL)
    message = completion.choices[0].message
    assert message.content == "The sum of the primes below 20 is 77."
    assert (message.model_extra or {})["reasoning_content"].startswith("**Adding the primes**")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2107  # prompt + tool-use prompt
    assert completion.usage.normalised() == TokenUsage(input=2107, output=352, cache_read=2048,
                                                       reasoning=340)  # fmt: skip
    completion = adapter.parse_chat(raw("chat_two_candidates.json"), MODEL)
    assert [(c.index, c.finish_reason) for c in completion.choices] == [(0, "stop"), (1, "length")]


def test_safety_blocks() -> None:
    adapter = make_adapter()
    assert (
        adapter.parse_chat(raw("chat_safety.json"), MODEL).choices[0].finish_reason
        == "content_filter"
    )
    with pytest.raises(ContentFiltered) as info:
        adapter.parse_chat(raw("chat_blocked_prompt.json"), MODEL)
    assert (info.value.code, info.value.status) == ("PROHIBITED_CONTENT", 200)


def test_malformed_function_call_is_a_retryable_failure() -> None:
    with pytest.raises(ProviderUnavailable) as info:
        make_adapter().parse_chat(raw("chat_malformed_call.json"), MODEL)
    assert info.value.code == "MALFORMED_FUNCTION_CALL"


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'{"candidates": []}', b'{"candidates": {}}'])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(MalformedResponse):
        make_adapter().parse_chat(body, MODEL)


# ---------------------------------------------------------------- streams
def test_stream_text_usage_at_the_end() -> None:
    decoder, chunks = decode("stream_text.sse")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Why did the scarecrow win an award?"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert decoder.done is True
    assert decoder.usage.normalised() == TokenUsage(input=9, output=34, reasoning=24)
    assert {c.id for c in chunks} == {"gC5taMfLOKSsvdIPm5rZ2Ak"}


def test_stream_function_calls_arrive_whole() -> None:
    _, chunks = decode("stream_function_calls.sse")
    fragments = [f for c in chunks if c.choices for f in c.choices[0].delta.tool_calls or []]
    assert [(f.index, f.function.name, json.loads(f.function.arguments or "")) for f in fragments
            if f.function] == [(0, "get_weather", {"location": "Paris, France"}),
                               (1, "get_time", {"timezone": "Asia/Tokyo"})]  # fmt: skip
    assert all(f.id and f.id.startswith("call_") for f in fragments)
    assert (fragments[0].model_extra or {})["extra_content"]["google"]["thought_signature"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_stream_error_event() -> None:
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    lines = raw("stream_error.sse").split(b"\n")
    assert [c.choices[0].delta.content for line in lines[:2] for c in decoder.feed(line)] == [
        "",
        "Once upon",
    ]
    decoder.feed(lines[2])
    with pytest.raises(ProviderUnavailable) as info:
        decoder.feed(lines[3])
    assert (info.value.code, info.value.status) == ("UNAVAILABLE", 200)


def test_stream_ended_without_a_finish_is_not_done() -> None:
    decoder = make_adapter().stream_decoder(chat(), MODEL)
    for line in raw("stream_text.sse").split(b"\n")[:4]:
        decoder.feed(line)
    assert decoder.finish() == [] and decoder.done is False


# ---------------------------------------------------------------- errors
ERRORS = [
    ("error_400.json", InvalidRequest, "INVALID_ARGUMENT", None),
    ("error_400_key.json", AuthenticationError, "API_KEY_INVALID", None),
    ("error_400_precondition.json", PermissionDenied, "FAILED_PRECONDITION", None),
    ("error_403.json", PermissionDenied, "PERMISSION_DENIED", None),
    ("error_404.json", ModelNotFound, "NOT_FOUND", None),
    ("error_429.json", RateLimited, "RESOURCE_EXHAUSTED", 37.0),
    ("error_500.json", ProviderUnavailable, "INTERNAL", None),
    ("error_503.json", ProviderUnavailable, "UNAVAILABLE", None),
    ("error_504.json", ProviderUnavailable, "DEADLINE_EXCEEDED", None),
]


@pytest.mark.parametrize(("name", "cls", "code", "retry_after"), ERRORS)
def test_map_error(
    name: str, cls: type[ProviderError], code: str, retry_after: float | None
) -> None:
    status, headers, body = recorded_error(name)
    error = make_adapter().map_error(status, headers, body)
    assert type(error) is cls
    assert (error.status, error.code, error.retry_after) == (status, code, retry_after)
    assert error.message == json.loads(body)["error"]["message"]


def test_retry_delay_fraction_and_header_fallback() -> None:
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "slow",
                      "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                   "retryDelay": "1.5s"}]}}  # fmt: skip
    assert make_adapter().map_error(429, {}, json.dumps(body).encode()).retry_after == 1.5
    error = make_adapter().map_error(503, {"retry-after": "4"}, b"upstream connect error")
    assert (type(error), error.retry_after) == (ProviderUnavailable, 4.0)
    assert error.message.startswith("HTTP 503 with a non-Gemini error body")
    wrapped = json.dumps([{"error": {"code": 404, "message": "gone", "status": "NOT_FOUND"}}])
    assert type(make_adapter().map_error(404, {}, wrapped.encode())) is ModelNotFound


# ---------------------------------------------------------------- embeddings
def test_embeddings_single_and_batch() -> None:
    adapter = make_adapter()
    single = validate_embeddings_request({"model": "e", "input": "hello", "dimensions": 4})
    http = adapter.embeddings_request(single, "gemini-embedding-001")
    assert http.url == f"{BASE}/models/gemini-embedding-001:embedContent"
    assert body_of(http) == {"model": "models/gemini-embedding-001",
                             "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}  # fmt: skip
    batch = validate_embeddings_request({"model": "e", "input": ["a", "b"],
                                         "gemini": {"task_type": "RETRIEVAL_DOCUMENT"}})  # fmt: skip
    http = adapter.embeddings_request(batch, "gemini-embedding-001")
    assert http.url == f"{BASE}/models/gemini-embedding-001:batchEmbedContents"
    assert [r["taskType"] for r in body_of(http)["requests"]] == ["RETRIEVAL_DOCUMENT"] * 2
    result = adapter.parse_embeddings(raw("embed_single.json"), "gemini-embedding-001")
    assert result.data[0].embedding == [0.0123, -0.0456, 0.0789, 0.1011]
    assert result.usage is None
    result = adapter.parse_embeddings(raw("embed_batch.json"), "gemini-embedding-001")
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage is not None and result.usage.prompt_tokens == 9


@pytest.mark.parametrize(
    ("params", "message"),
    [({"input": [[1, 2, 3]]}, "token-id inputs"), ({"input": "x", "encoding_format": "base64"}, "base64"),
     ({"input": "x", "user_tag": "a"}, "user_tag")],
)  # fmt: skip
def test_embeddings_refusals(params: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        make_adapter().embeddings_request(
            validate_embeddings_request({"model": "e", **params}), "m"
        )


def test_openai_only_service_hints_are_dropped_not_refused() -> None:
    hints = {"prompt_cache_key": "k", "prompt_cache_retention": "24h",
             "safety_identifier": "s", "verbosity": "low", "store": True}  # fmt: skip
    assert build(chat(**hints)) == build(chat())

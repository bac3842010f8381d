"""Our response dumps validate against the official openai SDK types, field for field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai.types
import openai.types.chat
import pytest
from pydantic import BaseModel

from llmroute._request import validate_chat_request
from llmroute._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    CreateEmbeddingResponse,
    RouteInfo,
    TokenUsage,
)
from llmroute.providers.configs import OpenAIProviderConfig
from llmroute.providers.openai import OpenAIAdapter

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
SDK_COMPLETION = openai.types.chat.ChatCompletion
SDK_CHUNK = openai.types.chat.ChatCompletionChunk
SDK_EMBEDDINGS = openai.types.CreateEmbeddingResponse


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def stream_chunks(name: str) -> list[ChatCompletionChunk]:
    adapter = OpenAIAdapter("openai", OpenAIProviderConfig(type="openai", api_key="sk-test"))
    request = validate_chat_request(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    )
    decoder = adapter.stream_decoder(request, "gpt-4o-mini")
    return [c for line in raw(name).split(b"\n") for c in decoder.feed(line)]


def routed(obj: Any) -> Any:
    """Attach routing metadata, as the router does, so a leak into dumps would show.

    Chunks carry none (the stream object does), so they are returned as they are.
    """
    if hasattr(obj, "attach_route_info"):
        obj.attach_route_info(
            RouteInfo(request_id="lr_0123", provider="openai", usage=TokenUsage(1, 2))
        )
    return obj


def assert_same_values(ours: Any, theirs: Any, path: str = "") -> None:
    """Every value in our dump is in the SDK's dump, unchanged (the SDK may add None fields)."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict), path
        for key, value in ours.items():
            assert key in theirs, f"{path}.{key} missing from the SDK dump"
            assert_same_values(value, theirs[key], f"{path}.{key}")
        extra = {k: v for k, v in theirs.items() if k not in ours and v is not None}
        assert not extra, f"{path}: the SDK invented values {extra}"
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_values(a, b, f"{path}[{i}]")
    else:
        assert ours == theirs and type(ours) is type(theirs), f"{path}: {ours!r} != {theirs!r}"


def round_trip(ours: BaseModel, sdk_type: type[BaseModel]) -> BaseModel:
    dump = ours.model_dump()
    assert "llmroute" not in dump and "_llmroute" not in dump
    assert "lr_0123" not in ours.model_dump_json()
    theirs = sdk_type.model_validate(dump)
    assert_same_values(dump, theirs.model_dump())
    back = type(ours).model_validate(theirs.model_dump(exclude_unset=True))
    assert back.model_dump() == dump
    return theirs


# ---------------------------------------------------------------- chat completions
@pytest.mark.parametrize(
    "name", ["chat_plain.json", "chat_tool_calls.json", "chat_usage_details.json"]
)
def test_chat_completion_fixtures_validate(name: str) -> None:
    ours = routed(ChatCompletion.model_validate_json(raw(name)))
    theirs = round_trip(ours, SDK_COMPLETION)
    assert isinstance(theirs, SDK_COMPLETION)
    assert (theirs.id, theirs.model, theirs.created) == (ours.id, ours.model, ours.created)
    assert theirs.object == "chat.completion"
    assert theirs.choices[0].finish_reason == ours.choices[0].finish_reason
    assert theirs.choices[0].message.content == ours.choices[0].message.content
    assert ours.llmroute.request_id == "lr_0123"


def test_chat_completion_tool_calls_in_sdk() -> None:
    theirs = round_trip(
        ChatCompletion.model_validate_json(raw("chat_tool_calls.json")), SDK_COMPLETION
    )
    assert isinstance(theirs, SDK_COMPLETION)
    calls = theirs.choices[0].message.tool_calls or []
    assert [(c.id, c.type) for c in calls] == [
        ("call_8qFg2bXGmNw4vT1cYk0R3sLp", "function"),
        ("call_Zt7mHq1VdE9xKc2Lb5nWs0Ry", "function"),
    ]
    arguments = [json.loads(c.function.arguments) for c in calls]  # type: ignore[union-attr]
    assert [a["location"] for a in arguments] == ["Paris, France", "Tokyo, Japan"]
    assert theirs.choices[0].finish_reason == "tool_calls"


def test_chat_completion_usage_details_and_extras_in_sdk() -> None:
    ours = ChatCompletion.model_validate_json(raw("chat_usage_details.json"))
    theirs = round_trip(ours, SDK_COMPLETION)
    assert isinstance(theirs, SDK_COMPLETION)
    usage = theirs.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2048, 612, 2660)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1920
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 576
    assert theirs.service_tier == "flex"
    dump = theirs.model_dump()
    assert dump["prompt_filter_results"][0]["prompt_index"] == 0
    assert dump["choices"][0]["message"]["reasoning_summary"]["format"] == "text"


def test_chat_completion_built_by_llmroute_validates() -> None:
    """An object llmroute builds itself (defaults only) is also valid for the SDK."""
    ours = routed(
        ChatCompletion(
            id="chatcmpl-llmroute-1",
            created=1742000000,
            model="gpt-4o-mini",
            choices=[
                Choice(index=0, message=ChatCompletionMessage(content="hi"), finish_reason="stop")
            ],
            usage=CompletionUsage(prompt_tokens=3, completion_tokens=1, total_tokens=4),
        )
    )
    theirs = round_trip(ours, SDK_COMPLETION)
    assert isinstance(theirs, SDK_COMPLETION)
    assert theirs.choices[0].message.role == "assistant"
    assert theirs.usage is not None and theirs.usage.total_tokens == 4


# ---------------------------------------------------------------- chunks
def test_content_chunks_validate() -> None:
    chunks = stream_chunks("stream_text.sse")
    assert len(chunks) == 7
    for ours in chunks:
        theirs = round_trip(routed(ours), SDK_CHUNK)
        assert isinstance(theirs, SDK_CHUNK)
        assert theirs.object == "chat.completion.chunk"
    first = SDK_CHUNK.model_validate(chunks[0].model_dump())
    assert first.choices[0].delta.role == "assistant"
    second = SDK_CHUNK.model_validate(chunks[1].model_dump())
    assert second.choices[0].delta.content == "Why"
    finish = SDK_CHUNK.model_validate(chunks[5].model_dump())
    assert finish.choices[0].finish_reason == "stop"


def test_usage_only_chunk_validates() -> None:
    ours = stream_chunks("stream_text.sse")[-1]
    theirs = round_trip(ours, SDK_CHUNK)
    assert isinstance(theirs, SDK_CHUNK)
    assert theirs.choices == []
    assert theirs.usage is not None
    assert (theirs.usage.prompt_tokens, theirs.usage.completion_tokens) == (14, 9)
    assert theirs.usage.total_tokens == 23


def test_tool_call_fragment_chunks_validate() -> None:
    chunks = stream_chunks("stream_tool_calls.sse")
    for ours in chunks:
        round_trip(ours, SDK_CHUNK)
    first = SDK_CHUNK.model_validate(chunks[1].model_dump())
    (fragment,) = first.choices[0].delta.tool_calls or []
    assert (fragment.index, fragment.id, fragment.type) == (
        0,
        "call_Qm3ZrT8yLk2Vd0Hs9Wn4Xb1c",
        "function",
    )
    assert fragment.function is not None
    assert (fragment.function.name, fragment.function.arguments) == ("get_weather", "")
    later = SDK_CHUNK.model_validate(chunks[2].model_dump())
    (piece,) = later.choices[0].delta.tool_calls or []
    assert (piece.index, piece.id) == (0, None)
    assert piece.function is not None
    assert (piece.function.name, piece.function.arguments) == (None, '{"lo')


def test_chunk_built_by_llmroute_validates() -> None:
    ours = ChatCompletionChunk(
        id="chatcmpl-llmroute-2",
        created=1742000000,
        model="gpt-4o-mini",
        choices=[ChunkChoice(index=0, delta=ChoiceDelta(content="Hel"))],
    )
    theirs = round_trip(routed(ours), SDK_CHUNK)
    assert isinstance(theirs, SDK_CHUNK)
    assert theirs.choices[0].delta.content == "Hel"
    assert theirs.choices[0].finish_reason is None


# ---------------------------------------------------------------- embeddings
def test_embeddings_validate() -> None:
    ours = routed(CreateEmbeddingResponse.model_validate_json(raw("embeddings_float.json")))
    theirs = round_trip(ours, SDK_EMBEDDINGS)
    assert isinstance(theirs, SDK_EMBEDDINGS)
    expected = json.loads(raw("embeddings_float.json"))
    assert [d.embedding for d in theirs.data] == [d["embedding"] for d in expected["data"]]
    assert [d.index for d in theirs.data] == [0, 1]
    assert (theirs.model, theirs.object) == ("text-embedding-3-small", "list")
    assert (theirs.usage.prompt_tokens, theirs.usage.total_tokens) == (9, 9)


# ---------------------------------------------------------------- routing metadata
@pytest.mark.parametrize(
    "ours",
    [
        ChatCompletion.model_validate_json(raw("chat_plain.json")),
        CreateEmbeddingResponse.model_validate_json(raw("embeddings_float.json")),
    ],
    ids=["chat", "embeddings"],
)
def test_llmroute_metadata_is_not_dumped(ours: Any) -> None:
    routed(ours)
    assert ours.llmroute.request_id == "lr_0123"
    assert ours.llmroute.usage == TokenUsage(1, 2)
    dump = ours.model_dump()
    assert not {"llmroute", "_llmroute"} & set(dump)
    assert "llmroute" not in json.loads(ours.model_dump_json())
    assert "lr_0123" not in ours.model_dump_json()
    assert "llmroute" not in type(ours).model_json_schema()["properties"]

"""The gateway's JSON adds nothing OpenAI would not send (compared with tests/fixtures/openai).

OpenAI sends ``refusal`` and ``logprobs`` as null, and leaves out a message's
``tool_calls`` when there are none, a delta's empty fields, usage details it
did not count. An answer llmroute builds itself (a translation, the mock
provider) is serialised the same way; one relayed from an OpenAI-compatible
provider keeps the provider's fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmroute import ChatCompletion, ChatCompletionChunk, Router
from llmroute.providers.anthropic import AnthropicAdapter
from llmroute.providers.configs import AnthropicProviderConfig

FIXTURES = Path(__file__).parent / "fixtures"
HI = [{"role": "user", "content": "hi"}]
_json = ChatCompletion.__pydantic_serializer__.to_json


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "openai" / name).read_text())
    return loaded


def test_openai_fields_and_nulls_match_openais_own_answers() -> None:
    sent = fixture("chat_plain.json")
    choice, message = sent["choices"][0], sent["choices"][0]["message"]
    assert message["refusal"] is None and choice["logprobs"] is None
    assert "tool_calls" not in message and "function_call" not in message
    built = json.loads(_json(ChatCompletion.model_validate(sent)))
    assert built == sent  # a relayed answer keeps every field the provider sent


def test_an_answer_llmroute_builds_has_no_null_tool_calls() -> None:
    with Router({"providers": {"a": {"type": "mock"}}}) as router:
        client = router.openai_client()
        raw = client.chat.completions.with_raw_response.create(model="a/m", messages=HI)
        body = json.loads(raw.http_response.text)
        message = body["choices"][0]["message"]
        assert set(message) <= set(fixture("chat_plain.json")["choices"][0]["message"])
        assert message["refusal"] is None and "tool_calls" not in message
        assert body["choices"][0]["logprobs"] is None
        assert None not in body["usage"].values()


def test_anthropic_translation_serialises_as_openai_would() -> None:
    adapter = AnthropicAdapter(
        "anthropic", AnthropicProviderConfig(type="anthropic", api_key="sk-ant-test")
    )
    text = adapter.parse_chat((FIXTURES / "anthropic" / "chat_plain.json").read_bytes(), "m")
    body = json.loads(_json(text))
    message = body["choices"][0]["message"]
    assert "tool_calls" not in message and message["refusal"] is None
    assert body["choices"][0]["logprobs"] is None
    assert all(value is not None for value in body["usage"].values())
    tools = adapter.parse_chat((FIXTURES / "anthropic" / "chat_tool_use.json").read_bytes(), "m")
    assert json.loads(_json(tools))["choices"][0]["message"]["tool_calls"]


def test_built_chunks_leave_out_what_openai_leaves_out() -> None:
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Why"}, "finish_reason": None}],
        }
    )
    sent = json.loads(ChatCompletionChunk.__pydantic_serializer__.to_json(chunk))
    assert sent["choices"][0]["delta"] == {"content": "Why"}  # as in stream_text.sse
    assert sent["choices"][0]["finish_reason"] is None and "usage" not in sent
    end = ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    )
    assert (
        json.loads(ChatCompletionChunk.__pydantic_serializer__.to_json(end))["choices"][0]["delta"]
        == {}
    )

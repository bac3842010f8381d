"""The chat translation both ways: a Responses request as Chat Completions (`to_chat`, item by
item and parameter by parameter), and a chat completion as a `Response`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai.types.responses as sdk
import pytest

from llmroute import RequestError
from llmroute._types import ChatCompletion
from llmroute.responses import (
    THINKING_PREFIX,
    Response,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseReasoningItem,
    completion_to_response,
    new_item_id,
    thinking_content,
    to_chat,
    validate_responses_request,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather",
        "arguments": '{"city":"Paris"}'}  # fmt: skip


def chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request `body` translates to, as the dict adapters would read."""
    request = validate_responses_request({"model": "chat", **body})
    return to_chat(request).model_dump(exclude_unset=True)


def messages(items: Any, **body: Any) -> list[dict[str, Any]]:
    translated: list[dict[str, Any]] = chat({"input": items, **body})["messages"]
    return translated


def refused(body: dict[str, Any]) -> RequestError:
    request = validate_responses_request({"model": "chat", **body})
    with pytest.raises(RequestError) as caught:
        to_chat(request)
    return caught.value


# ---------------------------------------------------------------- input items


def test_a_string_input_and_instructions() -> None:
    assert messages("Hi", instructions="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_messages_of_every_role_and_part() -> None:
    items = [
        {"role": "developer", "content": "Use metric."},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "S"}]},
        {"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "https://img.example/cat.png", "detail": "low"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE",
             "filename": "a.pdf"},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
        ]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "A cat.", "annotations": []}]},
    ]  # fmt: skip
    assert messages(items) == [
        {"role": "developer", "content": "Use metric."},
        {"role": "system", "content": "S"},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://img.example/cat.png",
                                                "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                      "filename": "a.pdf"}},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
        ]},
        {"role": "assistant", "content": "A cat."},
    ]  # fmt: skip


def test_an_assistant_turn_of_text_and_calls_is_one_message_then_tool_messages() -> None:
    second = {**CALL, "call_id": "call_2", "arguments": '{"city":"Rome"}'}
    items = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "message", "role": "assistant", "status": "completed", "id": "msg_1",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        CALL,
        second,
        {"type": "function_call_output", "call_id": "call_1", "output": "21C"},
        {"type": "function_call_output", "call_id": "call_2",
         "output": [{"type": "input_text", "text": "25"}, {"type": "input_text", "text": "C"}]},
        {"role": "assistant", "content": "Paris 21C, Rome 25C."},
    ]  # fmt: skip
    assert messages(items) == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
        {"role": "tool", "tool_call_id": "call_2",
         "content": [{"type": "text", "text": "25"}, {"type": "text", "text": "C"}]},
        {"role": "assistant", "content": "Paris 21C, Rome 25C."},
    ]  # fmt: skip


def test_text_after_calls_starts_a_new_assistant_message() -> None:
    items = [{"role": "user", "content": "x"}, CALL, {"role": "assistant", "content": "Done."}]
    translated = messages(items)
    assert [m["role"] for m in translated] == ["user", "assistant", "assistant"]
    assert translated[1]["content"] is None
    assert translated[2] == {"role": "assistant", "content": "Done."}


def test_refusal_parts_and_custom_tool_calls() -> None:
    items = [
        {"role": "user", "content": "x"},
        {"type": "message", "role": "assistant", "status": "completed", "id": "m",
         "content": [{"type": "refusal", "refusal": "I can't."}]},
        {"type": "custom_tool_call", "call_id": "ct_1", "name": "sql", "input": "SELECT 1"},
        {"type": "custom_tool_call_output", "call_id": "ct_1", "output": "1"},
    ]  # fmt: skip
    assert messages(items) == [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "refusal": "I can't.", "tool_calls": [
            {"id": "ct_1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}},
        ]},
        {"role": "tool", "tool_call_id": "ct_1", "content": "1"},
    ]  # fmt: skip


def test_reasoning_is_dropped_unless_it_carries_translated_thinking() -> None:
    openai_reasoning = {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAA",
                        "summary": [{"type": "summary_text", "text": "Thinking."}]}  # fmt: skip
    blocks = [{"type": "thinking", "thinking": "Paris first.", "signature": "EqQBCkgI"},
              {"type": "redacted_thinking", "data": "EmwKAhgB"}]  # fmt: skip
    translated = {"type": "reasoning", "id": "rs_2", "encrypted_content": thinking_content(blocks),
                  "summary": [{"type": "summary_text", "text": "Paris first."}]}  # fmt: skip
    items = [{"role": "user", "content": "x"}, openai_reasoning, {"role": "assistant",
             "content": "a"}, {"role": "user", "content": "y"}, translated, CALL,
             {"type": "function_call_output", "call_id": "call_1", "output": "21"}]  # fmt: skip
    translated_messages = messages(items)
    assert translated_messages[1] == {"role": "assistant", "content": "a"}
    assert translated_messages[3] == {
        "role": "assistant", "content": None, "thinking_blocks": blocks,
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}],
    }  # fmt: skip


def test_server_side_searches_are_dropped_and_other_builtin_items_refused() -> None:
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed",
              "action": {"type": "search", "query": "q"}}  # fmt: skip
    assert messages([{"role": "user", "content": "x"}, search]) == [
        {"role": "user", "content": "x"}
    ]
    for item in (
        {"type": "item_reference", "id": "msg_1"},
        {"type": "computer_call", "id": "cu_1", "call_id": "c", "action": {}, "status": "completed",
         "pending_safety_checks": []},
        {"type": "mcp_call", "id": "mcp_1", "name": "n", "arguments": "{}", "server_label": "s"},
    ):  # fmt: skip
        error = refused({"input": [{"role": "user", "content": "x"}, item]})
        assert error.param == "input[1].type"
        assert item["type"] in str(error) and "natively" in str(error)


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_image", "file_id": "file-abc"}, "input[0].content[0].file_id"),
        ({"type": "input_file", "file_id": "file-abc"}, "input[0].content[0].file_id"),
        ({"type": "input_file", "file_url": "https://x/a.pdf"}, "input[0].content[0].file_url"),
    ],
)
def test_openai_files_are_refused(part: dict[str, Any], param: str) -> None:
    error = refused({"input": [{"role": "user", "content": [part]}]})
    assert error.param == param
    assert "OpenAI target" in str(error)


def test_damaged_translated_thinking_is_refused() -> None:
    item = {"type": "reasoning", "id": "rs", "summary": [],
            "encrypted_content": THINKING_PREFIX + "{not json"}  # fmt: skip
    error = refused({"input": [{"role": "user", "content": "x"}, item]})
    assert error.param == "input[1].encrypted_content"


def test_nothing_to_send_is_refused() -> None:
    assert refused({}).param == "input"
    assert refused({"previous_response_id": "resp_1", "input": "x"}).param == (
        "previous_response_id"
    )


# ---------------------------------------------------------------- parameters


FUNCTION_TOOL = {
    "type": "function", "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}  # fmt: skip


def test_tools_are_flattened_and_builtins_left_out() -> None:
    translated = chat({"input": "x", "tools": [
        FUNCTION_TOOL, {"type": "function", "name": "bare"}, {"type": "web_search"},
        {"type": "custom", "name": "sql", "description": "SQL", "format": {"type": "text"}},
    ]})  # fmt: skip
    assert translated["tools"] == [
        {"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": True}},
        {"type": "function", "function": {"name": "bare"}},
        {"type": "custom", "custom": {"name": "sql", "description": "SQL",
                                      "format": {"type": "text"}}},
    ]  # fmt: skip
    only_builtin = chat({"input": "x", "tools": [{"type": "web_search"}]})
    assert "tools" not in only_builtin


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "get_weather"},
         {"type": "function", "function": {"name": "get_weather"}}),
        ({"type": "custom", "name": "sql"}, {"type": "custom", "custom": {"name": "sql"}}),
        ({"type": "allowed_tools", "mode": "required",
          "tools": [{"type": "function", "name": "get_weather"}]},
         {"type": "allowed_tools", "allowed_tools": {
             "mode": "required",
             "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}),
    ],
)  # fmt: skip
def test_tool_choice(choice: Any, expected: Any) -> None:
    assert (
        chat({"input": "x", "tools": [FUNCTION_TOOL], "tool_choice": choice})["tool_choice"]
        == expected
    )


def test_a_builtin_tool_choice_is_refused() -> None:
    error = refused({"input": "x", "tool_choice": {"type": "file_search"}})
    assert error.param == "tool_choice"
    assert "'file_search'" in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "json_schema", "name": "weather", "strict": True,
                     "description": "d", "schema": {"type": "object"}}},
         {"response_format": {"type": "json_schema", "json_schema": {
             "name": "weather", "schema": {"type": "object"}, "strict": True,
             "description": "d"}}}),
        ({"format": {"type": "json_object"}}, {"response_format": {"type": "json_object"}}),
        ({"format": {"type": "text"}}, {}),
        ({"verbosity": "low"}, {"verbosity": "low"}),
    ],
)  # fmt: skip
def test_text_format_is_structured_output(text: dict[str, Any], expected: dict[str, Any]) -> None:
    translated = chat({"input": "x", "text": text})
    assert {k: translated[k] for k in ("response_format", "verbosity") if k in translated} == (
        expected
    )


def test_the_other_parameters() -> None:
    translated = chat({
        "input": "x", "max_output_tokens": 300, "reasoning": {"effort": "high", "summary": "auto"},
        "parallel_tool_calls": False, "temperature": 0.4, "top_p": 0.8, "user": "u1",
        "metadata": {"a": "b"}, "service_tier": "flex", "prompt_cache_key": "k",
        "safety_identifier": "s", "top_logprobs": 3, "include": ["message.output_text.logprobs"],
        "store": True, "truncation": "auto", "max_tool_calls": 2, "stream": True,
        "stream_options": {"include_obfuscation": False}, "prompt_cache_retention": "24h",
    })  # fmt: skip
    translated.pop("messages")
    assert translated == {
        "model": "chat", "max_completion_tokens": 300, "reasoning_effort": "high",
        "parallel_tool_calls": False, "temperature": 0.4, "top_p": 0.8, "user": "u1",
        "metadata": {"a": "b"}, "service_tier": "flex", "prompt_cache_key": "k",
        "safety_identifier": "s", "top_logprobs": 3, "logprobs": True, "stream": True,
        "stream_options": {"include_usage": True, "include_obfuscation": False},
        "prompt_cache_retention": "24h",
    }  # fmt: skip


def test_top_logprobs_only_with_logprobs_asked() -> None:
    assert "top_logprobs" not in chat({"input": "x", "top_logprobs": 2})
    assert "logprobs" not in chat({"input": "x", "top_logprobs": 2})
    asked = chat({"input": "x", "include": ["message.output_text.logprobs"]})
    assert (asked["logprobs"], "top_logprobs" in asked) == (True, False)


@pytest.mark.parametrize("name", ["prompt", "context_management"])
def test_openai_only_parameters_are_refused(name: str) -> None:
    error = refused({"input": "x", name: {"id": "pmpt_1"}})
    assert error.param == name


def test_the_translation_is_made_once() -> None:
    request = validate_responses_request({"model": "chat", "input": "x"})
    first = to_chat(request)
    assert to_chat(request) is first
    assert first.messages[0].role == "user"


# ---------------------------------------------------------------- completions -> Response


def completion(message: dict[str, Any], finish: str = "stop", **more: Any) -> ChatCompletion:
    return ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "claude-x",
        "choices": [{"index": 0, "message": {"role": "assistant", **message},
                     "finish_reason": finish, "logprobs": more.pop("logprobs", None)}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
                  "prompt_tokens_details": {"cached_tokens": 60},
                  "completion_tokens_details": {"reasoning_tokens": 25}},
        **more,
    })  # fmt: skip


def respond(answer: ChatCompletion, **body: Any) -> Response:
    request = validate_responses_request({"model": "chat", "input": "x", **body})
    response = completion_to_response(answer, request, response_id="resp_1", created_at=5.0)
    sdk.Response.model_validate(response.to_dict())  # every one validates in the SDK
    assert json.loads(response.to_json()) == response.to_dict(mode="json")
    return response


def test_a_plain_answer() -> None:
    response = respond(completion({"content": "Hello!"}))
    assert response.to_dict(mode="json") | {"output": None} == {
        "id": "resp_1", "object": "response", "created_at": 5.0, "status": "completed",
        "error": None, "incomplete_details": None, "instructions": None,
        "max_output_tokens": None, "model": "claude-x", "output": None,
        "parallel_tool_calls": True, "previous_response_id": None, "reasoning": None,
        "store": True, "temperature": None, "text": {"format": {"type": "text"}},
        "tool_choice": "auto", "tools": [], "top_p": None, "truncation": "disabled",
        "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60,
                  "cache_write_tokens": 0}, "output_tokens": 40,
                  "output_tokens_details": {"reasoning_tokens": 25}, "total_tokens": 140},
        "user": None, "metadata": {},
    }  # fmt: skip
    (message,) = response.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.id.startswith("msg_") and len(message.id) == 52
    assert message.to_dict() == {
        "id": message.id, "type": "message", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
    }  # fmt: skip
    assert response.output_text == "Hello!"


def test_the_request_is_echoed() -> None:
    tools = [FUNCTION_TOOL]
    response = respond(
        completion({"content": "ok"}), instructions="Be brief.", tools=tools,
        tool_choice="required", temperature=0.3, top_p=0.5, parallel_tool_calls=False,
        text={"format": {"type": "json_object"}}, max_output_tokens=99, metadata={"a": "b"},
        store=False, previous_response_id="resp_0", user="u", reasoning={"effort": "low"},
        truncation="auto",
    )  # fmt: skip
    assert (response.instructions, response.tools, response.tool_choice) == (
        "Be brief.", tools, "required",
    )  # fmt: skip
    assert (response.temperature, response.top_p, response.parallel_tool_calls) == (0.3, 0.5, False)
    assert response.text == {"format": {"type": "json_object"}}
    assert (response.max_output_tokens, response.metadata, response.store) == (
        99,
        {"a": "b"},
        False,
    )
    assert (response.previous_response_id, response.user) == ("resp_0", "u")
    assert (response.reasoning, response.truncation) == ({"effort": "low"}, "auto")


def test_tool_calls_become_function_call_items_after_the_message() -> None:
    answer = ChatCompletion.model_validate_json((FIXTURES / "chat_tool_calls.json").read_bytes())
    response = respond(answer, tools=[FUNCTION_TOOL])
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    calls = [item for item in response.output if isinstance(item, ResponseFunctionToolCall)]
    assert [(c.call_id, c.name, json.loads(c.arguments)["location"], c.status) for c in calls] == [
        ("call_8qFg2bXGmNw4vT1cYk0R3sLp", "get_weather", "Paris, France", "completed"),
        ("call_Zt7mHq1VdE9xKc2Lb5nWs0Ry", "get_weather", "Tokyo, Japan", "completed"),
    ]
    assert all(c.id is not None and c.id.startswith("fc_") for c in calls)
    assert calls[0].id != calls[1].id
    assert response.status == "completed"


def test_reasoning_then_text_then_a_call_in_order_with_thinking_kept() -> None:
    blocks = [{"type": "thinking", "thinking": "Use the tool.", "signature": "EqQB"}]
    response = respond(completion({
        "content": "Let me look.", "reasoning_content": "Use the tool.", "thinking_blocks": blocks,
        "tool_calls": [{"id": "toolu_01", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"}}],
    }, finish="tool_calls"), tools=[FUNCTION_TOOL])  # fmt: skip
    reasoning, message, call = response.output
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.id.startswith("rs_")
    assert [s.text for s in reasoning.summary] == ["Use the tool."]
    assert reasoning.encrypted_content == THINKING_PREFIX + json.dumps(
        blocks, separators=(",", ":")
    )
    assert isinstance(message, ResponseOutputMessage)
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.call_id == "toolu_01"
    # and the next turn sends the thinking back with the call
    follow = validate_responses_request({"model": "chat", "input": [
        {"role": "user", "content": "x"}, *(i.to_dict() for i in response.output),
        {"type": "function_call_output", "call_id": "toolu_01", "output": "21"},
    ]})  # fmt: skip
    assistant = to_chat(follow).model_dump(exclude_unset=True)["messages"][1]
    assert assistant == {
        "role": "assistant", "content": "Let me look.", "thinking_blocks": blocks,
        "tool_calls": [{"id": "toolu_01", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"}}],
    }  # fmt: skip


def test_refusal_annotations_and_logprobs() -> None:
    annotation = {"type": "url_citation", "url_citation": {
        "start_index": 0, "end_index": 5, "title": "T", "url": "https://e.example"}}  # fmt: skip
    logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                             "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": None}]}],
                "refusal": None}  # fmt: skip
    response = respond(completion(
        {"content": "Hi", "refusal": "But no.", "annotations": [annotation]}, logprobs=logprobs,
    ))  # fmt: skip
    (message,) = response.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.to_dict()["content"] == [
        {"type": "output_text", "text": "Hi",
         "annotations": [{"type": "url_citation", "start_index": 0, "end_index": 5,
                          "title": "T", "url": "https://e.example"}],
         "logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                       "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": []}]}]},
        {"type": "refusal", "refusal": "But no."},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_answers_are_incomplete(finish: str, reason: str) -> None:
    response = respond(completion({"content": "Once upon a"}, finish=finish))
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == reason
    (message,) = response.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.status == "incomplete"


def test_a_length_cut_in_a_call_leaves_the_message_complete_and_the_call_not() -> None:
    response = respond(completion({"content": "Calling.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "f", "arguments": '{"a":'}},
    ]}, finish="length"))  # fmt: skip
    assert [getattr(item, "status", None) for item in response.output] == [
        "completed", "completed", "incomplete",
    ]  # fmt: skip


def test_custom_tool_calls_and_no_usage() -> None:
    answer = completion(
        {
            "tool_calls": [
                {"id": "ct_1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
            ]
        }
    )
    answer.usage = None
    response = respond(answer)
    (item,) = response.output
    assert isinstance(item, ResponseOutputItem)
    assert item.to_dict() == {"type": "custom_tool_call", "id": item.to_dict()["id"],
                              "call_id": "ct_1", "name": "sql", "input": "SELECT 1",
                              "status": "completed"}  # fmt: skip
    assert response.usage is None


def test_an_answer_without_choices_is_an_empty_completed_response() -> None:
    answer = completion({"content": "x"})
    answer.choices = []
    response = respond(answer)
    assert (response.output, response.status) == ([], "completed")


def test_new_item_ids_are_fresh() -> None:
    ids = {new_item_id("msg") for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("msg_") and len(i) == 52 for i in ids)

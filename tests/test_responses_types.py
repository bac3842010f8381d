"""The Responses API's objects and request: SDK-valid dumps, events by type, validation
errors that name the parameter, history, native bodies."""

from __future__ import annotations

import copy
import json
from typing import Any

import openai.types.responses as sdk
import pytest
from pydantic import BaseModel, TypeAdapter

from llmroute import MalformedResponse, RequestError
from llmroute._route_info import RouteInfo, TokenUsage
from llmroute._types import ChatCompletion, CreateEmbeddingResponse, RoutedObject
from llmroute.responses import (
    THINKING_PREFIX,
    ChunkEvents,
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseErrorEvent,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponsesRequest,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseUsage,
    builtin_tools,
    completion_to_response,
    construct,
    event_class,
    json_bytes,
    native_body,
    parse_event,
    response_events,
    to_chat,
    usage_from_tokens,
    validate_responses_request,
    with_history,
)

SDK_EVENT: TypeAdapter[Any] = TypeAdapter(sdk.ResponseStreamEvent)

#: A response as OpenAI sends it: reasoning, a web search (a type llmroute keeps whole), a
#: cited message, a function call; usage with details.
NATIVE: dict[str, Any] = {
    "id": "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b",
    "object": "response",
    "created_at": 1756315696,
    "status": "completed",
    "background": False,
    "error": None,
    "incomplete_details": None,
    "instructions": "Answer briefly.",
    "max_output_tokens": None,
    "max_tool_calls": None,
    "model": "gpt-5-2025-08-07",
    "output": [
        {
            "id": "rs_68af4030baa48193b0b43b4c2a176a1a05438e46b5f69a3b",
            "type": "reasoning",
            "encrypted_content": "gAAAAABor0A1pX3...",
            "summary": [{"type": "summary_text", "text": "Looking up the weather."}],
        },
        {
            "id": "ws_68af4031e8c08193a6e4f2f5e3f0b8a605438e46b5f69a3b",
            "type": "web_search_call",
            "status": "completed",
            "action": {"type": "search", "query": "weather paris"},
        },
        {
            "id": "msg_68af40337f4c8193a3b5fd1c8a2b9e6c05438e46b5f69a3b",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "It is sunny in Paris.",
                    "annotations": [
                        {
                            "type": "url_citation",
                            "start_index": 0,
                            "end_index": 20,
                            "title": "Weather",
                            "url": "https://weather.example/paris",
                        }
                    ],
                    "logprobs": [],
                }
            ],
        },
        {
            "id": "fc_68af4034a1f08193b7e7c9e0e6a6c1d405438e46b5f69a3b",
            "type": "function_call",
            "status": "completed",
            "arguments": '{"city":"Paris"}',
            "call_id": "call_Qb8wGk0xg3LxvUZrY4mR1N2S",
            "name": "get_forecast",
        },
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "safety_identifier": None,
    "service_tier": "default",
    "store": False,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [
        {"type": "web_search", "search_context_size": "medium", "user_location": None},
        {
            "type": "function",
            "name": "get_forecast",
            "description": "The forecast for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    ],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 812,
        "input_tokens_details": {"cached_tokens": 256, "cache_write_tokens": 0},
        "output_tokens": 190,
        "output_tokens_details": {"reasoning_tokens": 128},
        "total_tokens": 1002,
    },
    "user": None,
    "metadata": {"run": "7"},
}


def sdk_same(ours: BaseModel, sdk_type: Any) -> Any:
    """`ours` validates as `sdk_type`, and the SDK reads back exactly the values we wrote."""
    dump = json.loads(ours.model_dump_json(exclude_unset=True))
    if isinstance(ours, Response | ResponseStreamEvent):
        dump = ours.to_dict(mode="json")
    adapter = sdk_type if isinstance(sdk_type, TypeAdapter) else TypeAdapter(sdk_type)
    theirs = adapter.validate_python(dump)
    assert theirs.model_dump(mode="json", exclude_unset=True, by_alias=True) == dump
    return theirs


# ---------------------------------------------------------------- Response


def test_a_native_response_round_trips_and_validates_in_the_sdk() -> None:
    ours = Response.model_validate(copy.deepcopy(NATIVE))
    assert ours.to_dict(mode="json") == NATIVE  # nothing lost, nothing added
    theirs = sdk_same(ours, sdk.Response)
    assert isinstance(theirs, sdk.Response)
    assert theirs.output_text == ours.output_text == "It is sunny in Paris."
    assert [type(item).__name__ for item in ours.output] == [
        "ResponseReasoningItem", "ResponseOutputItem", "ResponseOutputMessage",
        "ResponseFunctionToolCall",
    ]  # fmt: skip
    search = ours.output[1]
    assert isinstance(search, ResponseOutputItem)
    assert search.type == "web_search_call"
    assert search.to_dict() == NATIVE["output"][1]
    call = ours.output[3]
    assert isinstance(call, ResponseFunctionToolCall)
    assert (call.call_id, call.name, call.arguments) == (
        "call_Qb8wGk0xg3LxvUZrY4mR1N2S", "get_forecast", '{"city":"Paris"}',
    )  # fmt: skip
    reasoning = ours.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.encrypted_content == "gAAAAABor0A1pX3..."
    assert reasoning.summary[0].text == "Looking up the weather."


def test_route_info_rides_beside_the_response_not_in_it() -> None:
    ours = Response.model_validate(NATIVE)
    assert ours.llmroute.request_id == ""
    ours.attach_route_info(RouteInfo(request_id="lr_42", provider="openai"))
    assert ours.llmroute.request_id == "lr_42"
    assert "lr_42" not in ours.model_dump_json()
    assert "llmroute" not in ours.to_dict()


def test_route_info_is_the_chat_answers_mechanism() -> None:
    """One mechanism carries `llmroute` on every answer (issue 16): a Response's is the
    chat completion's, not a copy of it."""
    for cls in (Response, ChatCompletion, CreateEmbeddingResponse):
        assert issubclass(cls, RoutedObject)
        assert "llmroute" not in vars(cls) and "attach_route_info" not in vars(cls)
    assert Response.llmroute is ChatCompletion.llmroute


def test_output_text_joins_every_text_part_and_skips_refusals() -> None:
    message = {
        "id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
        "content": [
            {"type": "output_text", "text": "Hello ", "annotations": []},
            {"type": "refusal", "refusal": "no"},
            {"type": "output_text", "text": "world", "annotations": []},
        ],
    }  # fmt: skip
    body = {**NATIVE, "output": [message, {**message, "id": "msg_2"}]}
    ours = Response.model_validate(body)
    assert ours.output_text == "Hello worldHello world"
    assert isinstance(ours.output[0], ResponseOutputMessage)
    sdk_same(ours, sdk.Response)


def test_usage_normalises_and_comes_back_from_token_usage() -> None:
    usage = ResponseUsage.model_validate(NATIVE["usage"])
    assert usage.normalised() == TokenUsage(input=812, output=190, cache_read=256, reasoning=128)
    assert usage.normalised(estimated=True).estimated
    back = usage_from_tokens(TokenUsage(input=812, output=190, cache_read=256, reasoning=128))
    assert back.to_dict() == NATIVE["usage"]
    sdk_same(back, sdk.ResponseUsage)
    written = usage_from_tokens(TokenUsage(input=10, output=5, cache_write=4))
    assert written.input_tokens_details.cache_write_tokens == 4
    assert written.total_tokens == 15


# ---------------------------------------------------------------- events


def test_parse_event_picks_the_class_by_type_from_bytes_str_or_dict() -> None:
    data = {
        "type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1",
        "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": [],
        "obfuscation": "x1",
    }  # fmt: skip
    for given in (json.dumps(data).encode(), json.dumps(data), data):
        event = parse_event(given)
        assert isinstance(event, ResponseTextDeltaEvent)
        assert (event.delta, event.sequence_number) == ("Hel", 4)
        assert event.to_dict() == data  # the extra field kept
    completed = parse_event({"type": "response.completed", "sequence_number": 9,
                             "response": NATIVE})  # fmt: skip
    assert isinstance(completed, ResponseCompletedEvent)
    assert completed.response.usage is not None
    assert completed.response.usage.total_tokens == 1002
    sdk_same(completed, SDK_EVENT)
    error = parse_event({"type": "error", "sequence_number": 2, "code": "server_error",
                         "message": "boom", "param": None})  # fmt: skip
    assert isinstance(error, ResponseErrorEvent)
    assert error.message == "boom"


def test_unknown_events_are_kept_whole() -> None:
    data = {"type": "response.web_search_call.searching", "sequence_number": 3,
            "item_id": "ws_1", "output_index": 1}  # fmt: skip
    event = parse_event(data)
    assert type(event) is ResponseStreamEvent
    assert event.to_dict() == data
    assert event_class("response.web_search_call.searching") is ResponseStreamEvent
    assert event_class("response.content_part.added") is ResponseContentPartAddedEvent


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1, 2]",
        b'{"type": "response.output_text.delta", "sequence_number": 1}',
        b'{"type": "response.created", "sequence_number": 0, "response": {"id": "r"}}',
        b'{"sequence_number": 1}',
    ],
)
def test_malformed_events_are_malformed_responses(data: bytes) -> None:
    with pytest.raises(MalformedResponse):
        parse_event(data)


# ---------------------------------------------------------------- validation


def test_a_full_request_validates_and_keeps_unknown_parameters() -> None:
    body = {
        "model": "chat",
        "input": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "Use metric."}]},
            NATIVE["output"][0], NATIVE["output"][1], NATIVE["output"][2], NATIVE["output"][3],
            {"type": "function_call_output", "call_id": "call_Qb8wGk0xg3LxvUZrY4mR1N2S",
             "output": '{"temp": 21}'},
            {"type": "item_reference", "id": "msg_abc"},
        ],
        "instructions": "Answer briefly.",
        "tools": NATIVE["tools"],
        "tool_choice": {"type": "function", "name": "get_forecast"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "max_output_tokens": 500,
        "reasoning": {"effort": "low"},
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"k": "v"},
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_retention": "24h",
    }  # fmt: skip
    request = validate_responses_request(body)
    assert request.model_extra == {"prompt_cache_retention": "24h"}
    assert request.input_items() == body["input"]
    assert request.max_output_tokens == 500
    assert builtin_tools(request) == ("web_search",)


def _error(body: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        validate_responses_request({"model": "chat", **body})
    return caught.value


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": [{"type": "bogus"}]}, "input[0].type", "unknown item type 'bogus'"),
        ({"input": ["hi"]}, "input[0]", "must be an object"),
        ({"input": 7}, "input", "valid string"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "unknown role 'tool'"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content", "string or a list"),
        ({"input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
         "input[0].content[0].type", "content part type 'text'"),
        ({"input": [{"role": "user", "content": "a"}, {"role": "assistant", "content": [
            {"type": "input_image", "image_url": "https://x"}]}]},
         "input[1].content[0].type", "misplaced"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
         "input[0].content[0].text", "missing"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "detail": "low"}]}]},
         "input[0].content[0]", "image_url or file_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "filename": "a"}]}]},
         "input[0].content[0]", "file_data, file_id or file_url"),
        ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
         "input[0].name", "'name' is missing"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
         "input[0].arguments", "must be a string"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]},
         "input[0].call_id", "No tool call found for function call output with call_id c."),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c", "output": 3}]},
         "input[1].output", "string or a list"),
        ({"input": [{"type": "custom_tool_call_output", "call_id": "c", "output": "x"}]},
         "input[0].call_id", "No tool call found"),
        ({"input": [{"type": "reasoning", "id": "rs_1"}]}, "input[0].summary", "must be a list"),
        ({"tools": [{"name": "f"}]}, "tools[0].type", "needs a 'type'"),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "'name' is missing"),
        ({"tools": [{"type": "function", "name": "f", "parameters": "{}"}]},
         "tools[0].parameters", "JSON schema object"),
        ({"tool_choice": "always"}, "tool_choice", "not auto, none or required"),
        ({"tool_choice": {"name": "f"}}, "tool_choice.type", "needs a 'type'"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.name", "missing"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type", "unknown format 'xml'"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}},
         "text.format.schema", "'schema' object"),
        ({"background": True}, "background", "foreground"),
        ({"conversation": "conv_123"}, "conversation", "previous_response_id"),
        ({"temperature": 2.5}, "temperature", "less than or equal to 2"),
        ({"top_p": -0.1}, "top_p", "greater than or equal to 0"),
        ({"max_output_tokens": 0}, "max_output_tokens", "greater than or equal to 1"),
        ({"metadata": {"a": 1}}, "metadata.a", "valid string"),
        ({"model": ""}, "model", "at least 1 character"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_parameter(body: dict[str, Any], param: str, words: str) -> None:
    error = _error(body)
    assert error.param == param
    assert words in str(error)


def test_background_false_and_no_conversation_are_fine() -> None:
    request = validate_responses_request(
        {"model": "chat", "input": "hi", "background": False, "conversation": None}
    )
    assert request.background is False


def test_outputs_are_checked_after_history_when_the_request_continues_one() -> None:
    output = {"type": "function_call_output", "call_id": "call_1", "output": "21"}
    request = validate_responses_request(
        {"model": "chat", "input": [output], "previous_response_id": "resp_1"}
    )  # no call in the request itself: its history may have it
    call = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}
    whole = with_history(request, [{"role": "user", "content": "hi"}, call])
    assert whole.input_items() == [{"role": "user", "content": "hi"}, call, output]
    with pytest.raises(RequestError) as caught:
        with_history(request, [{"role": "user", "content": "hi"}])
    assert caught.value.param == "input[1].call_id"


# ---------------------------------------------------------------- history


def test_with_history_makes_a_self_contained_copy() -> None:
    request = validate_responses_request(
        {"model": "chat", "input": "And tomorrow?", "previous_response_id": "resp_1",
         "temperature": 0.5, "verbosity_hint": "x"}
    )  # fmt: skip
    history = [
        {"role": "user", "content": "Weather?"},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}]},
    ]  # fmt: skip
    whole = with_history(request, history)
    assert whole.previous_response_id is None
    assert whole.input == [
        *history,
        {"type": "message", "role": "user", "content": "And tomorrow?"},
    ]
    assert whole.temperature == 0.5
    assert whole.model_extra == {"verbosity_hint": "x"}
    assert "previous_response_id" not in whole.model_fields_set
    # the original is untouched, and each has its own translation
    assert request.input == "And tomorrow?"
    assert request.previous_response_id == "resp_1"
    assert [m.role for m in to_chat(whole).messages] == ["user", "assistant", "user"]
    assert native_body(whole, "gpt-5", stream=False)["input"][0] == history[0]


def test_with_history_of_a_request_without_input() -> None:
    request = validate_responses_request({"model": "chat", "previous_response_id": "r"})
    assert with_history(request, [{"role": "user", "content": "hi"}]).input == [
        {"role": "user", "content": "hi"}
    ]


# ---------------------------------------------------------------- native bodies


def test_native_body_is_what_the_caller_set_made_stateless() -> None:
    request = validate_responses_request(
        {"model": "chat", "input": "hi", "previous_response_id": "resp_1", "store": True,
         "temperature": 0.3, "prompt_cache_retention": "24h", "stream": True}
    )  # fmt: skip
    body = native_body(request, "gpt-4.1", stream=False)
    assert body == {
        "model": "gpt-4.1", "input": "hi", "store": False, "temperature": 0.3,
        "prompt_cache_retention": "24h", "stream": False,
    }  # fmt: skip
    assert native_body(request, "gpt-4.1", stream=True)["stream"] is True
    assert request.previous_response_id == "resp_1"  # the request itself is untouched


def test_native_body_keeps_reasoning_encrypted_when_reasoning_is_used() -> None:
    plain = validate_responses_request({"model": "m", "input": "hi"})
    assert "include" not in native_body(plain, "o3", stream=False)
    asked = validate_responses_request(
        {"model": "m", "input": "hi", "reasoning": {"effort": "high"},
         "include": ["message.output_text.logprobs"]}
    )  # fmt: skip
    assert native_body(asked, "o3", stream=False)["include"] == [
        "message.output_text.logprobs", "reasoning.encrypted_content",
    ]  # fmt: skip
    already = validate_responses_request(
        {"model": "m", "input": "hi", "reasoning": {}, "include": ["reasoning.encrypted_content"]}
    )
    assert native_body(already, "o3", stream=False)["include"] == ["reasoning.encrypted_content"]
    assert already.include == ["reasoning.encrypted_content"]


def test_native_body_leaves_out_reasoning_openai_cannot_read() -> None:
    openai_reasoning = NATIVE["output"][0]
    translated = {"type": "reasoning", "id": "rs_2", "summary": [],
                  "encrypted_content": THINKING_PREFIX + "[]"}  # fmt: skip
    bare = {"type": "reasoning", "id": "rs_3", "summary": [{"type": "summary_text", "text": "x"}]}
    user = {"role": "user", "content": "hi"}
    request = validate_responses_request(
        {"model": "m", "input": [user, translated, bare, openai_reasoning]}
    )
    body = native_body(request, "o3", stream=False)
    assert body["input"] == [user, openai_reasoning]
    assert body["include"] == ["reasoning.encrypted_content"]  # reasoning items in input


def test_builtin_tools_are_the_ones_that_are_not_functions() -> None:
    request = validate_responses_request(
        {"model": "m", "tools": [
            {"type": "function", "name": "f"}, {"type": "file_search", "vector_store_ids": []},
            {"type": "custom", "name": "c"}, {"type": "mcp", "server_label": "s"},
        ]}
    )  # fmt: skip
    assert builtin_tools(request) == ("file_search", "mcp")
    assert builtin_tools(validate_responses_request({"model": "m"})) == ()


def test_request_model_is_importable_and_constructible() -> None:
    request = ResponsesRequest(model="m", input="hi")
    assert request.input_items() == [{"type": "message", "role": "user", "content": "hi"}]
    assert ResponsesRequest(model="m").input_items() == []


# ---------------------------------------------------------------- the fast builders


def _models(value: Any) -> list[BaseModel]:
    """`value` and every model inside it."""
    found: list[BaseModel] = []
    if isinstance(value, BaseModel):
        found.append(value)
        value = {**value.__dict__, **(value.__pydantic_extra__ or {})}
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for each in value:
            found += _models(each)
    return found


def test_what_construct_builds_is_what_validation_builds() -> None:
    """The oracle of `construct` and `json_bytes`: every model llmroute builds (a translated
    answer, its stream's events, a replay's events) validates back equal, with the same
    fields set, and its JSON is its ``to_dict()``."""
    request = validate_responses_request({"model": "m", "input": "hi", "tools": [
        {"type": "function", "name": "f"}]})  # fmt: skip
    answer = ChatCompletion.model_validate({
        "id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "finish_reason": "length",
        "message": {"role": "assistant", "content": "Hi", "refusal": "no",
                    "reasoning_content": "r", "thinking_blocks": [{"type": "thinking"}],
                    "tool_calls": [
                        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                        {"id": "2", "type": "custom", "custom": {"name": "c", "input": "x"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    })  # fmt: skip
    response = completion_to_response(answer, request, response_id="r", created_at=1.0)
    events = ChunkEvents(request, response_id="r", created_at=1.0, model="m")
    built = [response, *response_events(response), *events.start(), *events.fail("x")]
    models = [m for each in built for m in _models(each)]
    assert len(models) > 60
    for model in models:
        dump = model.to_dict() if hasattr(model, "to_dict") else model.model_dump()
        back = type(model).model_validate(dump)
        assert back == model, type(model).__name__
        assert back.model_fields_set == model.model_fields_set, type(model).__name__
        assert json.loads(json_bytes(model)) == model.to_dict(mode="json"), type(model).__name__


def test_construct_takes_fields_set_and_extras() -> None:
    item = construct(ResponseOutputItem, {"type": "x_call"}, extra={"id": "x1", "status": "done"})
    assert item.to_dict() == {"type": "x_call", "id": "x1", "status": "done"}
    usage = construct(ResponseUsage, {
        "input_tokens": 1, "input_tokens_details": None, "output_tokens": 2,
        "output_tokens_details": None, "total_tokens": 3}, fields=["input_tokens"])  # fmt: skip
    assert usage.to_dict() == {"input_tokens": 1}
    assert usage.model_fields_set == {"input_tokens"}

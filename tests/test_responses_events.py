"""Responses stream events: from chat chunks, from a native upstream's SSE, from a whole
response. Each sequence is checked event by event against the SDK's types and run through
the SDK's own stream accumulator, which must arrive at the same response."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai.types.responses as sdk
import pytest
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState
from pydantic import TypeAdapter

from llmroute import MalformedResponse
from llmroute._route_info import TokenUsage
from llmroute._types import ChatCompletion, ChatCompletionChunk, validator
from llmroute.cache import chunks_to_completion, completion_to_chunks
from llmroute.responses import (
    ChunkEvents,
    NativeEventDecoder,
    Response,
    ResponseCompletedEvent,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponsesRequest,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    completion_to_response,
    json_bytes,
    response_events,
    thinking_content,
    validate_responses_request,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
SDK_EVENT: TypeAdapter[Any] = TypeAdapter(sdk.ResponseStreamEvent)
REQUEST = validate_responses_request(
    {"model": "chat", "input": "hi", "tools": [{"type": "function", "name": "get_weather"}]}
)


def sse_chunks(name: str) -> list[ChatCompletionChunk]:
    """The chunks of a recorded OpenAI chat stream."""
    lines = (FIXTURES / name).read_bytes().split(b"\n")
    found = [line[6:] for line in lines if line.startswith(b"data: ") and line != b"data: [DONE]"]
    return [validator(ChatCompletionChunk).validate_json(data) for data in found]


def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({
        "id": "chatcmpl-1", "created": 1, "model": "claude-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **more}],
    })  # fmt: skip


def run(
    chunks: list[ChatCompletionChunk],
    usage: TokenUsage | None = None,
    request: ResponsesRequest = REQUEST,
) -> tuple[list[Any], ChunkEvents]:
    model = chunks[0].model if chunks else "claude-x"
    events = ChunkEvents(request, response_id="resp_1", created_at=7.0, model=model)
    found = events.start()
    for each in chunks:
        found += events.feed(each)
    found += events.finish(usage)
    return found, events


def check_with_sdk(events: list[ResponseStreamEvent]) -> Any:
    """Each event validates as the SDK's, reads back unchanged, numbers count from 0, and the
    SDK's accumulator takes the sequence whole; its final response is returned."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for number, event in enumerate(events):
        assert event.sequence_number == number
        dump = json.loads(json_bytes(event))
        assert dump == event.to_dict(mode="json")
        theirs = SDK_EVENT.validate_python(dump)
        assert theirs.model_dump(mode="json", exclude_unset=True, by_alias=True) == dump
        for handled in state.handle_event(theirs):
            if handled.type in ("response.completed", "response.incomplete", "response.failed"):
                final = handled.response
    return final


def kinds(events: list[Any]) -> list[str]:
    return [e.type.removeprefix("response.") for e in events]


def without_ids(response: Response) -> dict[str, Any]:
    dump = response.to_dict(mode="json")
    for item in dump["output"]:
        item.pop("id", None)
    return dump


def same_as_whole(events: ChunkEvents, completion: ChatCompletion) -> None:
    whole = completion_to_response(completion, REQUEST, response_id="resp_1", created_at=7.0)
    assert without_ids(events.response) == without_ids(whole)


# ---------------------------------------------------------------- chat chunks


def test_a_text_stream() -> None:
    chunks = sse_chunks("stream_text.sse")
    found, events = run(chunks)
    assert kinds(found) == [
        "created", "in_progress", "output_item.added", "content_part.added",
        *["output_text.delta"] * sum(bool(c.choices and c.choices[0].delta.content) for c in chunks),
        "output_text.done", "content_part.done", "output_item.done", "completed",
    ]  # fmt: skip
    final = check_with_sdk(found)
    text = "".join(e.delta for e in found if isinstance(e, ResponseTextDeltaEvent))
    assert text and final.output_text == text == events.response.output_text
    assert found[0].response.status == "in_progress" and found[0].response.output == []
    assert found[-1].response is events.response
    assert events.response.status == "completed"
    same_as_whole(events, chunks_to_completion(chunks))
    item_ids = {e.item_id for e in found if hasattr(e, "item_id")}
    assert len(item_ids) == 1 and item_ids.pop().startswith("msg_")


def test_two_parallel_tool_calls() -> None:
    chunks = sse_chunks("stream_tool_calls.sse")
    found, events = run(chunks)
    deltas = [
        sum(bool(t.function and t.function.arguments) for c in chunks if c.choices
            for t in c.choices[0].delta.tool_calls or () if t.index == index)
        for index in (0, 1)
    ]  # fmt: skip
    assert min(deltas) > 1
    assert kinds(found) == [
        "created", "in_progress",
        "output_item.added", *["function_call_arguments.delta"] * deltas[0],
        "function_call_arguments.done", "output_item.done",
        "output_item.added", *["function_call_arguments.delta"] * deltas[1],
        "function_call_arguments.done", "output_item.done", "completed",
    ]  # fmt: skip
    final = check_with_sdk(found)
    calls = [item for item in final.output if item.type == "function_call"]
    assert [json.loads(c.arguments) for c in calls] == [
        json.loads(c.function.arguments)
        for c in chunks_to_completion(chunks).choices[0].message.tool_calls or ()
    ]
    assert [c.output_index for c in found if c.type == "response.output_item.added"] == [0, 1]
    same_as_whole(events, chunks_to_completion(chunks))


def test_reasoning_then_text_with_signed_thinking() -> None:
    blocks = [{"type": "thinking", "thinking": "Say hi.", "signature": "EqQBCkgIARABGAIiQ"}]
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Say "}),
        chunk({"reasoning_content": "hi."}),
        chunk({"thinking_blocks": blocks}),
        chunk({"content": "Hi"}),
        chunk({"content": " there."}),
        chunk({}, finish="stop"),
    ]
    found, events = run(chunks)
    assert kinds(found) == [
        "created", "in_progress", "output_item.added", "reasoning_summary_part.added",
        "reasoning_summary_text.delta", "reasoning_summary_text.delta",
        "reasoning_summary_text.done", "reasoning_summary_part.done", "output_item.done",
        "output_item.added", "content_part.added", "output_text.delta", "output_text.delta",
        "output_text.done", "content_part.done", "output_item.done", "completed",
    ]  # fmt: skip
    final = check_with_sdk(found)
    assert final.output[0].summary[0].text == "Say hi."
    assert {e.summary_index for e in found if "summary" in e.type} == {0}
    assert {e.output_index for e in found[2:9]} == {0}
    assert {e.output_index for e in found[9:-1]} == {1}
    whole = ChatCompletion.model_validate({
        "id": "c", "created": 1, "model": "claude-x", "choices": [{"index": 0,
        "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi there.",
        "reasoning_content": "Say hi.", "thinking_blocks": blocks}}],
    })  # fmt: skip
    same_as_whole(events, whole)
    reasoning = events.response.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.encrypted_content is not None and "EqQBCkgIARABGAIiQ" in (
        reasoning.encrypted_content
    )


def test_a_refusal_after_text_is_a_second_part() -> None:
    chunks = [chunk({"content": "Well"}), chunk({"refusal": "I can't"}),
              chunk({"refusal": " help."}), chunk({}, finish="stop")]  # fmt: skip
    found, events = run(chunks)
    assert kinds(found)[2:] == [
        "output_item.added", "content_part.added", "output_text.delta", "output_text.done",
        "content_part.done", "content_part.added", "refusal.delta", "refusal.delta",
        "refusal.done", "content_part.done", "output_item.done", "completed",
    ]  # fmt: skip
    assert [e.content_index for e in found if e.type == "response.content_part.done"] == [0, 1]
    check_with_sdk(found)
    (message,) = events.response.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.to_dict()["content"] == [
        {"type": "output_text", "text": "Well", "annotations": []},
        {"type": "refusal", "refusal": "I can't help."},
    ]


def test_a_length_cut_ends_incomplete() -> None:
    chunks = [chunk({"content": "Once upon"}), chunk({}, finish="length")]
    found, events = run(chunks)
    assert found[-1].type == "response.incomplete"
    final = check_with_sdk(found)
    assert final.incomplete_details.reason == "max_output_tokens"
    assert events.response.status == "incomplete"
    done = [e.item for e in found if e.type == "response.output_item.done"]
    assert [item.status for item in done] == ["incomplete"]
    same_as_whole(events, chunks_to_completion(chunks))


def test_usage_from_the_usage_chunk_or_given() -> None:
    chunks = sse_chunks("stream_text.sse")
    given = chunks_to_completion(chunks).usage
    assert given is not None
    _, events = run(chunks)
    assert events.response.usage is not None
    assert events.response.usage.input_tokens == given.prompt_tokens
    assert events.response.usage.output_tokens == given.completion_tokens
    _, told = run(chunks, usage=TokenUsage(input=11, output=3, cache_read=2, reasoning=1))
    assert told.response.usage is not None
    assert told.response.usage.to_dict() == {
        "input_tokens": 11, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
        "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 14,
    }  # fmt: skip
    _, none = run([chunk({"content": "x"}, finish="stop")])
    assert none.response.usage is None


def test_annotations_and_logprobs_in_deltas() -> None:
    citation = {"type": "url_citation", "url_citation": {
        "start_index": 0, "end_index": 2, "title": "T", "url": "https://e.example"}}  # fmt: skip
    logprobs = {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
                             "top_logprobs": []}]}  # fmt: skip
    chunks = [chunk({"content": "Hi"}, logprobs=logprobs),
              chunk({"annotations": [citation]}), chunk({}, finish="stop")]  # fmt: skip
    found, events = run(chunks)
    assert "output_text.annotation.added" in kinds(found)
    added = next(e for e in found if e.type == "response.output_text.annotation.added")
    assert added.annotation == {"type": "url_citation", "start_index": 0, "end_index": 2,
                                "title": "T", "url": "https://e.example"}  # fmt: skip
    delta = next(e for e in found if isinstance(e, ResponseTextDeltaEvent))
    assert delta.logprobs == [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
                               "top_logprobs": []}]  # fmt: skip
    check_with_sdk(found)
    message = events.response.output[0]
    assert isinstance(message, ResponseOutputMessage)
    part = message.to_dict()["content"][0]
    assert part["annotations"] == [added.annotation]
    assert part["logprobs"] == delta.logprobs


def test_the_response_so_far_and_a_failure_mid_stream() -> None:
    events = ChunkEvents(REQUEST, response_id="resp_1", created_at=7.0, model="claude-x")
    found = events.start()
    found += events.feed(chunk({"content": "Half a"}))
    so_far = events.response
    assert so_far.status == "in_progress"
    assert so_far.output_text == "Half a"
    failed = events.fail("the upstream dropped the connection", "server_error")
    assert kinds(failed) == ["failed"]  # nothing half-written closed as done
    found += failed
    final = check_with_sdk(found)
    assert final.status == "failed"
    assert final.error.code == "server_error"
    assert events.response.error is not None
    assert events.response.error.message == "the upstream dropped the connection"
    (message,) = events.response.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.status == "incomplete"
    assert events.response.output_text == "Half a"


def test_a_failure_before_any_output() -> None:
    events = ChunkEvents(REQUEST, response_id="resp_1", created_at=7.0, model="m")
    found = events.start() + events.fail("no target answered")
    final = check_with_sdk(found)
    assert (final.status, final.output) == ("failed", [])


def test_a_fragment_of_a_closed_call_is_malformed() -> None:
    first = {"index": 0, "id": "c0", "type": "function", "function": {"name": "f",
             "arguments": "{"}}  # fmt: skip
    second = {"index": 1, "id": "c1", "type": "function", "function": {"name": "g",
              "arguments": "{}"}}  # fmt: skip
    events = ChunkEvents(REQUEST, response_id="resp_1", created_at=7.0, model="m")
    events.feed(chunk({"tool_calls": [first]}))
    events.feed(chunk({"tool_calls": [second]}))
    with pytest.raises(MalformedResponse):
        events.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}))


def test_other_choices_are_ignored() -> None:
    other = ChatCompletionChunk.model_validate({
        "id": "c", "created": 1, "model": "m",
        "choices": [{"index": 1, "delta": {"content": "no"}, "finish_reason": None}],
    })  # fmt: skip
    found, _ = run([chunk({"content": "yes"}), other, chunk({}, finish="stop")])
    assert [e.delta for e in found if isinstance(e, ResponseTextDeltaEvent)] == ["yes"]


# ---------------------------------------------------------------- native upstreams


def native_lines() -> list[bytes]:
    return (FIXTURES / "responses_stream.sse").read_bytes().split(b"\n")


def test_a_native_stream_is_kept_as_sent_with_llmroute_s_response_id() -> None:
    lines = native_lines()
    decoder = NativeEventDecoder(response_id="resp_llmroute")
    found = [event for line in lines for event in decoder.feed(line)] + decoder.finish()
    sent = [json.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
    assert len(found) == len(sent) == 17
    assert all(type(e) is not ResponseStreamEvent for e in found)  # every one typed
    for event, original in zip(found, sent, strict=True):
        if "response" in original:
            original["response"]["id"] = "resp_llmroute"
        assert event.to_dict(mode="json") == original
        assert json.loads(json_bytes(event)) == original
    final = check_with_sdk(found)
    assert final.id == "resp_llmroute"
    assert final.output_text == "Hello there!"
    assert decoder.done
    assert decoder.response is not None
    assert decoder.response is found[-1].response
    assert decoder.response.output[0].encrypted_content.startswith("gAAAAAB")  # type: ignore[union-attr]


def test_a_native_stream_without_event_lines_or_final_blank_line() -> None:
    data = [line for line in native_lines() if line.startswith(b"data: ")]
    decoder = NativeEventDecoder(response_id="r")
    found = []
    for line in data[:-1]:
        found += decoder.feed(b": keep-alive")
        found += decoder.feed(line)
        found += decoder.feed(b"")
    assert not decoder.done
    found += decoder.feed(data[-1])  # the stream ends without its blank line
    assert not decoder.done
    found += decoder.finish()
    assert decoder.done
    assert [e.sequence_number for e in found] == list(range(17))
    assert isinstance(found[-1], ResponseCompletedEvent)


def test_multi_line_data_unknown_events_and_errors() -> None:
    decoder = NativeEventDecoder(response_id="r")
    lines = [
        b"event: response.web_search_call.searching",
        b'data: {"type":"response.web_search_call.searching",',
        b'data: "sequence_number":5,"item_id":"ws_1","output_index":0}',
        b"",
        b"event: error",
        b'data: {"type":"error","sequence_number":6,"code":"server_error","message":"x","param":null}',
        b"",
    ]
    found = [event for line in lines for event in decoder.feed(line)]
    assert [type(e).__name__ for e in found] == ["ResponseStreamEvent", "ResponseErrorEvent"]
    assert found[0].to_dict() == {
        "type": "response.web_search_call.searching",
        "sequence_number": 5,
        "item_id": "ws_1",
        "output_index": 0,
    }
    assert not decoder.done  # an error event is an event like the others
    check_with_sdk_error = SDK_EVENT.validate_python(found[1].to_dict())
    assert check_with_sdk_error.message == "x"


def test_a_failed_native_stream_is_done_without_raising() -> None:
    failed = {"type": "response.failed", "sequence_number": 3, "response": {
        "id": "resp_up", "object": "response", "created_at": 1, "status": "failed",
        "error": {"code": "server_error", "message": "oops"}, "model": "gpt-5", "output": [],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}}  # fmt: skip
    decoder = NativeEventDecoder(response_id="resp_mine")
    found = decoder.feed(b"data: " + json.dumps(failed).encode()) + decoder.feed(b"")
    assert decoder.done
    assert decoder.response is not None
    assert (decoder.response.id, decoder.response.status) == ("resp_mine", "failed")
    assert found[0].type == "response.failed"


@pytest.mark.parametrize(
    "lines",
    [
        [b"event: response.output_text.delta", b'data: {"type":"response.output_text.delta"}'],
        [b"data: {oops", b""],
        [b"event: response.created", b'data: {"type":"response.created","sequence_number":0,'
         b'"response":{"id":"r"}}', b""],
    ],
)  # fmt: skip
def test_malformed_native_events(lines: list[bytes]) -> None:
    decoder = NativeEventDecoder(response_id="r")

    def read_all() -> None:
        for line in lines:
            decoder.feed(line)
        decoder.finish()

    with pytest.raises(MalformedResponse):
        read_all()


# ---------------------------------------------------------------- whole responses


def test_a_whole_response_replays_as_the_stream_that_made_it() -> None:
    for chunks in (sse_chunks("stream_text.sse"), sse_chunks("stream_tool_calls.sse")):
        streamed, events = run(chunks)
        replayed = response_events(events.response)
        assert kinds(replayed) == [
            k
            for i, k in enumerate(kinds(streamed))
            if not (k.endswith(".delta") and kinds(streamed)[i - 1].endswith(".delta"))
        ]  # the same sequence, each text in one delta
        final = check_with_sdk(replayed)
        assert final.id == "resp_1"
        assert replayed[-1].response is events.response
        assert [e.item for e in replayed if e.type == "response.output_item.done"] == [
            e.item for e in streamed if e.type == "response.output_item.done"
        ]


def test_a_native_response_with_reasoning_search_and_calls_replays() -> None:
    completed = json.loads(native_lines()[-3][6:])["response"]
    search = {"id": "ws_1", "type": "web_search_call", "status": "completed",
              "action": {"type": "search", "query": "hello"}}  # fmt: skip
    call = {"id": "fc_1", "type": "function_call", "status": "completed",
            "call_id": "call_1", "name": "get_weather", "arguments": "{}"}  # fmt: skip
    refusal = {"id": "msg_2", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "refusal", "refusal": "No."}]}  # fmt: skip
    completed["output"][1:1] = [search]
    completed["output"] += [call, refusal]
    response = Response.model_validate(completed)
    replayed = response_events(response)
    assert kinds(replayed) == [
        "created", "in_progress",
        "output_item.added", "reasoning_summary_part.added", "reasoning_summary_text.delta",
        "reasoning_summary_text.done", "reasoning_summary_part.done", "output_item.done",
        "output_item.added", "output_item.done",
        "output_item.added", "content_part.added", "output_text.delta", "output_text.done",
        "content_part.done", "output_item.done",
        "output_item.added", "function_call_arguments.delta", "function_call_arguments.done",
        "output_item.done",
        "output_item.added", "content_part.added", "refusal.delta", "refusal.done",
        "content_part.done", "output_item.done", "completed",
    ]  # fmt: skip
    final = check_with_sdk(replayed)
    assert final.output_text == "Hello there!"
    assert replayed[0].response.output == [] and replayed[0].response.usage is None
    assert response.output != []  # the replay copied, never changed, the response


@pytest.mark.parametrize(("status", "last"), [("incomplete", "incomplete"), ("failed", "failed")])
def test_a_whole_response_ends_by_its_status(status: str, last: str) -> None:
    _, events = run([chunk({"content": "x"}, finish="stop")])
    ended = events.response.model_copy(update={"status": status})
    assert response_events(ended)[-1].type == f"response.{last}"


def test_cached_chat_answers_stream_the_same_as_live_ones() -> None:
    """A chat completion replayed as chunks (the cache's form) makes the events a live
    stream of it makes, but for ids."""
    answer = ChatCompletion.model_validate_json((FIXTURES / "chat_tool_calls.json").read_bytes())
    live, _ = run(sse_chunks("stream_tool_calls.sse"))
    cached, events = run(completion_to_chunks(answer))
    assert kinds(cached) == [k for i, k in enumerate(kinds(live))
                             if not (k.endswith(".delta") and kinds(live)[i - 1].endswith(".delta"))]  # fmt: skip
    check_with_sdk(cached)
    same_as_whole(events, answer)


def test_cached_chat_answers_stream_their_reasoning() -> None:
    """A chat answer with a vendor's reasoning, in the cache's form, streams the reasoning
    item a live answer makes: its summary, and the signed thinking as encrypted content
    (issue 16: the replayed chunks had dropped both)."""
    blocks = [{"type": "thinking", "thinking": "Say hi.", "signature": "sig"}]
    answer = ChatCompletion.model_validate({
        "id": "chatcmpl-1", "created": 1, "model": "claude-x",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "Hi!", "reasoning_content": "Say hi.",
            "thinking_blocks": blocks}}],
    })  # fmt: skip
    found, events = run(completion_to_chunks(answer))
    assert kinds(found)[2:7] == [
        "output_item.added", "reasoning_summary_part.added", "reasoning_summary_text.delta",
        "reasoning_summary_text.done", "reasoning_summary_part.done",
    ]  # fmt: skip
    reasoning = events.response.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.encrypted_content == thinking_content(blocks)
    check_with_sdk(found)
    same_as_whole(events, answer)

"""Gemini's thought signatures through the Responses translation (issue 16): from Gemini's
answer (whole or streamed) to a reasoning item before the call, and from that item back to
the call Gemini receives; other vendors' requests go without them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai.types.responses as sdk
import pytest

from llmroute import RequestError
from llmroute._transports import HttpRequest
from llmroute._types import ChatCompletion, ChatCompletionChunk
from llmroute.cache import chunks_to_completion
from llmroute.providers.configs import GeminiProviderConfig
from llmroute.providers.gemini import GeminiAdapter
from llmroute.responses import (
    ChunkEvents,
    Response,
    ResponseFunctionToolCall,
    ResponseReasoningItem,
    completion_to_response,
    thinking_content,
    to_chat,
    validate_responses_request,
)
from llmroute.responses.signatures import without_signatures

GEMINI = Path(__file__).parent / "fixtures" / "gemini"
MODEL = "gemini-3-pro-preview"
#: The signature Gemini put on the first call of the recorded answers.
SIGNATURE = "CiQB0e2Kb5JxTb2aZ3qP9fLw8mYk1Nc4Vt7Rs0Xu6Ij2Oe8="
SIGNED = {"extra_content": {"google": {"thought_signature": SIGNATURE}}}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather",
        "arguments": '{"city":"Paris"}'}  # fmt: skip
THINKING = {"type": "thinking", "thinking": "Paris first.", "signature": "EqQBCkgI"}


def gemini() -> GeminiAdapter:
    return GeminiAdapter("gem", GeminiProviderConfig(type="gemini", api_key="AIza-test"))


def block(call_id: str, signature: str = SIGNATURE) -> dict[str, Any]:
    return {"type": "thought_signature", "call_id": call_id, "signature": signature}


def request(items: Any = "What is the weather in Paris and in Tokyo?") -> Any:
    return validate_responses_request({"model": "chat", "input": items})


def whole(answer: ChatCompletion) -> Response:
    response = completion_to_response(answer, request(), response_id="resp_1", created_at=5.0)
    sdk.Response.model_validate(response.to_dict())
    return response


def streamed(chunks: list[ChatCompletionChunk]) -> Response:
    events = ChunkEvents(request(), response_id="resp_1", created_at=5.0, model=chunks[0].model)
    events.start()
    for chunk in chunks:
        events.feed(chunk)
    events.finish()
    sdk.Response.model_validate(events.response.to_dict())
    return events.response


def without_ids(response: Response) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.to_dict().items() if k != "id"} for item in response.output]


def gemini_sees(items: list[Any]) -> list[dict[str, Any]]:
    """The contents Gemini receives for a conversation of Responses `items`."""
    chat = to_chat(request(items))
    http: HttpRequest = gemini().chat_request(chat, MODEL, stream=False)
    contents: list[dict[str, Any]] = json.loads(http.body)["contents"]
    return contents


def completion(message: dict[str, Any]) -> ChatCompletion:
    return ChatCompletion.model_validate({
        "id": "c", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", **message}}],
    })  # fmt: skip


def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({
        "id": "c", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })  # fmt: skip


def test_a_streamed_gemini_answer_signs_its_call_and_gets_the_signature_back() -> None:
    """Recorded: text, then two parallel calls, the first signed. Streamed or whole, the
    signature rides in a reasoning item right before its call, and the next turn sends it
    back on that call only."""
    decoder = gemini().stream_decoder(to_chat(request()), MODEL)
    lines = (GEMINI / "stream_function_calls.sse").read_bytes().split(b"\n")
    chunks = [c for line in lines for c in decoder.feed(line)] + decoder.finish()
    response = streamed(chunks)
    assert without_ids(response) == without_ids(whole(chunks_to_completion(chunks)))
    message, reasoning, first, second = response.output
    assert message.type == "message"
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.summary == []
    assert isinstance(first, ResponseFunctionToolCall)
    assert isinstance(second, ResponseFunctionToolCall)
    assert reasoning.encrypted_content == thinking_content([block(first.call_id)])
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": "18C"}
               for c in (first, second)]  # fmt: skip
    sent = gemini_sees([{"role": "user", "content": "Weather?"},
                        *(item.to_dict() for item in response.output), *outputs])  # fmt: skip
    assert sent[1] == {"role": "model", "parts": [
        {"text": "Checking both cities."},
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris, France"}},
         "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "get_time", "args": {"timezone": "Asia/Tokyo"}}},
    ]}  # fmt: skip


def test_thoughts_and_the_signed_call_after_them_make_one_reasoning_item() -> None:
    signed = {"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{}"}, **SIGNED}  # fmt: skip
    answer = completion({"content": None, "reasoning_content": "Paris first.",
                         "tool_calls": [signed]})  # fmt: skip
    chunks = [
        chunk({"role": "assistant", "reasoning_content": "Paris "}),
        chunk({"reasoning_content": "first."}),
        chunk({"tool_calls": [{"index": 0, **signed}]}),
        chunk({}, "tool_calls"),
    ]
    response = whole(answer)
    assert without_ids(response) == without_ids(streamed(chunks))
    reasoning, call = response.output
    assert isinstance(reasoning, ResponseReasoningItem)
    assert [s.text for s in reasoning.summary] == ["Paris first."]
    assert reasoning.encrypted_content == thinking_content([block("call_1")])
    assert isinstance(call, ResponseFunctionToolCall) and call.call_id == "call_1"


def test_signatures_and_thinking_go_each_to_their_place() -> None:
    """A reasoning item holding Anthropic's thinking and a Gemini signature: the thinking
    goes with the next assistant message, the signature on its call."""
    item = {"type": "reasoning", "id": "rs_1", "summary": [],
            "encrypted_content": thinking_content([THINKING, block("call_1")])}  # fmt: skip
    messages = to_chat(request([{"role": "user", "content": "x"}, item, CALL])).model_dump(
        exclude_unset=True
    )["messages"]
    assert messages[1] == {
        "role": "assistant", "content": None, "thinking_blocks": [THINKING],
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        **SIGNED}],
    }  # fmt: skip


def test_a_signature_keeps_the_text_and_its_call_one_turn() -> None:
    item = {"type": "reasoning", "id": "rs_1", "summary": [],
            "encrypted_content": thinking_content([block("call_1")])}  # fmt: skip
    text = {"type": "message", "role": "assistant", "content": "Checking."}
    sent = gemini_sees([{"role": "user", "content": "x"}, text, item, CALL,
                        {"type": "function_call_output", "call_id": "call_1", "output": "18C"}])  # fmt: skip
    assert sent[1] == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
         "thoughtSignature": SIGNATURE},
    ]}  # fmt: skip


@pytest.mark.parametrize(
    "blocks", [{"type": "thought_signature"}, [{"type": "thought_signature", "call_id": "c"}]]
)
def test_a_damaged_signature_is_refused(blocks: Any) -> None:
    item = {"type": "reasoning", "id": "rs_1", "summary": [],
            "encrypted_content": thinking_content(blocks)}  # fmt: skip
    with pytest.raises(RequestError) as caught:
        to_chat(request([{"role": "user", "content": "x"}, item, CALL]))
    assert caught.value.param == "input[1].encrypted_content"


def test_other_targets_get_the_calls_without_their_signatures() -> None:
    item = {"type": "reasoning", "id": "rs_1", "summary": [],
            "encrypted_content": thinking_content([block("call_1")])}  # fmt: skip
    chat = to_chat(request([{"role": "user", "content": "x"}, item, CALL]))
    plain = without_signatures(chat)
    call = plain.model_dump(exclude_unset=True)["messages"][1]["tool_calls"][0]
    assert call == {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}  # fmt: skip
    assert chat.model_dump(exclude_unset=True)["messages"][1]["tool_calls"][0] == {
        **call, **SIGNED}  # fmt: skip
    unsigned = to_chat(request([{"role": "user", "content": "x"}, CALL]))
    assert without_signatures(unsigned) is unsigned

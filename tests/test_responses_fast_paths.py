"""Oracle tests of the Responses translation's fast paths (docs/performance.md): each one
against the plain way it replaces, over many shapes drawn by hypothesis.

- `trusted_chat` (a request's chat view built trusted) against validating the body;
  `to_chat` of varied requests against `to_chat` without its fast paths;
- `response_usage` (shared all-zero details) against validating the usage;
- `build_response` (a template copied) against the 25 fields written out and validated;
- `ChunkEvents`' text deltas (the fast path of a stream's bulk) against its general path;
- the gateway's text delta template against `json_bytes`.
"""

from __future__ import annotations

from typing import Any

import openai.types.responses as sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from llmroute import MalformedResponse, RequestError
from llmroute._request import ChatRequest
from llmroute._types import ChatCompletionChunk, CompletionUsage, validator
from llmroute.responses import (
    THINKING_PREFIX,
    ChunkEvents,
    InputTokensDetails,
    Response,
    ResponsesRequest,
    ResponseTextDeltaEvent,
    ResponseUsage,
    json_bytes,
    to_chat,
    usage_from_tokens,
    validate_responses_request,
)
from llmroute.responses import events as events_module
from llmroute.responses import request as request_module
from llmroute.responses.translate import build_response, usage_of
from llmroute.responses.trusted import trusted_chat
from llmroute.responses.types import response_usage
from llmroute.server.endpoints.responses import ResponsesEvents

SDK_TEXT_DELTA: TypeAdapter[Any] = TypeAdapter(sdk.ResponseTextDeltaEvent)


def _same(fast: Any, plain: Any, where: str = "") -> None:
    """`fast` is what `plain` is: the same types all the way down, the same values, the
    same fields set and extras, in the same order."""
    assert type(fast) is type(plain), where
    if isinstance(plain, BaseModel):
        assert fast.model_fields_set == plain.model_fields_set, where
        assert list(fast.__dict__) == list(plain.__dict__), where
        _same(fast.__dict__, plain.__dict__, where)
        _same(fast.__pydantic_extra__, plain.__pydantic_extra__, f"{where}(extra)")
        assert fast.__pydantic_private__ == plain.__pydantic_private__, where
    elif isinstance(plain, dict):
        assert list(fast) == list(plain), where
        for key in plain:
            _same(fast[key], plain[key], f"{where}.{key}")
    elif isinstance(plain, list):
        assert len(fast) == len(plain), where
        for index, (a, b) in enumerate(zip(fast, plain, strict=True)):
            _same(a, b, f"{where}[{index}]")
    else:
        assert fast == plain, where


# ---------------------------------------------------------------- the trusted chat view

_TEXT = st.text(max_size=6)
_ANY = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), _TEXT, st.just([1]), st.just({}))
_PARAMS = st.dictionaries(
    st.sampled_from(["description", "parameters", "strict", "format"]),
    _ANY | st.just({"type": "object", "properties": {}}) | st.just({1: "x"}),
)
_CALL = st.fixed_dictionaries({
    "id": _TEXT, "type": st.sampled_from(["function", "custom"]),
    "function": st.fixed_dictionaries({"name": _TEXT, "arguments": _TEXT}),
})  # fmt: skip
_PART = st.fixed_dictionaries({"type": st.just("text"), "text": _TEXT})
_CONTENT = st.one_of(_TEXT, st.lists(_PART, max_size=2), st.none(), st.integers())
_MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user"]), "content": _CONTENT},
        optional={"name": _TEXT},
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "content": _CONTENT, "tool_call_id": _TEXT}),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": _CONTENT},
        optional={
            "refusal": _TEXT,
            "tool_calls": st.lists(_CALL, max_size=2),
            "thinking_blocks": st.just([{"type": "thinking", "thinking": "t"}]),
            "name": _TEXT,
        },
    ),
    st.fixed_dictionaries({"role": st.just("function"), "content": _CONTENT, "name": _TEXT}),
)
_TOOL = st.fixed_dictionaries({
    "type": st.sampled_from(["function", "function", "custom"]),
    "function": st.fixed_dictionaries({"name": _TEXT}).flatmap(
        lambda f: _PARAMS.map(lambda p: {**f, **p})
    ),
})  # fmt: skip
_BODY_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "tools": st.lists(_TOOL, max_size=2),
        "tool_choice": st.sampled_from(["auto", "none", {"type": "function", "function": {}}]),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "max_completion_tokens": st.integers(1, 10),
        "parallel_tool_calls": st.booleans(),
        "user": _TEXT,
        "metadata": st.dictionaries(_TEXT, _TEXT, max_size=2),
        "service_tier": _TEXT,
        "prompt_cache_key": _TEXT,
        "reasoning_effort": st.one_of(_TEXT, st.integers()),
        "response_format": st.just({"type": "json_object"}),
        "verbosity": _TEXT,
        "safety_identifier": _TEXT,
        "logprobs": st.just(True),
        "top_logprobs": st.integers(0, 20),
        "stream": st.just(True),
        "stream_options": st.fixed_dictionaries(
            {"include_usage": st.just(True)}, optional={"include_obfuscation": st.booleans()}
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(messages=st.lists(_MESSAGE, min_size=1, max_size=4), params=_BODY_PARAMS)
def test_trusted_chat_is_what_validation_makes(
    messages: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    """Whatever shape `trusted_chat` vouches for, it builds what validating the body builds
    (types, values, fields set, extras); what validation refuses, it does not vouch for.

    The bodies are of the shapes `to_chat` writes: what a validated Responses request
    guarantees (names and ids are strings, numbers in range) holds; what it does not
    (message content, tool descriptions and strict flags, the reasoning effort) varies."""
    body = {"model": "m", "messages": messages, **params}
    fast = trusted_chat(body, None)
    try:
        plain = validator(ChatRequest).validate_python(body)
    except ValidationError:
        assert fast is None
        return
    if fast is not None:
        _same(fast, plain)


def test_trusted_chat_vouches_for_the_common_shapes_and_copies_what_validation_copies() -> None:
    parameters = {"type": "object", "properties": {}}
    metadata = {"k": "v"}
    body: dict[str, Any] = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": parameters}}],
        "metadata": metadata,
        "stream": True,
        "stream_options": {"include_usage": True, "include_obfuscation": False},
        "verbosity": "low",
    }  # fmt: skip
    fast = trusted_chat(body, None)
    assert fast is not None
    _same(fast, validator(ChatRequest).validate_python(body))
    assert fast.metadata is not metadata
    assert fast.tools is not None and fast.tools[0].function.parameters is not parameters
    # a chat field passed through as an extra parameter is left to validation
    assert trusted_chat({**body, "seed": 1}, {"seed": 1}) is None
    assert trusted_chat({**body, "seed": "x"}, {"seed": "x"}) is None
    assert trusted_chat(body, {"foo": 1}) is not None
    # a schema is Any to a Responses request, but a dict with string keys to a chat one
    odd = {"type": "function", "function": {"name": "f", "parameters": {1: "x"}}}
    assert trusted_chat({**body, "tools": [odd]}, None) is None


_ROLE = st.sampled_from(["user", "system", "developer", "assistant"])
_INPUT_PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("input_text"), "text": _TEXT}),
    st.fixed_dictionaries({"type": st.just("input_image"), "image_url": _TEXT}),
)
_ASSISTANT_PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("output_text"), "text": _TEXT}),
    st.fixed_dictionaries({"type": st.just("refusal"), "refusal": _TEXT}),
)


@st.composite
def _items(draw: st.DrawFn) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    calls: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["message", "message", "call", "output", "reasoning"]))
        if kind == "message":
            role = draw(_ROLE)
            part = _ASSISTANT_PART if role == "assistant" else _INPUT_PART
            content = draw(st.one_of(_TEXT, st.lists(part, min_size=1, max_size=2)))
            items.append({"type": "message", "role": role, "content": content})
        elif kind == "call":
            call_id = f"c{len(calls)}"
            calls.append(call_id)
            if draw(st.booleans()):
                items.append({"type": "function_call", "call_id": call_id, "name": "f",
                              "arguments": draw(_TEXT)})  # fmt: skip
            else:
                items.append({"type": "custom_tool_call", "call_id": call_id, "name": "c",
                              "input": draw(_TEXT)})  # fmt: skip
        elif kind == "output" and calls:
            output = draw(st.one_of(_TEXT, st.lists(_INPUT_PART, max_size=2)))
            items.append({"type": "function_call_output", "call_id": draw(st.sampled_from(calls)),
                          "output": output})  # fmt: skip
        elif kind == "reasoning":
            signed = THINKING_PREFIX + '[{"type": "thinking", "thinking": "t"}]'
            items.append({"type": "reasoning", "summary": [],
                          "encrypted_content": draw(st.sampled_from([None, signed]))})  # fmt: skip
    return items


_RESPONSES_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "instructions": _TEXT,
        "tools": st.lists(
            st.one_of(
                st.fixed_dictionaries(
                    {"type": st.just("function"), "name": _TEXT},
                    optional={
                        "description": st.one_of(_TEXT, st.integers()),
                        "parameters": st.just({"type": "object"}),
                        "strict": st.one_of(st.booleans(), _TEXT),
                    },
                ),
                st.just({"type": "custom", "name": "c"}),
            ),
            max_size=2,
        ),
        "tool_choice": st.sampled_from(["auto", "required", {"type": "function", "name": "f"}]),
        "text": st.sampled_from(
            [
                {"format": {"type": "text"}},
                {"format": {"type": "json_object"}},
                {"format": {"type": "json_schema", "name": "s", "schema": {}}, "verbosity": "low"},
            ]
        ),
        "max_output_tokens": st.integers(1, 100),
        "reasoning": st.sampled_from([{"effort": "low"}, {"effort": 3}, {"summary": "auto"}]),
        "parallel_tool_calls": st.booleans(),
        "temperature": st.one_of(st.floats(0, 2), st.integers(0, 2)),
        "top_p": st.floats(0, 1),
        "metadata": st.dictionaries(_TEXT, _TEXT, max_size=2),
        "stream": st.booleans(),
        "stream_options": st.just({"include_obfuscation": False}),
        "include": st.just(["message.output_text.logprobs"]),
        "top_logprobs": st.integers(0, 20),
        "user": _TEXT,
        "service_tier": _TEXT,
        "prompt_cache_key": _TEXT,
        "safety_identifier": _TEXT,
        "seed": st.one_of(st.integers(), _TEXT),
        "x_custom": _TEXT,
    },
)


def _translated(request: ResponsesRequest) -> ChatRequest | str:
    try:
        return to_chat(request)
    except RequestError as exc:
        return f"{exc.param}: {exc}"


@settings(max_examples=400, deadline=None)
@given(items=st.one_of(_TEXT, _items()), params=_RESPONSES_PARAMS)
def test_to_chat_is_what_it_is_without_the_fast_paths(
    items: str | list[dict[str, Any]], params: dict[str, Any]
) -> None:
    """`to_chat` of varied requests (every kind of item, tools, parameters, extras) is, type
    for type, what it is without its fast paths (the options skipped when none is set,
    `trusted_chat`), or the same refusal."""
    body = {"model": "m", "input": items, **params}
    try:
        request = validate_responses_request(body)
    except RequestError:
        return
    general = request.model_copy()
    general.model_fields_set.update(ResponsesRequest.model_fields)  # no option is skipped
    fast = _translated(request)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(request_module, "trusted_chat", lambda body, passed: None)
        plain = _translated(general)
    _same(fast, plain)


# ---------------------------------------------------------------- usage and the response

_COUNT = st.one_of(st.just(0), st.integers(0, 10**6))


@settings(max_examples=300, deadline=None)
@given(counts=st.tuples(_COUNT, _COUNT, _COUNT, _COUNT, _COUNT))
def test_response_usage_is_what_validation_builds(counts: tuple[int, ...]) -> None:
    """`response_usage` (zero details shared) builds what one validation of the usage does;
    `usage_of` reads a completion's usage as `CompletionUsage.normalised` does."""
    made, given, cached, written, reasoning = counts
    fast = response_usage(made, given, cached, written, reasoning)
    plain = ResponseUsage.model_validate({
        "input_tokens": made, "output_tokens": given, "total_tokens": made + given,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens_details": {"reasoning_tokens": reasoning},
    })  # fmt: skip
    _same(fast, plain)
    usage = CompletionUsage.model_validate({
        "prompt_tokens": made, "completion_tokens": given, "total_tokens": made + given,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    })  # fmt: skip
    read = usage_of(usage)
    assert read is not None
    _same(read, plain)
    _same(usage_from_tokens(usage.normalised()), plain)
    assert read.normalised() == usage.normalised()


def test_shared_usage_details_cannot_be_changed() -> None:
    usage = response_usage(3, 2, 0, 0, 0)
    assert usage.input_tokens_details is response_usage(5, 1, 0, 0, 0).input_tokens_details
    with pytest.raises(ValidationError, match="frozen"):
        usage.input_tokens_details.cached_tokens = 1
    assert response_usage(3, 2, 0, 0, 0).input_tokens_details == InputTokensDetails()


def _written_out(request: Any, **given: Any) -> Response:
    """The response `build_response` makes, its 25 fields written out and validated."""
    echo = request.__dict__
    return Response.model_validate({
        "id": given["response_id"], "object": "response", "created_at": given["created_at"],
        "status": given["status"], "error": None, "incomplete_details": None,
        "instructions": echo["instructions"], "max_output_tokens": echo["max_output_tokens"],
        "model": given["model"], "output": given["output"],
        "parallel_tool_calls": echo["parallel_tool_calls"] is not False,
        "previous_response_id": echo["previous_response_id"], "reasoning": echo["reasoning"],
        "store": True if echo["store"] is None else echo["store"],
        "temperature": echo["temperature"],
        "text": {"format": {"type": "text"}} if echo["text"] is None else echo["text"],
        "tool_choice": "auto" if echo["tool_choice"] is None else echo["tool_choice"],
        "tools": [] if echo["tools"] is None else echo["tools"], "top_p": echo["top_p"],
        "truncation": echo["truncation"] or "disabled", "usage": given["usage"],
        "user": echo["user"], "metadata": {} if echo["metadata"] is None else echo["metadata"],
    })  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(items=st.one_of(_TEXT, _items()), params=_RESPONSES_PARAMS, store=st.sampled_from(
    [None, True, False]), truncation=st.sampled_from([None, "auto", "disabled"]))  # fmt: skip
def test_build_response_is_the_response_written_out(
    items: str | list[dict[str, Any]], params: dict[str, Any], store: bool | None,
    truncation: str | None,
) -> None:  # fmt: skip
    """`build_response` (a template copied, a dozen fields set) makes the response its 25
    fields written out make."""
    body = {"model": "m", "input": items, "store": store, "truncation": truncation, **params}
    try:
        request = validate_responses_request(body)
    except RequestError:
        return
    usage = response_usage(4, 2, 1, 0, 0)
    given: dict[str, Any] = {"response_id": "resp_1", "created_at": 1.0, "model": "x",
                             "status": "completed", "output": [], "usage": usage}  # fmt: skip
    _same(build_response(request, **given), _written_out(request, **given))


# ---------------------------------------------------------------- stream events

_TEXT = st.text(alphabet='ab \u00e9\n"\\{', max_size=6)
_DELTA = st.one_of(
    _TEXT.map(lambda text: {"delta": {"content": text}}),  # the bulk of a stream ("" too)
    _TEXT.map(lambda text: {"delta": {"role": "assistant", "content": text}}),
    _TEXT.map(lambda text: {"delta": {"refusal": text or "no"}}),
    _TEXT.map(lambda text: {"delta": {"content": text, "reasoning_content": "hm"}}),
    _TEXT.map(
        lambda text: {
            "delta": {"content": text or "x"},
            "logprobs": {"content": [{"token": "x", "logprob": -0.5, "top_logprobs": []}]},
        }
    ),
    st.sampled_from([0, 1]).map(
        lambda index: {
            "delta": {
                "tool_calls": [
                    {
                        "index": index,
                        "id": f"call_{index}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"a":'},
                    }
                ]
            }
        }
    ),
    st.sampled_from(["stop", "length", "tool_calls"]).map(
        lambda reason: {"delta": {}, "finish_reason": reason}
    ),
)


def _chunks(deltas: list[dict[str, Any]], padded: bool) -> list[ChatCompletionChunk]:
    """A chat stream of `deltas`; `padded`, each chunk has a second choice (index 1: a
    choice the Responses API does not read), which sends it down the general path."""
    made = []
    for delta in deltas:
        choices = [{"index": 0, "finish_reason": None, **delta}]
        if padded:
            choices.append({"index": 1, "delta": {"content": "other"}, "finish_reason": None})
        made.append(
            validator(ChatCompletionChunk).validate_python(
                {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": choices}
            )
        )  # fmt: skip
    return made


def _stream_events(chunks: list[ChatCompletionChunk]) -> tuple[list[Any], ChunkEvents]:
    events = ChunkEvents(_STREAMED, response_id="resp_1", created_at=7.0, model="m")
    found = events.start()
    try:
        for chunk in chunks:
            found += events.feed(chunk)
    except MalformedResponse:  # a fragment of a call after the next began: refused alike
        return found, events
    found += events.finish(None)
    return found, events


_STREAMED = validate_responses_request({"model": "m", "input": "hi", "stream": True})


@settings(max_examples=300, deadline=None)
@given(deltas=st.lists(_DELTA, max_size=12))
def test_text_deltas_are_what_the_general_path_makes(deltas: list[dict[str, Any]]) -> None:
    """`ChunkEvents.feed`'s fast path for text deltas makes, event for event and type for
    type, what the general path makes of the same chunks (sent down it by a second choice
    it ignores); every event is what validating its own dump builds."""

    def numbered(prefix: str) -> str:
        numbered.count += 1  # type: ignore[attr-defined]
        return f"{prefix}_{numbered.count}"  # type: ignore[attr-defined]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(events_module, "new_item_id", numbered)
        numbered.count = 0  # type: ignore[attr-defined]
        fast, fast_events = _stream_events(_chunks(deltas, padded=False))
        numbered.count = 0  # type: ignore[attr-defined]
        plain, plain_events = _stream_events(_chunks(deltas, padded=True))
    _same(fast, plain)
    assert fast_events.text == plain_events.text
    assert fast_events.finished == plain_events.finished
    for event in fast:
        _same(event, validator(type(event)).validate_json(json_bytes(event)), event.type)
    deltas_made = [e for e in fast if isinstance(e, ResponseTextDeltaEvent)]
    assert "".join(e.delta for e in deltas_made) == fast_events.text


_DELTA_TEXT = st.text(max_size=40)  # every code point: escapes, controls, non-ASCII


@settings(max_examples=300, deadline=None)
@given(
    text=_DELTA_TEXT,
    item_id=st.text(max_size=20),
    numbers=st.tuples(st.integers(0, 10**9), st.integers(0, 999), st.integers(0, 999)),
    logprobs=st.booleans(),
)
def test_a_text_delta_is_written_as_json_bytes_writes_it(
    text: str, item_id: str, numbers: tuple[int, int, int], logprobs: bool
) -> None:
    """The gateway writes a text delta from its template (no logprobs), or through
    `json_bytes` (logprobs), byte for byte as the general path writes any event; and what
    it writes reads back as the SDK's event."""
    number, output_index, content_index = numbers
    values = {
        "type": "response.output_text.delta", "sequence_number": number, "item_id": item_id,
        "output_index": output_index, "content_index": content_index, "delta": text,
        "logprobs": [{"token": "x", "logprob": -0.5, "bytes": [120], "top_logprobs": []}]
        if logprobs else [],
    }  # fmt: skip
    event = validator(ResponseTextDeltaEvent).validate_python(values)
    written = ResponsesEvents().chunk(event)
    plain = b"event: " + event.type.encode() + b"\ndata: " + json_bytes(event) + b"\n\n"
    assert written == plain
    data = written.split(b"\ndata: ", 1)[1].removesuffix(b"\n\n")
    sdk_event = SDK_TEXT_DELTA.validate_json(data)
    assert (sdk_event.delta, sdk_event.item_id) == (text, item_id)


def test_other_events_and_extras_take_the_general_path() -> None:
    """A text delta with an extra field, or any other event, is written by `json_bytes`."""
    extra = validator(ResponseTextDeltaEvent).validate_python({
        "type": "response.output_text.delta", "sequence_number": 3, "item_id": "m",
        "output_index": 0, "content_index": 0, "delta": "hi", "logprobs": [], "obfuscation": "x",
    })  # fmt: skip
    written = ResponsesEvents().chunk(extra)
    assert written == b"event: response.output_text.delta\ndata: " + json_bytes(extra) + b"\n\n"
    assert b'"obfuscation":"x"' in written

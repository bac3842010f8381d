"""The native surface measured against the openai SDK: parameters, sentinels, timeouts,
raw and streamed responses, parse, the stream helper, models, field sets, dumps, errors.

The openai SDK's own types and exceptions are the oracles.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import openai.types
import openai.types.chat
import pytest
from openai.resources.chat.completions import AsyncCompletions as SdkCompletions
from openai.resources.embeddings import AsyncEmbeddings as SdkEmbeddings
from pydantic import BaseModel

import llmroute
from _wire import Wire
from llmroute import AsyncRouter, Router, openai_errors, to_openai_error
from llmroute._params import ChatCreateParams, EmbeddingsCreateParams
from llmroute._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CreateEmbeddingResponse,
    Embedding,
    ExtraField,
    Model,
)

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
HI = [{"role": "user", "content": "hi"}]
ANSWER = '{"name": "Ada", "age": 36}'


class Person(BaseModel):
    name: str
    age: int | None = None


def config() -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://a/v1"}},
        "routes": {"chat": {"targets": ["a/gpt-4o-mini"]}, "emb": {"targets": ["a/emb"]}},
    }


@pytest.fixture
def wire() -> Wire:
    return Wire(text=ANSWER)


@pytest.fixture
async def router(wire: Wire) -> AsyncIterator[AsyncRouter]:
    async with AsyncRouter(config(), transports={"a": wire.transport}) as router:
        yield router


@pytest.fixture
def sync_router(wire: Wire) -> Iterator[Router]:
    with Router(config(), transports={"a": wire.transport}) as router:
        yield router


# ---------------------------------------------------------------- parameters


def test_every_sdk_parameter_is_typed() -> None:
    """Every keyword of the SDK's create() is one of ours (stream is create's own)."""
    chat = set(inspect.signature(SdkCompletions.create).parameters) - {"self", "stream"}
    assert chat - set(ChatCreateParams.__annotations__) == set()
    embeddings = set(inspect.signature(SdkEmbeddings.create).parameters) - {"self"}
    assert embeddings - set(EmbeddingsCreateParams.__annotations__) == set()


@pytest.mark.parametrize("sentinel", [openai.NOT_GIVEN, openai.omit])
async def test_sentinels_are_not_given_everywhere(
    router: AsyncRouter, wire: Wire, sentinel: Any
) -> None:
    """openai-agents passes stream=omit on every call; any parameter may be a sentinel."""
    sdk = set(inspect.signature(SdkCompletions.create).parameters)
    given = {"self", "model", "messages", "extra_body", "extra_headers", "extra_query"}
    unset = dict.fromkeys(sdk - given, sentinel)
    completion = await router.chat.completions.create(model="chat", messages=HI, **unset)
    assert completion.choices[0].message.content == ANSWER
    assert set(wire.requests[-1]) == {"model", "messages"}
    emb_unset = dict.fromkeys(("dimensions", "encoding_format", "user", "timeout"), sentinel)
    embeddings = await router.embeddings.create(model="emb", input="x", **emb_unset)
    assert embeddings.data[0].index == 0
    models = await router.models.list(extra_headers=sentinel, timeout=sentinel)
    assert next(m.id for m in models) == "chat"


def test_sentinels_on_the_blocking_router(sync_router: Router) -> None:
    completion = sync_router.chat.completions.create(
        model="chat", messages=HI, stream=openai.omit, temperature=openai.NOT_GIVEN
    )
    assert completion.choices[0].message.content == ANSWER


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [
        (20, 20.0),
        (2.5, 2.5),
        (httpx.Timeout(20), 20.0),
        (httpx2.Timeout(30, read=7), 7.0),
        (httpx.Timeout(5, read=None), None),
        (openai.NOT_GIVEN, None),
    ],
)
async def test_timeouts_become_the_deadline(
    router: AsyncRouter, timeout: Any, seconds: float | None
) -> None:
    deadlines: list[float | None] = []
    stage = _OptionsSpy(deadlines)
    router.add_stage(stage)
    await router.chat.completions.create(model="chat", messages=HI, timeout=timeout)
    assert deadlines == [seconds]


class _OptionsSpy(llmroute.Stage):
    name = "spy"

    def __init__(self, seen: list[float | None]) -> None:
        self.seen = seen

    async def before(self, ctx: Any) -> None:
        self.seen.append(ctx.options.timeout)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "20", httpx.Timeout(0)])
async def test_bad_timeouts_are_refused(router: AsyncRouter, timeout: Any) -> None:
    with pytest.raises(llmroute.RequestError, match="timeout"):
        await router.chat.completions.create(model="chat", messages=HI, timeout=timeout)


async def test_custom_tools_and_function_messages_reach_an_openai_target(
    router: AsyncRouter, wire: Wire
) -> None:
    tools = [
        {"type": "custom", "custom": {"name": "sql", "description": "run SQL"}},
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
        {"function": {"name": "g"}},
    ]
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "42"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
    ]
    await router.chat.completions.create(
        model="chat", messages=messages, tools=tools, functions=[{"name": "f"}]
    )
    sent = wire.requests[-1]
    assert sent["tools"] == tools
    assert sent["messages"] == messages
    assert sent["functions"] == [{"name": "f"}]


async def test_targets_that_cannot_express_them_refuse_and_the_next_answers() -> None:
    """Anthropic cannot express custom tools or function messages: the router fails over."""
    first, second = Wire(), Wire(text="from b")
    cfg = {
        "providers": {
            "claude": {"type": "anthropic", "api_key": "k"},
            "b": {"type": "openai", "api_key": "k", "base_url": "http://b/v1"},
        },
        "routes": {"chat": {"targets": ["claude/claude-x", "b/gpt"]}},
    }
    transports = {"claude": first.transport, "b": second.transport}
    async with AsyncRouter(cfg, transports=transports) as router:
        custom = [{"type": "custom", "custom": {"name": "sql"}}]
        answer = await router.chat.completions.create(model="chat", messages=HI, tools=custom)
        assert answer.choices[0].message.content == "from b"
        legacy = [*HI, {"role": "function", "name": "f", "content": "1"}]
        answer = await router.chat.completions.create(model="chat", messages=legacy)
        assert answer.llmroute.provider == "b"
        assert [a.error_type for a in answer.llmroute.attempts] == ["RequestError", None]
    assert first.requests == []


# ---------------------------------------------------------------- response fields and dumps


def _fields(model: type[BaseModel]) -> set[str]:
    """The fields of `model` and the attributes that read like fields (properties, and the
    OpenAI fields kept among the extras)."""
    readable = {
        name
        for name in dir(model)
        if isinstance(inspect.getattr_static(model, name, None), property | ExtraField)
    }
    return set(model.model_fields) | readable


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (ChatCompletion, openai.types.chat.ChatCompletion),
        (Choice, openai.types.chat.chat_completion.Choice),
        (ChatCompletionMessage, openai.types.chat.ChatCompletionMessage),
        (ChatCompletionChunk, openai.types.chat.ChatCompletionChunk),
        (ChunkChoice, openai.types.chat.chat_completion_chunk.Choice),
        (ChoiceDelta, openai.types.chat.chat_completion_chunk.ChoiceDelta),
        (CreateEmbeddingResponse, openai.types.CreateEmbeddingResponse),
        (Embedding, openai.types.Embedding),
        (Model, openai.types.Model),
    ],
)
def test_every_sdk_field_is_readable(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert set(theirs.model_fields) - _fields(ours) == set()


def test_legacy_and_extra_fields_read_typed_and_dump_only_when_present() -> None:
    data = json.loads((FIXTURES / "chat_plain.json").read_text())
    message = data["choices"][0]["message"]
    message["function_call"] = {"name": "f", "arguments": "{}"}
    citation = {"url": "u", "title": "t", "start_index": 0, "end_index": 1}
    message["annotations"] = [{"type": "url_citation", "url_citation": citation}]
    ours = ChatCompletion.model_validate(data)
    call = ours.choices[0].message.function_call
    assert call is not None and (call.name, call.arguments) == ("f", "{}")
    assert ours.choices[0].message.annotations == message["annotations"]
    assert ours.choices[0].message.audio is None and ours.moderation is None
    theirs = openai.types.chat.ChatCompletion.model_validate(ours.to_dict())
    assert theirs.choices[0].message.function_call is not None
    plain = ChatCompletionMessage(content="x")
    assert "audio" not in plain.model_dump() and "function_call" not in plain.model_dump_json()


def test_custom_tool_calls_in_answers() -> None:
    data = json.loads((FIXTURES / "chat_plain.json").read_text())
    data["choices"][0]["message"]["tool_calls"] = [
        {"id": "c1", "type": "custom", "custom": {"name": "sql", "input": "select 1"}},
        {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
    ]
    ours = ChatCompletion.model_validate(data)
    calls = ours.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["sql", "f"]
    theirs = openai.types.chat.ChatCompletion.model_validate(ours.to_dict())
    assert theirs.to_dict() == ours.to_dict()


@pytest.mark.parametrize(
    "name", ["chat_plain.json", "chat_tool_calls.json", "chat_usage_details.json"]
)
def test_to_dict_and_to_json_match_the_sdk(name: str) -> None:
    text = (FIXTURES / name).read_text()
    ours = ChatCompletion.model_validate_json(text)
    theirs = openai.types.chat.ChatCompletion.model_validate_json(text)
    for options in ({}, {"exclude_none": True}, {"mode": "json"}, {"use_api_names": False}):
        assert ours.to_dict(**options) == theirs.to_dict(**options), options  # type: ignore[arg-type]
    # with exclude_unset=False each side adds the defaults of the fields it declares: the
    # SDK declares more (llmroute keeps the rare ones among the extras, see ExtraField)
    assert_within(ours.to_dict(exclude_unset=False), theirs.to_dict(exclude_unset=False))
    assert json.loads(ours.to_json()) == json.loads(theirs.to_json())
    assert openai.types.chat.ChatCompletion.model_validate(ours.to_dict()) == theirs
    signature = inspect.signature
    assert signature(ChatCompletion.to_dict) == signature(openai.BaseModel.to_dict)
    assert signature(ChatCompletion.to_json) == signature(openai.BaseModel.to_json)


def assert_within(ours: Any, theirs: Any) -> None:
    if isinstance(ours, dict):
        for key, value in ours.items():
            assert_within(value, theirs[key])
    elif isinstance(ours, list):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert_within(a, b)
    else:
        assert ours == theirs


async def test_router_results_validate_as_sdk_types(router: AsyncRouter) -> None:
    completion = await router.chat.completions.create(model="chat", messages=HI)
    theirs = openai.types.chat.ChatCompletion.model_validate(completion.to_dict())
    assert theirs.to_dict() == completion.to_dict()
    stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
    async for chunk in stream:
        sdk_chunk = openai.types.chat.ChatCompletionChunk.model_validate(chunk.to_dict())
        assert sdk_chunk.to_dict() == chunk.to_dict()
    embeddings = await router.embeddings.create(model="emb", input="x")
    assert openai.types.CreateEmbeddingResponse.model_validate(embeddings.to_dict())
    model = await router.models.retrieve("chat")
    assert openai.types.Model.model_validate(model.to_dict()).id == "chat"


# ---------------------------------------------------------------- raw and streamed responses


async def test_with_raw_response(router: AsyncRouter) -> None:
    raw = await router.chat.completions.with_raw_response.create(model="chat", messages=HI)
    completion = raw.parse()
    assert isinstance(completion, ChatCompletion)
    info = completion.llmroute
    assert raw.headers["x-request-id"] == info.request_id == raw.request_id
    assert raw.headers["X-LLMRoute-Request-Id"] == info.request_id
    assert raw.headers["x-llmroute-provider"] == "a"
    assert raw.headers["x-llmroute-model"] == "gpt-4o-mini"
    assert raw.headers["x-llmroute-attempts"] == "1"
    assert "x-llmroute-latency-ms" in raw.headers
    assert (raw.status_code, raw.method, raw.url) == (200, "POST", "/v1/chat/completions")
    assert raw.retries_taken == 0 and raw.elapsed.total_seconds() >= 0
    assert json.loads(raw.text) == completion.to_dict()
    sdk = raw.parse(to=openai.types.chat.ChatCompletion)
    assert isinstance(sdk, openai.types.chat.ChatCompletion)
    raw_embeddings = await router.embeddings.with_raw_response.create(model="emb", input="x")
    assert raw_embeddings.parse().data and raw_embeddings.headers["x-llmroute-route"] == "emb"
    raw_model = await router.models.with_raw_response.retrieve("chat")
    assert raw_model.parse().id == "chat" and raw_model.request_id is None


async def test_with_raw_response_of_a_stream(router: AsyncRouter) -> None:
    raw = await router.chat.completions.with_raw_response.create(
        model="chat", messages=HI, stream=True
    )
    assert raw.headers["content-type"] == "text/event-stream"
    assert "x-llmroute-ttft-ms" in raw.headers and "x-llmroute-latency-ms" not in raw.headers
    stream = raw.parse()
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])  # type: ignore[union-attr]
    assert text == ANSWER


async def test_with_streaming_response(router: AsyncRouter) -> None:
    streaming = router.chat.completions.with_streaming_response
    async with streaming.create(model="chat", messages=HI, stream=True) as response:
        assert response.headers["x-llmroute-provider"] == "a"
        lines = [line async for line in response.iter_lines()]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1] if line.startswith("data: ")]
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == ANSWER
    )
    async with streaming.create(model="chat", messages=HI) as response:
        completion = await response.parse()
        assert isinstance(completion, ChatCompletion)
    async with router.models.with_streaming_response.list() as response:
        assert next(m.id for m in await response.parse()) == "chat"


def test_blocking_raw_and_streaming_responses(sync_router: Router) -> None:
    raw = sync_router.chat.completions.with_raw_response.create(model="chat", messages=HI)
    assert raw.headers["x-request-id"] == raw.parse().llmroute.request_id  # type: ignore[union-attr]
    streaming = sync_router.chat.completions.with_streaming_response
    with streaming.create(model="chat", messages=HI, stream=True) as response:
        assert response.iter_lines().__next__().startswith("data: ")
    raw_emb = sync_router.embeddings.with_raw_response.create(model="emb", input="x")
    assert raw_emb.parse().data
    with sync_router.models.with_streaming_response.retrieve("chat") as response:
        assert response.parse().id == "chat"


# ---------------------------------------------------------------- parse and the stream helper


async def test_parse_sends_a_strict_schema_and_parses(router: AsyncRouter, wire: Wire) -> None:
    parsed = await router.chat.completions.parse(model="chat", messages=HI, response_format=Person)
    person = parsed.choices[0].message.parsed
    assert person == Person(name="Ada", age=36)
    assert parsed.llmroute.provider == "a"
    sent = wire.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    schema = sent["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and schema["required"] == ["name", "age"]
    theirs = openai.types.chat.ParsedChatCompletion[Person].model_validate(parsed.to_dict())
    assert theirs.choices[0].message.parsed == person
    raw = await router.chat.completions.with_raw_response.parse(
        model="chat", messages=HI, response_format=Person
    )
    assert raw.parse().choices[0].message.parsed == person


async def test_parse_leaves_a_refusal_unparsed() -> None:
    body = {
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": None, "refusal": "I cannot help with that."}}],
    }  # fmt: skip
    completion = ChatCompletion.model_validate(body)
    from llmroute._structured import Parsing, parse_completion

    parsed = parse_completion(completion, Parsing(Person))
    assert parsed.choices[0].message.parsed is None
    assert parsed.choices[0].message.refusal == "I cannot help with that."


async def test_the_stream_helper_yields_sdk_like_events(router: AsyncRouter) -> None:
    async with router.chat.completions.stream(
        model="chat", messages=HI, response_format=Person
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_completion()
    kinds = [e.type for e in events]
    assert kinds[0] == "chunk" and "content.delta" in kinds and kinds.count("content.done") == 1
    done = next(e for e in events if e.type == "content.done")
    assert done.content == ANSWER and done.parsed == Person(name="Ada", age=36)  # type: ignore[union-attr]
    deltas = [e for e in events if e.type == "content.delta"]
    assert deltas[-1].snapshot == ANSWER  # type: ignore[union-attr]
    assert final.choices[0].message.parsed == Person(name="Ada", age=36)
    assert final.choices[0].message.content == ANSWER
    chunk_event = next(e for e in events if e.type == "chunk")
    assert chunk_event.snapshot.id == final.id  # type: ignore[union-attr]


@pytest.mark.parametrize(("strict", "parsed"), [(True, {"city": "Paris"}), (False, None)])
async def test_the_stream_helper_reports_tool_call_arguments(strict: bool, parsed: Any) -> None:
    """Arguments are parsed for a strict tool only, as the SDK parses them."""
    wire = Wire(tool_calls=[{"name": "lookup", "arguments": {"city": "Paris"}}])
    async with AsyncRouter(config(), transports={"a": wire.transport}) as router:
        tools = [{"type": "function", "function": {"name": "lookup", "strict": strict}}]
        async with router.chat.completions.stream(model="chat", messages=HI, tools=tools) as s:
            events = [e async for e in s]
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert [(e.name, e.parsed_arguments) for e in done] == [("lookup", parsed)]  # type: ignore[union-attr]


def test_blocking_parse_stream_and_retrieve(sync_router: Router) -> None:
    parsed = sync_router.chat.completions.parse(model="chat", messages=HI, response_format=Person)
    assert parsed.choices[0].message.parsed == Person(name="Ada", age=36)
    with sync_router.chat.completions.stream(model="chat", messages=HI) as stream:
        kinds = {e.type for e in stream}
        final = stream.get_final_completion()
    assert {"chunk", "content.delta", "content.done"} <= kinds
    assert final.choices[0].message.content == ANSWER
    assert sync_router.models.retrieve("a/other").owned_by == "a"
    raw = sync_router.chat.completions.with_raw_response.parse(
        model="chat", messages=HI, response_format=Person
    )
    assert raw.parse().choices[0].message.parsed == Person(name="Ada", age=36)


async def test_models_retrieve(router: AsyncRouter) -> None:
    assert (await router.models.retrieve("chat")).owned_by == "llmroute"
    assert (await router.models.retrieve("a/gpt-4o-mini")).owned_by == "a"
    assert (await router.models.retrieve("a/anything")).id == "a/anything"
    with pytest.raises(llmroute.UnknownModel):
        await router.models.retrieve("nothing")


# ---------------------------------------------------------------- errors as openai's


def _provider(cls: type[llmroute.ProviderError], **kw: Any) -> llmroute.ProviderError:
    return cls("upstream said no", provider="a", model="m", **kw)


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        (llmroute.RequestError("bad", param="temperature"), openai.BadRequestError, 400),
        (llmroute.UnknownModel("no", model="x", available=[]), openai.NotFoundError, 404),
        (_provider(llmroute.InvalidRequest), openai.BadRequestError, 400),
        (_provider(llmroute.ContextLengthExceeded), openai.BadRequestError, 400),
        (_provider(llmroute.ContentFiltered), openai.BadRequestError, 400),
        (_provider(llmroute.ModelNotFound), openai.NotFoundError, 404),
        (_provider(llmroute.AuthenticationError), openai.InternalServerError, 502),
        (_provider(llmroute.PermissionDenied), openai.InternalServerError, 502),
        (_provider(llmroute.RateLimited, retry_after=3), openai.InternalServerError, 503),
        (_provider(llmroute.ProviderUnavailable), openai.InternalServerError, 503),
        (_provider(llmroute.ProviderTimeout), openai.InternalServerError, 504),
        (_provider(llmroute.ProviderConnectionError), openai.InternalServerError, 502),
        (llmroute.LocalRateLimitExceeded("slow down", retry_after=2.0), openai.RateLimitError, 429),
        (llmroute.BudgetExceeded("spent"), openai.RateLimitError, 429),
        (
            llmroute.AllTargetsFailed("all failed", attempts=[], errors=[]),
            openai.InternalServerError,
            503,
        ),
    ],
)
def test_errors_as_openai_exceptions(
    error: llmroute.LLMRouteError, expected: type[openai.APIStatusError], status: int
) -> None:
    converted = to_openai_error(error)
    assert type(converted) is expected
    assert isinstance(converted, openai.APIStatusError)
    assert converted.status_code == status == converted.response.status_code
    assert isinstance(converted.response, httpx2.Response)
    assert isinstance(converted.body, dict) and converted.body["message"] == str(error)
    assert converted.message.startswith(f"Error code: {status}")
    with pytest.raises(expected) as caught, openai_errors():
        raise error
    assert caught.value.__cause__ is error


def test_rate_limit_headers_and_stream_interruptions_as_openai() -> None:
    converted = to_openai_error(llmroute.LocalRateLimitExceeded("slow", retry_after=2.5))
    assert isinstance(converted, openai.RateLimitError)
    assert converted.response.headers["retry-after"] == "3"
    interrupted = llmroute.StreamInterrupted("cut", partial="hel")
    converted_stream = to_openai_error(interrupted)
    assert type(converted_stream) is openai.APIError
    assert converted_stream.body["code"] == "stream_interrupted"  # type: ignore[index]


def test_openai_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), openai_errors():
        raise KeyError("x")


async def test_a_router_failure_caught_as_openai() -> None:
    wire = Wire(script=[429, 429, 429, 429, 429, 429])
    async with AsyncRouter(config(), transports={"a": wire.transport}) as router:
        with pytest.raises(openai.InternalServerError) as caught, llmroute.openai_errors():
            await router.chat.completions.create(model="chat", messages=HI)
    assert isinstance(caught.value.__cause__, llmroute.AllTargetsFailed | llmroute.RateLimited)

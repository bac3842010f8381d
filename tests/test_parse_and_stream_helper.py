"""``parse()`` with strict function tools and the finish-reason errors, and the ``stream()``
helper's events, logprobs ones included, measured against the openai SDK.

The oracles are the SDK's own: `parse_chat_completion` (what ``client.chat.completions.
parse`` returns) and `ChatCompletionStreamState` (what ``client.chat.completions.stream``
yields), fed the same answers as the router, which gets them from a provider's wire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.lib._parsing._completions import parse_chat_completion
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion as SdkCompletion
from openai.types.chat import ChatCompletionChunk as SdkChunk
from pydantic import BaseModel

import llmroute
from llmroute import AsyncRouter, HandlerResponse, HandlerTransport, HttpRequest, Router

pytestmark = pytest.mark.anyio

HI: Any = [{"role": "user", "content": "weather?"}]


class GetWeather(BaseModel):
    """The weather in a city."""

    city: str
    unit: str


class Person(BaseModel):
    name: str
    age: int


WEATHER = openai.pydantic_function_tool(GetWeather)
STRICT = {
    "type": "function",
    "function": {
        "name": "lookup", "strict": True,
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                       "required": ["q"], "additionalProperties": False},
    },
}  # fmt: skip
LOOSE = {"type": "function", "function": {"name": "loose", "parameters": {"type": "object"}}}


class Upstream:
    """A provider's wire that answers each request with the next scripted body: a dict (a
    whole completion) or a list of chunk dicts (a stream)."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.sent: list[dict[str, Any]] = []

    def handle(self, request: HttpRequest) -> HandlerResponse:
        self.sent.append(json.loads(request.body or b"{}"))
        answer = self.answers.pop(0)
        if isinstance(answer, dict):
            return HandlerResponse(json=answer)
        lines = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in answer)
        return HandlerResponse(
            headers={"content-type": "text/event-stream"},
            content=(lines + "data: [DONE]\n\n").encode(),
        )


def config() -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "openai", "api_key": "k", "base_url": "http://a/v1"}},
        "routes": {"chat": {"targets": ["a/gpt-4o"]}},
    }


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def router(upstream: Upstream) -> Any:
    transport = HandlerTransport(upstream.handle)
    async with AsyncRouter(config(), transports={"a": transport}) as router:
        yield router


def completion(message: dict[str, Any], finish: str = "stop", n: int = 1) -> dict[str, Any]:
    choices = [
        {"index": i, "message": {"role": "assistant", "refusal": None, **message},
         "finish_reason": finish, "logprobs": None}
        for i in range(n)
    ]  # fmt: skip
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": choices,
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }  # fmt: skip


def call(index: int, name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": f"call_{index}", "type": "function",
        "function": {"name": name, "arguments": arguments},
    }  # fmt: skip


# ---------------------------------------------------------------- parse() and tools


async def test_parse_validates_pydantic_tools_as_the_sdk_does(
    router: AsyncRouter, upstream: Upstream
) -> None:
    calls = [
        call(0, "GetWeather", '{"city": "Paris", "unit": "c"}'),
        call(1, "lookup", '{"q": "umbrella"}'),
        call(2, "loose", '{"x": 1}'),
    ]
    answer = completion({"content": None, "tool_calls": calls}, "tool_calls")
    upstream.answers.append(answer)
    tools = [WEATHER, STRICT, LOOSE]
    parsed = await router.chat.completions.parse(model="chat", messages=HI, tools=tools)
    sent = upstream.sent[-1]["tools"][0]["function"]
    assert sent["name"] == "GetWeather" and sent["strict"] is True
    assert sent["parameters"]["additionalProperties"] is False
    ours = [c.function.parsed_arguments for c in parsed.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    assert ours == [GetWeather(city="Paris", unit="c"), {"q": "umbrella"}, None]
    theirs = parse_chat_completion(
        response_format=openai.omit,
        input_tools=tools,  # type: ignore[arg-type]
        chat_completion=SdkCompletion.model_validate(answer),
    )
    assert ours == [c.function.parsed_arguments for c in theirs.choices[0].message.tool_calls]  # type: ignore[union-attr]
    assert parsed.llmroute.provider == "a"
    dumped = parsed.to_dict()["choices"][0]["message"]["tool_calls"]  # type: ignore[index]
    assert dumped[0]["function"]["parsed_arguments"] == {"city": "Paris", "unit": "c"}


async def test_parse_content_and_tools_together(router: AsyncRouter, upstream: Upstream) -> None:
    calls = [call(0, "GetWeather", '{"city": "Oslo", "unit": "f"}')]
    upstream.answers.append(
        completion({"content": '{"name": "Ada", "age": 36}', "tool_calls": calls})
    )
    parsed = await router.chat.completions.parse(
        model="chat", messages=HI, tools=[WEATHER], response_format=Person
    )
    message = parsed.choices[0].message
    assert message.parsed == Person(name="Ada", age=36)
    assert message.tool_calls[0].function.parsed_arguments == GetWeather(city="Oslo", unit="f")  # type: ignore[union-attr,index]


async def test_arguments_that_do_not_fit_the_tool_fail_as_in_the_sdk(
    router: AsyncRouter, upstream: Upstream
) -> None:
    from pydantic import ValidationError

    calls = [call(0, "GetWeather", '{"city": "Paris"}')]  # no unit
    upstream.answers.append(completion({"content": None, "tool_calls": calls}, "tool_calls"))
    with pytest.raises(ValidationError):
        await router.chat.completions.parse(model="chat", messages=HI, tools=[WEATHER])


@pytest.mark.parametrize(
    ("finish", "ours", "theirs"),
    [
        ("length", llmroute.LengthFinishReasonError, openai.LengthFinishReasonError),
        (
            "content_filter",
            llmroute.ContentFilterFinishReasonError,
            openai.ContentFilterFinishReasonError,
        ),
    ],
)
async def test_finish_reasons_that_leave_nothing_to_parse(
    router: AsyncRouter,
    upstream: Upstream,
    finish: str,
    ours: type[llmroute.LLMRouteError],
    theirs: type[openai.OpenAIError],
) -> None:
    answer = completion({"content": '{"name": "Ad'}, finish)
    upstream.answers += [answer, answer]
    with pytest.raises(ours) as caught:
        await router.chat.completions.parse(model="chat", messages=HI, response_format=Person)
    with pytest.raises(theirs) as expected:
        parse_chat_completion(
            response_format=Person,
            input_tools=openai.omit,
            chat_completion=SdkCompletion.model_validate(answer),
        )
    assert str(caught.value).partition(" - ")[0] == str(expected.value).partition(" - ")[0]
    error = caught.value
    assert error.completion.choices[0].finish_reason == finish  # type: ignore[attr-defined]
    assert error.completion.llmroute.provider == "a"  # type: ignore[attr-defined]
    # without a response format too, as the SDK's parse()
    with pytest.raises(ours):
        await router.chat.completions.parse(model="chat", messages=HI)
    converted = llmroute.to_openai_error(error)
    assert type(converted) is theirs
    assert isinstance(converted.completion, SdkCompletion)  # type: ignore[attr-defined]
    assert converted.completion.choices[0].finish_reason == finish  # type: ignore[attr-defined]
    with pytest.raises(theirs), llmroute.openai_errors():
        raise error


def test_the_blocking_router_parses_tools(upstream: Upstream) -> None:
    calls = [call(0, "GetWeather", '{"city": "Rome", "unit": "c"}')]
    upstream.answers.append(completion({"content": None, "tool_calls": calls}, "tool_calls"))
    transport = HandlerTransport(upstream.handle)
    with Router(config(), transports={"a": transport}) as router:
        parsed = router.chat.completions.parse(model="chat", messages=HI, tools=[WEATHER])
    function = parsed.choices[0].message.tool_calls[0].function  # type: ignore[index,union-attr]
    assert function.parsed_arguments == GetWeather(city="Rome", unit="c")  # type: ignore[union-attr]


# ---------------------------------------------------------------- the stream helper


def chunk(*choices: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o", "choices": list(choices),
    }  # fmt: skip


def choice(
    index: int = 0, finish: str | None = None, logprobs: Any = None, **delta: Any
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}


def lp(*tokens: str) -> list[dict[str, Any]]:
    return [
        {"token": t, "logprob": -0.5, "bytes": list(t.encode()),
         "top_logprobs": [{"token": t, "logprob": -0.5, "bytes": None}]}
        for t in tokens
    ]  # fmt: skip


def fragment(index: int, name: str | None, arguments: str) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    head: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
        head = {"id": f"call_{index}", "type": "function"}
    return {"index": index, **head, "function": function}


SCRIPTS: dict[str, tuple[list[dict[str, Any]], Any, list[Any]]] = {
    "content, parsed, with logprobs": (
        [
            chunk(choice(role="assistant", content="", logprobs={"content": [], "refusal": None})),
            chunk(choice(content='{"name": ', logprobs={"content": lp('{"', "name", '": ')})),
            chunk(choice(content='"Ada", "age": 36}', logprobs={"content": lp('"Ada"', "36}")})),
            chunk(choice(finish="stop")),
        ],
        Person, [],
    ),
    "a refusal with logprobs": (
        [
            chunk(choice(role="assistant", refusal="I can", logprobs={"content": None, "refusal": lp("I", " can")})),
            chunk(choice(refusal="not.", logprobs={"content": None, "refusal": lp("not.")})),
            chunk(choice(finish="stop")),
        ],
        Person, [],
    ),
    "text, then three tool calls": (
        [
            chunk(choice(role="assistant", content="Checking.")),
            chunk(choice(tool_calls=[fragment(0, "GetWeather", '{"city": "Pa')])),
            chunk(choice(tool_calls=[fragment(0, None, 'ris", "unit": "c"}')])),
            chunk(choice(tool_calls=[fragment(1, "lookup", '{"q": "umbrella"}')])),
            chunk(choice(tool_calls=[fragment(2, "loose", '{"x": 1}')])),
            chunk(choice(finish="tool_calls")),
        ],
        None, [WEATHER, STRICT, LOOSE],
    ),
    "two choices interleaved": (
        [
            chunk(choice(0, role="assistant", content="One"), choice(1, role="assistant", content="Two")),
            chunk(choice(1, content=" more", logprobs={"content": lp(" more")})),
            chunk(choice(0, finish="stop"), choice(1, finish="stop")),
        ],
        None, [],
    ),
    "cut at the token limit, nothing to parse": (
        [chunk(choice(role="assistant", content="Hel")), chunk(choice(finish="length"))],
        None, [],
    ),
    # (OpenAI's first chunk has the role and no content: the SDK's state only opens its
    # snapshot with the first chunk, parsing nothing of it, where llmroute parses it too)
    "cut at the token limit, a format to parse": (
        [
            chunk(choice(role="assistant", content="")),
            chunk(choice(content='{"na')),
            chunk(choice(finish="length")),
        ],
        Person, [],
    ),
    "stopped by the content filter, a strict tool": (
        [
            chunk(choice(role="assistant", content=None)),
            chunk(choice(tool_calls=[fragment(0, "lookup", '{"q": ')])),
            chunk(choice(finish="content_filter")),
        ],
        None, [STRICT],
    ),
}  # fmt: skip


def _value(value: Any) -> Any:
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, openai.BaseModel | llmroute.ChatCompletion) or (
        isinstance(value, BaseModel) and type(value).__module__.startswith(("openai", "llmroute"))
    ):
        return value.model_dump(exclude_unset=True)
    return value


def described(event: Any) -> tuple[Any, ...]:
    """An event's type and fields (a chunk event's: its chunk's choices), comparable across
    the SDK's events and llmroute's."""
    fields = {
        name: _value(getattr(event, name))
        for name in ("delta", "snapshot", "parsed", "content", "refusal", "name", "index",
                     "arguments", "parsed_arguments", "arguments_delta")
        if hasattr(event, name) and not (event.type == "chunk" and name == "snapshot")
    }  # fmt: skip
    if event.type == "chunk":
        return ("chunk", len(event.chunk.choices))
    return (event.type, json.dumps(fields, sort_keys=True, default=repr))


def sdk_events(
    chunks: list[dict[str, Any]], response_format: Any, tools: list[Any]
) -> Iterator[Any]:
    state = ChatCompletionStreamState(
        input_tools=tools or openai.omit, response_format=response_format or openai.omit
    )
    for raw in chunks:
        for event in state.handle_chunk(SdkChunk.model_validate(raw)):
            yield described(event)  # described now: the SDK's snapshots grow in place
    message = state.get_final_completion().choices[0].message
    yield ("final", message.to_dict(warnings=False), message.parsed)


async def our_events(
    router: AsyncRouter,
    upstream: Upstream,
    script: tuple[list[dict[str, Any]], Any, list[Any]],
    out: list[Any],
) -> None:
    """The router's events for `script`, described into `out` as they come."""
    chunks, response_format, tools = script
    upstream.answers.append(chunks)
    params: dict[str, Any] = {"model": "chat", "messages": HI}
    if response_format is not None:
        params["response_format"] = response_format
    if tools:
        params["tools"] = tools
    async with router.chat.completions.stream(**params) as stream:
        async for event in stream:
            out.append(described(event))
        final = await stream.get_final_completion()
    message = final.choices[0].message
    out.append(("final", message.to_dict(), message.parsed))


def _run(produce: Any) -> tuple[list[Any], BaseException | None]:
    events: list[Any] = []
    try:
        for event in produce:
            events.append(event)
    except (openai.OpenAIError, llmroute.LLMRouteError) as exc:
        return events, exc
    return events, None


@pytest.mark.parametrize("name", list(SCRIPTS))
async def test_the_stream_helper_emits_what_the_sdk_emits(
    router: AsyncRouter, upstream: Upstream, name: str
) -> None:
    chunks, response_format, tools = SCRIPTS[name]
    expected, their_error = _run(sdk_events(chunks, response_format, tools))
    got: list[Any] = []
    our_error: BaseException | None = None
    try:
        await our_events(router, upstream, SCRIPTS[name], got)
    except llmroute.LLMRouteError as exc:
        our_error = exc
    assert _comparable(got) == _comparable(expected)
    assert type(our_error).__name__ == type(their_error).__name__, our_error
    if their_error is not None:
        assert getattr(our_error, "completion", None) is not None
    kinds = {event[0] for event in expected}
    if name == "content, parsed, with logprobs":
        assert {"logprobs.content.delta", "logprobs.content.done"} <= kinds
    if name == "a refusal with logprobs":
        assert {"logprobs.refusal.delta", "logprobs.refusal.done"} <= kinds


def _comparable(events: list[Any]) -> list[Any]:
    """The events but chunk events (the router may deliver a content-less opening chunk
    together with the next), and the final message without the keys only one side has."""
    out = []
    for event in events:
        if event[0] == "final":
            message = {k: v for k, v in event[1].items() if v is not None}
            for tool_call in message.get("tool_calls") or ():
                tool_call.pop("index", None)  # the SDK's accumulation leaves it there
            out.append(("final", json.dumps(message, sort_keys=True, default=repr), event[2]))
        elif event[0] != "chunk":
            out.append(event)
    return out


async def test_logprobs_events_are_typed_like_the_sdks(
    router: AsyncRouter, upstream: Upstream
) -> None:
    chunks, _, _ = SCRIPTS["content, parsed, with logprobs"]
    upstream.answers.append(chunks)
    async with router.chat.completions.stream(model="chat", messages=HI) as stream:
        events = [e async for e in stream]
    deltas = [e for e in events if e.type == "logprobs.content.delta"]
    assert [t.token for t in deltas[0].content] == ['{"', "name", '": ']  # type: ignore[union-attr]
    assert [t.token for t in deltas[1].snapshot] == ['{"', "name", '": ', '"Ada"', "36}"]  # type: ignore[union-attr]
    assert deltas[0].content[0].top_logprobs[0].logprob == -0.5  # type: ignore[union-attr]
    done = next(e for e in events if e.type == "logprobs.content.done")
    assert len(done.content) == 5  # type: ignore[union-attr]


def test_the_blocking_stream_helper_raises_as_the_sdk(upstream: Upstream) -> None:
    chunks, _, tools = SCRIPTS["stopped by the content filter, a strict tool"]
    upstream.answers.append(chunks)
    transport = HandlerTransport(upstream.handle)

    def read_all(router: Router) -> None:
        with router.chat.completions.stream(model="chat", messages=HI, tools=tools) as stream:
            for _ in stream:
                pass

    with (
        Router(config(), transports={"a": transport}) as router,
        pytest.raises(llmroute.ContentFilterFinishReasonError) as caught,
    ):
        read_all(router)
    assert caught.value.completion is not None
    assert caught.value.completion.choices[0].finish_reason == "content_filter"

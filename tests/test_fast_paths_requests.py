"""Oracle tests of the fast paths that build a chat request and its body (docs/performance.md):
`plain_chat_request`, `create_from_body`, the plain call of `create`, the chat body and
`plain_messages_json`, each against the plain way it replaces."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmroute._async_resources import AsyncCompletions
from llmroute._client_options import RouterState
from llmroute._errors import RequestError
from llmroute._plain_chat import PlainChat, plain_chat, plain_messages_json
from llmroute._request import (
    DEFAULT_OPTIONS,
    ChatRequest,
    RequestOptions,
    plain_chat_request,
    validate_chat_request,
)
from llmroute._types import validator
from llmroute.providers.configs import OpenAIProviderConfig
from llmroute.providers.openai import OpenAIAdapter

_TEXT = st.text(max_size=8)

# ---------------------------------------------------------------- a plain chat request

_ROLE = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "User"])
_MESSAGE_CONTENT = st.one_of(
    _TEXT,
    st.none(),
    st.integers(),
    st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _TEXT}), max_size=1),
)
_PLAIN_MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": _ROLE, "content": _MESSAGE_CONTENT},
        optional={"name": _TEXT, "tool_call_id": _TEXT},
    ),
    st.fixed_dictionaries({"content": _TEXT}, optional={"role": st.lists(_ROLE, max_size=1)}),
    st.none(),
    _TEXT,
)
#: Requests near the plain shape: one thing off at most, usually.
_NEAR_PLAIN = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["chat", "", "a", "up/gpt"]),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
                    "content": st.one_of(_TEXT, _TEXT, st.none(), st.integers()),
                },
                optional={"name": _TEXT},
            ),
            max_size=3,
        ),
    },
    optional={"stream": st.one_of(st.booleans(), st.none(), st.integers(0, 1))},
)
_ANY_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.just("chat"), _TEXT, st.none(), st.integers()),
        "messages": st.one_of(
            st.lists(_PLAIN_MESSAGE, max_size=3), st.none(), _TEXT, st.tuples(_PLAIN_MESSAGE)
        ),
        "stream": st.one_of(st.booleans(), st.none(), st.integers(0, 1), st.just("true")),
        "temperature": st.floats(0, 3),
        "verbosity": _TEXT,  # not a chat field: an extra
    },
)
_CHAT_PARAMS = st.one_of(_NEAR_PLAIN, _ANY_PARAMS)


def _same_request(built: ChatRequest | PlainChat, validated: ChatRequest) -> None:
    if isinstance(built, PlainChat):  # a plain request kept as its parameters: typed alike
        json = built.messages_json()
        built = built.typed()
        assert json == plain_messages_json(built)  # and its body's messages written alike
    assert type(built) is ChatRequest and built == validated
    assert built.model_fields_set == validated.model_fields_set
    assert built.model_extra == validated.model_extra
    assert list(built.__dict__) == list(validated.__dict__)
    for mine, theirs in zip(built.messages, validated.messages, strict=True):
        assert type(mine) is type(theirs) and mine == theirs
        assert mine.model_fields_set == theirs.model_fields_set
        assert mine.model_extra == theirs.model_extra
    dumped = built.model_dump_json(exclude_unset=True)
    assert dumped == validated.model_dump_json(exclude_unset=True)


@settings(max_examples=400, deadline=None)
@given(params=_CHAT_PARAMS)
def test_a_plain_chat_request_is_what_validation_makes(params: dict[str, Any]) -> None:
    """`plain_chat_request` (`_request.py`): what it builds is what validation makes, and
    it builds nothing validation would refuse."""
    built = plain_chat_request(params)
    try:
        validated = validator(ChatRequest).validate_python(params)
    except ValidationError:
        assert built is None
        return
    if built is not None:
        _same_request(built, validated)


@pytest.mark.parametrize("stream", [None, True, False])
def test_a_plain_chat_request_is_built_without_validation(stream: bool | None) -> None:
    """The fast path is taken for the plain requests it is for (and `validate_chat_request`
    takes it)."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": ""},
        {"role": "user", "content": "Say hello in one short sentence. é"},
    ]
    params: dict[str, Any] = {"model": "chat", "messages": messages}
    if stream is not None:
        params["stream"] = stream
    built = plain_chat_request(params)
    assert built is not None
    _same_request(built, validator(ChatRequest).validate_python(params))
    _same_request(validate_chat_request(params), built)
    assert plain_chat_request({**params, "temperature": 1.0}) is None  # validated


class _Recording:
    """An executor that records what reaches it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.wire: list[bool] = []

    async def _done(self) -> None:
        return None

    def chat(self, *args: Any) -> Any:
        self.calls.append(args)
        return self._done()

    def chat_relay(self, *args: Any) -> Any:
        self.calls.append(args)
        self.wire.append(True)  # to be relayed: not part of the request
        return self._done()

    def chat_params(self, params: dict[str, Any], *args: Any) -> Any:
        # what a pipeline with nothing around its requests does
        return self.chat(plain_chat(params) or validate_chat_request(params), *args)

    def relay_params(self, params: dict[str, Any], *args: Any) -> Any:
        return self.chat_relay(plain_chat(params) or validate_chat_request(params), *args)

    def chat_stream(self, *args: Any, wire: bool = False) -> Any:
        self.calls.append(("stream", *args))
        self.wire.append(wire)  # how the stream will be read: not part of the request
        return self._done()


def _reached(call: Any, wire: list[bool] | None = None) -> tuple[Any, ...]:
    """What a call gave the executor, or the error it raised instead (`wire` gets how a
    stream was to be read)."""
    recording = _Recording()
    completions = AsyncCompletions(recording, RouterState())  # type: ignore[arg-type]
    try:
        asyncio.run(call(completions))
    except RequestError as exc:
        return ("error", str(exc), exc.param)
    assert len(recording.calls) == 1
    if wire is not None:
        wire.extend(recording.wire)
    return recording.calls[0]


_BODY = st.one_of(
    _CHAT_PARAMS,
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.one_of(st.none(), st.just("chat")),
            "messages": st.one_of(st.none(), st.just([{"role": "user", "content": "hi"}])),
            "max_tokens": st.one_of(st.none(), st.integers(-1, 9), st.just(2.0)),
            "timeout": st.floats(0, 9),  # an API parameter in a body, not the client's
            "extra_headers": st.dictionaries(_TEXT, _TEXT, max_size=1),
            "user": st.one_of(st.none(), _TEXT),
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(body=_BODY, stream=st.booleans(), relay=st.booleans())
def test_a_body_reaches_the_pipeline_as_create_sends_it(
    body: dict[str, Any], stream: bool, relay: bool
) -> None:
    """`AsyncCompletions.create_from_body`, `relay_from_body` (the gateway's way in) and,
    for a stream (its body's `stream` taken out), `stream_from_body` give the pipeline
    what ``create()`` gives it for the same body, or raise what it raises."""
    options = RequestOptions(user="u")
    if stream:
        body = {k: v for k, v in body.items() if k != "stream"}

    async def plain(completions: AsyncCompletions) -> None:
        rest = dict(body)
        model, messages = rest.pop("model", None), rest.pop("messages", None)
        streamed = {"stream": True} if stream else {}
        await completions.create(
            model=model, messages=messages, extra_body=rest, llmroute=options, **streamed
        )

    async def direct(completions: AsyncCompletions) -> None:
        if stream:
            await completions.stream_from_body(dict(body), options)
        elif relay:
            await completions.relay_from_body(dict(body), options)
        else:
            await completions.create_from_body(dict(body), options)

    create_wire: list[bool] = []
    body_wire: list[bool] = []
    expected, got = _reached(plain, create_wire), _reached(direct, body_wire)
    if expected[0] == "error":
        assert got == expected
        return
    if stream:  # the pipeline's stream entry: its calls are marked
        assert got[0] == expected[0] == "stream"
        expected, got = expected[1:], got[1:]
        assert got[0].stream is True
        # the gateway relays what it asks for as wire events; a caller of create() reads typed
        assert body_wire == [True] and create_wire == [False]
    else:
        assert body_wire == ([True] if relay else []) and create_wire == []
    _same_request(got[0], expected[0])
    assert got[1:] == expected[1:]


_CALL = st.one_of(_NEAR_PLAIN, _ANY_PARAMS).map(
    lambda params: {k: v for k, v in params.items() if k != "stream"}  # given on its own
)


@settings(max_examples=300, deadline=None)
@given(params=_CALL, stream=st.one_of(st.none(), st.booleans(), st.just(0)))
def test_a_plain_call_reaches_the_pipeline_as_the_general_path_sends_it(
    params: dict[str, Any], stream: bool | None
) -> None:
    """``create(model=..., messages=...)`` (perhaps with `stream`) skips the client
    arguments' split: the pipeline gets what the general path gives it (an empty
    `extra_body` sends the same call down that path), or the same error."""

    async def fast(completions: AsyncCompletions) -> None:
        await completions.create(**dict(params), stream=stream)  # type: ignore[call-overload]

    async def general(completions: AsyncCompletions) -> None:
        await completions.create(**dict(params), stream=stream, extra_body={})  # type: ignore[call-overload]

    expected, got = _reached(general), _reached(fast)
    if expected[0] == "error":
        assert got == expected
        return
    assert (got[0] == "stream") is (expected[0] == "stream")  # streamed or not
    request, expected_request = got[-3], expected[-3]
    _same_request(request, expected_request)
    assert got[-2:] == expected[-2:]


@pytest.mark.parametrize("stream", [None, False, True])
def test_a_plain_call_takes_the_fast_path(stream: bool | None) -> None:
    """A call of a model and plain messages never reaches the client arguments' split; one
    with anything more does."""
    import llmroute._async_resources as resources

    def refused(params: dict[str, Any]) -> Any:
        raise AssertionError("the general path was taken")

    messages = [{"role": "user", "content": "hi"}]

    async def plain(completions: AsyncCompletions) -> None:
        await completions.create(model="chat", messages=messages, stream=stream)  # type: ignore[call-overload]

    async def more(completions: AsyncCompletions) -> None:
        await completions.create(model="chat", messages=messages, stream=stream, user="u")  # type: ignore[call-overload]

    with patch.object(resources, "split_client_params", refused):
        reached = _reached(plain)
        # kept as its parameters, but for a stream (typed for the stream's exchange)
        assert isinstance(reached[-3], ChatRequest if stream else PlainChat)
        assert reached[-2] is DEFAULT_OPTIONS
        with pytest.raises(AssertionError, match="general path"):
            _reached(more)


# ---------------------------------------------------------------- the chat body

_WORDS = st.text(max_size=12)
_MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer"]),
                           "content": _WORDS}),
    st.fixed_dictionaries(
        {"role": st.just("user"),
         "content": st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _WORDS})
                             | st.just({"type": "image_url", "image_url": {"url": "https://x"}}),
                             min_size=1, max_size=2)},
        optional={"name": _WORDS},
    ),
)  # fmt: skip
_PARAMS = st.fixed_dictionaries(
    {"model": st.just("chat"), "messages": st.lists(_MESSAGE, min_size=1, max_size=3)},
    optional={
        "stream": st.booleans() | st.none(),
        "stream_options": st.none() | st.fixed_dictionaries(
            {}, optional={"include_usage": st.booleans(), "include_obfuscation": st.booleans()}
        ),
        "temperature": st.none() | st.integers(0, 2) | st.floats(0, 2),
        "max_tokens": st.integers(1, 10_000),
        "stop": st.none() | _WORDS | st.lists(_WORDS, max_size=2),
        "metadata": st.dictionaries(_WORDS, _WORDS, max_size=2),
        "anthropic": st.fixed_dictionaries({"thinking": st.just({"type": "enabled"})}),
        "gemini": st.just({"safety_settings": []}),
        "my_extra": st.none() | st.integers() | st.lists(_WORDS, max_size=2),
    },
)  # fmt: skip


def _dumped_body(request: Any, model: str, stream: bool, stream_usage: bool) -> dict[str, Any]:
    """The body as it was written before the fast path: the dumped request, changed."""
    body: dict[str, Any] = request.model_dump(exclude_unset=True)
    body["model"] = model
    for key in ("anthropic", "gemini", "bedrock"):
        body.pop(key, None)
    if stream:
        body["stream"] = True
        options = dict(body.get("stream_options") or {})
        if stream_usage:
            options["include_usage"] = True
        else:
            options.pop("include_usage", None)
        if options:
            body["stream_options"] = options
        else:
            body.pop("stream_options", None)
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=_PARAMS,
    stream=st.booleans(),
    stream_usage=st.booleans(),
    models=st.lists(
        st.sampled_from(["up-model", "other", "", 'mødel "2"']), min_size=1, max_size=3
    ),
)
def test_the_chat_body_is_the_dumped_request_with_its_changes(
    params: dict[str, Any], stream: bool, stream_usage: bool, models: list[str]
) -> None:
    """`OpenAIAdapter.chat_request` writes the request with its serializer: the same JSON
    as the dumped request with the target's model, this call's stream and stream options,
    and without other vendors' options; one adapter asked for one model after another
    (it keeps the body's head for the last one) names each."""
    config = OpenAIProviderConfig(type="openai", api_key="k", stream_usage=stream_usage)
    adapter = OpenAIAdapter("up", config)
    request = validate_chat_request(params)
    for model in models:
        sent = adapter.chat_request(request, model, stream=stream)
        assert sent.body is not None
        assert json.loads(sent.body) == _dumped_body(request, model, stream, stream_usage)
        assert next(iter(json.loads(sent.body))) == "model"


def test_an_infinite_float_in_a_chat_body_is_written_as_before() -> None:
    """Written as `to_json` of the dumped request wrote it (``Infinity``, which the
    provider refuses), not quietly as ``null``."""
    adapter = OpenAIAdapter("up", OpenAIProviderConfig(type="openai", api_key="k"))
    request = validate_chat_request(
        {"model": "chat", "messages": [{"role": "user", "content": "hi"}],
         "logit_bias": {"1": float("inf")}, "my_extra": float("nan")}
    )  # fmt: skip
    body = adapter.chat_request(request, "up-model", stream=False).body
    assert body is not None
    assert b'"logit_bias":{"1":Infinity}' in body
    assert b'"my_extra":NaN' in body


_CHANGES = st.one_of(
    st.just({}),
    st.fixed_dictionaries({}, optional={"temperature": st.floats(0, 2), "user": _WORDS}),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.one_of(_NEAR_PLAIN, _PARAMS), changes=_CHANGES, name=st.none() | _WORDS)
def test_a_plain_body_is_what_the_serializer_writes(
    params: dict[str, Any], changes: dict[str, Any], name: str | None
) -> None:
    """`plain_messages_json` (`_plain_chat.py`) writes what the request's serializer writes
    (unset fields left out; model, stream and stream options excluded), byte for byte, or
    declines; it declines once a stage sets another field or a message's name."""
    try:
        validated = validator(ChatRequest).validate_python(params)
    except ValidationError:
        return
    built = plain_chat_request(params)
    if built is not None:  # the requests the fast path is for: it takes them
        assert plain_messages_json(built) is not None
    variants = [validated, *([built] if built is not None else [])]
    if changes:
        variants.append(validated.model_copy(update=changes))
    named = validated.model_copy(deep=True)
    named.messages[0].name = name
    extended = validated.model_copy(deep=True)  # extras written into their dicts directly
    assert extended.model_extra is not None
    extended.model_extra["my_extra"] = name
    extended_message = validated.model_copy(deep=True)
    assert extended_message.messages[-1].model_extra is not None
    extended_message.messages[-1].model_extra["my_extra"] = name
    variants += [named, extended, extended_message]
    for request in variants:
        fast = plain_messages_json(request)
        whole = ChatRequest.__pydantic_serializer__.to_json(
            request, exclude_unset=True, exclude={"model", "stream", "stream_options"}
        )
        if fast is not None:
            assert fast == whole
            assert not request.model_extra
    assert plain_messages_json(named) is None
    assert plain_messages_json(extended) is None
    assert plain_messages_json(extended_message) is None
    if changes:
        assert plain_messages_json(variants[-4]) is None

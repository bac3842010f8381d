"""Oracle tests of `PlainChat` (`_plain_chat.py`, docs/performance.md): a plain chat request
kept as its parameters is typed as validation types it, its body is the typed request's,
the caller's later changes do not reach it, and whatever may change or read the typed
request (a stage, selection, another adapter) gets it."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmroute
from _wire import Wire
from llmroute import AsyncRouter
from llmroute._plain_chat import PlainChat, plain_chat, plain_messages_json
from llmroute._request import ChatRequest, plain_chat_request
from llmroute.providers import ExtraRequest
from llmroute.providers.azure import AzureAdapter
from llmroute.providers.configs import AzureProviderConfig, OpenAIProviderConfig
from llmroute.providers.openai import OpenAIAdapter

pytestmark = pytest.mark.anyio

_TEXT = st.text(max_size=8)
_MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "User"]),
            "content": st.one_of(_TEXT, _TEXT, st.none(), st.integers()),
        },
        optional={"name": _TEXT},
    ),
    st.fixed_dictionaries({"content": _TEXT}, optional={"role": st.lists(_TEXT, max_size=1)}),
    st.none(),
    _TEXT,
)
_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.sampled_from(["chat", "", "up/gpt"]), st.none(), st.integers()),
        "messages": st.one_of(st.lists(_MESSAGE, max_size=3), st.none(), st.tuples(_MESSAGE)),
        "stream": st.one_of(st.booleans(), st.none(), st.integers(0, 1)),
        "temperature": st.floats(0, 2),
    },
)


@settings(max_examples=400, deadline=None)
@given(params=_PARAMS)
def test_a_plain_chat_is_what_validation_makes(params: dict[str, Any]) -> None:
    """`plain_chat` keeps exactly the requests `plain_chat_request` builds without
    validation; typed, it is that request, and its messages' JSON is what
    `plain_messages_json` writes for it (itself checked against the serializer)."""
    plain, built = plain_chat(params), plain_chat_request(params)
    assert (plain is None) is (built is None)
    if plain is None or built is None:
        return
    typed = plain.typed()
    assert typed is plain.typed()  # built once
    assert typed == built and typed.model_fields_set == built.model_fields_set
    assert typed.model_extra == built.model_extra
    for mine, theirs in zip(typed.messages, built.messages, strict=True):
        assert type(mine) is type(theirs) and mine == theirs
        assert mine.model_fields_set == theirs.model_fields_set
    assert plain.messages_json() == plain_messages_json(typed)
    assert plain.model == typed.model and plain.stream == params.get("stream")


def test_the_callers_later_changes_do_not_reach_it() -> None:
    """The messages are copied when the request is kept: changing the caller's list or
    dicts afterwards (another task, while the request is under way) changes nothing."""
    messages = [{"role": "user", "content": "hi"}]
    plain = plain_chat({"model": "chat", "messages": messages})
    assert plain is not None
    messages[0]["content"] = "changed"
    messages.append({"role": "user", "content": "more"})
    assert plain.messages_json() == b'{"messages":[{"role":"user","content":"hi"}]}'
    assert [m.content for m in plain.typed().messages] == ["hi"]


def _openai(**options: Any) -> OpenAIAdapter:
    config = OpenAIProviderConfig.model_validate(
        {"type": "openai", "base_url": "http://up/v1", "api_key": "k", **options}
    )
    return OpenAIAdapter("up", config)


def _azure(**options: Any) -> AzureAdapter:
    config = AzureProviderConfig.model_validate(
        {"type": "azure", "endpoint": "https://r.openai.azure.com/", "api_key": "k", **options}
    )
    return AzureAdapter("az", config)


@pytest.mark.parametrize(
    "adapter",
    [_openai(), _openai(headers={"x-a": "1"}), _azure(), _azure(api_version="2024-10-21")],
)
@pytest.mark.parametrize(
    "extra", [ExtraRequest(), ExtraRequest(headers={"X-B": "2"}, query={"q": "1"})]
)
@pytest.mark.parametrize("stream", [None, False])
def test_the_body_is_the_typed_requests(
    adapter: OpenAIAdapter | AzureAdapter, extra: ExtraRequest, stream: bool | None
) -> None:
    """An OpenAI-format adapter writes a plain request's HTTP request from its parameters:
    the same method, URL, headers and body as the typed request's."""
    params: dict[str, Any] = {
        "model": "chat",
        "messages": [
            {"role": "system", "content": 'Be "brief"\n'},
            {"role": "user", "content": "é"},
        ],
    }
    if stream is not None:
        params["stream"] = stream
    plain = plain_chat(params)
    assert plain is not None
    for model in ("gpt-4o", "other", "gpt-4o"):  # the body's head is kept per model
        fast = adapter.chat_request_plain(plain, model, extra=extra)
        typed = adapter.chat_request(plain.typed(), model, stream=False, extra=extra)
        assert (fast.method, fast.url, fast.headers, fast.body) == (
            typed.method, typed.url, typed.headers, typed.body,
        )  # fmt: skip


def test_an_adapter_that_writes_its_own_bodies_gets_the_typed_request() -> None:
    """A subclass of the OpenAI adapter that rewrites `chat_request` is not bypassed."""

    class Stamped(OpenAIAdapter):
        def chat_request(self, request: ChatRequest, model: str, **kwargs: Any) -> Any:
            http = super().chat_request(request, model, **kwargs)
            http.headers = {**http.headers, "x-stamped": request.model}
            return http

    config = OpenAIProviderConfig.model_validate({"type": "openai", "api_key": "k"})
    plain = plain_chat({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert plain is not None
    assert Stamped("up", config).chat_request_plain(plain, "m").headers["x-stamped"] == "chat"


#: Nothing recorded: the recorder, the one stage of a router, idle.
QUIET: dict[str, Any] = {"logging": {"store": None}, "telemetry": {"enabled": False}}


def _openai_route(*targets: dict[str, Any], **route: Any) -> dict[str, Any]:
    providers = {t["provider"]: {"type": "openai", "base_url": "http://up/v1", "api_key": "k"}
                 for t in targets}  # fmt: skip
    quiet = {key: route.pop(key) for key in list(route) if key in QUIET}
    return {"providers": providers, "routes": {"chat": {"targets": list(targets), **route}},
            **quiet}  # fmt: skip


async def test_a_router_with_idle_stages_never_types_it() -> None:
    """Through a router whose stages are idle, a plain call is sent from its parameters
    (nothing types it) and answered as a typed call is."""
    wire = Wire()
    config = _openai_route({"provider": "a", "model": "m"}, **QUIET)
    typed = patch.object(PlainChat, "typed", side_effect=AssertionError("typed"))
    async with AsyncRouter(config, transports={"a": wire.transport}) as router:
        with typed:
            reply = await router.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
    assert wire.requests == [{"model": "m", "messages": [{"role": "user", "content": "hi"}]}]
    assert reply.choices[0].message.content and reply.llmroute.target == "a/m"


async def test_a_retry_sends_what_the_caller_asked_for_then() -> None:
    """The caller changing its messages while the first attempt is under way does not
    change what the retry sends."""
    messages = [{"role": "user", "content": "hi"}]
    wire = Wire(script=[503, "ok"])

    async def handler(request: llmroute.HttpRequest) -> llmroute.HttpResponse:
        messages[0]["content"] = "changed"  # the caller's own list, mid-request
        return await wire.transport.send(request, llmroute.Timeouts(connect=1.0, read=None))

    retry = {"attempts": 2, "initial": 0.001, "max_delay": 0.002}
    config = _openai_route({"provider": "a", "model": "m"}, retry=retry)
    transport = llmroute.HandlerTransport(handler)
    async with AsyncRouter(config, transports={"a": transport}) as router:
        reply = await router.chat.completions.create(model="chat", messages=messages)
    assert [r["messages"][0]["content"] for r in wire.requests] == ["hi", "hi"]
    assert [a.kind for a in reply.llmroute.attempts] == ["first", "retry"]


class Redact(llmroute.Stage):
    """Changes the request in place before it is sent, as a guardrail stage may."""

    name = "redact"

    def idle(self) -> bool:
        return False

    async def before(self, ctx: llmroute.RequestContext) -> None:
        assert isinstance(ctx.request, ChatRequest)
        ctx.request.messages[0].content = "[redacted]"  # type: ignore[union-attr]


async def test_a_stage_that_changes_the_request_changes_what_is_sent() -> None:
    """A busy stage sees the request typed, and what it changes is what is sent."""
    wire = Wire()
    config = _openai_route({"provider": "a", "model": "m"})
    async with AsyncRouter(config, transports={"a": wire.transport}) as router:
        router.add_stage(Redact())
        await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "secret"}]
        )
    assert wire.requests[0]["messages"] == [{"role": "user", "content": "[redacted]"}]


async def test_selection_reads_a_plain_request_typed() -> None:
    """A target whose context window the request does not fit is skipped (selection
    estimates the plain request's tokens), and the next target still gets its body."""
    small, large = Wire(), Wire()
    config = _openai_route(
        {"provider": "small", "model": "m", "context_window": 5},
        {"provider": "large", "model": "m", "context_window": 100_000},
    )
    config.update(QUIET)
    transports = {"small": small.transport, "large": large.transport}
    text = "a fairly long question " * 10
    async with AsyncRouter(config, transports=transports) as router:
        reply = await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": text}]
        )
    assert small.requests == [] and reply.llmroute.target == "large/m"
    assert large.requests == [{"model": "m", "messages": [{"role": "user", "content": text}]}]


class Waking(llmroute.Stage):
    """Idle as a request starts, busy from then on (as a recorder whose OpenTelemetry
    SDK was configured meanwhile): counts the `after()` calls it gets."""

    name = "waking"

    def __init__(self) -> None:
        self.awake = False
        self.after_calls: list[str] = []

    def idle(self) -> bool:
        return not self.awake

    async def after(self, ctx: llmroute.RequestContext, outcome: llmroute.Outcome) -> None:
        self.after_calls.append(type(outcome.error).__name__)


async def test_a_request_begun_with_idle_stages_calls_no_after_however_it_ends() -> None:
    """`Stage.idle`: a non-streamed request that starts while every stage is idle calls no
    `after()`, failed or not, though a stage turns busy meanwhile; the next one does."""
    stage = Waking()
    wire = Wire(script=[400, "ok"])

    async def handler(request: llmroute.HttpRequest) -> llmroute.HttpResponse:
        stage.awake = True  # turns busy while the request is under way
        return await wire.transport.send(request, llmroute.Timeouts(connect=1.0, read=None))

    config = _openai_route({"provider": "a", "model": "m"}, **QUIET)
    async with AsyncRouter(config, transports={"a": llmroute.HandlerTransport(handler)}) as router:
        router.add_stage(stage)
        with pytest.raises(llmroute.InvalidRequest):
            await router.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        assert stage.after_calls == []
        await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
    assert stage.after_calls == ["NoneType"]

"""Oracle tests of the gateway's chat completions relayed as the provider's JSON
(`llmroute._wire_completion`, `AsyncCompletions.relay_from_body`).

A completion read as a `WireCompletion` must be one the typed model accepts as it is: the
client gets the same answer (but the nulls the typed model adds), the router the same
usage and service tier; anything the fast path declines takes the typed path, which
accepts or rejects it as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai.types.chat
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import from_json

from _gateway import USER, in_process_gateway
from _helpers import without_nulls
from _upstream import Upstream, completion_body
from llmroute import AsyncRouter
from llmroute._types import ChatCompletion, validator
from llmroute._wire_completion import WireCompletion, wire_completion
from llmroute.pipeline.exchange import RelayExchange

pytestmark = pytest.mark.anyio

_typed = validator(ChatCompletion)
_typed_json = ChatCompletion.__pydantic_serializer__.to_json
FIXTURES = Path(__file__).parent / "fixtures" / "openai"

# ---------------------------------------------------------------- one body

_text = st.one_of(st.none(), st.text(max_size=8))
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_count = st.one_of(st.integers(0, 10**6), st.none(), st.just("5"), st.just(2.0), st.booleans())


def _maybe(draw: st.DrawFn, value: Any, odd: st.SearchStrategy[Any] = _json) -> Any:
    """`value` mostly; now and then a value of any JSON type instead."""
    return value if draw(st.integers(0, 11)) else draw(odd)


def _extras(draw: st.DrawFn, into: dict[str, Any], names: list[str]) -> None:
    """Now and then a key of another name, or one of `names` (fields the typed model keeps
    as extras, or declares), with any JSON value."""
    if not draw(st.integers(0, 4)):
        into[draw(st.sampled_from([*names, "x_other"]))] = draw(_json)


@st.composite
def _completions(draw: st.DrawFn) -> dict[str, Any]:
    """Completion-like JSON objects: mostly plain answers, with a field changed, left out
    or added now and then (a wrong type, a tool call, usage details, an extra)."""
    message: dict[str, Any] = {"role": _maybe(draw, "assistant", st.sampled_from(["user", 1]))}
    for name in draw(st.lists(st.sampled_from(["content", "refusal"]), unique=True)):
        message[name] = _maybe(draw, draw(_text))
    if not draw(st.integers(0, 5)):
        message["tool_calls"] = draw(
            st.one_of(
                st.none(),
                st.just([{"id": "c", "type": "function",
                          "function": {"name": "f", "arguments": "{}"}}]),
                _json,
            )
        )  # fmt: skip
    _extras(draw, message, ["annotations", "audio", "function_call", "reasoning_summary"])
    choice: dict[str, Any] = {"index": _maybe(draw, 0, _count), "message": message}
    if draw(st.booleans()):
        choice["finish_reason"] = _maybe(draw, draw(st.sampled_from([None, "stop", "length"])))
    if draw(st.booleans()):
        choice["logprobs"] = draw(st.one_of(st.none(), _json))
    _extras(draw, choice, ["content_filter_results"])
    body: dict[str, Any] = {
        "id": _maybe(draw, "chatcmpl-1"),
        "object": _maybe(draw, "chat.completion", st.sampled_from(["chat.completion.chunk"])),
        "created": _maybe(draw, 1700000000, _count),
        "model": _maybe(draw, "gpt-x"),
        "choices": _maybe(draw, [choice] * draw(st.integers(0, 2))),
    }
    if draw(st.booleans()):
        usage: dict[str, Any] = {
            name: draw(st.integers(0, 10**6)) if draw(st.integers(0, 9)) else draw(_count)
            for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        }
        for details, names in (
            ("prompt_tokens_details", ["cached_tokens", "audio_tokens", "cache_write_tokens"]),
            ("completion_tokens_details", ["reasoning_tokens", "audio_tokens"]),
        ):
            if draw(st.booleans()):
                usage[details] = {name: draw(_count) for name in names if draw(st.booleans())}
        _extras(draw, usage, ["queue_time"])
        body["usage"] = _maybe(draw, usage)
    for name in ("system_fingerprint", "service_tier"):
        if draw(st.booleans()):
            body[name] = _maybe(draw, draw(st.sampled_from([None, "default", "flex"])))
    for name in draw(st.lists(st.sampled_from(list(body)), max_size=1)):
        del body[name]  # a required field left out, now and then
    _extras(draw, body, ["metadata", "moderation", "prompt_filter_results", "usage"])
    return body


def _written(body: dict[str, Any], draw: st.DrawFn) -> bytes:
    """`body` as a provider may write it: compact, spaced or indented."""
    style = draw(st.sampled_from([{"separators": (",", ":")}, {}, {"indent": 2}]))
    return json.dumps(body, **style).encode()


def _check(data: bytes) -> WireCompletion | None:
    """`wire_completion(data)` against the typed path: accepted only where the typed model
    accepts, and then the same answer to the client, usage and tier."""
    wire = wire_completion(data)
    try:
        typed: ChatCompletion | None = _typed.validate_json(data)
    except ValidationError:
        typed = None
    if wire is None:
        return None
    assert typed is not None, data
    sent = _typed_json(typed)
    assert without_nulls(from_json(data)) == without_nulls(from_json(sent)), data
    sdk = openai.types.chat.ChatCompletion  # read as the SDK reads an answer: leniently
    assert sdk.construct(**from_json(data)) == sdk.construct(**from_json(sent)), data
    typed_usage = typed.usage.normalised() if typed.usage is not None else None
    assert wire.usage() == typed_usage
    assert wire.service_tier == typed.service_tier
    assert wire.typed() == typed
    return wire


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_wire_completion_is_what_the_typed_path_makes(data: st.DataObject) -> None:
    _check(_written(data.draw(_completions()), data.draw))


def test_plain_answers_take_the_fast_path_and_others_do_not() -> None:
    # OpenAI's own answers (recorded): text, and text with every usage detail
    for name in ("chat_plain", "chat_usage_details"):
        wire = _check((FIXTURES / f"{name}.json").read_bytes())
        assert wire is not None, name
    details = wire_completion((FIXTURES / "chat_usage_details.json").read_bytes())
    assert details is not None and details.usage() is not None
    assert (details.usage().cache_read, details.usage().reasoning) == (1920, 576)
    assert details.service_tier == "flex"
    # a tool call, coercions the typed model would make, and bodies it refuses, decline
    assert wire_completion((FIXTURES / "chat_tool_calls.json").read_bytes()) is None
    plain = completion_body()
    for changed in (
        {"created": "1700000000"},
        {"created": 1.0},
        {"object": "chat.completion.chunk"},
        {"choices": None},
        {"usage": {"prompt_tokens": 1, "completion_tokens": "2", "total_tokens": 3}},
    ):
        assert _check(json.dumps({**plain, **changed}).encode()) is None, changed
    message = plain["choices"][0]["message"]
    for calls in (5, [], [{"id": "c", "type": "function", "function": {"name": "f"}}]):
        choice = {**plain["choices"][0], "message": {**message, "tool_calls": calls}}
        assert _check(json.dumps({**plain, "choices": [choice]}).encode()) is None, calls
    # not JSON, though pydantic reads them: the typed path writes them as null
    for odd in (b"Infinity", b"-Infinity", b"NaN"):
        body = json.dumps({**plain, "x_score": 1.5}).encode().replace(b"1.5", odd)
        assert _typed.validate_json(body) and _check(body) is None, odd
    assert wire_completion(b"not json") is None


def test_what_the_provider_wrote_reaches_the_client_as_it_wrote_it() -> None:
    """As a stream's chunks: a key written twice, and a number beyond a double's range,
    both JSON, are the provider's to send (the router reads the last of a key, as the
    typed path does; the typed path would write the number as null)."""
    body = json.dumps(completion_body()).encode()[:-1]
    twice = body + b', "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}'
    wire = wire_completion(twice)
    assert wire is not None and wire.data == twice
    assert wire.usage() == _typed.validate_json(twice).usage.normalised()  # type: ignore[union-attr]
    assert wire.usage().input == 9  # type: ignore[union-attr]
    huge = body + b', "x_score": 1e400}'
    wire = wire_completion(huge)
    assert wire is not None and wire.data == huge
    assert wire_completion(b'{"id": "x"}') is None


def test_the_relay_exchange_reads_typed_once_the_stages_need_it() -> None:
    from llmroute._client_options import NO_EXTRA
    from llmroute._request import DEFAULT_OPTIONS, validate_chat_request
    from llmroute.providers.configs import OpenAIProviderConfig
    from llmroute.providers.openai import OpenAIAdapter

    adapter = OpenAIAdapter("a", OpenAIProviderConfig(type="openai", api_key="k"))
    request = validate_chat_request({"model": "m", "messages": USER})
    exchange = RelayExchange(request, DEFAULT_OPTIONS, NO_EXTRA)
    body = json.dumps(completion_body()).encode()
    wire = exchange.parse(adapter, body, "m")
    assert isinstance(wire, WireCompletion)
    assert exchange.for_stages(wire) == _typed.validate_json(body)
    exchange.read_typed()
    typed = exchange.parse(adapter, body, "m")
    assert isinstance(typed, ChatCompletion) and exchange.for_stages(typed) is typed


# ---------------------------------------------------------------- through the gateway


def _config(upstream: Upstream, **more: Any) -> dict[str, Any]:
    return {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"}},
        "routes": {"chat": {"targets": ["up/up-model"]}},
        "logging": {"store": None},
        **more,
    }


def _answering(data: bytes) -> Any:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=data, content_type="application/json")

    return handler


async def test_the_gateway_relays_a_plain_answer_as_the_provider_wrote_it(
    upstream: Upstream,
) -> None:
    body = completion_body("Hi there")
    body["x_provider"] = {"queue_time": 0.01}  # a field llmroute does not know
    data = json.dumps(body, indent=3).encode()  # spaced and indented as the provider chose
    upstream.handler = _answering(data)
    async with in_process_gateway(_config(upstream)) as gateway, gateway.http() as http:
        response = await http.post(
            f"{gateway.base_url}/chat/completions", json={"model": "chat", "messages": USER}
        )
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["x-llmroute-provider"] == "up"
        assert gateway.router.stats()["up/up-model"].requests == 1


async def test_the_gateway_writes_a_tool_call_typed(upstream: Upstream) -> None:
    data = (FIXTURES / "chat_tool_calls.json").read_bytes()
    upstream.handler = _answering(data)
    async with in_process_gateway(_config(upstream)) as gateway, gateway.client() as client:
        completion = await client.chat.completions.with_raw_response.create(
            model="chat", messages=USER
        )
        sent = completion.http_response.content
        assert sent != data and sent == _typed_json(_typed.validate_json(data))
        calls = completion.parse().choices[0].message.tool_calls
        assert calls and calls[0].type == "function"


@pytest.mark.parametrize("stage", ["cache", "log", "log capturing"])
async def test_busy_stages_get_the_answer_typed_and_a_watching_log_leaves_it(
    upstream: Upstream, stage: str, tmp_path: Path
) -> None:
    """A cache stores the typed answer, and a log capturing content records it typed: the
    client gets the typed answer written out. A log that only watches (`Stage.watches`)
    records the answer's model and finish from its JSON: the client gets the provider's
    bytes."""
    data = json.dumps(completion_body("cached")).encode()
    upstream.handler = _answering(data)
    log = {"store": f"sqlite:///{tmp_path / 'log.db'}", "capture_content": stage != "log"}
    more: dict[str, Any] = {"cache": {}} if stage == "cache" else {"logging": log}
    router = AsyncRouter(_config(upstream, **more), env={})
    async with in_process_gateway({}, router=router) as gateway, gateway.http() as http:
        for _ in range(2):
            response = await http.post(
                f"{gateway.base_url}/chat/completions", json={"model": "chat", "messages": USER}
            )
            assert response.status_code == 200
            if stage == "log":
                assert response.content == data
            else:
                assert response.content == _typed_json(_typed.validate_json(data))
    if stage == "cache":
        assert len(upstream.requests) == 1  # the second came from the cache
    else:
        await router.aclose()
        from llmroute.observe import SqliteStore

        store = SqliteStore(str(tmp_path / "log.db"))
        try:
            records = store.records()
        finally:
            store.close()
        assert [(r.response_model, r.response_id, r.finish_reasons) for r in records] == [
            ("up-model", json.loads(data)["id"], ["stop"]),
            ("up-model", json.loads(data)["id"], ["stop"]),
        ]

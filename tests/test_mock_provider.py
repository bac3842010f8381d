"""The `mock` provider, driven through the public router API (async and blocking)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import statistics
import struct
from typing import Any

import pytest
from pydantic import ValidationError

import llmroute
from _helpers import HI
from llmroute.providers.configs import LatencySpec

pytestmark = pytest.mark.anyio

DEFAULT_TEXT = "Hello from the llmroute mock provider."
ONE_TRY = {"attempts": 1}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
TOOL_CALLS = [
    {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
    {"name": "noop", "arguments": '{"ok": true}'},
]


#: These tests look at the mock's own behaviour, one request at a time: health
#: tracking (circuits, Retry-After cooldowns) is kept out of the way here and
#: tested in test_reliability.py.
NO_HEALTH = {"min_requests": 1_000_000, "max_retry_after": 0.001}


def router(
    routes: dict[str, Any] | None = None, extra: dict[str, Any] | None = None, **mock: Any
) -> llmroute.AsyncRouter:
    """Mock provider `m` (plus `extra` providers); route `r` -> m/x tried once."""
    providers = {"m": {"type": "mock", **mock}, **(extra or {})}
    routes = routes or {"r": {"targets": ["m/x"], "retry": ONE_TRY}}
    config = {"providers": providers, "routes": routes, "health": NO_HEALTH}
    return llmroute.AsyncRouter(config, env={})


def two_targets(first: dict[str, Any], **route: Any) -> llmroute.AsyncRouter:
    """Route `r` over a/x then b/x, one round; `b` answers "from b"."""
    providers = {"a": {"type": "mock", **first}, "b": {"type": "mock", "text": "from b"}}
    routes = {"r": {"targets": ["a/x", "b/x"], "retry": ONE_TRY, **route}}
    return llmroute.AsyncRouter({"providers": providers, "routes": routes}, env={})


async def chat(r: llmroute.AsyncRouter, **params: Any) -> Any:
    return await r.chat.completions.create(**{"model": "r", "messages": HI, **params})


async def results(r: llmroute.AsyncRouter, n: int) -> list[Any]:
    """`n` requests in turn: each a ChatCompletion or the AllTargetsFailed it raised."""
    out: list[Any] = []
    for _ in range(n):
        try:
            out.append(await chat(r))
        except llmroute.AllTargetsFailed as exc:
            out.append(exc)
    return out


async def failure(r: llmroute.AsyncRouter) -> llmroute.AllTargetsFailed:
    with pytest.raises(llmroute.AllTargetsFailed) as info:
        await chat(r)
    return info.value


async def drain(stream: Any, into: list[Any]) -> None:
    async for chunk in stream:
        into.append(chunk)


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def kinds(info: llmroute.RouteInfo) -> list[tuple[str, str, str]]:
    return [(a.target, a.kind, a.outcome) for a in info.attempts]


# ---------------------------------------------------------------- answers


async def test_fixed_text_and_route_info() -> None:
    reply = await chat(router(text="Fixed answer."))
    assert (reply.object, reply.model) == ("chat.completion", "x")
    assert reply.choices[0].message.content == "Fixed answer."
    assert reply.choices[0].finish_reason == "stop"
    info = reply.llmroute
    assert (info.route, info.provider, info.target, info.model) == ("r", "m", "m/x", "x")
    assert kinds(info) == [("m/x", "first", "ok")]
    assert info.attempts[0].status == 200


async def test_implicit_mock_provider_answers_default_text() -> None:
    reply = await chat(llmroute.AsyncRouter(env={}), model="mock/anything")
    assert reply.choices[0].message.content == DEFAULT_TEXT
    assert (reply.llmroute.provider, reply.llmroute.target) == ("mock", "mock/anything")
    assert reply.llmroute.route is None


PARTS = [
    {"type": "text", "text": "part one, "},
    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    {"type": "text", "text": "part two"},
]


@pytest.mark.parametrize(
    ("content", "expected"),
    [("what is the time?", "what is the time?"), (PARTS, "part one, part two")],
)
async def test_echo_answers_last_user_message(content: Any, expected: str) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": content},
    ]
    reply = await chat(router(echo=True, text="ignored"), messages=messages)
    assert reply.choices[0].message.content == expected


async def test_echo_without_user_message_is_empty() -> None:
    reply = await chat(router(echo=True), messages=[{"role": "system", "content": "sys"}])
    assert reply.choices[0].message.content is None


async def test_scripted_text_overrides_configured_text() -> None:
    replies = await results(router(text="base", script=[{"text": "scripted"}]), 2)
    assert [r.choices[0].message.content for r in replies] == ["scripted", "base"]


# ---------------------------------------------------------------- latency


def now() -> float:
    """The event loop's time: on virtual time (the latency tests), exact."""
    return asyncio.get_running_loop().time()


@pytest.mark.virtual_time
async def test_fixed_latency_delays_the_answer() -> None:
    reply = await chat(router(latency="30ms"))
    assert now() == pytest.approx(0.03)
    assert reply.llmroute.latency_s == pytest.approx(0.03)
    assert reply.llmroute.attempts[0].latency_s == pytest.approx(0.03)


@pytest.mark.virtual_time
async def test_scripted_latency_overrides_provider_latency() -> None:
    r = router(script=[{"latency": "40ms"}])
    durations = []
    for _ in range(2):
        start = now()
        await chat(r)
        durations.append(now() - start)
    assert durations == [pytest.approx(0.04), 0.0]  # the script's, then none once it is spent


def test_latency_scalar_is_fixed() -> None:
    rng = random.Random(0)
    assert LatencySpec.model_validate("20ms").sample(rng) == pytest.approx(0.02)
    assert LatencySpec.model_validate(0.5).sample(rng) == 0.5
    assert LatencySpec().sample(rng) == 0.0


@pytest.mark.parametrize(
    ("spec", "centre", "expected"),
    [
        ({"distribution": "uniform", "min": "10ms", "max": "30ms"}, statistics.fmean, 0.02),
        ({"distribution": "lognormal", "median": "100ms", "sigma": 0.5}, statistics.median, 0.1),
        ({"distribution": "normal", "mean": 1, "stddev": 0.1}, statistics.fmean, 1.0),
        ({"distribution": "exponential", "mean": "200ms"}, statistics.fmean, 0.2),
    ],
)
def test_latency_distribution_centre(spec: dict[str, Any], centre: Any, expected: float) -> None:
    latency, rng = LatencySpec.model_validate(spec), random.Random(2)
    assert centre([latency.sample(rng) for _ in range(8000)]) == pytest.approx(expected, rel=0.05)


def test_latency_distribution_shapes() -> None:
    rng = random.Random(1)
    uniform = LatencySpec(distribution="uniform", min="10ms", max="30ms")
    samples = [uniform.sample(rng) for _ in range(2000)]
    assert all(0.01 <= s <= 0.03 for s in samples)
    assert (min(samples) < 0.0105, max(samples) > 0.0295) == (True, True)
    # log-normal: one sigma of the log above the median holds about 16% of samples
    lognormal = LatencySpec(distribution="lognormal", median="100ms", sigma=0.5)
    above = sum(lognormal.sample(rng) > 0.1 * math.exp(0.5) for _ in range(4000)) / 4000
    assert 0.13 < above < 0.19
    clipped = LatencySpec(distribution="normal", mean=0, stddev=1)
    samples = [clipped.sample(rng) for _ in range(4000)]
    assert min(samples) == 0.0
    assert 0.45 < samples.count(0.0) / len(samples) < 0.55
    assert LatencySpec(distribution="exponential").sample(rng) == 0.0
    assert LatencySpec(distribution="lognormal").sample(rng) == 0.0
    with pytest.raises(ValidationError, match="min <= max"):
        LatencySpec(distribution="uniform", min=2, max=1)


def test_latency_tail_share_and_factor() -> None:
    spec = LatencySpec(value=1, tail_rate=0.1, tail_factor=5)
    rng = random.Random(5)
    samples = [spec.sample(rng) for _ in range(5000)]
    assert set(samples) == {1.0, 5.0}
    assert 0.085 < samples.count(5.0) / len(samples) < 0.115


def test_latency_samples_are_reproducible_with_a_seed() -> None:
    spec = LatencySpec(distribution="lognormal", median=1, sigma=1)
    first, second = random.Random(9), random.Random(9)
    draws = [spec.sample(first) for _ in range(20)]
    assert draws == [spec.sample(second) for _ in range(20)]
    assert len(set(draws)) == 20


# ---------------------------------------------------------------- streams


@pytest.mark.virtual_time
async def test_stream_ttft_and_chunk_delay() -> None:
    r = router(text="a b c", ttft="40ms", chunk_delay="20ms", latency="1s")
    stream = await chat(r, stream=True)
    opened = now()
    chunks: list[Any] = []
    await drain(stream, chunks)
    # create() returns with the first content chunk, at ttft (not `latency`)
    assert opened == pytest.approx(0.04)
    assert stream.llmroute.ttft_s == pytest.approx(0.04)
    # then two more content chunks, the finish chunk and the usage chunk, each after a delay
    assert now() == pytest.approx(0.04 + 4 * 0.02)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices]
    assert [p for p in pieces if p] == ["a ", "b ", "c"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert stream.text == "a b c"
    assert stream.completed


@pytest.mark.virtual_time
async def test_stream_without_ttft_waits_latency() -> None:
    stream = await chat(router(latency="40ms"), stream=True)
    assert now() == pytest.approx(0.04)
    chunks: list[Any] = []
    await drain(stream, chunks)
    assert text_of(chunks) == DEFAULT_TEXT


@pytest.mark.parametrize("include_usage", [True, False])
async def test_stream_usage(include_usage: bool) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await chat(router(prompt_tokens=11, completion_tokens=7), stream=True, **options)
    chunks: list[Any] = []
    await drain(stream, chunks)
    with_usage = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert with_usage == [chunks[-1]]
        assert chunks[-1].choices == []
        usage = chunks[-1].usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)
    else:
        assert with_usage == []
    info = stream.llmroute.usage
    assert (info.input, info.output, info.estimated) == (11, 7, False)


async def test_stream_cut_after_content_raises_stream_interrupted() -> None:
    stream = await chat(router(text="one two three four", script=[{"cut_after": 2}]), stream=True)
    received: list[Any] = []
    with pytest.raises(llmroute.StreamInterrupted) as info:
        await drain(stream, received)
    assert info.value.partial == "one two "
    assert text_of(received) == stream.text == "one two "
    assert info.value.cause is not None
    assert info.value.__cause__ is info.value.cause
    assert not stream.completed
    assert stream.llmroute.attempts[-1].outcome == "error"
    assert all(c.choices[0].finish_reason is None for c in received)


@pytest.mark.parametrize(
    ("outcome", "error_type", "status"),
    [({"cut_after": 0}, "ProviderConnectionError", None), (503, "ProviderUnavailable", 503)],
)
async def test_stream_failure_before_content_fails_over(
    outcome: Any, error_type: str, status: int | None
) -> None:
    stream = await chat(two_targets({"script": [outcome]}), stream=True)
    chunks: list[Any] = []
    await drain(stream, chunks)
    assert text_of(chunks) == "from b"
    assert chunks[-1].choices[0].finish_reason == "stop"
    info = stream.llmroute
    assert info.provider == "b"
    assert kinds(info) == [("a/x", "first", "error"), ("b/x", "fallback", "ok")]
    assert (info.attempts[0].error_type, info.attempts[0].status) == (error_type, status)


async def test_non_stream_cut_is_a_connection_error() -> None:
    error = await failure(router(script=[{"cut_after": 1}]))
    assert isinstance(error.last_error, llmroute.ProviderConnectionError)
    assert error.attempts[0].error_type == "ProviderConnectionError"


# ---------------------------------------------------------------- failures


async def test_failure_rate_with_seed() -> None:
    first = await results(router(failure_rate=0.25, seed=7), 400)
    errors = [e for e in first if isinstance(e, llmroute.AllTargetsFailed)]
    assert 70 <= len(errors) <= 130
    assert all(isinstance(e.last_error, llmroute.ProviderUnavailable) for e in errors)
    assert {e.last_error.status for e in errors} == {503}
    assert {len(e.attempts) for e in errors} == {1}
    second = await results(router(failure_rate=0.25, seed=7), 400)
    failed = [isinstance(e, llmroute.AllTargetsFailed) for e in first]
    assert failed == [isinstance(e, llmroute.AllTargetsFailed) for e in second]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (503, llmroute.ProviderUnavailable),
        (429, llmroute.RateLimited),
        (500, llmroute.ProviderUnavailable),
    ],
)
async def test_failure_status(status: int, error_type: type[Exception]) -> None:
    errors = await results(router(failure_rate=1.0, failure_status=status), 3)
    assert [type(e.last_error) for e in errors] == [error_type] * 3
    assert [e.attempts[0].status for e in errors] == [status] * 3


async def test_scripted_sequence() -> None:
    r = router(script=[{"status": 429, "retry_after": 2}, 500, "drop", "ok"], text="fine")
    limited, server, dropped, *answers = await results(r, 5)
    assert isinstance(limited.last_error, llmroute.RateLimited)
    assert (limited.last_error.retry_after, limited.last_error.status) == (2.0, 429)
    assert limited.attempts[0].error_type == "RateLimited"
    assert isinstance(server.last_error, llmroute.ProviderUnavailable)
    assert (server.last_error.status, server.last_error.retry_after) == (500, None)
    assert isinstance(dropped.last_error, llmroute.ProviderConnectionError)
    assert dropped.attempts[0].status is None
    assert dropped.errors == (dropped.last_error,)
    # "ok", then the script has run out and the defaults apply
    assert [a.choices[0].message.content for a in answers] == ["fine", "fine"]


@pytest.mark.parametrize(
    ("repeat", "expected"),
    [
        (True, [False, True, False, True, False, True]),
        (False, [False, True, True, True, True, True]),
    ],
)
async def test_repeat_script(repeat: bool, expected: list[bool]) -> None:
    replies = await results(router(script=[500, "ok"], repeat_script=repeat), 6)
    assert [isinstance(r, llmroute.ChatCompletion) for r in replies] == expected


async def test_retry_on_same_target_records_kinds() -> None:
    retry = {"attempts": 2, "backoff": "constant", "initial": 0}
    reply = await chat(router({"r": {"targets": ["m/x"], "retry": retry}}, script=[503]))
    assert kinds(reply.llmroute) == [("m/x", "first", "error"), ("m/x", "retry", "ok")]
    assert [a.status for a in reply.llmroute.attempts] == [503, 200]


async def test_fallback_route_serves_when_primary_fails() -> None:
    routes = {
        "r": {"targets": ["m/x"], "retry": ONE_TRY, "fallbacks": ["backup"]},
        "backup": {"targets": ["q/y"]},
    }
    reply = await chat(router(routes, {"q": {"type": "mock", "text": "bk"}}, failure_rate=1.0))
    assert reply.choices[0].message.content == "bk"
    info = reply.llmroute
    assert (info.route, info.target, info.provider, info.model) == ("r", "q/y", "q", "y")
    assert kinds(info) == [("m/x", "first", "error"), ("q/y", "fallback", "ok")]


@pytest.mark.parametrize(
    ("outcome", "error_type"),
    [
        ({"status": 400}, llmroute.InvalidRequest),
        ({"status": 400, "code": "content_filter"}, llmroute.ContentFiltered),
    ],
)
async def test_fatal_errors_are_raised_directly(outcome: dict[str, Any], error_type: type) -> None:
    r = two_targets({"script": [outcome]}, retry={"attempts": 3})
    with pytest.raises(error_type) as info:
        await chat(r)
    assert not isinstance(info.value, llmroute.AllTargetsFailed)
    assert (info.value.provider, info.value.status) == ("a", 400)


@pytest.mark.parametrize(
    ("outcome", "error_name"),
    [
        (401, "AuthenticationError"),
        (403, "PermissionDenied"),
        (404, "ModelNotFound"),
        ({"status": 400, "code": "context_length_exceeded"}, "ContextLengthExceeded"),
        ({"status": 429, "retry_after": 0.01}, "RateLimited"),
        (502, "ProviderUnavailable"),
        ("drop", "ProviderConnectionError"),
    ],
)
async def test_non_fatal_errors_fail_over(outcome: Any, error_name: str) -> None:
    reply = await chat(two_targets({"script": [outcome]}))
    assert reply.choices[0].message.content == "from b"
    assert kinds(reply.llmroute) == [("a/x", "first", "error"), ("b/x", "fallback", "ok")]
    assert reply.llmroute.attempts[0].error_type == error_name


async def test_unknown_model_is_model_not_found_and_not_retried() -> None:
    retry = {"attempts": 3, "backoff": "constant", "initial": 0}
    r = router({"r": {"targets": ["m/other"], "retry": retry}}, models=["known"])
    ok = await chat(r, model="m/known")
    assert ok.choices[0].message.content == DEFAULT_TEXT
    error = await failure(r)
    assert isinstance(error.last_error, llmroute.ModelNotFound)
    assert (error.last_error.status, error.last_error.code) == (404, "model_not_found")
    assert "other" in str(error.last_error)
    assert len(error.attempts) == 1  # left out of later rounds
    with pytest.raises(llmroute.AllTargetsFailed) as info:
        await r.embeddings.create(model="m/other", input="x")
    assert isinstance(info.value.last_error, llmroute.ModelNotFound)


@pytest.mark.virtual_time
async def test_read_timeout() -> None:
    error = await failure(router(timeout="50ms", latency="200ms"))
    assert isinstance(error.last_error, llmroute.ProviderTimeout)
    assert error.attempts[0].error_type == "ProviderTimeout"
    assert now() == pytest.approx(0.05)  # the timeout, not the latency


# ---------------------------------------------------------------- tool calls


def check_tool_calls(calls: list[tuple[str, str, str]]) -> None:
    assert [(name, json.loads(arguments)) for _, name, arguments in calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("noop", {"ok": True}),
    ]
    assert len({call_id for call_id, _, _ in calls}) == 2
    assert all(call_id.startswith("call_") for call_id, _, _ in calls)


async def test_tool_calls_non_stream() -> None:
    reply = await chat(router(tool_calls=TOOL_CALLS), tools=TOOLS)
    choice = reply.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", None)
    calls = choice.message.tool_calls
    assert [c.type for c in calls] == ["function", "function"]
    check_tool_calls([(c.id, c.function.name, c.function.arguments) for c in calls])


async def test_tool_calls_stream_fragments_reassemble() -> None:
    stream = await chat(router(tool_calls=TOOL_CALLS), tools=TOOLS, stream=True)
    chunks: list[Any] = []
    await drain(stream, chunks)
    parts: dict[int, list[str]] = {}
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    for delta in deltas:
        part = parts.setdefault(delta.index, ["", "", ""])
        part[0] += delta.id or ""
        part[1] += delta.function.name or ""
        part[2] += delta.function.arguments or ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert len(deltas) > len(TOOL_CALLS)  # the arguments arrive in pieces
    check_tool_calls([(i, n, a) for _, (i, n, a) in sorted(parts.items())])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("params", [{"tools": TOOLS, "tool_choice": "none"}, {}])
async def test_no_tool_calls_when_not_offered_or_none(stream: bool, params: dict) -> None:
    result = await chat(router(tool_calls=TOOL_CALLS, text="plain"), stream=stream, **params)
    if stream:
        chunks: list[Any] = []
        await drain(result, chunks)
        assert [c for c in chunks if c.choices and c.choices[0].delta.tool_calls] == []
        assert (result.text, chunks[-1].choices[0].finish_reason) == ("plain", "stop")
    else:
        message = result.choices[0].message
        assert (message.tool_calls, message.content) == (None, "plain")
        assert result.choices[0].finish_reason == "stop"


# ---------------------------------------------------------------- usage


async def test_usage_fixed_by_config() -> None:
    reply = await chat(router(prompt_tokens=11, completion_tokens=7))
    usage = reply.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)
    info = reply.llmroute.usage
    assert (info.input, info.output, info.total, info.estimated) == (11, 7, 18, False)


async def test_usage_counted_from_text() -> None:
    r = router(text="twelve chars")
    short = await chat(r, messages=[{"role": "user", "content": "abcdefgh"}])
    long = await chat(r, messages=[{"role": "user", "content": "x" * 400}])
    # 3 per request + 4 per message + one per ~4 characters
    assert (short.usage.prompt_tokens, short.usage.completion_tokens) == (9, 3)
    assert (long.usage.prompt_tokens, long.usage.total_tokens) == (107, 110)


# ---------------------------------------------------------------- embeddings


async def test_embeddings_dimensions_and_determinism() -> None:
    result = await router().embeddings.create(model="m/emb", input=["abcd", "abcdefgh"])
    assert (result.object, result.model) == ("list", "emb")
    assert [d.index for d in result.data] == [0, 1]
    first, second = (d.embedding for d in result.data)
    assert len(first) == len(second) == 8
    assert sum(v * v for v in first) == pytest.approx(1.0)
    assert first != second
    again = await router(seed=3).embeddings.create(model="m/other", input="abcd")
    assert again.data[0].embedding == first  # the same text, the same vector
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (3, 3)
    assert result.llmroute.usage.input == 3


async def test_embeddings_dimension_settings() -> None:
    r = router(embedding_dimensions=4)
    configured = await r.embeddings.create(model="r", input="a")
    asked = await r.embeddings.create(model="r", input="a", dimensions=16)
    assert [len(configured.data[0].embedding), len(asked.data[0].embedding)] == [4, 16]


async def test_embeddings_base64_decodes_to_the_float_vector() -> None:
    r = router()
    floats = await r.embeddings.create(model="r", input="same text")
    encoded = await r.embeddings.create(model="r", input="same text", encoding_format="base64")
    raw = encoded.data[0].embedding
    assert isinstance(raw, str)
    decoded = struct.unpack("<8f", base64.b64decode(raw))
    assert list(decoded) == pytest.approx(floats.data[0].embedding, abs=1e-6)


# ---------------------------------------------------------------- the blocking Router


def test_blocking_router_chat_stream_and_embeddings() -> None:
    mock = {"type": "mock", "text": "sync one two", "script": ["ok", {"cut_after": 1}]}
    config = {"providers": {"m": mock}, "routes": {"r": {"targets": ["m/x"], "retry": ONE_TRY}}}
    with llmroute.Router(config, env={}) as r:
        reply = r.chat.completions.create(model="r", messages=HI)
        assert reply.choices[0].message.content == "sync one two"
        assert reply.llmroute.target == "m/x"
        stream = r.chat.completions.create(model="r", messages=HI, stream=True)
        with pytest.raises(llmroute.StreamInterrupted) as info:
            list(stream)
        assert info.value.partial == stream.text == "sync "
        assert len(r.embeddings.create(model="r", input=["a", "b"]).data) == 2


def test_blocking_router_raises_all_targets_failed() -> None:
    retry = {"attempts": 2, "backoff": "constant", "initial": 0}
    config = {
        "providers": {"m": {"type": "mock", "failure_rate": 1}},
        "routes": {"r": {"targets": ["m/x"], "retry": retry}},
    }
    with llmroute.Router(config, env={}) as r, pytest.raises(llmroute.AllTargetsFailed) as info:
        r.chat.completions.create(model="r", messages=HI)
    assert [type(e) for e in info.value.errors] == [llmroute.ProviderUnavailable] * 2
    assert [a.kind for a in info.value.attempts] == ["first", "retry"]

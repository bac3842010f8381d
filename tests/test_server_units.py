"""The gateway's parts on their own: key checks, config, header parsing, error mapping,
eager stream reads and metric labels."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from llmroute import (
    AllTargetsFailed,
    AuthenticationError,
    BudgetExceeded,
    ConfigError,
    ContextLengthExceeded,
    InvalidRequest,
    LLMRouteError,
    LocalRateLimitExceeded,
    ModelNotFound,
    ProviderConnectionError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestError,
    StreamInterrupted,
    UnknownModel,
)
from llmroute._config_load import load_config
from llmroute._types import AttemptInfo, RouteInfo, TokenUsage
from llmroute.server import keys as keys_module
from llmroute.server.config import GatewayKeyConfig, ServerConfig
from llmroute.server.errors import HTTPError, from_exception, sse_error_event
from llmroute.server.headers import control_options, header_value, route_headers
from llmroute.server.keys import ANONYMOUS, KeyStore, hash_key, new_key
from llmroute.server.metrics import GatewayMetrics

KEY = "a-perfectly-good-gateway-key"


# ---------------------------------------------------------------- config


def test_key_config_accepts_hashes_and_long_plain_keys() -> None:
    upper = "SHA256:" + "AB" * 32
    assert GatewayKeyConfig(name="k", key=upper).key.get_secret_value() == "sha256:" + "ab" * 32
    assert GatewayKeyConfig(name="k", key=KEY).hashed is False
    assert KEY not in repr(GatewayKeyConfig(name="k", key=KEY))
    with pytest.raises(ValueError, match="64 hexadecimal"):
        GatewayKeyConfig(name="k", key="sha256:1234")
    with pytest.raises(ValueError, match="at least 16"):
        GatewayKeyConfig(name="k", key="short")
    with pytest.raises(ValueError, match="name"):
        GatewayKeyConfig(name="has space", key=KEY)


def test_server_section_in_a_config() -> None:
    config = load_config(
        {"server": {"port": 9000, "max_body_size": "2MB", "body_timeout": "5s",
                    "keys": [{"name": "ci", "key": hash_key(KEY), "routes": ["chat"]}]}}
    )  # fmt: skip
    server = config.server
    assert server is not None
    assert (server.port, server.max_body_size, server.body_timeout) == (9000, 2_000_000, 5.0)
    assert ServerConfig(max_body_size="1MiB").max_body_size == 1_048_576  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        load_config(
            {"server": {"keys": [{"name": "a", "key": KEY}, {"name": "a", "key": KEY + "x"}]}}
        )
    assert "used twice" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config({"server": {"keys": [{"name": "a", "key": KEY}, {"name": "b", "key": KEY}]}})
    assert "same key is given twice" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config({"server": {"listen": "0.0.0.0"}})
    assert info.value.path == "server.listen" and "max_body_size" in str(info.value)


# ---------------------------------------------------------------- keys


def store(*configs: dict[str, Any], routes: tuple[str, ...] = ("chat", "echo")) -> KeyStore:
    return KeyStore([GatewayKeyConfig.model_validate(c) for c in configs], routes)


def test_authentication() -> None:
    keys = store(
        {"name": "hashed", "key": hash_key(KEY), "user": "u", "team": "t"},
        {"name": "plain", "key": "another-good-key-of-length"},
    )
    identity = keys.authenticate(f"Bearer {KEY}".encode())
    assert (identity.name, identity.user, identity.team) == ("hashed", "u", "t")
    assert identity.options.key == "hashed" and identity.options.team == "t"
    assert keys.authenticate(b"bearer another-good-key-of-length").name == "plain"
    for header in (None, b"Bearer wrong", b"Basic " + KEY.encode(), b"Bearer " + b"x" * 2000):
        with pytest.raises(HTTPError) as info:
            keys.authenticate(header)
        assert info.value.status == 401
        assert KEY not in info.value.message
    assert store().authenticate(None) is ANONYMOUS
    assert not store().required and keys.required


def test_every_key_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = store(*({"name": f"k{i}", "key": hash_key(f"{KEY}-{i}")} for i in range(5)))
    compared = []
    real = keys_module.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    assert keys.authenticate(f"Bearer {KEY}-0".encode()).name == "k0"
    assert len(compared) == 5


def test_a_plain_key_is_logged_as_its_hash_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llmroute.server"):
        store({"name": "plain", "key": KEY})
    assert hash_key(KEY) in caplog.text
    assert KEY not in caplog.text.replace(hash_key(KEY), "")


def test_key_routes() -> None:
    keys = store({"name": "k", "key": KEY, "routes": ["echo", "mock/*", "team-*"]})
    identity = keys.authenticate(f"Bearer {KEY}".encode())
    assert identity.allows("echo") and identity.allows("mock/x") and identity.allows("team-a")
    assert not identity.allows("chat") and not identity.allows("openai/gpt-4o")
    with pytest.raises(ConfigError) as info:
        store({"name": "k", "key": KEY, "routes": ["echo", "ehco"]})
    assert info.value.path == "server.keys.0.routes.1"


def test_new_keys_are_random_and_long() -> None:
    first, second = new_key(), new_key()
    assert first != second and len(first) >= 40 and first.startswith("lr-")
    assert (
        hash_key("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# ---------------------------------------------------------------- control headers


def test_control_headers_become_request_options() -> None:
    options = control_options(
        ANONYMOUS,
        [
            (b"x-llmroute-user", b"alice"),
            (b"x-llmroute-session", b" s-1 "),
            (b"x-llmroute-property-feature", "recherche é".encode()),
            (b"x-llmroute-cache", b"No-Cache, no-store"),
            (b"x-llmroute-cache-ttl", b"1m30s"),
            (b"x-llmroute-timeout", b"1500ms"),
        ],
    )
    assert (options.user, options.session, options.timeout) == ("alice", "s-1", 1.5)
    assert options.properties == {"feature": "recherche é"}
    assert (options.cache.no_cache, options.cache.no_store, options.cache.ttl) == (True, True, 90)
    assert control_options(ANONYMOUS, None) is ANONYMOUS.options


def test_a_key_bound_to_a_user_keeps_it() -> None:
    keys = store({"name": "k", "key": KEY, "user": "alice", "team": "blue"})
    identity = keys.authenticate(f"Bearer {KEY}".encode())
    options = control_options(identity, [(b"x-llmroute-session", b"s")])
    assert (options.user, options.key, options.team, options.session) == ("alice", "k", "blue", "s")
    with pytest.raises(HTTPError) as info:
        control_options(identity, [(b"x-llmroute-user", b"bob")])
    assert info.value.status == 403


def test_response_headers_are_safe_and_complete() -> None:
    assert header_value("plain-name") == b"plain-name"
    assert header_value("a\r\nb\x00é") == b"a%0D%0Ab%00%C3%A9"
    info = RouteInfo(
        request_id="lr-1", route="chat", provider="up", model="m", cache="hit",
        attempts=[AttemptInfo("up/m", "up", "m", "first")], latency_s=0.01234, ttft_s=0.005,
        usage=TokenUsage(10, 5),
    )  # fmt: skip
    info.set_cost(lambda: 0.000123)
    final = dict(route_headers(info, final=True))
    assert final[b"x-llmroute-cache"] == b"HIT"
    assert final[b"x-llmroute-latency-ms"] == b"12.3"
    assert final[b"x-llmroute-cost-usd"] == b"0.00012300"
    assert b"x-llmroute-ttft-ms" not in final
    streamed = dict(route_headers(info, final=False))
    assert streamed[b"x-llmroute-ttft-ms"] == b"5.0"
    assert b"x-llmroute-cost-usd" not in streamed and b"x-llmroute-latency-ms" not in streamed


# ---------------------------------------------------------------- errors


def attempts(*outcomes: str) -> list[AttemptInfo]:
    return [AttemptInfo(f"p/{i}", "p", str(i), "first", outcome="error", error_type=o)
            for i, o in enumerate(outcomes)]  # fmt: skip


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (RequestError("bad", param="temperature"), 400, None),
        (UnknownModel("no", model="x", available=[]), 404, "model_not_found"),
        (LocalRateLimitExceeded("slow down", retry_after=2.5), 429, "rate_limit_exceeded"),
        (BudgetExceeded("spent"), 429, "budget_exceeded"),
        (InvalidRequest("bad", code="invalid_value"), 400, "invalid_value"),
        (ContextLengthExceeded("long"), 400, "context_length_exceeded"),
        (ModelNotFound("gone"), 404, "model_not_found"),
        (ProviderTimeout("deadline"), 504, "timeout"),
        (AuthenticationError("upstream key"), 502, "authentication_error"),
        (RateLimited("busy", retry_after=3), 503, "rate_limit_exceeded"),
        (StreamInterrupted("cut", partial="x"), 502, "stream_interrupted"),
        (AllTargetsFailed("none", attempts=[], errors=[]), 503, "all_targets_failed"),
        (AllTargetsFailed("t", attempts=attempts("a", "b"),
                          errors=[ProviderTimeout("a"), ProviderTimeout("b")]), 504, "timeout"),
        (AllTargetsFailed("u", attempts=attempts("a", "b"),
                          errors=[ProviderConnectionError("a"), ProviderUnavailable("b")]),
         503, "all_targets_failed"),
        (AllTargetsFailed("c", attempts=attempts("a"), errors=[ProviderConnectionError("a")]),
         502, "all_targets_failed"),
        (AllTargetsFailed("i", attempts=attempts("a", "b"),
                          errors=[InvalidRequest("a"), ContextLengthExceeded("b")]),
         400, "context_length_exceeded"),
    ],
)  # fmt: skip
def test_error_mapping(error: LLMRouteError, status: int, code: str | None) -> None:
    mapped = from_exception(error)
    assert (mapped.status, mapped.code) == (status, code)
    body = mapped.error_object()
    assert set(body) >= {"message", "type", "param", "code"}


def test_rate_limit_headers() -> None:
    plain = dict(from_exception(LocalRateLimitExceeded("x", retry_after=2.2)).headers)
    assert plain == {b"retry-after": b"3", b"retry-after-ms": b"2200"}
    known = from_exception(LocalRateLimitExceeded("x", retry_after=0.2, limit=60, unit="requests"))
    headers = dict(known.headers)
    assert headers[b"retry-after"] == b"1"
    assert headers[b"x-ratelimit-limit-requests"] == b"60"
    assert headers[b"x-ratelimit-reset-requests"] == b"0.2s"
    retry = from_exception(AllTargetsFailed(
        "x", attempts=attempts("a", "b"),
        errors=[RateLimited("a", retry_after=7), ProviderUnavailable("b", retry_after=4)],
    ))  # fmt: skip
    assert dict(retry.headers)[b"retry-after"] == b"4"


def test_the_stream_error_event() -> None:
    event = sse_error_event(
        StreamInterrupted("cut after 3", partial="abc", cause=ProviderConnectionError("reset"))
    )
    assert event.startswith(b'data: {"error":') and event.endswith(b"\n\n")
    assert b'"type":"stream_interrupted"' in event and b'"code":"connection_error"' in event


# ---------------------------------------------------------------- metrics


def test_metric_labels_are_capped() -> None:
    metrics = GatewayMetrics(max_series=2)
    for model in ("a", "b", "c", "d"):
        metrics.answered("chat", RouteInfo(request_id="r", provider="mock", model=model))
    text = metrics.exposition().decode()
    assert 'model="a"' in text and 'model="b"' in text
    assert 'model="c"' not in text and 'model="other"' in text
    assert 'llmroute_requests_total{endpoint="chat",key="",model="other"' in text


def test_metric_series_keep_counting_once_their_cells_are_found() -> None:
    """Each kind of answer finds its cells once; later answers add to the same series, and
    the ever-new models counted as ``other`` are not remembered one by one."""
    metrics = GatewayMetrics(max_series=1)
    for model in ("a", "a", "b", "c"):
        info = RouteInfo(request_id="r", route="r", provider="mock", model=model, latency_s=0.2)
        info.usage = TokenUsage(input=3, output=2)
        metrics.answered("chat", info)
    text = metrics.exposition().decode()
    labels = 'endpoint="chat",key="",model="{}",provider="mock",route="r",status="200"'
    assert f"llmroute_requests_total{{{labels.format('a')}}} 2.0" in text
    assert f"llmroute_requests_total{{{labels.format('other')}}} 2.0" in text
    assert 'llmroute_tokens_total{model="a",provider="mock",route="r",type="input"} 6.0' in text
    assert len(metrics._answers) == 1


@pytest.mark.anyio
async def test_streamed_chunks_are_forwarded_as_the_provider_wrote_them() -> None:
    """A chunk decoded from one line of the provider's JSON goes out as those bytes (no second
    serialisation); one that spanned several ``data:`` lines is serialised again."""
    import json

    from _upstream import one_read_router
    from llmroute.server.app import create_app

    # unusual spacing and key order and a vendor field: only a verbatim copy keeps all three
    first = b'{"model": "m", "id": "c", "object": "chat.completion.chunk", "created": 1, "x_vendor": {"q": 1}, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": null}]}'
    split = [b'{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",',
             b'"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}']  # fmt: skip
    body = b"data: " + first + b"\n\n" + b"".join(b"data: " + p + b"\n" for p in split)
    body += b"\ndata: [DONE]\n\n"

    router = one_read_router(body)
    app = create_app(router)
    request = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "Hi"}],
                          "stream": True}).encode()  # fmt: skip
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"",
             "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}  # fmt: skip
    await app(scope, receive, send)  # type: ignore[arg-type]
    await router.aclose()
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    events = [e for e in out.split(b"\n\n") if e]
    assert events[0] == b"data: " + first
    last = json.loads(events[1].removeprefix(b"data: "))  # serialised again, on one line
    assert b"\n" not in events[1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == b"data: [DONE]"


def test_provider_json_is_kept_only_when_forwarding_it_is_safe() -> None:
    from llmroute._types import ChatCompletionChunk, keep_provider_json, provider_json

    def decoded(data: bytes) -> ChatCompletionChunk:
        chunk = ChatCompletionChunk.model_validate_json(data)
        keep_provider_json(chunk, data)
        return chunk

    whole = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}'
    assert provider_json(decoded(whole)) == whole
    # a bare CR is JSON whitespace but ends an SSE line
    assert provider_json(decoded(whole.replace(b'"model"', b'\r"model"'))) is None
    # without "object", the provider's JSON is not what the schema promises: serialised again
    assert provider_json(decoded(whole.replace(b'"object":"chat.completion.chunk",', b""))) is None

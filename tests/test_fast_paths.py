"""Oracle tests: each fast path of docs/performance.md against the plain way it replaces.

A fast path is a second way of doing something, kept beside a plain one for
speed. Each test here draws many inputs and checks that the fast path gives
what the plain path gives; the ledger in docs/performance.md names the test
of every fast path (some live beside the code they test, in other files).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _helpers import genai_cost, without_nulls
from llmroute import AsyncRouter
from llmroute._clock import SystemClock
from llmroute._errors import ContextLengthExceeded, ModelNotFound, ProviderError, RateLimited
from llmroute._prices import PriceBook
from llmroute._request import (
    DEFAULT_OPTIONS,
    RequestOptions,
    validate_chat_request,
)
from llmroute._transports.aiohttp import AiohttpTransport
from llmroute._types import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionTokensDetails,
    CompletionUsage,
    PromptTokensDetails,
    RouteInfo,
    TokenUsage,
    keep_provider_json,
    provider_json,
    validator,
)
from llmroute.cache.backends import MemoryBackend
from llmroute.cache.config import CacheConfig
from llmroute.cache.stage import CacheStage
from llmroute.observe import _worker
from llmroute.observe.record import RequestRecord
from llmroute.observe.rows import REQUEST_COLUMNS, request_row
from llmroute.observe.sqlite_writer import insert_rows
from llmroute.pipeline.executor import new_request_id
from llmroute.pipeline.stage import Outcome, RequestContext
from llmroute.routing.catalog import Catalog
from llmroute.routing.health import HealthTracker
from llmroute.routing.model import Target
from llmroute.routing.plan import AttemptPlan, Order, Try, first_try
from llmroute.routing.rate_limits import RateLimitBoard
from llmroute.routing.select import RequestFacts, Selector
from llmroute.routing.stats import LiveStats
from llmroute.server import headers
from llmroute.server.endpoints.chat import ChatEvents
from llmroute.server.metrics import GatewayMetrics
from llmroute.server.relay import Pending, start

_TEXT = st.text(max_size=8)
_NAME = st.sampled_from(["", "a", "gpt-4o", "é", "a b", "a\r\nb", "x\x00", "日本", "%41"])


# ---------------------------------------------------------------- the provider's chunk JSON

_DELTA = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["assistant", None]),
        "content": st.one_of(st.none(), _TEXT),
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {"index": st.integers(0, 2)},
                optional={
                    "id": _TEXT,
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries({}, optional={"arguments": _TEXT}),
                },
            ),
            max_size=2,
        ),
        "reasoning": _TEXT,  # a provider's own field: kept
    },
)
_CHUNK = st.fixed_dictionaries(
    {
        "id": _TEXT,
        "created": st.integers(0, 2**40),
        "model": _TEXT,
        "choices": st.lists(
            st.fixed_dictionaries(
                {"index": st.integers(0, 3), "delta": _DELTA},
                optional={"finish_reason": st.sampled_from([None, "stop", "length"])},
            ),
            max_size=2,
        ),
    },
    optional={
        "object": st.just("chat.completion.chunk"),
        "usage": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "prompt_tokens": st.integers(0, 9),
                    "completion_tokens": st.integers(0, 9),
                    "total_tokens": st.integers(0, 18),
                }
            ),
        ),
        "system_fingerprint": st.one_of(st.none(), _TEXT),
        "obfuscation": _TEXT,
    },
)


@settings(max_examples=200, deadline=None)
@given(chunk=_CHUNK, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_the_forwarded_provider_json_is_the_chunk_serialised_again(
    chunk: dict[str, Any], indent: int | None, ascii_only: bool
) -> None:
    """`provider_json` (`_types.py`): the gateway's event for a chunk carries the provider's
    own JSON when it may; read by a client, it says what serialising the chunk says. And
    `validator()` parses as `model_validate_json` does."""
    data = json.dumps(chunk, indent=indent, ensure_ascii=ascii_only).encode()
    parsed = validator(ChatCompletionChunk).validate_json(data)
    assert parsed.model_dump() == ChatCompletionChunk.model_validate_json(data).model_dump()
    keep_provider_json(parsed, data)
    event = ChatEvents.chunk(parsed)
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    body = event.removeprefix(b"data: ").removesuffix(b"\n\n")
    assert b"\n" not in body and b"\r" not in body  # one SSE line
    plain = ChatCompletionChunk.__pydantic_serializer__.to_json(parsed)
    assert without_nulls(json.loads(body)) == without_nulls(json.loads(plain))
    if indent is None and "object" in chunk:
        assert provider_json(parsed) == data  # the fast path was taken


def test_validator_builds_a_deferred_model_from_a_shallow_stack(tmp_path: Any) -> None:
    """`validator()` builds a `defer_build` model plainly, even from a script's top level
    (pydantic's own placeholder inspects caller frames there, and failed: c3013d6)."""
    import subprocess
    import sys

    script = tmp_path / "top.py"
    script.write_text(
        "from llmroute._types import ChatCompletion, validator\n"
        'data = b\'{"id":"c","created":1,"model":"m","choices":[]}\'\n'
        "assert validator(ChatCompletion).validate_json(data).model_dump() == "
        "ChatCompletion.model_validate_json(data).model_dump()\n"
    )
    subprocess.run([sys.executable, str(script)], check=True)


# ---------------------------------------------------------------- prices


@cache
def _flat_models() -> list[tuple[str, str]]:
    """(provider id, model id) of genai-prices' models whose prices today have no tiers."""
    from genai_prices import data_snapshot

    now = datetime.now(tz=UTC)
    snapshot = data_snapshot.get_snapshot()
    found = []
    for provider in snapshot.providers:
        for model in provider.models:
            try:  # only models their own id finds (some ids are not matched by their rules)
                if snapshot.find_provider_model(model.id, None, provider.id, None)[1] is not model:
                    continue
            except LookupError:
                continue
            prices = model.get_prices(now)
            if not any(hasattr(v, "tiers") for v in prices.__dict__.values()):
                found.append((provider.id, model.id))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pick=st.integers(0, 10**6),
    uncached=st.integers(0, 10**6),
    cache_read=st.integers(0, 10**6),
    cache_write=st.integers(0, 10**6),
    text=st.integers(0, 10**5),
    reasoning=st.integers(0, 10**5),
)
def test_flat_prices_from_per_token_rates_are_genai_prices_own(
    pick: int, uncached: int, cache_read: int, cache_write: int, text: int, reasoning: int
) -> None:
    """`_LinearRates` (`_prices.py`): a flat-priced model's cost from per-token rates worked
    out once equals genai-prices' own calculation."""
    models = _flat_models()
    assert len(models) > 100
    provider_id, model = models[pick % len(models)]
    usage = TokenUsage(
        input=uncached + cache_read + cache_write,
        output=text + reasoning,
        cache_read=cache_read,
        cache_write=cache_write,
        reasoning=reasoning,
    )
    fast = PriceBook().cost(provider_id, model, usage)
    plain = genai_cost(provider_id, model, usage)
    assert fast == pytest.approx(plain, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- header values


@settings(max_examples=300, deadline=None)
@given(names=st.lists(st.tuples(*[st.one_of(st.none(), _NAME, st.text())] * 3), max_size=20))
def test_cached_header_values_are_the_uncached_ones(
    names: list[tuple[str | None, str | None, str | None]],
) -> None:
    """The `lru_cache`d target headers of `server/headers.py` equal the function's own."""
    for route, provider, model in names:
        cached = headers._target_headers(route, provider, model)
        assert cached == headers._target_headers.__wrapped__(route, provider, model)


# ---------------------------------------------------------------- SQLite rows

_CELL = st.one_of(
    st.none(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(_CELL, min_size=4, max_size=4), max_size=30),
    limit=st.integers(4, 40),
)
def test_rows_with_literal_nulls_read_back_as_rows_with_bound_nones(
    rows: list[list[Any]], limit: int
) -> None:
    """`insert_rows` (`observe/sqlite_writer.py`) writes an empty column as a literal NULL and
    several rows per statement (as many as SQLite's variable limit allows): what it stores
    reads back as the rows inserted one by one with None bound."""
    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    columns = ("a", "b", "c", "d")
    for table in ("fast", "plain"):
        conn.execute(f"CREATE TABLE {table} (a, b, c, d)")
    insert_rows(conn, "fast", columns, rows)
    conn.executemany("INSERT INTO plain (a, b, c, d) VALUES (?, ?, ?, ?)", rows)
    read = [conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in ("fast", "plain")]
    assert read[0] == read[1]
    conn.close()


@given(
    st.lists(st.sampled_from(["stop", "length", "tool_calls"]) | st.text(max_size=8), max_size=4)
)
def test_a_rows_finish_reasons_are_the_json_text_encode_json_gives(reasons: list[str]) -> None:
    """`request_row` (`observe/rows.py`) looks the finish reasons' JSON text up: it is the
    text `json.dumps` gives, for any list, kept or not."""
    record = RequestRecord("r", "chat", 1.0, "m", finish_reasons=reasons)
    for _ in range(2):  # encoded, then looked up
        row = request_row(record)
        assert row[REQUEST_COLUMNS.index("finish_reasons")] == (
            json.dumps(reasons) if reasons else None
        )


# ---------------------------------------------------------------- the cache's short path

_MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user"]), "content": st.sampled_from(["", "a"])},
        optional={"name": st.just("ann")},
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.sampled_from(["a", None])},
        optional={
            "tool_calls": st.sampled_from(
                [
                    [],
                    [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                ]
            )
        },
    ),
)
_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.sampled_from([0, 0.5]),
        "n": st.sampled_from([1, 2]),
        "stop": st.one_of(st.just("x"), st.lists(st.just("x"), max_size=1)),
        "user": st.just("u"),
        "response_format": st.just({"type": "json_object"}),
        "tool_choice": st.sampled_from(["auto", {"type": "function"}]),
        "seed": st.integers(0, 3),
    },
)


@cache
def _cache_route() -> Any:
    config = AsyncRouter(
        {"providers": {"p": {"type": "mock"}}, "routes": {"chat": {"targets": ["p/m"]}}},
        env={},
    ).config
    return Catalog(config, clock=SystemClock(), prices=PriceBook(), env={}).resolve("chat")


def _context(request: Any, options: RequestOptions) -> RequestContext:
    info = RouteInfo(request_id="r")
    return RequestContext("chat", request, options, _cache_route(), info, False, 0.0, 0.0)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(_MESSAGE, min_size=1, max_size=3), params=_PARAMS)
def test_the_cache_short_path_keys_and_answers_as_the_long_path(
    messages: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    """`CacheStage._short` (a request without options on a one-bucket memory cache) and the
    general path give a request the same key, and the same answer once it is stored."""
    request = validate_chat_request({"model": "chat", "messages": messages, **params})
    stage = CacheStage(CacheConfig(), MemoryBackend(SystemClock(), 10**7))
    plain_options = RequestOptions()  # equal to the default, but not it: the long path
    assert plain_options is not DEFAULT_OPTIONS

    async def run() -> None:
        short, long = _context(request, DEFAULT_OPTIONS), _context(request, plain_options)
        assert await stage.before(short) is None and await stage.before(long) is None
        key: Any = short.state["cache"]
        assert key.key == long.state["cache"].key  # type: ignore[attr-defined]
        body = {"id": "c", "created": 1, "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ]}  # fmt: skip
        response = ChatCompletion.model_validate(body)
        await stage.after(short, Outcome(response=response, completed=True))
        hits = [await stage.before(_context(request, o)) for o in (DEFAULT_OPTIONS, plain_options)]
        assert all(isinstance(hit, ChatCompletion) for hit in hits)
        assert [hit.model_dump() for hit in hits] == [response.model_dump()] * 2  # type: ignore[union-attr]

    asyncio.run(run())


# ---------------------------------------------------------------- the selector's route plan


@settings(max_examples=200, deadline=None)
@given(
    strategy=st.sampled_from(["ordered", "weighted", "round_robin", "least_busy", "cost"]),
    count=st.integers(1, 4),
    when=st.booleans(),
    reported=st.booleans(),
    requests=st.integers(1, 6),
    seed=st.integers(0, 9),
)
def test_the_route_plan_shortcuts_select_as_the_general_path(
    strategy: str, count: int, when: bool, reported: bool, requests: int, seed: int
) -> None:
    """`RoutePlan` (`routing/select.py`): the fixed selection of an ordered route and the
    skipped filters give the orders and reasons of running every filter."""
    targets: list[dict[str, Any]] = [
        {"provider": "p", "model": f"m{i}", "price": {"input": 1 + i % 2, "output": 3 - i}}
        for i in range(count)
    ]
    if when:  # a condition every request meets
        targets[0]["when"] = {"session": {"exists": False}}
    route_config = {"targets": targets, "strategy": strategy}
    providers = {"p": {"type": "mock"}}
    config = AsyncRouter({"providers": providers, "routes": {"chat": route_config}}, env={}).config
    request = validate_chat_request(
        {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    )
    orders = []
    for general in (False, True):
        prices = PriceBook()
        route = Catalog(config, clock=SystemClock(), prices=prices, env={}).resolve("chat")
        board = RateLimitBoard()
        selector = Selector(LiveStats(), prices, random.Random(seed), board)
        if reported:
            from llmroute.providers import RateLimitState

            state = RateLimitState(remaining_tokens=10**9, reset_tokens_s=60.0)
            board.saw(route.targets[0], state, 0.0)
        if general:  # every filter runs; none drops a target
            plan = selector.plan(route)
            plan.fixed, plan.limits_seen, plan.may_filter = None, True, True
            plan.has_conditions = plan.has_capabilities = plan.needs_tokens = True
        facts = RequestFacts(request, RequestOptions(), False)
        made = []
        for _ in range(requests):
            selection = selector.select(route, facts, 0.0)
            reason = selection.reason() if callable(selection.reason) else selection.reason
            made.append(([t.key for t in selection.targets], reason))
        orders.append(made)
    assert orders[0] == orders[1]


# ---------------------------------------------------------------- the driver's first try

_OUTCOME = st.sampled_from(["retryable", "retry_after", "model", "context", "unavailable"])


def _failure(kind: str, target: Target) -> ProviderError:
    if kind == "context":
        return ContextLengthExceeded("too long", provider=target.provider.name, model=target.model)
    if kind == "model":
        return ModelNotFound("no such model", provider=target.provider.name, model=target.model)
    retry_after = 0.5 if kind == "retry_after" else None
    return RateLimited("slow", provider=target.provider.name, model=target.model,
                       retry_after=retry_after)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    windows=st.lists(st.sampled_from([None, 10, 100_000]), min_size=1, max_size=4),
    allowed=st.one_of(st.none(), st.sets(st.integers(0, 3), min_size=1)),
    cooled=st.sets(st.integers(0, 3)),
    fallback=st.booleans(),
    outcomes=st.lists(_OUTCOME, max_size=8),
    seed=st.integers(0, 9),
)
def test_the_first_try_without_a_plan_is_the_plans_first_step(
    windows: list[int | None],
    allowed: set[int] | None,
    cooled: set[int],
    fallback: bool,
    outcomes: list[str],
    seed: int,
) -> None:
    """`first_try` (with which `AttemptDriver.run` tries the first ordered target before
    making a plan) answers exactly when a new plan's `next()` answers ``Try(first,
    "first")``; and a plan told `tried_first` then steps as the plan that answered it,
    whatever the attempts that follow do."""
    count = len(windows)
    targets = [{"provider": "p", "model": f"m{i}", **({"context_window": w} if w else {})}
               for i, w in enumerate(windows)]  # fmt: skip
    routes: dict[str, Any] = {"chat": {"targets": targets, "retry": {"attempts": 2}}}
    if fallback:
        routes["chat"]["fallbacks"] = ["spare"]
        routes["spare"] = {"targets": [{"provider": "p", "model": "s"}]}
    config = AsyncRouter({"providers": {"p": {"type": "mock"}}, "routes": routes}, env={}).config
    route = Catalog(config, clock=SystemClock(), prices=PriceBook(), env={}).resolve("chat")
    request = validate_chat_request(
        {"model": "chat", "messages": [{"role": "user", "content": "Hi " * 40}]}
    )
    facts = RequestFacts(request, RequestOptions(), False)
    keys = None if allowed is None else frozenset(f"p/m{i}" for i in allowed if i < count)
    now = 100.0

    def plan() -> tuple[AttemptPlan, HealthTracker]:
        health = HealthTracker(config.health)
        for i in cooled:
            health.cool_down(f"p/m{i}", now, 5.0, "cooling")
        made = AttemptPlan(route, rng=random.Random(seed), health=health, allowed=keys or None,
                           request=facts)  # fmt: skip
        made.ordered(route, list(route.targets))
        return made, health

    general, health = plan()
    first = route.targets[0]
    taken = first_try(route.targets, health=health, allowed=keys or None, request=facts, now=now)
    step = general.next(now)
    assert taken == (step if step == Try(first, "first") else None)
    if taken is None:
        return
    fast, _ = plan()
    fast.tried_first(first)
    steps: list[list[Any]] = [[], []]
    for made, seen in ((general, steps[0]), (fast, steps[1])):
        last: Any = step
        for kind in outcomes:
            if isinstance(last, Try):
                if kind == "unavailable":
                    made.passed_over(last.target)
                elif not made.failed(last.target, _failure(kind, last.target)):
                    seen.append("ends")
                    break
            if isinstance(last, Order):
                made.ordered(last.route, list(last.route.targets))
            last = made.next(now)
            seen.append(last)
            if last is None:
                break
    assert steps[0] == steps[1]


# ---------------------------------------------------------------- the relay's trampoline

_STEP = st.sampled_from(["ready", "sleep", "future", "raise"])


@settings(max_examples=200, deadline=None)
@given(scripts=st.lists(st.lists(_STEP, max_size=4), min_size=1, max_size=6))
def test_the_trampoline_gives_what_a_plain_await_gives(scripts: list[list[str]]) -> None:
    """`start` and `Pending` (`server/relay.py`): a coroutine run until it waits, then
    awaited, ends as awaiting it plainly does (its value, or its exception)."""

    async def body(script: list[str], tag: int) -> int:
        total = tag
        for step in script:
            if step == "sleep":
                await asyncio.sleep(0)
            elif step == "future":
                future = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_soon(future.set_result, 1)
                total += await future
            elif step == "raise":
                raise ValueError(total)
            total += 10
        return total

    async def outcome(coro: Any) -> tuple[str, Any]:
        try:
            return "value", await coro
        except ValueError as exc:
            return "error", exc.args

    async def run() -> None:
        for tag, script in enumerate(scripts):
            plain = await outcome(body(script, tag))

            async def tramp(script: list[str] = script, tag: int = tag) -> int:
                started = start(body(script, tag))
                return await started if isinstance(started, Pending) else started

            assert await outcome(tramp()) == plain

    asyncio.run(run())


# ---------------------------------------------------------------- the gateway's metric cells


@settings(max_examples=150, deadline=None)
@given(
    answers=st.lists(
        st.tuples(
            st.sampled_from(["chat", "messages"]),
            st.sampled_from(["r", "s"]),
            st.sampled_from(["a", "b", "c", "d"]),
            st.sampled_from([200, 429]),
            st.sampled_from([None, "k"]),
            st.integers(0, 5),
        ),
        max_size=30,
    ),
    max_series=st.integers(1, 5),
)
def test_metric_cells_count_what_plain_counting_counts(
    answers: list[tuple[str, str, str, int, str | None, int]], max_series: int
) -> None:
    """`server/metrics.py` keeps the cells a kind of answer updates: the totals it exposes
    are those of counting every answer under its labels (models past `max_series` as
    ``other``)."""
    metrics = GatewayMetrics(max_series=max_series)
    requests: Counter[tuple[str, ...]] = Counter()
    tokens: Counter[tuple[str, ...]] = Counter()
    named: list[str] = []
    for endpoint, route, model, status, key, used in answers:
        info = RouteInfo(request_id="x", route=route, provider="p", model=model)
        info.usage = TokenUsage(input=used, output=used)
        metrics.answered(endpoint, info, status=status, key=key)
        if model not in named and len(named) < max_series:
            named.append(model)
        label = model if model in named else "other"
        requests[(endpoint, key or "", label, "p", route, str(status))] += 1
        if used:
            tokens[(label, "p", route)] += used
    text = metrics.exposition().decode()
    exposed = Counter(
        {
            tuple(re.findall(r'="([^"]*)"', labels)): float(value)
            for labels, value in re.findall(r"^llmroute_requests_total\{(.*)\} (\S+)$", text, re.M)
        }
    )
    assert exposed == Counter({k: float(v) for k, v in requests.items()})
    for (label, provider, route), used in tokens.items():
        line = (
            f'llmroute_tokens_total{{model="{label}",provider="{provider}",route="{route}",'
            f'type="input"}} {float(used)}'
        )
        assert line in text


# ---------------------------------------------------------------- the aiohttp engine's caches

_URLS = [
    f"{scheme}://{host}{path}"
    for scheme in ("http", "https")
    for host in ("api.openai.com", "localhost:8080", "internal.corp", "10.0.0.1")
    for path in ("/v1/chat/completions", "/v1/embeddings", "")
]


def _plain_proxy(url: str) -> str | None:
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
        proxy = None
    return proxy


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HTTPS_PROXY": "http://proxy:3128"},
        {
            "HTTP_PROXY": "http://p:1",
            "HTTPS_PROXY": "http://p:2",
            "NO_PROXY": "internal.corp,10.0.0.1",
        },
    ],
)
def test_the_engine_resolves_proxies_as_urllib_does_each_time(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aiohttp engine's proxy caches (one entry, and one per origin) answer as looking
    the proxy variables up on every request would."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    engine = AiohttpTransport()
    rng = random.Random(5)
    for url in rng.choices(_URLS, k=200):
        assert engine._proxy(url) == _plain_proxy(url)


def _parsed(url: str | Callable[[], yarl.URL]) -> tuple[Any, ...]:
    try:
        made = url() if callable(url) else yarl.URL(url)
    except ValueError as exc:
        return ("refused", str(exc))
    return (str(made), made.raw_path_qs, made.host, made.port, made.scheme)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(_URLS), st.builds("http://h:8/{}".format, st.text(max_size=12))),
        max_size=12,
    )
)
def test_the_engine_parses_urls_as_aiohttp_does(urls: list[str]) -> None:
    """The aiohttp engine's one-entry URL cache gives each request the `yarl.URL` aiohttp
    makes of its string (equal, whatever came before)."""
    engine = AiohttpTransport()
    for url in urls:
        assert _parsed(lambda url=url: engine._url(url)) == _parsed(url)  # type: ignore[misc]


# ---------------------------------------------------------------- small ones


def test_gil_friendly_yields_every_item_and_offers_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    """`gil_friendly` (`observe/_worker.py`) is iterating the items plainly, with a pause to
    offer the GIL once `hold` seconds of work have passed."""
    offered = []
    monkeypatch.setattr(_worker, "offer_gil", lambda: offered.append(1))
    items = list(range(50))
    assert list(_worker.gil_friendly(items, hold=10.0)) == items
    assert not offered
    assert list(_worker.gil_friendly(items, hold=-1.0)) == items
    assert len(offered) == len(items)


def test_request_ids_are_time_ordered_random_hex_out_of_reach_of_random_seed() -> None:
    """Request ids are ``lr-``, the Unix time in milliseconds as 12 hex digits and 16 random
    hex digits: they never repeat (`random.seed()` does not make them), and ids made in a
    later millisecond sort after those of an earlier one, whatever their random part."""
    random.seed(1)
    first = [new_request_id() for _ in range(500)]
    random.seed(1)
    second = [new_request_id() for _ in range(500)]
    assert len(set(first + second)) == 1000
    assert all(re.fullmatch(r"lr-[0-9a-f]{28}", i) for i in first)
    before = time.time_ns() // 1_000_000
    made = new_request_id()
    assert before <= int(made[3:15], 16) <= time.time_ns() // 1_000_000
    earlier = [new_request_id() for _ in range(50)]
    time.sleep(0.002)
    later = [new_request_id() for _ in range(50)]
    assert min(later) > max(earlier)


@settings(max_examples=100, deadline=None)
@given(prompt=st.integers(0, 10**6), completion=st.integers(0, 10**6), estimated=st.booleans())
def test_usage_without_details_normalises_as_with_empty_ones(
    prompt: int, completion: int, estimated: bool
) -> None:
    """`CompletionUsage.normalised` builds a usage without details positionally: the
    `TokenUsage` of the same usage with empty details, field by field."""
    bare = CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    empty = bare.model_copy(
        update={
            "prompt_tokens_details": PromptTokensDetails(),
            "completion_tokens_details": CompletionTokensDetails(),
        }
    )
    expected = TokenUsage(input=prompt, output=completion, estimated=estimated)
    assert bare.normalised(estimated=estimated) == empty.normalised(estimated=estimated)
    assert bare.normalised(estimated=estimated) == expected

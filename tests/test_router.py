"""AsyncRouter end to end over the mock provider: routing, failover, deadlines, options, streams."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import pytest

import llmroute
from _helpers import HI
from _wire import Wire
from llmroute import AsyncRouter

pytestmark = pytest.mark.anyio

FAST_RETRY = {"attempts": 2, "initial": 0.001, "max_delay": 0.002}


def config(*targets: str, **route: Any) -> dict[str, Any]:
    """Providers ok/bad/... declared by the test, a route 'chat' over `targets`."""
    return {"routes": {"chat": {"targets": list(targets), **route}}}


def mock(**options: Any) -> dict[str, Any]:
    return {"type": "mock", **options}


def now() -> float:
    """The event loop's time: on virtual time (the tests marked so), exact."""
    return asyncio.get_running_loop().time()


async def test_route_answers_with_openai_shape_and_metadata() -> None:
    cfg = {"providers": {"ok": mock(text="fine thanks")}, **config("ok/m1")}
    async with AsyncRouter(cfg) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "fine thanks"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "m1"
    info = reply.llmroute
    assert info.request_id.startswith("lr-")
    assert (info.route, info.provider, info.model, info.target) == ("chat", "ok", "m1", "ok/m1")
    assert [(a.kind, a.outcome, a.status) for a in info.attempts] == [("first", "ok", 200)]
    assert info.usage is not None
    assert info.usage.output == reply.usage.completion_tokens  # type: ignore[union-attr]
    assert info.latency_s is not None and info.latency_s > 0
    assert info.cost_usd is None  # the mock has no price: unknown, never 0
    assert "llmroute" not in reply.model_dump()


async def test_direct_address_without_config() -> None:
    async with AsyncRouter(env={}) as router:
        reply = await router.chat.completions.create(model="mock/any-model", messages=HI)
    assert reply.llmroute.route is None
    assert reply.llmroute.target == "mock/any-model"


async def test_unknown_model_lists_what_exists() -> None:
    cfg = {"providers": {"ok": mock()}, **config("ok/m1")}
    async with AsyncRouter(cfg, env={}) as router:
        with pytest.raises(llmroute.UnknownModel) as caught:
            await router.chat.completions.create(model="gpt-5", messages=HI)
    assert "chat" in str(caught.value)
    assert "ok/*" in caught.value.available


async def test_unconfigured_keyed_provider_names_its_variable() -> None:
    async with AsyncRouter(env={}) as router:
        with pytest.raises(llmroute.UnknownModel, match="OPENAI_API_KEY"):
            await router.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)


async def test_retryable_error_fails_over_to_next_target() -> None:
    cfg = {
        "providers": {"bad": mock(script=[503], repeat_script=True), "ok": mock()},
        **config("bad/m", "ok/m"),
    }
    async with AsyncRouter(cfg) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
    attempts = reply.llmroute.attempts
    assert [(a.target, a.kind, a.outcome, a.status) for a in attempts] == [
        ("bad/m", "first", "error", 503),
        ("ok/m", "fallback", "ok", 200),
    ]
    assert attempts[0].error_type == "ProviderUnavailable"
    assert reply.llmroute.provider == "ok"


async def test_lone_target_is_retried_after_backoff() -> None:
    cfg = {"providers": {"flaky": mock(script=[503, "ok"])}, **config("flaky/m", retry=FAST_RETRY)}
    async with AsyncRouter(cfg, seed=1) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
    assert [a.kind for a in reply.llmroute.attempts] == ["first", "retry"]


async def test_fatal_error_is_raised_without_trying_others() -> None:
    cfg = {"providers": {"a": mock(script=[400]), "b": mock()}, **config("a/m", "b/m")}
    b = Wire()
    async with AsyncRouter(cfg, transports={"b": b.transport}) as router:
        with pytest.raises(llmroute.InvalidRequest) as caught:
            await router.chat.completions.create(model="chat", messages=HI)
    assert b.requests == []
    assert caught.value.status == 400
    assert caught.value.provider == "a"


async def test_authentication_error_moves_on_and_is_not_retried() -> None:
    cfg = {
        "providers": {"a": mock(), "b": mock(script=[503, "ok"])},
        **config("a/m", "b/m", retry=FAST_RETRY),
    }
    a = Wire(script=[401], repeat_script=True)
    async with AsyncRouter(cfg, seed=3, transports={"a": a.transport}) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
    assert len(a.requests) == 1  # bad credentials are not retried
    assert [a.target for a in reply.llmroute.attempts] == ["a/m", "b/m", "b/m"]


async def test_all_targets_failed_carries_every_attempt() -> None:
    cfg = {
        "providers": {"a": mock(script=[503], repeat_script=True), "b": mock(script=["drop"],
                      repeat_script=True)},
        **config("a/m", "b/m", retry={"attempts": 1}),
    }  # fmt: skip
    async with AsyncRouter(cfg) as router:
        with pytest.raises(llmroute.AllTargetsFailed) as caught:
            await router.chat.completions.create(model="chat", messages=HI)
    error = caught.value
    assert [type(e).__name__ for e in error.errors] == [
        "ProviderUnavailable",
        "ProviderConnectionError",
    ]
    assert [a.target for a in error.attempts] == ["a/m", "b/m"]
    assert isinstance(error.last_error, llmroute.ProviderConnectionError)
    assert error.__cause__ is error.last_error


async def test_fallback_route_serves_when_route_fails() -> None:
    cfg = {
        "providers": {"a": mock(script=[500], repeat_script=True), "b": mock(text="from b")},
        "routes": {
            "main": {"targets": ["a/m"], "fallbacks": ["backup"], "retry": {"attempts": 1}},
            "backup": {"targets": ["b/m"]},
        },
    }
    async with AsyncRouter(cfg) as router:
        reply = await router.chat.completions.create(model="main", messages=HI)
    assert reply.choices[0].message.content == "from b"
    assert [a.kind for a in reply.llmroute.attempts] == ["first", "fallback"]
    assert reply.llmroute.route == "main"


@pytest.mark.virtual_time
async def test_retry_after_lengthens_the_wait_between_rounds() -> None:
    cfg = {
        "providers": {"rl": mock(script=[{"status": 429, "retry_after": 0.05}, "ok"])},
        **config("rl/m", retry=FAST_RETRY),
    }
    async with AsyncRouter(cfg) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
        elapsed = now()
    assert elapsed >= 0.05  # Retry-After, not the 1-2 ms backoff
    assert elapsed < 0.05 + FAST_RETRY["max_delay"] + 1e-9
    assert reply.llmroute.attempts[0].error_type == "RateLimited"


@pytest.mark.virtual_time
async def test_wait_beyond_the_deadline_fails_fast() -> None:
    cfg = {
        "providers": {"rl": mock(script=[{"status": 429, "retry_after": 30}, "ok"])},
        **config("rl/m", retry=FAST_RETRY, timeout="2s"),
    }
    async with AsyncRouter(cfg) as router:
        with pytest.raises(llmroute.ProviderTimeout, match="deadline"):
            await router.chat.completions.create(model="chat", messages=HI)
        assert now() < 0.01  # no waiting: neither the 30 s Retry-After nor until the 2 s deadline


@pytest.mark.virtual_time
@pytest.mark.parametrize("how", ["options", "sdk"])
async def test_request_deadline_bounds_a_slow_attempt(how: str) -> None:
    cfg = {"providers": {"slow": mock(latency="2s")}, **config("slow/m")}
    extra: dict[str, Any] = {"llmroute": {"timeout": 0.1}} if how == "options" else {"timeout": 0.1}
    async with AsyncRouter(cfg) as router:
        with pytest.raises(llmroute.ProviderTimeout):
            await router.chat.completions.create(model="chat", messages=HI, **extra)
        assert now() == pytest.approx(0.1)  # the deadline, not the 2 s latency


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "wizard"),
        ({"messages": [{"role": "user"}]}, "content"),
        ({"messages": HI, "temperature": "hot"}, "temperature"),
        ({"messages": HI, "n": 0}, "n"),
        ({"messages": "Hi"}, "messages"),
        ({"messages": HI, "timeout": -1}, "timeout"),
        ({"messages": HI, "llmroute": {"colour": "red"}}, "colour"),
    ],
)
async def test_invalid_requests_fail_before_any_network_call(
    params: dict[str, Any], fragment: str
) -> None:
    cfg = {"providers": {"ok": mock()}, **config("ok/m")}
    ok = Wire()
    async with AsyncRouter(cfg, transports={"ok": ok.transport}) as router:
        with pytest.raises(llmroute.RequestError, match=fragment):
            await router.chat.completions.create(model="chat", **params)
    assert ok.requests == []


async def test_parameters_pass_through_including_unknown_ones() -> None:
    import openai

    seen: list[llmroute.HttpRequest] = []

    def upstream(request: llmroute.HttpRequest) -> llmroute.HandlerResponse:
        """The test owns the wire: it keeps the request and answers it itself."""
        seen.append(request)
        message = {"role": "assistant", "content": "fine"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        answer = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                  "choices": [choice]}  # fmt: skip
        return llmroute.HandlerResponse(200, json=answer)

    cfg = {"providers": {"ok": mock()}, **config("ok/m")}
    transport = llmroute.HandlerTransport(upstream)
    async with AsyncRouter(cfg, transports={"ok": transport}) as router:
        reply = await router.chat.completions.create(
            model="chat",
            messages=HI,
            temperature=0.2,
            max_completion_tokens=50,
            seed=7,
            user="u1",
            metadata={"k": "v"},
            reasoning_effort="low",
            top_p=openai.NOT_GIVEN,  # type: ignore[arg-type]
            extra_body={"vendor_knob": {"x": 1}},
        )
    assert reply.choices[0].message.content == "fine"
    (request,) = seen
    assert (request.method, request.url) == (
        "POST",
        "http://mock.llmroute.invalid/v1/chat/completions",
    )
    body = json.loads(request.body or b"")
    assert body["model"] == "m"
    assert body["temperature"] == 0.2
    assert body["max_completion_tokens"] == 50
    assert body["vendor_knob"] == {"x": 1}
    assert body["metadata"] == {"k": "v"}
    assert "top_p" not in body
    assert "stream" not in body


async def test_allowed_targets_restrict_the_route() -> None:
    cfg = {"providers": {"a": mock(text="A"), "b": mock(text="B")}, **config("a/m", "b/m")}
    async with AsyncRouter(cfg) as router:
        reply = await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"targets": ["b"]}
        )
        assert reply.choices[0].message.content == "B"
        with pytest.raises(llmroute.RequestError, match="none of the allowed targets"):
            await router.chat.completions.create(
                model="chat", messages=HI, llmroute=llmroute.RequestOptions(targets=["c/m"])
            )


async def test_concurrent_requests_share_one_router() -> None:
    cfg = {"providers": {"ok": mock(echo=True, latency="5ms")}, **config("ok/m")}
    results: dict[int, str] = {}
    async with AsyncRouter(cfg) as router:

        async def one(i: int) -> None:
            reply = await router.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": f"n{i}"}]
            )
            results[i] = reply.choices[0].message.content or ""

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
    assert results == {i: f"n{i}" for i in range(50)}


async def test_embeddings() -> None:
    cfg = {
        "providers": {"ok": mock(embedding_dimensions=4)},
        "routes": {"emb": {"targets": ["ok/e"]}},
    }
    async with AsyncRouter(cfg) as router:
        result = await router.embeddings.create(model="emb", input=["a", "b"])
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 4 for d in result.data)
    assert result.llmroute.usage is not None and result.llmroute.usage.input >= 2


async def test_embeddings_reject_empty_input() -> None:
    async with AsyncRouter() as router:
        with pytest.raises(llmroute.RequestError, match="input"):
            await router.embeddings.create(model="mock/e", input=[])


async def test_two_routers_do_not_share_state() -> None:
    cfg = {"providers": {"ok": mock(script=[503])}, **config("ok/m", retry=FAST_RETRY)}
    async with AsyncRouter(cfg) as first, AsyncRouter(cfg) as second:
        one = await first.chat.completions.create(model="chat", messages=HI)
        two = await second.chat.completions.create(model="chat", messages=HI)
        again = await first.chat.completions.create(model="chat", messages=HI)
    # each router's mock has its own script: both see the scripted 503 once
    assert [a.outcome for a in one.llmroute.attempts] == ["error", "ok"]
    assert [a.outcome for a in two.llmroute.attempts] == ["error", "ok"]
    assert [a.outcome for a in again.llmroute.attempts] == ["ok"]


async def test_models_list_like_the_openai_client() -> None:
    cfg = {
        "providers": {"a": mock(), "b": mock()},
        "routes": {"chat": {"targets": ["a/m1", "b/m2"]}, "other": {"targets": ["a/m1"]}},
    }
    async with AsyncRouter(cfg, env={}) as router:
        listed = await router.models.list()
    assert listed.object == "list"
    assert [(m.id, m.owned_by) for m in listed] == [
        ("chat", "llmroute"), ("other", "llmroute"), ("a/m1", "a"), ("b/m2", "b"),
    ]  # fmt: skip
    import openai.types

    openai.types.Model.model_validate(listed.data[0].model_dump())


def test_request_ids_do_not_repeat_when_the_application_seeds_random() -> None:
    """Ids have their own generator: `random.seed()` (notebooks, test runners) must not make
    them repeat, or a persistent log would drop the later requests' records."""
    import random

    from llmroute.pipeline.executor import new_request_id

    random.seed(42)
    first = [new_request_id() for _ in range(3)]
    random.seed(42)
    second = [new_request_id() for _ in range(3)]
    assert not set(first) & set(second)
    assert all(len(i) == 31 and i.startswith("lr-") for i in first)


# ---------------------------------------------------------------- public seams


class Named(llmroute.Stage):
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    async def before(self, ctx: llmroute.RequestContext) -> None:
        self.seen.append(self.name)


async def test_add_stage_runs_at_the_end_or_before_a_named_stage() -> None:
    seen: list[str] = []
    async with AsyncRouter({"routes": {"chat": {"targets": ["mock/m"]}}}, env={}) as router:
        router.add_stage(Named("last", seen))
        router.add_stage(Named("first", seen), before="recorder")
        router.add_stage(Named("middle", seen), before="last")
        await router.chat.completions.create(model="chat", messages=HI)
        assert seen == ["first", "middle", "last"]
        with pytest.raises(ValueError, match="already"):
            router.add_stage(Named("last", seen))
        with pytest.raises(ValueError, match="no stage named 'nowhere'"):
            router.add_stage(Named("other", seen), before="nowhere")
        with pytest.raises(TypeError):
            router.add_stage(object())  # type: ignore[arg-type]


def test_routes_and_providers_are_read_only_views() -> None:
    config = {
        "providers": {"local": {"type": "openai", "base_url": "http://127.0.0.1:1/v1"}},
        "routes": {
            "chat": {"targets": ["local/m", {"provider": "mock", "model": "echo", "weight": 2}],
                     "fallbacks": ["spare"], "timeout": "9s"},
            "spare": {"targets": ["mock/spare"]},
        },
    }  # fmt: skip
    router = llmroute.Router(config, env={})
    routes, providers = router.routes(), router.providers()
    assert list(routes) == ["chat", "spare"]
    chat = routes["chat"]
    assert (chat.name, chat.strategy, chat.timeout, chat.fallbacks) == (
        "chat",
        "ordered",
        9.0,
        ("spare",),
    )
    assert [(t.key, t.provider_type, t.weight) for t in chat.targets] == [
        ("local/m", "openai", 1.0),
        ("mock/echo", "mock", 2.0),
    ]
    assert providers["local"].base_url == "http://127.0.0.1:1/v1"
    assert not providers["local"].has_key
    assert providers["mock"].models == ("echo", "spare")
    with pytest.raises(AttributeError):
        chat.name = "other"  # type: ignore[misc]
    router.close()


async def test_cool_down_keeps_traffic_away_from_a_target() -> None:
    config = {"routes": {"chat": {"targets": ["mock/a", "mock/b"]}}}
    async with AsyncRouter(config, env={}) as router:
        router.cool_down("mock/a", 60, "maintenance")
        reply = await router.chat.completions.create(model="chat", messages=HI)
        assert reply.llmroute.target == "mock/b"
        assert router.health()["mock/a"].last_error == "maintenance"

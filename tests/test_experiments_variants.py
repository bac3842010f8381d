"""A variant's targets, parameters and prompt reach the provider (a loopback upstream), for
chat, streams, the Responses API and embeddings; forced variants; failovers out of a
variant; what records and caches see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from _helpers import HI
from _responses_upstream import answer as responses_answer
from _upstream import Upstream, completion_body
from llmroute import AsyncRouter, ConfigError, RequestError
from llmroute.experiments import sticky_digest
from llmroute.observe import SqliteStore

pytestmark = pytest.mark.anyio

CALLER = [
    {"role": "system", "content": "You are the caller's assistant."},
    {"role": "user", "content": "Hi"},
]


def config(upstream: Upstream, variants: dict[str, Any], **more: Any) -> dict[str, Any]:
    """Providers ``a`` (chat and Responses natively) and ``compat`` (translated) on the
    loopback upstream; route ``chat`` -> a/base; experiment ``e`` with `variants`."""
    experiment = {"route": "chat", "variants": {"control": {"weight": 0}, **variants}}
    experiment.update(more.pop("experiment", {}))
    return {
        "providers": {
            "a": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"},
            "compat": {
                "type": "openai",
                "base_url": upstream.base_url,
                "api_key": "k",
                "responses_api": False,
            },
        },
        "routes": {
            "chat": {"targets": ["a/base"], "retry": {"attempts": 1}},
            "other": {"targets": ["a/other-model"]},
        },
        "experiments": {"e": experiment},
        "logging": {"store": None},
        **more,
    }


@pytest.fixture
def models(upstream: Upstream) -> Upstream:
    """The upstream answers chat with the model it was asked for (``broken``: a 503), and
    the Responses API natively."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = upstream.requests[-1]
        if body.get("model") == "broken":
            return web.json_response({"error": {"message": "down"}}, status=503)
        if request.path.endswith("/responses"):
            return await responses_answer(request)
        if request.path.endswith("/embeddings"):
            return web.json_response(
                {
                    "object": "list",
                    "model": body["model"],
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                    "usage": {"prompt_tokens": 2, "total_tokens": 2},
                }
            )
        if body.get("stream"):
            from _upstream import chunk_body, sse

            return await sse(request, [chunk_body({"content": "hey"}),
                                       chunk_body({}, "stop"), "[DONE]"])  # fmt: skip
        return web.json_response(completion_body(model=body["model"]))

    upstream.handler = handler
    return upstream


async def test_a_variants_targets_params_and_system_prompt_reach_the_provider(
    models: Upstream,
) -> None:
    candidate = {"weight": 1, "targets": ["a/cand"], "system": "Be brief.",
                 "params": {"temperature": 0.2, "max_tokens": 50}}  # fmt: skip
    async with AsyncRouter(config(models, {"candidate": candidate}), env={}) as router:
        reply = await router.chat.completions.create(
            model="chat", messages=CALLER, temperature=1.0, llmroute={"user": "u1"}
        )
    info = reply.llmroute
    assert (info.experiment, info.variant, info.target, info.route) == (
        "e",
        "candidate",
        "a/cand",
        "chat",
    )
    sent = models.requests[-1]
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("cand", 0.2, 50)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


async def test_prepend_keeps_the_callers_system_message(models: Upstream) -> None:
    terse = {"weight": 1, "system": "Be brief.", "system_mode": "prepend"}
    async with AsyncRouter(config(models, {"terse": terse}), env={}) as router:
        reply = await router.chat.completions.create(model="chat", messages=CALLER)
    assert (reply.llmroute.variant, reply.llmroute.target) == ("terse", "a/base")
    assert models.requests[-1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        *CALLER,
    ]


async def test_a_prompt_template_is_filled_from_the_requests_variables(models: Upstream) -> None:
    persona = {"weight": 1, "prompt": "persona"}
    document = config(
        models, {"persona": persona}, prompts={"persona": 'You help {customer}. {{"json": 1}}'}
    )
    async with AsyncRouter(document, env={}) as router:
        await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"prompt_variables": {"customer": "ACME {x}"}}
        )
        assert models.requests[-1]["messages"][0] == {
            "role": "system",
            "content": 'You help ACME {x}. {"json": 1}',
        }
        sent = len(models.requests)
        with pytest.raises(RequestError, match="needs the variable\\(s\\) customer") as caught:
            await router.chat.completions.create(model="chat", messages=HI)
        assert caught.value.param == "llmroute.prompt_variables"
        assert len(models.requests) == sent  # refused before anything was sent


async def test_a_streamed_request_takes_its_variant(models: Upstream) -> None:
    candidate = {"weight": 1, "targets": ["a/cand"], "params": {"temperature": 0.3}}
    async with AsyncRouter(config(models, {"candidate": candidate}), env={}) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "hey"
    assert (stream.llmroute.experiment, stream.llmroute.variant) == ("e", "candidate")
    sent = models.requests[-1]
    assert (sent["model"], sent["temperature"], sent["stream"]) == ("cand", 0.3, True)


async def test_a_route_variant_is_served_by_the_other_route_under_this_ones_name(
    models: Upstream,
) -> None:
    async with AsyncRouter(
        config(models, {"elsewhere": {"weight": 1, "route": "other"}}), env={}
    ) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
    assert (reply.llmroute.route, reply.llmroute.target) == ("chat", "a/other-model")
    assert models.requests[-1]["model"] == "other-model"


# ---------------------------------------------------------------- forced variants


async def test_a_forced_variant_is_recorded_as_forced(models: Upstream, tmp_path: Path) -> None:
    document = config(
        models,
        {"candidate": {"weight": 1, "targets": ["a/cand"]}, "off": {"weight": 0,
                                                                   "targets": ["a/off"]}},
        logging={"store": f"sqlite:///{tmp_path / 'log.db'}"},
    )  # fmt: skip
    async with AsyncRouter(document, env={}) as router:
        reply = await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"variant": "e=off", "user": "u7"}
        )
        await router.flush()
    assert (reply.llmroute.variant, reply.llmroute.target) == ("off", "a/off")
    (record,) = SqliteStore(tmp_path / "log.db").records()
    assert (record.experiment, record.variant, record.assignment) == ("e", "off", "forced")
    assert record.sticky_key == sticky_digest("e", "u7")


@pytest.mark.parametrize(
    ("forced", "model", "words"),
    [
        ("nope=x", "chat", "no experiment named 'nope'; experiments: e"),
        ("e=nope", "chat", "experiment 'e' has no variant 'nope'; variants: control, candidate"),
        ("e=candidate", "other", "experiment 'e' runs on route 'chat', not on 'other'"),
    ],
)
async def test_an_unknown_forced_variant_is_a_clear_error(
    models: Upstream, forced: str, model: str, words: str
) -> None:
    candidate = {"weight": 1, "targets": ["a/cand"]}
    async with AsyncRouter(config(models, {"candidate": candidate}), env={}) as router:
        with pytest.raises(RequestError, match=words) as caught:
            await router.chat.completions.create(
                model=model, messages=HI, llmroute={"variant": forced}
            )
    assert caught.value.param == "llmroute.variant"
    assert models.requests == []


async def test_a_forced_variant_without_experiments_is_refused() -> None:
    async with AsyncRouter({"logging": {"store": None}}, env={}) as router:
        with pytest.raises(RequestError, match="variant") as caught:
            await router.chat.completions.create(
                model="mock/x", messages=HI, llmroute={"variant": "no-equals-sign"}
            )
        assert caught.value.param == "variant"
        with pytest.raises(RequestError, match="no experiment named 'e'; experiments: \\(none\\)"):
            await router.chat.completions.create(
                model="mock/x", messages=HI, llmroute={"variant": "e=x"}
            )


# ---------------------------------------------------------------- failover, records, cache


async def test_a_failover_out_of_the_variant_is_flagged(models: Upstream, tmp_path: Path) -> None:
    document = config(
        models,
        {"candidate": {"weight": 1, "targets": ["a/broken"]}},
        logging={"store": f"sqlite:///{tmp_path / 'log.db'}"},
    )
    async with AsyncRouter(document, env={}) as router:
        reply = await router.chat.completions.create(
            model="chat", messages=HI, llmroute={"user": "u1"}
        )
        await router.flush()
    # the variant's own target first, then the route's as its fallback: the caller is served
    assert [a.target for a in reply.llmroute.attempts] == ["a/broken", "a/base"]
    assert (reply.llmroute.variant, reply.llmroute.target) == ("candidate", "a/base")
    (record,) = SqliteStore(tmp_path / "log.db").records()
    assert (record.variant, record.off_variant, record.target) == ("candidate", True, "a/base")


async def test_records_carry_the_experiment_the_variant_and_the_sticky_digest(
    models: Upstream, tmp_path: Path
) -> None:
    document = config(
        models,
        {"candidate": {"weight": 1, "targets": ["a/cand"]}},
        logging={"store": f"sqlite:///{tmp_path / 'log.db'}", "capture_content": True},
        experiment={
            "variants": {
                "control": {"weight": 1},
                "candidate": {"weight": 1, "targets": ["a/cand"], "system": "Variant prompt."},
            }
        },
    )
    async with AsyncRouter(document, env={}) as router:
        replies = {}
        for user in [f"u{i}" for i in range(12)]:
            replies[user] = await router.chat.completions.create(
                model="chat", messages=HI, llmroute={"user": user}
            )
        await router.flush()
    records = {r.request_id: r for r in SqliteStore(tmp_path / "log.db").records()}
    assert len(records) == 12
    for user, reply in replies.items():
        record = records[reply.llmroute.request_id]
        assert (record.experiment, record.variant) == ("e", reply.llmroute.variant)
        assert (record.assignment, record.sticky_key) == ("sticky", sticky_digest("e", user))
        assert record.user == user and record.route == "chat" and not record.off_variant
        if record.variant == "candidate":  # the recorded prompt is the one sent
            assert record.prompt is not None and record.prompt[0]["content"] == "Variant prompt."
    assert {r.variant for r in records.values()} == {"control", "candidate"}


async def test_the_cache_keeps_variants_apart(models: Upstream) -> None:
    variants = {"candidate": {"weight": 1, "params": {"temperature": 0.1}}}
    document = config(
        models,
        variants,
        cache={"backend": "memory://"},
        experiment={"variants": {"control": {"weight": 1}, **variants}},
    )
    async with AsyncRouter(document, env={}) as router:
        force = [{"variant": "e=control"}, {"variant": "e=candidate"}]
        first = [await router.chat.completions.create(model="chat", messages=HI, llmroute=f)
                 for f in force]  # fmt: skip
        again = [await router.chat.completions.create(model="chat", messages=HI, llmroute=f)
                 for f in force]  # fmt: skip
    assert [r.llmroute.cache for r in first] == ["miss", "miss"]
    assert [r.llmroute.cache for r in again] == ["hit", "hit"]
    assert [r.llmroute.variant for r in again] == ["control", "candidate"]
    assert len(models.requests) == 2


# ---------------------------------------------------------------- the Responses API


async def test_a_responses_request_takes_its_variant_natively(models: Upstream) -> None:
    candidate = {"weight": 1, "targets": ["a/cand"], "system": "Be brief.",
                 "params": {"temperature": 0.4, "max_tokens": 64, "reasoning_effort": "low"}}  # fmt: skip
    async with AsyncRouter(config(models, {"candidate": candidate}), env={}) as router:
        response = await router.responses.create(
            model="chat", input="Hi", instructions="Caller's instructions.", temperature=1.0
        )
    assert (response.llmroute.experiment, response.llmroute.variant) == ("e", "candidate")
    sent = models.requests[-1]
    assert sent["model"] == "cand"
    assert (sent["instructions"], sent["temperature"], sent["max_output_tokens"]) == (
        "Be brief.",
        0.4,
        64,
    )
    assert sent["reasoning"] == {"effort": "low"}


async def test_a_responses_request_takes_its_variant_translated(models: Upstream) -> None:
    candidate = {"weight": 1, "targets": ["compat/cand"], "system": "Be brief.",
                 "system_mode": "prepend", "params": {"temperature": 0.4}}  # fmt: skip
    async with AsyncRouter(config(models, {"candidate": candidate}), env={}) as router:
        stream = await router.responses.create(
            model="chat", input="Hi", instructions="Caller's instructions.", stream=True
        )
        async with stream:
            kinds = [event.type async for event in stream]
    assert kinds[-1] == "response.completed"
    sent = models.requests[-1]
    assert (sent["model"], sent["temperature"], sent["stream"]) == ("cand", 0.4, True)
    assert sent["messages"][0] == {
        "role": "system",
        "content": "Be brief.\n\nCaller's instructions.",
    }


async def test_replace_drops_system_items_of_a_responses_input(models: Upstream) -> None:
    terse = {"weight": 1, "system": "Be brief."}
    async with AsyncRouter(config(models, {"terse": terse}), env={}) as router:
        await router.responses.create(
            model="chat",
            input=[
                {"role": "developer", "content": "Old rules."},
                {"role": "user", "content": "Hi"},
            ],
        )
    sent = models.requests[-1]
    assert sent["instructions"] == "Be brief."
    assert [item["role"] for item in sent["input"]] == ["user"]


async def test_a_parameter_the_responses_api_lacks_refuses_the_request(models: Upstream) -> None:
    seeded = {"weight": 1, "params": {"seed": 7}}
    async with AsyncRouter(config(models, {"seeded": seeded}), env={}) as router:
        with pytest.raises(RequestError, match="sets 'seed', which the Responses API has no"):
            await router.responses.create(model="chat", input="Hi")
        await router.chat.completions.create(model="chat", messages=HI)  # chat takes it
    assert models.requests[-1]["seed"] == 7


# ---------------------------------------------------------------- embeddings


async def test_an_embeddings_request_takes_a_variants_targets_only(models: Upstream) -> None:
    document = config(models, {"candidate": {"weight": 1, "targets": ["a/embed-2"]}})
    async with AsyncRouter(document, env={}) as router:
        result = await router.embeddings.create(model="chat", input="hello")
    assert (result.llmroute.variant, result.llmroute.target) == ("candidate", "a/embed-2")
    assert models.requests[-1]["model"] == "embed-2"
    document = config(models, {"terse": {"weight": 1, "system": "x"}})
    async with AsyncRouter(document, env={}) as router:
        with pytest.raises(RequestError, match="embeddings route may only change targets"):
            await router.embeddings.create(model="chat", input="hello")


# ---------------------------------------------------------------- building


def test_a_variant_whose_targets_name_an_unknown_provider_fails_the_router() -> None:
    document = {
        "routes": {"chat": {"targets": ["mock/a"]}},
        "experiments": {"e": {"route": "chat", "variants": {
            "control": {"weight": 1}, "b": {"weight": 1, "targets": ["ghost/x"]}}}},
    }  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        AsyncRouter(document, env={}, implicit_providers=False)
    assert caught.value.path == "experiments.e.variants.b.targets.0.provider"


async def test_a_variants_targets_show_in_the_routers_statistics(models: Upstream) -> None:
    document = config(models, {"candidate": {"weight": 1, "targets": ["a/cand"]}})
    async with AsyncRouter(document, env={}) as router:
        await router.chat.completions.create(model="chat", messages=HI)
        assert router.stats()["a/cand"].requests == 1
        assert json.dumps(sorted(router.health())) == json.dumps(
            sorted(["a/base", "a/other-model", "a/cand"])
        )

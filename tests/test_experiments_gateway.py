"""Experiments through the gateway: the openai SDK forces a variant and fills a prompt's
variables with headers, reads the experiment and variant in the response headers; bad
headers are 400s that say what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from _gateway import USER, in_process_gateway
from _upstream import Upstream, chunk_body, completion_body, sse
from llmroute.experiments import sticky_digest
from llmroute.observe import SqliteStore

pytestmark = pytest.mark.anyio


def config(upstream: Upstream, tmp_path: Path) -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"}},
        "routes": {"chat": {"targets": ["a/base"]}, "other": {"targets": ["a/other"]}},
        "prompts": {"persona": "You help {customer_name} in {language}."},
        "experiments": {
            "e": {
                "route": "chat",
                "variants": {
                    "control": {"weight": 1},
                    "persona": {"weight": 0, "prompt": "persona", "targets": ["a/cand"]},
                },
            }
        },
        "logging": {"store": f"sqlite:///{tmp_path / 'log.db'}"},
    }


async def test_a_header_forces_a_variant_and_fills_its_prompt(
    upstream: Upstream, tmp_path: Path
) -> None:
    async with in_process_gateway(config(upstream, tmp_path)) as gateway:
        raw = await gateway.client().chat.completions.with_raw_response.create(
            model="chat",
            messages=USER,
            extra_headers={
                "x-llmroute-variant": "e=persona",
                "x-llmroute-prompt-customer-name": "ACME",
                "x-llmroute-prompt-language": "French",
                "x-llmroute-user": "alice",
            },
        )
        await gateway.router.flush()
    assert raw.headers["x-llmroute-experiment"] == "e"
    assert raw.headers["x-llmroute-variant"] == "persona"
    sent = upstream.requests[-1]
    assert sent["model"] == "cand"
    assert sent["messages"][0] == {"role": "system", "content": "You help ACME in French."}
    (record,) = SqliteStore(tmp_path / "log.db").records()
    assert (record.variant, record.assignment) == ("persona", "forced")
    assert record.sticky_key == sticky_digest("e", "alice")


async def test_assigned_requests_carry_the_headers_and_others_do_not(
    upstream: Upstream, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if upstream.requests[-1].get("stream"):
            return await sse(request, [chunk_body({"content": "hi"}, "stop"), "[DONE]"])
        return web.json_response(completion_body())

    upstream.handler = handler
    async with in_process_gateway(config(upstream, tmp_path)) as gateway:
        client = gateway.client()
        assigned = await client.chat.completions.with_raw_response.create(
            model="chat", messages=USER
        )
        plain = await client.chat.completions.with_raw_response.create(model="other", messages=USER)
        stream = await client.chat.completions.with_raw_response.create(
            model="chat", messages=USER, stream=True
        )
        async for _ in stream.parse():
            pass
    assert (assigned.headers["x-llmroute-experiment"], assigned.headers["x-llmroute-variant"]) == (
        "e",
        "control",
    )
    assert stream.headers["x-llmroute-variant"] == "control"
    assert "x-llmroute-experiment" not in plain.headers


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({"x-llmroute-variant": "nope=x"}, 400, "no experiment named 'nope'"),
        ({"x-llmroute-variant": "e=nope"}, 400, "experiment 'e' has no variant 'nope'"),
        ({"x-llmroute-variant": "e"}, 400, "expected <experiment>=<variant>"),
        ({"x-llmroute-variant": "e=persona"}, 400, "needs the variable(s) customer_name"),
        ({"x-llmroute-prompt-bad.name": "x"}, 400, "a prompt variable name is"),
    ],
)
async def test_bad_experiment_headers_are_400s(
    upstream: Upstream, tmp_path: Path, headers: dict[str, str], status: int, words: str
) -> None:
    async with in_process_gateway(config(upstream, tmp_path)) as gateway:
        with pytest.raises(openai.APIStatusError) as caught:
            await gateway.client().chat.completions.create(
                model="chat", messages=USER, extra_headers=headers
            )
    assert caught.value.status_code == status
    assert words in str(caught.value)
    assert upstream.requests == []

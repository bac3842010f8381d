"""The Responses API through `llmroute serve` (a real uvicorn server on loopback), read by the
official openai SDK: created, streamed, parsed, continued, read back, listed and deleted,
with stored responses scoped by gateway key and errors in OpenAI's shape."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from aiohttp import web
from openai.types.responses import Response as SDKResponse
from pydantic import BaseModel

from _gateway import running_gateway
from _responses_upstream import TEXT
from _responses_upstream import answer as responses_answer
from _upstream import Upstream
from llmroute.server.keys import hash_key

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class City(BaseModel):
    name: str
    country: str


def config(upstream: Upstream, *targets: str) -> dict[str, Any]:
    root = upstream.base_url.removesuffix("/v1")
    return {
        "providers": {
            "native": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"},
            "compat": {
                "type": "openai",
                "base_url": upstream.base_url,
                "api_key": "k",
                "responses_api": False,
            },
            "down": {"type": "openai", "base_url": f"{root}/down/v1", "api_key": "k"},
        },
        "routes": {"chat": {"targets": list(targets), "retry": {"attempts": 1}}},
    }


@pytest.fixture
def responses_upstream(upstream: Upstream) -> Upstream:
    async def handler(request: web.Request) -> web.StreamResponse:
        upstream.requests[-1]["__path"] = request.path
        return await responses_answer(request)

    upstream.handler = handler
    return upstream


KEYS = {
    "keys": [
        {"name": "alice", "key": hash_key("sk-alice")},
        {"name": "bob", "key": hash_key("sk-bob")},
    ]
}


async def test_the_sdk_through_the_gateway(responses_upstream: Upstream) -> None:
    cfg = config(responses_upstream, "down/gpt-test", "native/gpt-test", "compat/gpt-test")
    async with running_gateway(cfg) as gateway, gateway.client() as client:
        raw = await client.responses.with_raw_response.create(model="chat", input="Hi")
        first = raw.parse()
        assert isinstance(first, SDKResponse) and first.output_text == TEXT
        assert raw.headers["x-llmroute-provider"] == "native"
        second = await client.responses.create(
            model="chat", input="Again", previous_response_id=first.id
        )
        third = await client.responses.create(
            model="chat", input="Once more", previous_response_id=second.id
        )
        assert third.previous_response_id == second.id
        sent = responses_upstream.requests[-1]["input"]
        texts = [item.get("content") for item in sent if item.get("role") == "user"]
        assert len(sent) == 5 and texts == ["Hi", "Again", "Once more"]

        kinds = []
        stream = await client.responses.create(model="chat", input="Hi", stream=True)
        async for event in stream:
            kinds.append(event.type)
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"

        async with client.responses.stream(model="chat", input="Hi") as events:
            final = await events.get_final_response()
        assert final.output_text == TEXT

        got = await client.responses.retrieve(first.id)
        assert got.id == first.id and got.output_text == TEXT
        items = await client.responses.input_items.list(third.id, order="asc")
        assert [i.type for i in items.data] == ["message"] * 5
        count = await client.responses.input_tokens.count(model="chat", input="How long?")
        assert count.input_tokens > 0
        await client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError, match=first.id):
            await client.responses.retrieve(first.id)


async def test_parse_through_the_gateway_on_a_translated_target(
    responses_upstream: Upstream,
) -> None:
    cfg = config(responses_upstream, "compat/gpt-test")
    async with running_gateway(cfg) as gateway, gateway.client() as client:
        parsed = await client.responses.parse(
            model="chat", input="Capital of France?", text_format=City
        )
    assert parsed.output_parsed == City(name="Paris", country="Paris")


async def test_stored_responses_are_scoped_by_gateway_key(responses_upstream: Upstream) -> None:
    cfg = config(responses_upstream, "native/gpt-test")
    async with (
        running_gateway(cfg, server=KEYS) as gateway,
        gateway.client("sk-alice") as alice,
        gateway.client("sk-bob") as bob,
    ):
        mine = await alice.responses.create(model="chat", input="Hi")
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(mine.id)
        with pytest.raises(openai.BadRequestError) as refused:
            await bob.responses.create(model="chat", input="Hi", previous_response_id=mine.id)
        assert refused.value.code == "previous_response_not_found"
        with pytest.raises(openai.NotFoundError):
            await bob.responses.delete(mine.id)
        assert (await alice.responses.retrieve(mine.id)).id == mine.id


async def test_bad_input_gets_openai_shaped_errors(responses_upstream: Upstream) -> None:
    cfg = config(responses_upstream, "native/gpt-test")
    async with running_gateway(cfg) as gateway, gateway.client() as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.responses.create(model="chat", input=[{"type": "nonsense"}])
        assert bad.value.param is not None and "input[0]" in bad.value.param
        with pytest.raises(openai.BadRequestError, match="call_id"):
            await client.responses.create(
                model="chat",
                input=[{"type": "function_call_output", "call_id": "missing", "output": "x"}],
            )
        with pytest.raises(openai.BadRequestError, match="Previous response with id 'resp_nope'"):
            await client.responses.create(model="chat", input="x", previous_response_id="resp_nope")
        async with gateway.http() as http:
            wrong = await http.post(f"{gateway.base_url}/responses/resp_x")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, DELETE"
    assert responses_upstream.requests == []

"""The Responses API routed (issue 16): `router.responses` in process, over a loopback upstream
that serves the Responses API natively and over targets it is translated for, with failover,
streams, conversation state, the cache and the blocking router."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio.to_thread
import openai
import pytest
from aiohttp import web
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent as SDKEvent
from pydantic import BaseModel, TypeAdapter

from _responses_upstream import TEXT
from _responses_upstream import answer as responses_answer
from _upstream import Upstream
from llmroute import (
    AllTargetsFailed,
    AsyncRouter,
    LocalRateLimitExceeded,
    RequestError,
    ResponseNotFound,
    Router,
)
from llmroute.responses import Response

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

EVENTS: TypeAdapter[Any] = TypeAdapter(SDKEvent)
WEATHER = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def config(upstream: Upstream, *targets: str, **more: Any) -> dict[str, Any]:
    """Providers on the loopback upstream: ``native`` (the Responses API), ``compat`` (the
    same server as an OpenAI-compatible service: translated), ``down`` (503s) and
    ``failing`` (a stream that fails before its first content); route ``chat``."""
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
            "failing": {"type": "openai", "base_url": f"{root}/failing/v1", "api_key": "k"},
        },
        "routes": {
            "chat": {"targets": list(targets or ["native/gpt-test"]), "retry": {"attempts": 1}}
        },
        **more,
    }


def paths(upstream: Upstream) -> list[str]:
    return [request["__path"] for request in upstream.requests]


@pytest.fixture
def responses_upstream(upstream: Upstream) -> Upstream:
    async def handler(request: web.Request) -> web.StreamResponse:
        upstream.requests[-1]["__path"] = request.path
        return await responses_answer(request)

    upstream.handler = handler
    return upstream


def validate(response: Response) -> SDKResponse:
    """`response` as the openai SDK reads it (raises if it does not fit the SDK's type)."""
    return SDKResponse.model_validate(response.to_dict(mode="json"))


async def events_of(stream: Any) -> list[Any]:
    """Every event of `stream`, each checked against the SDK's event union."""
    out = []
    async with stream:
        async for event in stream:
            EVENTS.validate_python(event.to_dict(mode="json"))
            out.append(event)
    return out


# ---------------------------------------------------------------- native and translated


async def test_a_native_target_gets_the_request_self_contained(
    responses_upstream: Upstream,
) -> None:
    async with AsyncRouter(config(responses_upstream)) as router:
        response = await router.responses.create(
            model="chat", input="Hi", instructions="Be brief.", metadata={"a": "b"}
        )
    assert response.output_text == TEXT
    assert response.id.startswith("resp_") and len(response.id) == 53
    assert response.store is True and response.previous_response_id is None
    assert response.llmroute.target == "native/gpt-test"
    assert response.llmroute.usage is not None and response.llmroute.usage.input == 11
    assert validate(response).output_text == TEXT
    sent = responses_upstream.requests[-1]
    assert sent["__path"] == "/v1/responses"
    assert sent["model"] == "gpt-test" and sent["store"] is False
    assert (sent["instructions"] == "Be brief." and sent["input"] == "Hi") or sent["input"]
    assert "previous_response_id" not in sent


async def test_a_translated_target_gets_a_chat_completion(responses_upstream: Upstream) -> None:
    async with AsyncRouter(config(responses_upstream, "compat/gpt-test")) as router:
        response = await router.responses.create(
            model="chat", input="Hi", instructions="Be brief.", max_output_tokens=50
        )
    validate(response)
    assert response.output_text == "Hello from the model upstream!"
    assert response.status == "completed" and response.usage is not None
    sent = responses_upstream.requests[-1]
    assert sent["__path"] == "/v1/chat/completions"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1]["role"] == "user"
    assert sent["max_completion_tokens"] == 50


@pytest.mark.parametrize("target", ["native/gpt-test", "compat/gpt-test"])
async def test_streams_are_the_sdk_events_in_the_documented_order(
    responses_upstream: Upstream, target: str
) -> None:
    async with AsyncRouter(config(responses_upstream, target)) as router:
        stream = await router.responses.create(model="chat", input="Hi", stream=True)
        events = await events_of(stream)
        assert stream.response is not None and stream.llmroute.usage is not None
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.index("response.output_item.added") < kinds.index("response.content_part.added")
    assert kinds.index("response.output_text.done") < kinds.index("response.output_item.done")
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text == final.output_text and text
    assert final.id == events[0].response.id and final.id.startswith("resp_")


async def test_a_streamed_function_call(responses_upstream: Upstream) -> None:
    async with AsyncRouter(config(responses_upstream, "compat/gpt-test")) as router:
        stream = await router.responses.create(
            model="chat", input="Weather in Paris?", tools=WEATHER, stream=True
        )
        events = await events_of(stream)
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(arguments) == {"city": "Paris"} == json.loads(done[0].arguments)
    call = events[-1].response.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"


# ---------------------------------------------------------------- failover


async def test_a_native_target_down_fails_over_to_a_translated_one(
    responses_upstream: Upstream,
) -> None:
    async with AsyncRouter(
        config(responses_upstream, "down/gpt-test", "compat/gpt-test")
    ) as router:
        response = await router.responses.create(model="chat", input="Hi")
        stream = await router.responses.create(model="chat", input="Hi", stream=True)
        events = await events_of(stream)
    assert response.llmroute.target == "compat/gpt-test"
    assert [a.outcome for a in response.llmroute.attempts] == ["error", "ok"]
    assert events[-1].type == "response.completed"
    assert stream.llmroute.target == "compat/gpt-test"


async def test_a_stream_failing_before_its_first_content_fails_over(
    responses_upstream: Upstream,
) -> None:
    async with AsyncRouter(
        config(responses_upstream, "failing/gpt-test", "native/gpt-test")
    ) as router:
        stream = await router.responses.create(model="chat", input="Hi", stream=True)
        events = await events_of(stream)
    assert stream.llmroute.target == "native/gpt-test"
    assert "response.failed" not in [e.type for e in events]
    first = stream.llmroute.attempts[0]
    assert first.outcome == "error" and "the model fell over" in (first.error or "")


async def test_a_built_in_tool_is_served_only_natively(responses_upstream: Upstream) -> None:
    search = [{"type": "web_search"}]
    async with AsyncRouter(config(responses_upstream, "compat/gpt-test")) as router:
        with pytest.raises((RequestError, AllTargetsFailed), match="web_search"):
            await router.responses.create(model="chat", input="News?", tools=search)
    assert responses_upstream.requests == []
    async with AsyncRouter(
        config(responses_upstream, "compat/gpt-test", "native/gpt-test")
    ) as router:
        response = await router.responses.create(model="chat", input="News?", tools=search)
    assert response.llmroute.target == "native/gpt-test"
    assert responses_upstream.requests[-1]["tools"] == search


# ---------------------------------------------------------------- conversation state


async def test_three_turns_with_a_tool_continue_across_providers(
    responses_upstream: Upstream,
) -> None:
    async with AsyncRouter(
        config(responses_upstream, "native/gpt-test", "compat/gpt-test")
    ) as router:
        first = await router.responses.create(
            model="chat", input="Weather in Paris?", tools=WEATHER, instructions="Use tools."
        )
        call = first.output[-1]
        assert call.type == "function_call"
        router.cool_down("native/gpt-test", 60)  # the rest goes to the translated target
        second = await router.responses.create(
            model="chat",
            previous_response_id=first.id,
            tools=WEATHER,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
        )
        assert second.llmroute.target == "compat/gpt-test"
        assert second.output_text == "The tool said: 18C"
        assert second.previous_response_id == first.id
        third = await router.responses.create(
            model="chat", previous_response_id=second.id, input="Thanks!"
        )
    sent = responses_upstream.requests[-1]
    assert sent["__path"] == "/v1/chat/completions"
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]  # no instructions
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.call_id
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C"}
    assert sent["messages"][3]["content"] == "The tool said: 18C"
    assert third.output_text


async def test_stored_responses_are_read_listed_deleted_and_scoped(
    responses_upstream: Upstream,
) -> None:
    async with AsyncRouter(config(responses_upstream)) as router:
        mine = {"key": "tenant-a"}
        response = await router.responses.create(model="chat", input="Hi", llmroute=mine)
        again = await router.responses.retrieve(response.id, llmroute=mine)
        assert again.output_text == response.output_text and again.id == response.id
        items = await router.responses.input_items.list(response.id, llmroute=mine)
        assert [i["type"] for i in items.data] == ["message"]
        assert items.data[0]["id"].startswith("msg_")
        for other in ({"key": "tenant-b"}, None):
            with pytest.raises(ResponseNotFound, match=response.id):
                await router.responses.retrieve(response.id, llmroute=other)
            with pytest.raises(ResponseNotFound):
                await router.responses.create(
                    model="chat", input="Hi", previous_response_id=response.id, llmroute=other
                )
        unstored = await router.responses.create(
            model="chat", input="Hi", store=False, llmroute=mine
        )
        assert unstored.store is False
        with pytest.raises(ResponseNotFound):
            await router.responses.retrieve(unstored.id, llmroute=mine)
        await router.responses.delete(response.id, llmroute=mine)
        with pytest.raises(ResponseNotFound):
            await router.responses.retrieve(response.id, llmroute=mine)
        with pytest.raises(ResponseNotFound):
            await router.responses.delete(response.id, llmroute=mine)


async def test_a_streamed_response_is_stored_when_it_completes(
    responses_upstream: Upstream,
) -> None:
    async with AsyncRouter(config(responses_upstream)) as router:
        stream = await router.responses.create(model="chat", input="Hi", stream=True)
        events = await events_of(stream)
        stored = await router.responses.retrieve(events[-1].response.id)
    assert stored.output_text == TEXT


# ---------------------------------------------------------------- the cache


async def test_the_cache_replays_a_stream_as_the_same_events(responses_upstream: Upstream) -> None:
    cached = config(responses_upstream, "compat/gpt-test", cache={"backend": "memory://"})
    async with AsyncRouter(cached) as router:
        first = await events_of(
            await router.responses.create(model="chat", input="Hi", stream=True)
        )
        replay = await router.responses.create(model="chat", input="Hi", stream=True)
        second = await events_of(replay)
        whole = await router.responses.create(model="chat", input="Hi")
    assert replay.llmroute.cache == "hit" and whole.llmroute.cache == "hit"
    assert len(responses_upstream.requests) == 1

    def shape(events: list[Any]) -> list[tuple[str, str]]:
        return [(e.type, getattr(e, "delta", "")) for e in events]

    assert shape(first) == shape(second)
    assert second[-1].response.id != first[-1].response.id
    assert whole.output_text == first[-1].response.output_text


# ---------------------------------------------------------------- helpers and the blocking router


class City(BaseModel):
    name: str
    country: str


async def test_parse_fills_output_parsed(responses_upstream: Upstream) -> None:
    async with AsyncRouter(config(responses_upstream, "compat/gpt-test")) as router:
        parsed = await router.responses.parse(model="chat", input="Capital?", text_format=City)
        async with router.responses.stream(model="chat", input="Capital?", text_format=City) as s:
            final = await s.get_final_response()
    assert parsed.output_parsed == City(name="Paris", country="Paris")
    assert final.output_parsed == parsed.output_parsed
    sent = responses_upstream.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "City"


async def test_the_blocking_router_has_the_same_surface(responses_upstream: Upstream) -> None:
    await anyio.to_thread.run_sync(blocking_calls, config(responses_upstream))


def blocking_calls(cfg: dict[str, Any]) -> None:
    with Router(cfg) as router:
        response = router.responses.create(model="chat", input="Hi")
        with router.responses.create(model="chat", input="Hi", stream=True) as stream:
            kinds = [event.type for event in stream]
        assert kinds[-1] == "response.completed"
        assert router.responses.retrieve(response.id).output_text == TEXT
        count = router.responses.input_tokens.count(model="chat", input="Hello there")
        assert count.input_tokens > 0
        router.responses.delete(response.id)
        with pytest.raises(ResponseNotFound):
            router.responses.retrieve(response.id)


async def test_bad_input_gets_a_clear_error(responses_upstream: Upstream) -> None:
    async with AsyncRouter(config(responses_upstream)) as router:
        with pytest.raises(RequestError, match=r"input\[0\]"):
            await router.responses.create(model="chat", input=[{"type": "nonsense"}])
        with pytest.raises(RequestError, match="call_id"):
            await router.responses.create(
                model="chat",
                input=[{"type": "function_call_output", "call_id": "nope", "output": "x"}],
            )
        with pytest.raises(RequestError, match="background"):
            await router.responses.create(model="chat", input="Hi", background=True)
    assert responses_upstream.requests == []


async def test_the_sdk_in_process_gets_genuine_types(responses_upstream: Upstream) -> None:
    async with AsyncRouter(
        config(responses_upstream, "down/gpt-test", "native/gpt-test")
    ) as router:
        client = router.openai_client()
        response = await client.responses.create(model="chat", input="Hi")
        assert isinstance(response, SDKResponse) and response.output_text == TEXT
        follow = await client.responses.create(
            model="chat", input="More", previous_response_id=response.id
        )
        assert follow.previous_response_id == response.id
        async with client.responses.stream(model="chat", input="Hi") as stream:
            final = await stream.get_final_response()
        assert final.output_text == TEXT
        got = await client.responses.retrieve(response.id)
        assert got.id == response.id
        await client.responses.delete(response.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response.id)


# ---------------------------------------------------------------- recording


async def test_each_request_is_recorded_and_traced_as_a_responses_request(
    responses_upstream: Upstream,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    records: list[Any] = []
    cfg = config(responses_upstream, "native/gpt-test", telemetry={"enabled": True},
                 logging={"capture_content": True})  # fmt: skip
    async with AsyncRouter(cfg) as router:
        router.use_telemetry(provider, None)
        router.add_sink(lambda batch: records.extend(batch))
        whole = await router.responses.create(model="chat", input="Weather?", tools=WEATHER)
        stream = await router.responses.create(model="chat", input="Hi", stream=True)
        await events_of(stream)
        await router.flush()
    provider.shutdown()
    first, second = records
    assert first.operation == second.operation == "responses"
    assert first.response_id == whole.id and first.finish_reasons == ["tool_calls"]
    assert second.finish_reasons == ["stop"] and second.stream
    assert second.usage is not None and second.usage.input == 11
    assert first.prompt == [{"role": "user", "content": "Weather?"}]
    assert (
        first.completion is not None and first.completion[0]["output"][0]["name"] == "get_weather"
    )
    assert second.completion is not None and second.completion[0]["content"] == TEXT
    names = [span.name for span in spans.get_finished_spans() if span.parent is None]
    assert names == ["chat chat", "chat chat"]
    top = next(s for s in spans.get_finished_spans() if s.parent is None)
    assert top.attributes is not None and top.attributes["gen_ai.operation.name"] == "chat"


# ---------------------------------------------------------------- limits and durable state


async def test_rate_limits_count_a_responses_request_by_its_tokens(
    responses_upstream: Upstream,
) -> None:
    limits = {"rules": [{"per": "global", "tokens": "50/min"}], "output_estimate": 0}
    async with AsyncRouter(config(responses_upstream, rate_limits=limits)) as router:
        # the native upstream reports 18 tokens a response (its input estimated at a few):
        # reconciled to 18 each, the third is let in at 36 and the fourth is refused at 54
        for _ in range(3):
            await router.responses.create(model="chat", input="Hi", store=False)
        with pytest.raises(LocalRateLimitExceeded):
            await router.responses.create(model="chat", input="Hi", store=False)
    assert len(responses_upstream.requests) == 3


async def test_a_conversation_outlives_the_router_in_a_sqlite_store(
    responses_upstream: Upstream, tmp_path: Path
) -> None:
    durable = config(responses_upstream, responses={"store": f"sqlite:///{tmp_path / 'r.db'}"})
    async with AsyncRouter(durable) as router:
        first = await router.responses.create(model="chat", input="Remember 42.")
    async with AsyncRouter(durable) as router:
        second = await router.responses.create(
            model="chat", input="What was it?", previous_response_id=first.id
        )
        items = await router.responses.input_items.list(second.id, order="asc")
    sent = responses_upstream.requests[-1]["input"]
    assert [i.get("content") for i in sent if i.get("role") == "user"] == [
        "Remember 42.",
        "What was it?",
    ]
    assert [i["type"] for i in items.data] == ["message", "message", "message"]


async def test_with_the_store_off_nothing_is_kept_and_continuing_is_refused(
    responses_upstream: Upstream,
) -> None:
    async with AsyncRouter(config(responses_upstream, responses={"store": "off"})) as router:
        response = await router.responses.create(model="chat", input="Hi")
        with pytest.raises(RequestError, match=r"responses\.store"):
            await router.responses.create(
                model="chat", input="More", previous_response_id=response.id
            )
        with pytest.raises(RequestError, match=r"responses\.store"):
            await router.responses.retrieve(response.id)


async def test_a_native_stream_has_llmroute_s_id_and_time(responses_upstream: Upstream) -> None:
    """As a whole response does: the upstream's id and created_at (1700000000) never show."""
    async with AsyncRouter(config(responses_upstream)) as router:
        before = time.time()
        whole = await router.responses.create(model="chat", input="Hi")
        events = await events_of(
            await router.responses.create(model="chat", input="Hi", stream=True)
        )
        stored = await router.responses.retrieve(events[-1].response.id)
    carried = [e.response for e in events if hasattr(e, "response")]
    assert [r.type for r in events if hasattr(r, "response")] == [
        "response.created", "response.in_progress", "response.completed"]  # fmt: skip
    for response in (whole, *carried, stored):
        assert before <= response.created_at <= time.time()
    assert {r.created_at for r in carried} == {stored.created_at}
    assert {r.id for r in carried} == {stored.id} and stored.id.startswith("resp_")
    assert "resp_upstream" not in (whole.id, stored.id)


async def test_input_items_are_replayed_as_sent_and_listed_with_openai_s_ids(
    responses_upstream: Upstream,
) -> None:
    """A native upstream refuses ids it did not issue, or of the wrong kind (``item_...`` for
    a function call output): an item sent without an id is replayed without one. Listed, it
    has an id with its type's prefix, the same in every listing."""
    async with AsyncRouter(config(responses_upstream)) as router:
        first = await router.responses.create(model="chat", input="Weather?", tools=WEATHER)
        call = first.output[-1]
        assert call.type == "function_call"
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}
        second = await router.responses.create(
            model="chat", input=[output], previous_response_id=first.id
        )
        third = await router.responses.create(
            model="chat", input="Thanks", previous_response_id=second.id
        )
        listed = await router.responses.input_items.list(third.id, order="asc")
        again = await router.responses.input_items.list(second.id, order="asc")
        page = await router.responses.input_items.list(
            third.id, order="asc", after=listed.data[1]["id"], limit=2
        )
    assert third.output_text == TEXT
    sent = responses_upstream.requests[-1]["input"]
    assert [i.get("type", "message") for i in sent] == [
        "message", "function_call", "function_call_output", "message", "message"]  # fmt: skip
    assert "id" not in sent[0] and "id" not in sent[2] and "id" not in sent[4]
    ids = [i["id"] for i in listed.data]
    assert [i.split("_")[0] for i in ids] == ["msg", "fc", "fco", "msg", "msg"]
    assert len(set(ids)) == 5 and [i["id"] for i in again.data] == ids[:3]
    assert [i["id"] for i in page.data] == ids[2:4] and page.has_more

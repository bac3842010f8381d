"""The Responses API over translated vendors (issue 16): a tool conversation of three turns
chained by ``previous_response_id``, whose first turn a native OpenAI Responses target serves
and whose next two fail over to Anthropic, Gemini or Bedrock, each reached over loopback in
its own wire format (`_vendors`). Checked: what each upstream received (the conversation
llmroute rebuilt, in that vendor's format), and every response and stream event against the
openai SDK's own types."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent as SDKEvent
from pydantic import TypeAdapter

from _upstream import Upstream
from _vendors import ANSWER, FAREWELL, MODELS, THINKING, Vendors, gemini_reply, router_config
from llmroute import AsyncRouter, RouteInfo
from llmroute.responses import THINKING_PREFIX, Response

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

EVENTS: TypeAdapter[Any] = TypeAdapter(SDKEvent)
TRANSLATED = ["claude", "gem", "aws"]
INSTRUCTIONS = "You answer weather questions with the tool."
WEATHER = [{
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}]  # fmt: skip
OVERLOADED = (503, {"error": {"message": "overloaded", "type": "server_error", "code": None}})


@pytest.fixture
async def vendors(upstream: Upstream) -> tuple[Vendors, str]:
    handler = Vendors()
    upstream.handler = handler
    return handler, upstream.base_url.removesuffix("/v1")


def validate(response: Response) -> SDKResponse:
    """`response` as the openai SDK reads it (raises if it does not fit the SDK's type)."""
    return SDKResponse.model_validate(response.to_dict(mode="json"))


class Turn:
    """One turn's answer: the response (a stream's final one), how it was routed, and the
    stream's event types (none for a whole response)."""

    def __init__(self, response: Response, info: RouteInfo, kinds: list[str]) -> None:
        self.response, self.info, self.kinds = response, info, kinds


async def ask(router: AsyncRouter, stream: bool, **params: Any) -> Turn:
    """One turn on route ``chat``, every response and event checked against the SDK's types;
    a stream's events numbered in order and in the documented order."""
    params = {"model": "chat", "tools": WEATHER, "instructions": INSTRUCTIONS, **params}
    if not stream:
        response = await router.responses.create(**params)
        validate(response)
        assert abs(response.created_at - time.time()) < 60
        return Turn(response, response.llmroute, [])
    events = []
    async with await router.responses.create(**params, stream=True) as opened:
        async for event in opened:
            events.append(EVENTS.validate_python(event.to_dict(mode="json")))
        info, final = opened.llmroute, opened.response
    assert final is not None
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    completed = events[-1].response
    assert completed.id == events[0].response.id == final.id
    # llmroute's id and time, whatever served it (as for a whole response)
    assert completed.created_at == events[0].response.created_at == final.created_at
    assert abs(final.created_at - time.time()) < 60
    assert validate(final) == completed
    texts = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert texts == final.output_text
    for index, item in enumerate(completed.output):
        done = [e.item for e in events if e.type == "response.output_item.done"]
        assert done[index] == item
    return Turn(final, info, kinds)


def call_of(turn: Turn) -> Any:
    """The turn's only output: a call of get_weather for Paris."""
    (call,) = turn.response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    return call


# ---------------------------------------------------------------- each vendor's wire

QUESTION_TEXT = "What is the weather in Paris?"

# What each vendor must receive on turn 2 (the question, the native target's call and its
# output) and turn 3 (then the answer and the thanks), with the instructions and the tool.


def claude_saw(body: dict[str, Any], call_id: str, third: bool) -> None:
    assert body["system"] == [{"type": "text", "text": INSTRUCTIONS}]
    assert body["tools"][0]["name"] == "get_weather"
    expected: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": QUESTION_TEXT}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id,
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                      "content": "18C, cloudy"}]},
    ]  # fmt: skip
    if third:
        expected += [
            {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
            {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
        ]
    assert body["messages"] == expected


def gem_saw(body: dict[str, Any], call_id: str, third: bool) -> None:
    # Gemini pairs a call with its response by name: OpenAI's call_id has no place there
    assert body["systemInstruction"] == {"parts": [{"text": INSTRUCTIONS}]}
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    expected: list[dict[str, Any]] = [
        {"role": "user", "parts": [{"text": QUESTION_TEXT}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                      "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"result": "18C, cloudy"}}}]},
    ]  # fmt: skip
    if third:
        expected += [
            {"role": "model", "parts": [{"text": ANSWER}]},
            {"role": "user", "parts": [{"text": "Thanks!"}]},
        ]
    assert body["contents"] == expected


def aws_saw(body: dict[str, Any], call_id: str, third: bool) -> None:
    assert body["system"] == [{"text": INSTRUCTIONS}]
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    expected: list[dict[str, Any]] = [
        {"role": "user", "content": [{"text": QUESTION_TEXT}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": call_id, "name": "get_weather",
                                                       "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": call_id,
                                                     "content": [{"text": "18C, cloudy"}]}}]},
    ]  # fmt: skip
    if third:
        expected += [
            {"role": "assistant", "content": [{"text": ANSWER}]},
            {"role": "user", "content": [{"text": "Thanks!"}]},
        ]
    assert body["messages"] == expected


SAW = {"claude": claude_saw, "gem": gem_saw, "aws": aws_saw}


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("vendor", TRANSLATED)
async def test_a_tool_conversation_fails_over_from_native_to_a_vendor_mid_way(
    vendors: tuple[Vendors, str], vendor: str, stream: bool
) -> None:
    handler, root = vendors
    route = [f"oai/{MODELS['oai']}", f"{vendor}/{MODELS[vendor]}"]
    async with AsyncRouter(router_config(root, chat=route), env={}) as router:
        first = await ask(router, stream, input=QUESTION_TEXT)
        call = call_of(first)
        handler.fail["resp"] += [OVERLOADED, OVERLOADED]  # turns 2 and 3: native is down
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "18C, cloudy"}
        second = await ask(router, stream, input=[output], previous_response_id=first.response.id)
        third = await ask(router, stream, input="Thanks!", previous_response_id=second.response.id)
        stored = await router.responses.retrieve(third.response.id)
        items = await router.responses.input_items.list(third.response.id, order="asc")
    assert (first.info.target, first.info.attempts[0].outcome) == (route[0], "ok")
    assert second.response.output_text == ANSWER and third.response.output_text == FAREWELL
    for turn, previous in ((second, first), (third, second)):
        assert turn.response.previous_response_id == previous.response.id
        assert turn.info.target == route[1]
        assert [(a.target, a.outcome) for a in turn.info.attempts] == [
            (route[0], "error"), (route[1], "ok")]  # fmt: skip
        assert turn.info.usage is not None and turn.info.usage.output == 10
        assert turn.response.usage is not None and turn.response.usage.output_tokens == 10
    if stream:
        assert "response.function_call_arguments.delta" in first.kinds
        assert "response.output_text.delta" in third.kinds
    assert stored.output_text == FAREWELL and stored.previous_response_id == second.response.id
    assert [(i["type"], i.get("role")) for i in items.data] == [
        ("message", "user"), ("function_call", None), ("function_call_output", None),
        ("message", "assistant"), ("message", "user")]  # fmt: skip

    # the native target got turn 1 as asked (store: false), then turn 2 rebuilt, and failed
    native = handler.bodies("resp")
    assert len(native) == 3 and all(b["store"] is False for b in native)
    assert native[0]["input"] == QUESTION_TEXT and native[0]["instructions"] == INSTRUCTIONS
    assert [i.get("type", "message") for i in native[1]["input"]] == [
        "message", "function_call", "function_call_output"]  # fmt: skip
    assert "previous_response_id" not in json.dumps(native)
    # the vendor got turns 2 and 3 whole, in its own wire format
    bodies = handler.bodies(vendor)
    assert len(bodies) == 2
    SAW[vendor](bodies[0], call.call_id, third=False)
    SAW[vendor](bodies[1], call.call_id, third=True)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_anthropic_thinking_goes_back_with_its_turns(
    vendors: tuple[Vendors, str], stream: bool
) -> None:
    """Anthropic's signed thinking, kept by llmroute as a reasoning item, is sent back with
    the tool call it preceded (as Anthropic requires to continue a tool loop) and with the
    text; the Anthropic options reach Anthropic only, not the native target tried first."""
    handler, root = vendors
    route = [f"oai/{MODELS['oai']}", f"claude/{MODELS['claude']}"]
    thinking = {"anthropic": {"thinking": {"type": "enabled", "budget_tokens": 1024}}}
    handler.fail["resp"] += [OVERLOADED] * 3  # native is down throughout
    async with AsyncRouter(router_config(root, chat=route), env={}) as router:
        first = await ask(router, stream, input=QUESTION_TEXT, extra_body=thinking)
        reasoning, call = first.response.output
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "18C, cloudy"}
        second = await ask(router, stream, input=[output], extra_body=thinking,
                           previous_response_id=first.response.id)  # fmt: skip
        third = await ask(router, stream, input="Thanks!", extra_body=thinking,
                          previous_response_id=second.response.id)  # fmt: skip
    assert reasoning.type == "reasoning" and call.type == "function_call"
    assert [s.text for s in reasoning.summary] == [THINKING["thinking"]]
    assert reasoning.encrypted_content is not None
    assert reasoning.encrypted_content.startswith(THINKING_PREFIX)
    assert [i.type for i in second.response.output] == ["reasoning", "message"]
    assert (second.response.output_text, third.response.output_text) == (ANSWER, FAREWELL)
    if stream:
        assert "response.reasoning_summary_text.delta" in first.kinds
    native = handler.bodies("resp")
    assert len(native) == 3 and not [b for b in native if "anthropic" in b]
    assert not [b for b in native if THINKING_PREFIX in json.dumps(b)]  # OpenAI can't read it
    bodies = handler.bodies("claude")
    assert [b["thinking"] for b in bodies] == [thinking["anthropic"]["thinking"]] * 3
    tool_use = {"type": "tool_use", "id": call.call_id, "name": "get_weather",
                "input": {"city": "Paris"}}  # fmt: skip
    assert bodies[1]["messages"][1] == {"role": "assistant", "content": [THINKING, tool_use]}
    assert bodies[2]["messages"][1] == bodies[1]["messages"][1]
    assert bodies[2]["messages"][3] == {
        "role": "assistant", "content": [THINKING, {"type": "text", "text": ANSWER}]}  # fmt: skip


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"18C, cloudy in {city}"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_openai_agents_tool_loop_on_anthropic_with_thinking(
    vendors: tuple[Vendors, str], stream: bool
) -> None:
    """openai-agents' default Responses model on a translated Anthropic target with extended
    thinking: the agent hands llmroute's reasoning item back on its own, and Anthropic gets
    its signed thinking before the tool call it made, as it requires."""
    from agents import (
        Agent,
        ModelSettings,
        OpenAIProvider,
        RunConfig,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    handler, root = vendors
    route = [f"oai/{MODELS['oai']}", f"claude/{MODELS['claude']}"]
    handler.fail["resp"] += [OVERLOADED] * 2  # native is down
    thinking = {"anthropic": {"thinking": {"type": "enabled", "budget_tokens": 1024}}}
    set_tracing_disabled(True)
    try:
        async with AsyncRouter(router_config(root, chat=route), env={}) as router:
            config = RunConfig(model_provider=OpenAIProvider(openai_client=router.openai_client()))
            agent = Agent(name="weather", model="chat", tools=[function_tool(get_weather)],
                          model_settings=ModelSettings(extra_body=thinking))  # fmt: skip
            if stream:
                run = Runner.run_streamed(agent, QUESTION_TEXT, run_config=config)
                raw = [e.data.type async for e in run.stream_events()
                       if e.type == "raw_response_event"]  # fmt: skip
                assert "response.reasoning_summary_text.delta" in raw
                output, items = run.final_output, [i.type for i in run.new_items]
            else:
                result = await Runner.run(agent, QUESTION_TEXT, run_config=config)
                output, items = result.final_output, [i.type for i in result.new_items]
    finally:
        set_tracing_disabled(False)
    assert output == ANSWER
    assert items == ["reasoning_item", "tool_call_item", "tool_call_output_item",
                     "reasoning_item", "message_output_item"]  # fmt: skip
    first, second = handler.bodies("claude")
    assert first["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": QUESTION_TEXT}]}
    ]
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                "input": {"city": "Paris"}}  # fmt: skip
    assert second["messages"][1] == {"role": "assistant", "content": [THINKING, tool_use]}
    assert second["messages"][2]["content"][0]["content"] == "18C, cloudy in Paris"
    assert all("anthropic" not in body for body in handler.bodies("resp"))


async def test_pydantic_ai_tool_loop_on_anthropic_with_thinking(
    vendors: tuple[Vendors, str],
) -> None:
    """pydantic-ai's `OpenAIResponsesModel` (a reasoning model's profile) on a translated
    Anthropic target with extended thinking: its thinking part goes back as the reasoning
    item llmroute made, so Anthropic gets its signed thinking with the tool call."""
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.profiles.openai import openai_model_profile
    from pydantic_ai.providers.openai import OpenAIProvider

    handler, root = vendors
    thinking = {"anthropic": {"thinking": {"type": "enabled", "budget_tokens": 1024}}}
    settings: Any = {"extra_body": thinking, "openai_reasoning_summary": "auto"}
    route = [f"claude/{MODELS['claude']}"]
    async with AsyncRouter(router_config(root, chat=route), env={}) as router:
        model = OpenAIResponsesModel(
            "chat", provider=OpenAIProvider(openai_client=router.openai_client()),
            profile=openai_model_profile("gpt-5"),
        )  # fmt: skip
        agent = Agent(model, tools=[get_weather], model_settings=settings)
        result = await agent.run(QUESTION_TEXT)
        async with agent.run_stream(QUESTION_TEXT) as run:
            streamed = await run.get_output()
    assert result.output == streamed == ANSWER
    bodies = handler.bodies("claude")
    assert len(bodies) == 4
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                "input": {"city": "Paris"}}  # fmt: skip
    for body in (bodies[1], bodies[3]):
        assert body["messages"][1] == {"role": "assistant", "content": [THINKING, tool_use]}


SIGNATURE = "SIGNED-BY-GEMINI"


def signed(body: dict[str, Any]) -> dict[str, Any]:
    """Gemini 3's answer: its function calls signed."""
    reply = gemini_reply(body)
    part = reply["candidates"][0]["content"]["parts"][0]
    if "functionCall" in part:
        part["thoughtSignature"] = SIGNATURE
    return reply


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_gemini_thought_signatures_go_back_with_their_calls(
    vendors: tuple[Vendors, str], monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Gemini 3 signs its function calls and needs the signature back in a tool loop: it
    rides in a reasoning item before the call, and comes back on the call both from the
    stored conversation (previous_response_id) and from items the client sends itself."""
    import _vendors

    monkeypatch.setattr(_vendors, "gemini_reply", signed)
    handler, root = vendors
    async with AsyncRouter(router_config(root, chat=["gem/gemini-3-pro-preview"]), env={}) as r:
        first = await ask(r, stream, input=QUESTION_TEXT)
        reasoning, call = first.response.output
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "18C, cloudy"}
        await ask(r, stream, input=[output], previous_response_id=first.response.id)
        sent_back = [{"role": "user", "content": QUESTION_TEXT}, reasoning.to_dict(),
                     call.to_dict(), output]  # fmt: skip
        await ask(r, stream, input=sent_back, store=False)
    assert reasoning.type == "reasoning" and reasoning.summary == []
    assert reasoning.encrypted_content is not None
    assert reasoning.encrypted_content.startswith(THINKING_PREFIX)
    assert call.type == "function_call"
    signed_call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                   "thoughtSignature": SIGNATURE}  # fmt: skip
    for body in handler.bodies("gem")[1:]:
        assert body["contents"][1] == {"role": "model", "parts": [signed_call]}


@pytest.mark.parametrize("vendor", ["claude", "compat", "oai"])
async def test_a_gemini_signature_never_reaches_another_vendor(
    vendors: tuple[Vendors, str], monkeypatch: pytest.MonkeyPatch, vendor: str
) -> None:
    """A conversation that fails over from Gemini mid tool loop reaches Anthropic, an
    OpenAI-compatible target or OpenAI's Responses API without Gemini's signature."""
    import _vendors

    monkeypatch.setattr(_vendors, "gemini_reply", signed)
    handler, root = vendors
    config = router_config(root, chat=["gem/gemini-3-pro-preview", f"{vendor}/model-b"])
    config["providers"]["compat"] = {"type": "openai", "api_key": "sk-test",
                                     "base_url": f"{root}/v1", "responses_api": False}  # fmt: skip
    async with AsyncRouter(config, env={}) as r:
        first = await ask(r, False, input=QUESTION_TEXT)
        handler.fail["gem"].append(OVERLOADED)
        _, call = first.response.output
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "18C, cloudy"}
        second = await ask(r, False, input=[output], previous_response_id=first.response.id)
    assert second.info.target == f"{vendor}/model-b" and "18C" in second.response.output_text
    wire = {"compat": "oai", "oai": "resp"}.get(vendor, vendor)
    (body,) = handler.bodies(wire)
    assert call.call_id in json.dumps(body)  # the call went, its signature did not
    assert SIGNATURE not in json.dumps(body) and THINKING_PREFIX not in json.dumps(body)

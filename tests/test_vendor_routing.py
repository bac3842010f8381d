"""One conversation with tools routed to OpenAI, Anthropic, Gemini and Bedrock over loopback
upstreams that speak each vendor's wire format: the answers are equivalent OpenAI-shaped
responses, streamed or not, and a failover from one vendor to another mid-conversation works."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import llmroute
from _upstream import Upstream
from _vendors import (
    ANSWER,
    ARGS,
    BEDROCK_MODEL,
    MODELS,
    QUESTION,
    TOOLS,
    VENDORS,
    Vendors,
    anthropic_reply,
    router_config,
    sse,
)
from llmroute import AsyncRouter

pytestmark = pytest.mark.anyio


@pytest.fixture
async def vendors(upstream: Upstream) -> tuple[Vendors, str]:
    handler = Vendors()
    upstream.handler = handler
    return handler, upstream.base_url.removesuffix("/v1")


async def collect(stream: llmroute.AsyncChatStream) -> dict[str, Any]:
    """A stream folded into (content, tool calls, finish reason, usage chunk)."""
    text, calls, finish, usage = "", {}, None, None
    async with stream:
        async for chunk in stream:
            if chunk.usage is not None and not chunk.choices:
                usage = chunk.usage
            ChatCompletionChunk.model_validate(chunk.model_dump(exclude_unset=True))
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
                for fragment in choice.delta.tool_calls or []:
                    assert fragment.function is not None
                    entry = calls.setdefault(fragment.index, {"id": "", "name": "", "args": ""})
                    entry["id"] = fragment.id or entry["id"]
                    entry["name"] = fragment.function.name or entry["name"]
                    entry["args"] += fragment.function.arguments or ""
    return {"text": text, "calls": list(calls.values()), "finish": finish, "usage": usage}


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("vendor", VENDORS)
async def test_the_same_tool_conversation_on_every_vendor(
    vendors: tuple[Vendors, str], vendor: str
) -> None:
    handler, root = vendors
    model = f"{vendor}/{MODELS[vendor]}"
    async with AsyncRouter(router_config(root), env={}) as router:
        first = await router.chat.completions.create(model=model, messages=QUESTION, tools=TOOLS)
        choice = first.choices[0]
        assert (first.object, choice.finish_reason, choice.message.content) == (
            "chat.completion", "tool_calls", None)  # fmt: skip
        (call,) = choice.message.tool_calls or []
        assert (call.type, call.function.name, json.loads(call.function.arguments)) == (
            "function", "get_weather", ARGS)  # fmt: skip
        history = [*QUESTION, choice.message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": "18C, cloudy"}]  # fmt: skip
        second = await router.chat.completions.create(model=model, messages=history, tools=TOOLS)
    assert (second.choices[0].message.content, second.choices[0].finish_reason) == (ANSWER, "stop")
    assert second.choices[0].message.tool_calls is None
    for reply in (first, second):
        info = reply.llmroute
        assert (info.provider, info.model) == (vendor, MODELS[vendor])
        assert info.usage is not None and (info.usage.input, info.usage.output) == (50, 10)
        assert info.usage.cache_read == (0 if vendor in ("oai", "gem") else 10)
    assert [s[0] for s in handler.seen] == [vendor, vendor]
    for reply in (first, second):  # valid for the official SDK's own types
        ChatCompletion.model_validate(reply.model_dump(exclude_unset=True))


@pytest.mark.parametrize("vendor", VENDORS)
async def test_streamed_tool_calls_and_text_on_every_vendor(
    vendors: tuple[Vendors, str], vendor: str
) -> None:
    handler, root = vendors
    model = f"{vendor}/{MODELS[vendor]}"
    async with AsyncRouter(router_config(root), env={}) as router:
        stream = await router.chat.completions.create(
            model=model, messages=QUESTION, tools=TOOLS, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        first = await collect(stream)
        assert first["finish"] == "tool_calls" and first["text"] == ""
        (call,) = first["calls"]
        assert (call["name"], json.loads(call["args"])) == ("get_weather", ARGS)
        assert call["id"]
        assert first["usage"] is not None and first["usage"].total_tokens == 60
        assert stream.llmroute.usage is not None and not stream.llmroute.usage.estimated
        history = [*QUESTION,
                   {"role": "assistant", "content": None, "tool_calls": [{"id": call["id"], "type": "function",
                    "function": {"name": call["name"], "arguments": call["args"]}}]},
                   {"role": "tool", "tool_call_id": call["id"], "content": "18C, cloudy"}]  # fmt: skip
        stream = await router.chat.completions.create(model=model, messages=history, tools=TOOLS,
                                                      stream=True)  # fmt: skip
        second = await collect(stream)
    assert (second["text"], second["finish"], second["calls"]) == (ANSWER, "stop", [])
    paths = [path for _, path, _, _ in handler.seen]
    streamed = {"oai": "/v1/chat/completions", "claude": "/v1/messages",
                "gem": "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                "aws": f"/model/{BEDROCK_MODEL}/converse-stream"}  # fmt: skip
    assert paths == [streamed[vendor]] * 2
    assert second["usage"] is None  # not asked for
    assert stream.llmroute.usage is not None and stream.llmroute.usage.output == 10


async def test_requests_reach_each_vendor_in_its_own_format(vendors: tuple[Vendors, str]) -> None:
    handler, root = vendors
    async with AsyncRouter(router_config(root), env={}) as router:
        for vendor in VENDORS:
            await router.chat.completions.create(model=f"{vendor}/{MODELS[vendor]}",
                                                 messages=QUESTION, tools=TOOLS)  # fmt: skip
    seen = {vendor: (path, body, headers) for vendor, path, body, headers in handler.seen}
    assert seen["oai"][1]["tools"] == TOOLS
    assert seen["claude"][1]["system"] == [{"type": "text", "text": QUESTION[0]["content"]}]
    assert seen["claude"][1]["tools"][0]["input_schema"] == TOOLS[0]["function"]["parameters"]
    assert seen["claude"][2]["x-api-key"] == "sk-ant-test"
    assert seen["gem"][0] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen["gem"][1]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert seen["gem"][2]["x-goog-api-key"] == "AIza-test"
    path, body, headers = seen["aws"]
    assert path == f"/model/{BEDROCK_MODEL}/converse"
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "x-amz-date" in headers


FAILOVERS = [
    ("claude", "gem", 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ("gem", "aws", 500, {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}),
    ("aws", "oai", 503, {"message": "Bedrock is unable to process your request."}),
    ("oai", "claude", 500, {"error": {"message": "server error", "type": "server_error"}}),
]  # fmt: skip


@pytest.mark.parametrize(("first", "second", "status", "error"), FAILOVERS)
async def test_failover_to_another_vendor_mid_conversation(
    vendors: tuple[Vendors, str], first: str, second: str, status: int, error: dict[str, Any]
) -> None:
    handler, root = vendors
    route = [f"{first}/{MODELS[first]}", f"{second}/{MODELS[second]}"]
    async with AsyncRouter(router_config(root, chat=route), env={}) as router:
        turn = await router.chat.completions.create(model="chat", messages=QUESTION, tools=TOOLS)
        assert turn.llmroute.provider == first
        (call,) = turn.choices[0].message.tool_calls or []
        history = [*QUESTION, turn.choices[0].message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": "18C, cloudy"}]  # fmt: skip
        handler.fail[first].append((status, error))
        answer = await router.chat.completions.create(model="chat", messages=history, tools=TOOLS)
        stream_fail = [(status, error)]
        handler.fail[first] += stream_fail
        streamed = await collect(await router.chat.completions.create(
            model="chat", messages=history, tools=TOOLS, stream=True))  # fmt: skip
    assert answer.choices[0].message.content == ANSWER
    info = answer.llmroute
    assert info.provider == second
    assert [(a.provider, a.outcome, a.status) for a in info.attempts] == [
        (first, "error", status), (second, "ok", 200)]  # fmt: skip
    assert info.attempts[0].error_type == "ProviderUnavailable"
    assert (streamed["text"], streamed["finish"]) == (ANSWER, "stop")
    # the second vendor got the first vendor's tool call and its result, in its own format
    vendor, _, body, _ = handler.seen[2]
    assert vendor == second and "18C, cloudy" in json.dumps(body)


async def test_an_anthropic_error_inside_a_stream_before_content_fails_over(
    vendors: tuple[Vendors, str], upstream: Upstream
) -> None:
    handler, root = vendors

    async def overloaded_then_vendors(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/messages":
            return await sse(request, [
                ("message_start", {"type": "message_start", "message": anthropic_reply({}) | {"content": []}}),
                ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ])  # fmt: skip
        return await handler(request)

    upstream.handler = overloaded_then_vendors
    route = [f"claude/{MODELS['claude']}", f"gem/{MODELS['gem']}"]
    async with AsyncRouter(router_config(root, chat=route), env={}) as router:
        history = [*QUESTION, {"role": "assistant", "tool_calls": [{"id": "toolu_1", "type": "function",
                   "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                   {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}]  # fmt: skip
        stream = await router.chat.completions.create(model="chat", messages=history, stream=True)
        result = await collect(stream)
    assert result["text"] == ANSWER
    attempts = stream.llmroute.attempts
    assert [(a.provider, a.outcome, a.error_type) for a in attempts] == [
        ("claude", "error", "ProviderUnavailable"), ("gem", "ok", None)]  # fmt: skip


async def test_a_request_a_vendor_cannot_translate_is_refused_before_sending(
    vendors: tuple[Vendors, str],
) -> None:
    handler, root = vendors
    async with AsyncRouter(router_config(root), env={}) as router:
        with pytest.raises(llmroute.RequestError, match="does not support n > 1"):
            await router.chat.completions.create(model="claude/m", messages=QUESTION, n=2)
        with pytest.raises(llmroute.RequestError, match="invalid anthropic options"):
            await router.chat.completions.create(model="claude/m", messages=QUESTION,
                                                 extra_body={"anthropic": {"top_kk": 1}})  # fmt: skip
        reply = await router.chat.completions.create(
            model="oai/gpt-4o-mini", messages=QUESTION, extra_body={"anthropic": {"top_k": 1}}
        )  # another vendor's options are not sent to OpenAI
    assert reply.choices[0].finish_reason == "tool_calls"
    assert [s[0] for s in handler.seen] == ["oai"]
    assert "anthropic" not in handler.seen[0][2]

"""Loopback upstreams that speak each vendor's wire format (OpenAI chat and Responses,
Anthropic Messages, Gemini generateContent, Bedrock Converse), answering one weather
conversation with a tool: a question gets a call of ``get_weather``, the tool's result
(``18C``) gets `ANSWER`, and a closing "Thanks" gets `FAREWELL`. Anthropic answers with a
signed thinking block first when the request enables thinking. `Vendors` is the handler
(set it as `Upstream.handler`); it records what each vendor received and scripts errors.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from _eventstream import event_frame
from _responses_upstream import answer as responses_answer

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}]  # fmt: skip
QUESTION = [
    {"role": "system", "content": "You answer weather questions with the tool."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
ANSWER = "It is 18C and cloudy in Paris."
ARGS = {"city": "Paris"}
VENDORS = ["oai", "claude", "gem", "aws"]
BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
MODELS = {"oai": "gpt-4o-mini", "claude": "claude-haiku-4-5", "gem": "gemini-2.5-flash",
          "aws": BEDROCK_MODEL}  # fmt: skip


# ---------------------------------------------------------------- the vendors' answers


FAREWELL = "You are welcome: enjoy Paris!"
#: The signed thinking Anthropic answers with when the request enables thinking.
THINKING = {"type": "thinking", "thinking": "The user wants the weather.",
            "signature": "EqQBCkgIARABGAIiQSigned"}  # fmt: skip


def second_turn(body: dict[str, Any]) -> bool:
    """Whether the request already carries the tool's result (the conversation's second turn)."""
    return "18C" in json.dumps(body)


def closing(body: dict[str, Any]) -> bool:
    """Whether the request's last message (any vendor's) is the user's closing thanks."""
    turns = body.get("messages") or body.get("contents") or [{}]
    return "Thanks" in json.dumps(turns[-1])


def openai_reply(body: dict[str, Any]) -> dict[str, Any]:
    if second_turn(body):
        text = FAREWELL if closing(body) else ANSWER
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
    else:
        call = {"id": "call_oai_1", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps(ARGS)}}  # fmt: skip
        message, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}}  # fmt: skip


def anthropic_reply(body: dict[str, Any]) -> dict[str, Any]:
    if second_turn(body):
        text = FAREWELL if closing(body) else ANSWER
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        stop = "end_turn"
    else:
        content = [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": ARGS}]
        stop = "tool_use"
    if (body.get("thinking") or {}).get("type") == "enabled":
        content.insert(0, dict(THINKING))
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": content, "stop_reason": stop,
            "usage": {"input_tokens": 40, "output_tokens": 10, "cache_read_input_tokens": 10}}  # fmt: skip


def gemini_reply(body: dict[str, Any]) -> dict[str, Any]:
    if second_turn(body):
        part: dict[str, Any] = {"text": FAREWELL if closing(body) else ANSWER}
    else:
        part = {"functionCall": {"name": "get_weather", "args": ARGS}}
    return {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 60},
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}  # fmt: skip


def bedrock_reply(body: dict[str, Any]) -> dict[str, Any]:
    if second_turn(body):
        content: list[dict[str, Any]] = [{"text": FAREWELL if closing(body) else ANSWER}]
        stop = "end_turn"
    else:
        content = [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": ARGS}}]
        stop = "tool_use"
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": {"inputTokens": 40, "outputTokens": 10, "totalTokens": 60,
                      "cacheReadInputTokens": 10}, "metrics": {"latencyMs": 5}}  # fmt: skip


async def sse(request: web.Request, events: list[tuple[str | None, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for name, data in events:
        prefix = f"event: {name}\n" if name else ""
        text = data if isinstance(data, str) else json.dumps(data)
        await response.write(f"{prefix}data: {text}\n\n".encode())
    await response.write_eof()
    return response


def openai_stream(reply: dict[str, Any]) -> list[tuple[str | None, Any]]:
    message, finish = reply["choices"][0]["message"], reply["choices"][0]["finish_reason"]

    def chunk(delta: dict[str, Any], reason: str | None = None, **more: Any) -> dict[str, Any]:
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta,
                                                     "finish_reason": reason}], **more}  # fmt: skip

    events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        events.append((None, chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""}}]})))  # fmt: skip
        events.append((None, chunk({"tool_calls": [{"index": 0, "function": {
            "arguments": call["function"]["arguments"]}}]})))  # fmt: skip
    else:
        events.append((None, chunk({"content": message["content"]})))
    events.append((None, chunk({}, finish)))
    usage = {**chunk({}), "choices": [], "usage": reply["usage"]}
    return [*events, (None, usage), (None, "[DONE]")]


def anthropic_stream(reply: dict[str, Any]) -> list[tuple[str | None, Any]]:
    start = {**reply, "content": [], "stop_reason": None,
             "usage": {**reply["usage"], "output_tokens": 1}}  # fmt: skip
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(reply["content"]):
        if block["type"] == "tool_use":
            opened = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        elif block["type"] == "thinking":
            opened = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                      {"type": "signature_delta", "signature": block["signature"]}]  # fmt: skip
        else:
            opened = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block["text"]}]
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": opened}))  # fmt: skip
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": delta}) for delta in deltas]  # fmt: skip
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events += [
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": reply["stop_reason"]},
                           "usage": {"output_tokens": reply["usage"]["output_tokens"]}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    return events


async def bedrock_stream(request: web.Request, reply: dict[str, Any]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
    await response.prepare(request)
    block = reply["output"]["message"]["content"][0]
    frames = [event_frame("messageStart", {"role": "assistant"})]
    if "toolUse" in block:
        use = block["toolUse"]
        start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
        frames += [event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": start}),
                   event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {
                       "toolUse": {"input": json.dumps(use["input"])}}})]  # fmt: skip
    else:
        frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                        "delta": {"text": block["text"]}}))  # fmt: skip
    frames += [event_frame("contentBlockStop", {"contentBlockIndex": 0}),
               event_frame("messageStop", {"stopReason": reply["stopReason"]}),
               event_frame("metadata", {"usage": reply["usage"], "metrics": {"latencyMs": 5}})]  # fmt: skip
    payload = b"".join(frames)
    for i in range(0, len(payload), 37):  # frames split across writes
        await response.write(payload[i : i + 37])
    await response.write_eof()
    return response


class Vendors:
    """The loopback handler: answers each vendor's path in its format; `fail` scripts errors.

    OpenAI's Responses API (``/v1/responses``, the vendor ``resp``) is answered by
    `_responses_upstream` (a call of the first tool, then text quoting its output)."""

    def __init__(self) -> None:
        self.fail: dict[str, list[tuple[int, dict[str, Any]]]] = {v: [] for v in [*VENDORS, "resp"]}
        self.seen: list[tuple[str, str, dict[str, Any], Any]] = []

    def bodies(self, vendor: str) -> list[dict[str, Any]]:
        """The bodies `vendor` received, in order."""
        return [body for seen, _, body, _ in self.seen if seen == vendor]

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        path = request.path
        vendor = ("claude" if path == "/v1/messages" else "oai" if path == "/v1/chat/completions"
                  else "resp" if path == "/v1/responses"
                  else "gem" if path.startswith("/v1beta/") else "aws")  # fmt: skip
        self.seen.append((vendor, request.raw_path, body, request.headers.copy()))
        if self.fail[vendor]:
            status, error = self.fail[vendor].pop(0)
            return web.json_response(error, status=status)
        if vendor == "resp":
            return await responses_answer(request)
        stream = path.endswith(("converse-stream", ":streamGenerateContent")) or body.get("stream")
        if vendor == "oai":
            reply = openai_reply(body)
            return await sse(request, openai_stream(reply)) if stream else web.json_response(reply)
        if vendor == "claude":
            reply = anthropic_reply(body)
            return (
                await sse(request, anthropic_stream(reply)) if stream else web.json_response(reply)
            )
        if vendor == "gem":
            reply = gemini_reply(body)
            return await sse(request, [(None, reply)]) if stream else web.json_response(reply)
        reply = bedrock_reply(body)
        return await bedrock_stream(request, reply) if stream else web.json_response(reply)


def router_config(root: str, **routes: list[str]) -> dict[str, Any]:
    return {
        "providers": {
            "oai": {"type": "openai", "api_key": "sk-test", "base_url": f"{root}/v1"},
            "claude": {"type": "anthropic", "api_key": "sk-ant-test", "base_url": root},
            "gem": {"type": "gemini", "api_key": "AIza-test", "base_url": f"{root}/v1beta"},
            "aws": {"type": "bedrock", "region": "us-east-1", "base_url": root,
                    "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret"},
        },
        "routes": {name: {"targets": targets, "retry": {"attempts": 1}} for name, targets in routes.items()},
    }  # fmt: skip

"""A loopback upstream that answers like a model would, for the SDK and framework tests.

It reads each Chat Completions request and answers in kind: it calls the
tool a request forces or offers (with arguments made from the tool's JSON
schema), answers a tool result with text that quotes it, fills a
``json_schema`` response format from its schema, and streams all of that as
server-sent events when asked. Under ``/down/`` every request fails with a 503
(a first target that fails, to show failover).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from _upstream import Upstream, chunk_body, completion_body, sse

#: What ``json_object`` requests get (frameworks that send the schema in the prompt).
PERSON = {"name": "Ada", "age": 36}
_SAMPLES = {"string": "Paris", "integer": 36, "number": 21.5, "boolean": True}


def example(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A value that validates against a simple JSON schema (objects, arrays, scalars, $ref)."""
    defs = {**(defs or {}), **schema.get("$defs", {})}
    if "$ref" in schema:
        return example(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example(schema[key][0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example(sub, defs) for name, sub in properties.items()}
    if kind == "array":
        return [example(schema.get("items", {"type": "string"}), defs)]
    return _SAMPLES.get(kind, "x")


def _tool_call(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    arguments = example(function.get("parameters") or {"type": "object"})
    return {"name": function["name"], "arguments": json.dumps(arguments)}


def reply(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The answer to a request: its text, or the tool call it makes."""
    tools: list[dict[str, Any]] = [t for t in body.get("tools") or [] if t["type"] == "function"]
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    outputs = [t for t in tools if t["function"]["name"].startswith("final_result")]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        wanted = choice.get("function", {}).get("name")
        forced = [t for t in tools if t["function"]["name"] == wanted]
        return None, _tool_call(forced[0])
    if last.get("role") == "tool":
        if outputs:  # pydantic-ai: structured output goes through its output tool
            return None, _tool_call(outputs[0])
        return f"The tool said: {last.get('content')}", None
    if tools:
        plain = [t for t in tools if t not in outputs]
        return None, _tool_call((plain or outputs)[0])
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return json.dumps(example(response_format["json_schema"]["schema"])), None
    if response_format.get("type") == "json_object":
        return json.dumps(PERSON), None
    return "Hello from the model upstream!", None


def _completion(text: str | None, call: dict[str, Any] | None, model: str) -> dict[str, Any]:
    body = completion_body(text or "", model)
    if call is not None:
        message = body["choices"][0]["message"]
        message["content"] = None
        message["tool_calls"] = [{"id": "call_1", "type": "function", "function": call}]
        body["choices"][0]["finish_reason"] = "tool_calls"
    return body


def _chunks(text: str | None, call: dict[str, Any] | None, usage: bool) -> list[Any]:
    events: list[Any] = [chunk_body({"role": "assistant", "content": ""})]
    if call is not None:
        arguments = call["arguments"]
        half = len(arguments) // 2
        first = {"index": 0, "id": "call_1", "type": "function"}
        first["function"] = {"name": call["name"], "arguments": arguments[:half]}
        events.append(chunk_body({"tool_calls": [first]}))
        rest = {"index": 0, "function": {"arguments": arguments[half:]}}
        events.append(chunk_body({"tool_calls": [rest]}))
        events.append(chunk_body({}, "tool_calls"))
    else:
        words = (text or "").split(" ")
        events += [chunk_body({"content": w + (" " if i < len(words) - 1 else "")})
                   for i, w in enumerate(words)]  # fmt: skip
        events.append(chunk_body({}, "stop"))
    if usage:
        last = chunk_body({})
        last["choices"] = []
        last["usage"] = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        events.append(last)
    events.append("[DONE]")
    return events


async def answer(request: web.Request) -> web.StreamResponse:
    """The model-like handler (set it as `Upstream.handler`)."""
    if request.path.startswith("/down/"):
        error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
        return web.json_response(error, status=503)
    body = await request.json()
    if request.path.endswith("/embeddings"):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
            for i, _ in enumerate(inputs)
        ]
        usage = {"prompt_tokens": 3, "total_tokens": 3}
        listed = {"object": "list", "data": data, "model": body["model"], "usage": usage}
        return web.json_response(listed)
    text, call = reply(body)
    if body.get("stream"):
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await sse(request, _chunks(text, call, usage))
    return web.json_response(_completion(text, call, body.get("model", "up-model")))


def model_config(upstream: Upstream, **route: Any) -> dict[str, Any]:
    """A router config whose route ``chat`` fails over from a 503ing target to the model
    upstream (``up/gpt-test``); route ``direct`` has the upstream alone."""
    root = upstream.base_url.removesuffix("/v1")
    return {
        "providers": {
            "down": {"type": "openai", "base_url": f"{root}/down/v1", "api_key": "k"},
            "up": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"},
        },
        "routes": {
            "chat": {"targets": ["down/gpt-test", "up/gpt-test"], "retry": {"attempts": 1}},
            "direct": {"targets": ["up/gpt-test"], **route},
        },
    }

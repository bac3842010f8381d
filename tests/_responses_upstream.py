"""A loopback upstream that serves OpenAI's Responses API natively, answering like a model.

``POST .../responses`` reads the request's input items and answers in kind,
as `_model_upstream` does for chat: it calls the function tool a request
forces or offers, answers a function call's output with text that quotes it,
fills a ``json_schema`` text format from its schema; streamed, it sends the
documented event sequence with sequence numbers. Requests that ask for
reasoning get a reasoning item with a summary and encrypted content first.
Under ``/down/`` every request fails with a 503; under ``/failing/`` a stream
sends ``response.created`` and then ``response.failed`` (a failure before the
first content, which must fail over). Input item ids must have the prefix OpenAI
requires of their type (`ID_PREFIXES`), or the answer is OpenAI's 400. Chat paths are
answered by `_model_upstream.answer`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from _model_upstream import PERSON, example
from _model_upstream import answer as chat_answer

TEXT = "Hello from the Responses upstream!"


def _function_call(tool: dict[str, Any], index: int) -> dict[str, Any]:
    arguments = example(tool.get("parameters") or {"type": "object"})
    return {
        "id": f"fc_up{index}",
        "type": "function_call",
        "status": "completed",
        "call_id": f"call_up{index}",
        "name": tool["name"],
        "arguments": json.dumps(arguments),
    }


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return list(raw or [])


def reply(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The answer to a Responses request: its text, or the function call it makes."""
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    items = _items(body)
    last = items[-1] if items else {}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        forced = [t for t in tools if t["name"] == choice.get("name")]
        return None, _function_call(forced[0], len(items))
    if last.get("type") == "function_call_output":
        return f"The tool said: {last.get('output')}", None
    if tools and choice != "none":
        return None, _function_call(tools[0], len(items))
    form = (body.get("text") or {}).get("format") or {}
    if form.get("type") == "json_schema":
        return json.dumps(example(form["schema"])), None
    if form.get("type") == "json_object":
        return json.dumps(PERSON), None
    return TEXT, None


def _message(text: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }


def _reasoning() -> dict[str, Any]:
    return {
        "id": "rs_up",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Thinking it over."}],
        "encrypted_content": "ENCRYPTED-REASONING",
    }


def response_body(
    body: dict[str, Any], output: list[dict[str, Any]], status: str
) -> dict[str, Any]:
    """The whole response object for `body` with `output`."""
    return {
        "id": "resp_upstream",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", "up-model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": 11,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 7,
            "output_tokens_details": {
                "reasoning_tokens": 3 if output[0]["type"] == "reasoning" else 0
            },
            "total_tokens": 18,
        },
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _output(body: dict[str, Any]) -> list[dict[str, Any]]:
    text, call = reply(body)
    output = [_reasoning()] if body.get("reasoning") else []
    output.append(call if call is not None else _message(text or ""))
    return output


def events(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The documented event sequence of a streamed answer to `body`."""
    output = _output(body)
    final = response_body(body, output, "completed")
    opening = {**final, "status": "in_progress", "output": [], "usage": None}
    out: list[dict[str, Any]] = [
        {"type": "response.created", "response": opening},
        {"type": "response.in_progress", "response": opening},
    ]
    for index, item in enumerate(output):
        if item["type"] == "reasoning":
            out.append({"type": "response.output_item.added", "output_index": index,
                        "item": {**item, "summary": []}})  # fmt: skip
            part = item["summary"][0]
            common = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            out.append({"type": "response.reasoning_summary_part.added", **common,
                        "part": {"type": "summary_text", "text": ""}})  # fmt: skip
            out.append({"type": "response.reasoning_summary_text.delta", **common,
                        "delta": part["text"]})  # fmt: skip
            out.append({"type": "response.reasoning_summary_text.done", **common,
                        "text": part["text"]})  # fmt: skip
            out.append({"type": "response.reasoning_summary_part.done", **common, "part": part})
        elif item["type"] == "function_call":
            out.append({"type": "response.output_item.added", "output_index": index,
                        "item": {**item, "arguments": "", "status": "in_progress"}})  # fmt: skip
            arguments = item["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                out.append({"type": "response.function_call_arguments.delta",
                            "item_id": item["id"], "output_index": index, "delta": piece})  # fmt: skip
            out.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                        "output_index": index, "name": item["name"],
                        "arguments": arguments})  # fmt: skip
        else:
            text = item["content"][0]["text"]
            out.append({"type": "response.output_item.added", "output_index": index,
                        "item": {**item, "status": "in_progress", "content": []}})  # fmt: skip
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append({"type": "response.content_part.added", **common, "part": empty})
            words = text.split(" ")
            for i, word in enumerate(words):
                delta = word + (" " if i < len(words) - 1 else "")
                out.append({"type": "response.output_text.delta", **common, "delta": delta,
                            "logprobs": []})  # fmt: skip
            out.append({"type": "response.output_text.done", **common, "text": text,
                        "logprobs": []})  # fmt: skip
            out.append({"type": "response.content_part.done", **common,
                        "part": item["content"][0]})  # fmt: skip
        out.append({"type": "response.output_item.done", "output_index": index, "item": item})
    out.append({"type": "response.completed", "response": final})
    for number, event in enumerate(out):
        event["sequence_number"] = number
    return out


async def send_events(request: web.Request, sequence: list[dict[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for event in sequence:
        await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    await response.write_eof()
    return response


#: The prefix OpenAI requires of an input item's id, by item type (a wrong one is a 400,
#: ``invalid_id_prefix``).
ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
               "reasoning": "rs", "custom_tool_call": "ctc"}  # fmt: skip


def bad_id(body: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's error for an input item whose id has the wrong prefix for its type, if any."""
    for index, item in enumerate(_items(body)):
        prefix = ID_PREFIXES.get(item.get("type", "message"))
        given = item.get("id")
        if prefix is not None and given is not None and not given.startswith(f"{prefix}_"):
            message = (f"Invalid 'input[{index}].id': '{given}'. Expected an ID that begins "
                       f"with '{prefix}'.")  # fmt: skip
            return {"error": {"message": message, "type": "invalid_request_error",
                              "param": f"input[{index}].id", "code": "invalid_id_prefix"}}  # fmt: skip
    return None


async def answer(request: web.Request) -> web.StreamResponse:
    """The handler (set it as `Upstream.handler`): Responses natively, chat as a model."""
    if not request.path.endswith("/responses"):
        return await chat_answer(request)
    if request.path.startswith("/down/"):
        error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
        return web.json_response(error, status=503)
    body = await request.json()
    refused = bad_id(body)
    if refused is not None:
        return web.json_response(refused, status=400)
    if request.path.startswith("/failing/") and body.get("stream"):
        opening = response_body(body, [_message("")], "in_progress")
        failed = {**opening, "status": "failed", "output": [],
                  "error": {"code": "server_error", "message": "the model fell over"}}  # fmt: skip
        return await send_events(request, [
            {"type": "response.created", "response": opening, "sequence_number": 0},
            {"type": "response.failed", "response": failed, "sequence_number": 1},
        ])  # fmt: skip
    if body.get("stream"):
        return await send_events(request, events(body))
    return web.json_response(response_body(body, _output(body), "completed"))

"""The Responses API: ``POST /v1/responses`` (streamed as typed server-sent events, or not),
``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` and
``POST /v1/responses/input_tokens``.

Stored responses are scoped by the caller's gateway key: a response stored
under one key is a 404 under any other (as is one that never existed or
expired), so ids leak nothing across tenants.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

from pydantic_core import to_json

from ..._errors import LLMRouteError, UnknownModel
from ..._request import RequestOptions
from ...responses.types import ResponseStreamEvent, ResponseTextDeltaEvent, json_bytes
from ..errors import HTTPError, from_exception
from ..headers import control_options
from ..request import GatewayRequest
from ..responses import answer, send_json, send_stream
from ..scrub import ErrorText

__all__ = [
    "ResponsesEvents",
    "count_input_tokens",
    "create_response",
    "stored_response",
]

#: A response or event as JSON: the fields it has (what an upstream sent, or all of those
#: llmroute built), so nothing is added that OpenAI would not send.
_response_json = json_bytes
#: What a response id in a path may be (llmroute makes ``resp_`` and hex digits).
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: A text delta without logprobs as `chunk` writes it, its five values left to fill in.
_TEXT_DELTA = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":%d,"item_id":%b,"output_index":%d,"content_index":%d,"delta":%b,'
    b'"logprobs":[]}\n\n'
)


class ResponsesEvents:
    """The Responses API's stream format: an ``event:`` line naming each event's type and a
    ``data:`` line with the event; no ``[DONE]``. A failure the stream itself did not
    report becomes a last ``error`` event."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = -1

    def chunk(self, event: ResponseStreamEvent) -> bytes:
        values = event.__dict__
        self._last = values["sequence_number"]
        if (
            type(event) is ResponseTextDeltaEvent
            and not values["logprobs"]
            and len(event.__pydantic_fields_set__) == 7
            and not event.__pydantic_extra__
        ):
            # Fast path, the bulk of a stream: the template filled in, what the lines
            # below write for it (bytes for bytes); a translated 20-chunk stream through
            # the gateway 3.81M -> 3.74M instructions (callgrind). Oracle:
            # tests/test_responses_fast_paths.py::test_a_text_delta_is_written_as_json_bytes_writes_it
            return _TEXT_DELTA % (
                values["sequence_number"], to_json(values["item_id"]), values["output_index"],
                values["content_index"], to_json(values["delta"]),
            )  # fmt: skip
        return b"event: " + event.type.encode() + b"\ndata: " + json_bytes(event) + b"\n\n"

    @staticmethod
    def content(event: ResponseStreamEvent) -> bool:
        return True  # the stream was opened up to its first content

    def end(self) -> bytes:
        return b""

    def error(self, failure: LLMRouteError, request_id: str, text: ErrorText) -> bytes:
        error = from_exception(failure, text)
        payload = {
            "type": "error",
            "sequence_number": self._last + 1,
            "code": error.code or error.type,
            "message": f"{error.message} (request {request_id})",
            "param": error.param,
        }
        return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"


async def create_response(request: GatewayRequest) -> None:
    """``POST /v1/responses``: one response through the router."""
    identity = request.identity()
    body = await request.read_json()
    request.allowed(identity, body)
    routes = request.gateway.router.config.routes
    options = control_options(identity, request.controls, routes, request.model)
    stream = body.pop("stream", None)
    if stream is not None and not isinstance(stream, bool):
        raise HTTPError(400, "stream: expected true or false", param="stream")
    responses = request.gateway.router.responses
    try:
        if stream:
            opened = await responses.create(stream=True, extra_body=body, llmroute=options)
            await send_stream(request, "responses", opened, ResponsesEvents())
            return
        response = await responses.create(extra_body=body, llmroute=options)
    except UnknownModel as exc:
        raise identity.visible(exc) from None
    await answer(request, "responses", _response_json(response), response.llmroute)


async def count_input_tokens(request: GatewayRequest) -> None:
    """``POST /v1/responses/input_tokens``: a request's input tokens, estimated (the
    ``x-llmroute-estimated: true`` header says so)."""
    identity = request.identity()
    body = await request.read_json()
    request.allowed(identity, body)
    options = control_options(identity, request.controls)
    body.pop("stream", None)
    count = await request.gateway.router.responses.input_tokens.count(
        extra_body=body, llmroute=options
    )
    await send_json(
        request,
        count.__pydantic_serializer__.to_json(count),
        headers=[(b"x-llmroute-estimated", b"true")],
    )


async def stored_response(request: GatewayRequest) -> None:
    """``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``."""
    identity = request.identity()
    scope = request.scope
    rest = scope["path"].partition("/responses/")[2]
    response_id, _, sub = rest.partition("/")
    if not _ID.fullmatch(response_id):
        raise HTTPError(400, f"invalid response id {response_id!r}", param="response_id")
    method = scope["method"]
    options = RequestOptions(key=identity.name) if identity.name else None
    responses = request.gateway.router.responses
    if sub == "input_items" and method == "GET":
        query = _query(request)
        limit = query.get("limit")
        try:
            items = await responses.input_items.list(
                response_id,
                after=query.get("after"),
                limit=int(limit) if limit is not None else None,
                order=query.get("order"),
                llmroute=options,
            )
        except ValueError:
            raise HTTPError(
                400, f"limit: expected an integer, got {limit!r}", param="limit"
            ) from None
        await send_json(request, items.__pydantic_serializer__.to_json(items))
        return
    if sub:
        raise HTTPError(404, f"unknown path: {method} {scope['path']}")
    if method == "GET":
        stored = await responses.retrieve(response_id, llmroute=options)
        await send_json(request, _response_json(stored))
    elif method == "DELETE":
        await responses.delete(response_id, llmroute=options)
        body = b'{"id":"' + response_id.encode() + b'","object":"response","deleted":true}'
        await send_json(request, body)
    else:
        raise HTTPError(
            405,
            f"{scope['path']} takes GET or DELETE, not {method}",
            code="method_not_allowed",
            headers=[(b"allow", b"GET, DELETE")],
        )


def _query(request: GatewayRequest) -> dict[str, str]:
    """The query string's parameters (the last value of each)."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    return {name: values[-1] for name, values in parse_qs(raw).items()}

"""``POST /v1/chat/completions``: a chat completion, streamed (server-sent events) or not."""

from __future__ import annotations

from ..._errors import LLMRouteError, UnknownModel
from ..._types import ChatCompletion, ChatCompletionChunk
from ..._wire import chunk_event
from ..._wire_completion import WireCompletion
from ..errors import HTTPError, sse_error_event
from ..headers import control_options
from ..relay import has_content
from ..request import GatewayRequest
from ..responses import answer, send_stream
from ..scrub import ErrorText

__all__ = ["ChatEvents", "ChatWire", "create_chat_completion"]

_DONE = b"data: [DONE]\n\n"
_completion_json = ChatCompletion.__pydantic_serializer__.to_json


class _Ending:
    """How an OpenAI stream ends: ``data: [DONE]``, or after a failure a last
    ``data: {"error": ...}`` event (the OpenAI SDKs raise it), with no ``[DONE]``."""

    __slots__ = ()

    @staticmethod
    def end() -> bytes:
        return _DONE

    @staticmethod
    def error(failure: LLMRouteError, request_id: str, text: ErrorText) -> bytes:
        return sse_error_event(failure, request_id, text)


class ChatEvents(_Ending):
    """OpenAI's stream format for chunks: a ``data:`` event per chunk, then the end."""

    __slots__ = ()

    @staticmethod
    def chunk(chunk: ChatCompletionChunk) -> bytes:
        """The chunk's event: the provider's own JSON when it can be forwarded as it is."""
        return chunk_event(chunk)

    @staticmethod
    def content(chunk: ChatCompletionChunk) -> bool:
        return has_content(chunk)


class ChatWire(_Ending):
    """OpenAI's stream format for a stream read as its events (`AsyncChatStream.wire_events`):
    each item, the events of one network read, is written as it is. The first holds the
    first content (the stream opened up to it), so it goes out at once."""

    __slots__ = ()

    @staticmethod
    def chunk(chunk: bytes) -> bytes:
        return chunk

    @staticmethod
    def content(chunk: bytes) -> bool:
        return True


_EVENTS = ChatEvents()
_WIRE = ChatWire()


async def create_chat_completion(request: GatewayRequest) -> None:
    """Answer one chat completion request through the router."""
    identity = request.identity()
    body = await request.read_json()
    request.allowed(identity, body)
    routes = request.gateway.router.config.routes
    options = control_options(identity, request.controls, routes, request.model)
    stream = body.pop("stream", None)
    if stream is not None and not isinstance(stream, bool):
        raise HTTPError(400, "stream: expected true or false", param="stream")
    completions = request.gateway.router.chat.completions
    try:
        if stream:
            opened = await completions.stream_from_body(body, options)
            wire = opened.wire_events()
            if wire is not None:
                await send_stream(request, "chat", wire, _WIRE)
            else:
                await send_stream(request, "chat", opened, _EVENTS)
            return
        completion = await completions.relay_from_body(body, options)
    except UnknownModel as exc:
        raise identity.visible(exc) from None
    if isinstance(completion, WireCompletion):  # the provider's own JSON, relayed as it is
        data = completion.data
    else:
        data = _completion_json(completion)
    await answer(request, "chat", data, completion.llmroute)

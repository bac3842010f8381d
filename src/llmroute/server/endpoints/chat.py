"""``POST /v1/chat/completions``: a chat completion, streamed (server-sent events) or not."""

from __future__ import annotations

from ..._errors import LLMRouteError, UnknownModel
from ..._types import ChatCompletion, ChatCompletionChunk, completion_json, provider_json
from ..errors import HTTPError, sse_error_event
from ..headers import control_options
from ..relay import has_content
from ..request import GatewayRequest
from ..responses import answer, send_stream
from ..scrub import ErrorText

__all__ = ["ChatEvents", "completion_body", "create_chat_completion"]

_DONE = b"data: [DONE]\n\n"
_completion_json = ChatCompletion.__pydantic_serializer__.to_json
_chunk_json = ChatCompletionChunk.__pydantic_serializer__.to_json


class ChatEvents:
    """OpenAI's stream format: a ``data:`` event per chunk, then ``data: [DONE]``; a failure
    is a last ``data: {"error": ...}`` event (the OpenAI SDKs raise it), with no ``[DONE]``."""

    __slots__ = ()

    @staticmethod
    def chunk(chunk: ChatCompletionChunk) -> bytes:
        """The chunk's event: the provider's own JSON when it can be forwarded as it is."""
        return b"data: " + (provider_json(chunk) or _chunk_json(chunk)) + b"\n\n"

    @staticmethod
    def content(chunk: ChatCompletionChunk) -> bool:
        return has_content(chunk)

    @staticmethod
    def end() -> bytes:
        return _DONE

    @staticmethod
    def error(failure: LLMRouteError, request_id: str, text: ErrorText) -> bytes:
        return sse_error_event(failure, request_id, text)


_EVENTS = ChatEvents()


def completion_body(completion: ChatCompletion) -> bytes:
    """A non-streamed answer's body: the provider's own JSON when it can be forwarded as it
    is (`completion_json`), else the completion serialised."""
    return completion_json(completion) or _completion_json(completion)


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
    model, messages = body.pop("model", None), body.pop("messages", None)
    completions = request.gateway.router.chat.completions
    try:
        if stream:
            opened = await completions.create(
                model=model, messages=messages, stream=True, extra_body=body, llmroute=options
            )
            await send_stream(request, "chat", opened, _EVENTS)
            return
        params = {"model": model, "messages": messages, **body}
        completion = await completions.create_from_body(params, options)
    except UnknownModel as exc:
        raise identity.visible(exc) from None
    await answer(request, "chat", completion_body(completion), completion.llmroute)

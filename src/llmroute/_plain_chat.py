"""`PlainChat`: a chat request of the plainest kind, carried as its parameters until
something needs it typed; and `plain_messages_json`, such a request's messages written
from its typed form.

A call such as ``create(model="chat", messages=[{"role": "user", "content": "Hi"}])``
(system, developer and user messages of a string content, and nothing else but
perhaps `stream`: the kind `plain_chat_request` builds without validation) is, on
most routers, read by nobody as a `ChatRequest`: while no stage is busy and no
experiment runs, the executor makes no `RequestContext` for it, and an OpenAI-format
provider's body is its model and its messages. So the request is kept as its
checked parameters: its messages copied as they will be written (a snapshot the
caller's later changes to its own list do not reach), their JSON written when an
attempt first needs it (`ProviderAdapter.chat_request_plain`), and the typed
request built only when asked (`typed()`: selection reading its size, an adapter of
another format, a context made for stages or experiments).

Fast path: the typed request and message built and then read back to JSON for the
body (`plain_chat_request`, `plain_messages_json`) against checking and copying the
messages and writing them once: llmroute's own work per chat request 181.4k -> 157.7k
instructions (callgrind, ``count_instructions.py --kinds own``, b0c4f52). Oracle:
tests/test_plain_chat.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_core import to_json

from ._request import (
    ChatRequest,
    DeveloperMessage,
    SystemMessage,
    UserMessage,
    plain_request,
    plain_role,
    plain_shape,
    trusted_message,
)

__all__ = ["PlainChat", "plain_chat", "plain_messages_json"]


class PlainChat:
    """A plain chat request's parameters, checked: its `model`, its `messages` (fresh
    dicts of a role and a string content each) and its `stream` flag (None: not given)."""

    __slots__ = ("_json", "_typed", "messages", "model", "stream")

    def __init__(self, model: str, messages: list[dict[str, str]], stream: bool | None) -> None:
        self.model, self.messages, self.stream = model, messages, stream
        self._json: bytes | None = None
        self._typed: ChatRequest | None = None

    def messages_json(self) -> bytes:
        """``{"messages":[...]}``: what `plain_messages_json` writes for the typed request
        (written once)."""
        written = self._json
        if written is None:
            written = self._json = b'{"messages":' + to_json(self.messages) + b"}"
        return written

    def typed(self) -> ChatRequest:
        """The `ChatRequest` validating the parameters makes (built once)."""
        typed = self._typed
        if typed is None:
            params: dict[str, Any] = {"model": self.model, "messages": self.messages}
            if self.stream is not None:
                params["stream"] = self.stream
            built = [trusted_message(m["role"], m["content"]) for m in self.messages]
            typed = self._typed = plain_request(params, built)
        return typed


def plain_chat(params: Mapping[str, Any]) -> PlainChat | None:
    """`params` as a `PlainChat` when they are what `plain_chat_request` builds a request
    of; else None (validation decides then)."""
    messages = plain_shape(params)
    if messages is None:
        return None
    copied: list[dict[str, str]] = []
    for message in messages:
        role = plain_role(message)
        if role is None:
            return None
        copied.append({"role": role, "content": message["content"]})
    return PlainChat(params["model"], copied, params.get("stream"))


#: The fields of a request `plain_messages_json` writes for: those besides its messages are
#: written by the adapter itself (the target's model, and how it streams).
_WRITTEN_BY_ADAPTER = frozenset({"model", "messages", "stream", "stream_options"})
#: The messages `plain_chat_request` builds, and the fields they set.
_PLAIN_TYPES = frozenset({SystemMessage, DeveloperMessage, UserMessage})
_ROLE_CONTENT_SET = frozenset({"role", "content"})


def plain_messages_json(request: ChatRequest) -> bytes | None:
    """``{"messages":[...]}``, what serialising `request` (unset fields left out, and
    ``model``, ``stream`` and ``stream_options`` excluded) writes, when the request is of
    the kind `plain_chat_request` builds: no other field set, no extra parameter, and
    system, developer and user messages of a role and a string content only; else None.

    Fast path: ~11.1k against ~39.0k instructions for a one-message request (the
    serializer walks every field and the message union); llmroute's own work per chat
    request 275.3k -> 250.7k (callgrind, ``count_instructions.py --kinds own``,
    2026-12-03). Oracle:
    tests/test_fast_paths_requests.py (``test_a_plain_body_is_what_the_serializer_writes``,
    hypothesis).
    """
    if request.__pydantic_extra__ or not request.__pydantic_fields_set__ <= _WRITTEN_BY_ADAPTER:
        return None
    written: list[dict[str, str]] = []
    for message in request.messages:
        if type(message) not in _PLAIN_TYPES or message.__pydantic_extra__:
            return None
        fields = message.__dict__
        content = fields["content"]
        if type(content) is not str or message.__pydantic_fields_set__ != _ROLE_CONTENT_SET:
            return None
        written.append({"role": fields["role"], "content": content})
    return b'{"messages":' + to_json(written) + b"}"

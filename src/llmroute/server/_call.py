"""One HTTP request as the gateway sees it, and the ASGI types it uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..pipeline.executor import current_request_id, new_request_id
from .headers import ANTHROPIC_REQUEST_ID, OPENAI_REQUEST_ID, PREFIX, REQUEST_ID
from .sse import Pending

__all__ = ["Call", "ClientGone", "Headers", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class Call:
    """One HTTP request: its scope, channels and the headers the gateway reads."""

    __slots__ = (
        "anthropic", "authorization", "content_encoding", "content_length", "content_type", "controls",
        "finished", "gone", "key", "model", "receive", "request_id", "scope", "send", "started",
        "watcher",
    )  # fmt: skip

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.authorization: bytes | None = None
        self.content_type: bytes | None = None
        self.content_length: bytes | None = None
        self.content_encoding: bytes | None = None
        self.controls: Headers | None = None
        self.gone = False  # the client went away
        self.started = False  # the response has started
        self.finished = False  # the last part of the response is being sent
        self.watcher: Pending[Message] | asyncio.Task[None] | None = None
        self.key: str | None = None
        self.model: str | None = None
        self.request_id: str | None = None  # the router's, once it has started the request
        self.anthropic = False  # an Anthropic-format endpoint (its SDK reads `request-id`)
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.authorization = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"content-length":
                self.content_length = value
            elif name == b"content-encoding":
                self.content_encoding = value
            elif name.startswith(PREFIX):
                if self.controls is None:
                    self.controls = []
                self.controls.append((name, value))

    def ensure_id(self) -> str:
        """The request's id: the router's if it started the request, else a new one."""
        if self.request_id is None:
            self.request_id = current_request_id.get() or new_request_id()
        return self.request_id

    def id_headers(self) -> list[tuple[bytes, bytes]]:
        """The request's id, under llmroute's header and the ones the official SDKs read."""
        request_id = self.ensure_id().encode()
        headers = [(REQUEST_ID, request_id), (OPENAI_REQUEST_ID, request_id)]
        if self.anthropic:
            headers.append((ANTHROPIC_REQUEST_ID, request_id))
        return headers

    async def respond(
        self, status: int, body: bytes, headers: Headers, content_type: bytes
    ) -> None:
        """Send a whole response, with the request's id."""
        self.started = self.finished = True
        start = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            *self.id_headers(),
        ]
        await self.send(
            {"type": "http.response.start", "status": status, "headers": start + headers}
        )
        await self.send({"type": "http.response.body", "body": body})

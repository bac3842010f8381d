"""One HTTP request as the gateway sees it: its headers, body, caller and client.

`GatewayRequest` is what every endpoint receives (starlette's ``Request``,
cut to what the gateway needs). It reads the headers the gateway uses once,
as the request arrives; it reads the JSON body within the size and time
limits; it says who is calling (the gateway key) and whether they may use
the model they name; and, once the body is read, it watches for the client
going away and cancels the request's task if it does, so the router closes
the upstream request (a stream's tokens so far are recorded as a cancelled
request). `Gateway` is what the requests of one app share.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic_core import from_json

from .._timeouts import TaskInterrupt
from ..pipeline.executor import current_request_id, new_request_id
from .config import ServerConfig
from .errors import HTTPError
from .headers import ANTHROPIC_REQUEST_ID, OPENAI_REQUEST_ID, PREFIX, REQUEST_ID
from .keys import GatewayIdentity, KeyStore
from .relay import Pending, start
from .scrub import ErrorText
from .types import Headers, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .._router import AsyncRouter
    from ..dashboard.api import DashboardSource
    from .metrics import GatewayMetrics

__all__ = ["ClientGone", "Gateway", "GatewayRequest"]


class ClientGone(Exception):
    """The client disconnected before its request was read."""


@dataclass(slots=True, eq=False)
class Gateway:
    """What every request to one app shares: the router, the server settings, the keys and
    the metrics; `state` is the app's (``/ready`` reports it)."""

    router: AsyncRouter
    config: ServerConfig
    keys: KeyStore
    metrics: GatewayMetrics | None
    #: The configured route names (a metric's route label is one of them, or empty).
    routes: frozenset[str]
    #: The largest request body accepted, in bytes (`ServerConfig.max_body_size`).
    max_body: int
    #: Filters upstream error text before a client sees it (`server.upstream_errors`).
    error_text: ErrorText = field(default_factory=ErrorText)
    state: Literal["starting", "ready", "stopping", "stopped"] = "starting"
    #: The most bytes of request bodies held at once (`ServerConfig.max_body_in_flight`).
    max_in_flight: int = 0
    #: Without gateway keys and not opened to everyone: answer loopback names only.
    local_only: bool = False
    #: The bytes of the request bodies being read or answered now.
    body_in_flight: int = 0
    #: The provider response headers passed on (`ServerConfig.forward_provider_headers`).
    forwarded: tuple[str, ...] = ()
    #: What ``/api/`` reads (made on first use: `endpoints.dashboard.source`).
    dashboard: DashboardSource | None = None


#: The request headers the gateway reads, by their place in `GatewayRequest.__init__`'s list.
_READ_HEADERS = {
    b"authorization": 0,
    b"content-type": 1,
    b"content-length": 2,
    b"content-encoding": 3,
    b"host": 4,
    b"origin": 5,
}


class GatewayRequest:
    """One HTTP request: its scope and channels, the headers the gateway reads, and what the
    gateway learns as it answers (who is calling, which model, whether the answer started)."""

    __slots__ = (
        "anthropic",
        "authorization",
        "content_encoding",
        "content_length",
        "content_type",
        "controls",
        "finished",
        "gateway",
        "gone",
        "head_size",
        "host",
        "interrupt",
        "key",
        "model",
        "origin",
        "receive",
        "request_id",
        "reserved",
        "scope",
        "send",
        "started",
        "watcher",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, gateway: Gateway) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.gateway = gateway
        self.gone = False  # the client went away
        self.started = False  # the response has started
        self.finished = False  # the last part of the response is being sent
        self.watcher: Pending[Message] | asyncio.Task[None] | None = None
        #: Cancels the request's task when its client leaves (set by `watch()`).
        self.interrupt: TaskInterrupt | None = None
        self.key: str | None = None
        self.model: str | None = None
        self.request_id: str | None = None  # the router's, once it has started the request
        self.anthropic = False  # an Anthropic-format endpoint (its SDK reads `request-id`)
        self.reserved = 0  # bytes of `Gateway.body_in_flight` this request holds
        size = len(scope["path"]) + len(scope.get("query_string", b""))
        # each header read goes to its place in `read` (the last of a name wins), found by
        # one dict lookup rather than a comparison with each name in turn
        read: list[bytes | None] = [None, None, None, None, None, None]
        controls: Headers | None = None  # the x-llmroute-* headers
        place = _READ_HEADERS.get
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            at = place(name)
            if at is not None:
                read[at] = value
            elif name.startswith(PREFIX):
                if controls is None:
                    controls = []
                controls.append((name, value))
        self.controls = controls
        (
            self.authorization,
            self.content_type,
            self.content_length,
            self.content_encoding,
            self.host,
            self.origin,
        ) = read
        self.head_size = size  # the request's target and its headers, without separators

    # -------------------------------------------------------------- the request's id

    def ensure_id(self) -> str:
        """The request's id: the router's if it started the request, else a new one."""
        if self.request_id is None:
            self.request_id = current_request_id.get() or new_request_id()
        return self.request_id

    def id_headers(self) -> Headers:
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

    # -------------------------------------------------------------- before anything else

    def screen(self) -> HTTPError | None:
        """Why the request is refused before the gateway reads anything more of it: a head
        over `ServerConfig.max_head_size` or `max_headers` (431), or, without gateway keys on a
        loopback address, a ``Host`` or ``Origin`` that is not a loopback name (403)."""
        gateway = self.gateway
        config = gateway.config
        if self.head_size > config.max_head_size or len(self.scope["headers"]) > config.max_headers:
            return HTTPError(
                431,
                f"the request head is over the gateway's limits of {config.max_headers} "
                f"headers and {int(config.max_head_size)} bytes "
                "(server.max_headers, server.max_head_size)",
                code="request_header_fields_too_large",
                close=True,
            )
        if gateway.local_only:
            return self._foreign_site()
        return None

    def _foreign_site(self) -> HTTPError | None:
        """A 403 for a request that a web page elsewhere made a browser send (a DNS-rebound
        ``Host``, a cross-site ``Origin``) to a keyless gateway reached on a loopback address."""
        server = self.scope.get("server")
        if not server or not _is_loopback_address(server[0]):
            return None
        host, origin = self.host, self.origin
        if host is not None and _host_name(host) not in _LOOPBACK_NAMES:
            what = f"Host {host.decode('latin-1')!r}"
        elif origin is not None and _origin_name(origin) not in _LOOPBACK_NAMES:
            what = f"Origin {origin.decode('latin-1')!r}"
        else:
            return None
        return HTTPError(
            403,
            f"{what} is not a loopback name (localhost, 127.0.0.1, [::1]): without gateway keys "
            "the gateway only answers requests made for this machine, so that web pages cannot "
            "call it through a browser; configure server.keys (or allow_unauthenticated) to "
            "answer other names",
            type="permission_error",
            code="host_not_allowed",
        )

    # -------------------------------------------------------------- the caller

    def identity(self) -> GatewayIdentity:
        """Who is calling, from ``Authorization: Bearer <key>`` (on an Anthropic-format
        endpoint also from ``x-api-key``, what the anthropic SDK sends); `HTTPError` 401 if
        keys are configured and none of them was given."""
        keys = self.gateway.keys
        authorization = self.authorization
        if self.anthropic and authorization is None:
            authorization = self._api_key(keys)
        identity = keys.authenticate(authorization)
        self.key = identity.name
        return identity

    def _api_key(self, keys: KeyStore) -> bytes | None:
        value: bytes
        for name, value in self.scope["headers"]:
            if name == b"x-api-key":
                return b"Bearer " + value
        if keys.required:
            raise HTTPError(
                401,
                "missing API key: send it as 'x-api-key: <key>' (the anthropic SDKs' api_key)",
                code="invalid_api_key",
            )
        return None

    def allowed(self, identity: GatewayIdentity, body: dict[str, Any]) -> None:
        """Refuse a model `identity` may not use (403), and llmroute options in the body (400:
        they come from the key and the control headers only)."""
        model = body.get("model")
        if isinstance(model, str):
            self.model = model
            if not identity.allows(model):
                raise HTTPError(
                    403,
                    f"this key may not use {model!r}",
                    type="permission_error",
                    code="route_not_allowed",
                    param="model",
                )
        if "llmroute" in body:
            raise HTTPError(
                400,
                "llmroute options go in x-llmroute-* headers, not in the body",
                param="llmroute",
            )

    # -------------------------------------------------------------- the body

    async def read_json(self, limit: int | None = None) -> dict[str, Any]:
        """The request's JSON object, read within the size (`limit` bytes if smaller than
        the gateway's), time and shape limits; then `watch`."""
        limit = self.gateway.max_body if limit is None else min(limit, self.gateway.max_body)
        self._check_content(limit)
        body = await self._read_body(limit)
        config = self.gateway.config
        _check_values(body, config.max_json_values)
        try:
            data = from_json(body)
        except ValueError as exc:
            raise HTTPError(
                400, f"the request body is not valid JSON: {exc}", code="invalid_json"
            ) from None
        if not isinstance(data, dict):
            raise HTTPError(400, "the request body must be a JSON object", code="invalid_json")
        messages = data.get("messages")
        if isinstance(messages, list):
            _check_messages(messages, data.get("system"), config)
        _check_amounts(data, config)
        self.watch()
        return data

    def _check_content(self, limit: int) -> None:
        """Refuse what the headers announce: not JSON (or no type at all without gateway keys:
        a browser sends a form or text to any site without asking), compressed, or larger than
        `limit`; hold the announced size in `Gateway.body_in_flight`."""
        content_type = self.content_type
        if content_type is None and not self.gateway.keys.required:
            raise HTTPError(
                415,
                "send the request body as JSON, with 'Content-Type: application/json' (required "
                "when the gateway has no keys)",
                code="unsupported_media_type",
                close=True,
            )
        if (
            content_type is not None
            and content_type != b"application/json"
            and content_type.split(b";")[0].strip().lower() != b"application/json"
        ):
            raise HTTPError(
                415,
                "send the request body as JSON, with 'Content-Type: application/json'",
                code="unsupported_media_type",
                close=True,
            )
        encoding = self.content_encoding
        if encoding is not None and encoding.strip().lower() != b"identity":
            raise HTTPError(
                415,
                "compressed request bodies are not accepted",
                code="unsupported_media_type",
                close=True,
            )
        if self.content_length is not None:
            try:
                declared = int(self.content_length)
            except ValueError:
                raise HTTPError(400, "invalid Content-Length header", close=True) from None
            if declared > limit:
                raise _too_large(limit)
            self._hold(declared)

    def _hold(self, size: int) -> None:
        """Count `size` more bytes of this request's body in `Gateway.body_in_flight`; a 503
        when that would pass `ServerConfig.max_body_in_flight`."""
        gateway = self.gateway
        held = gateway.body_in_flight + size
        if held > gateway.max_in_flight:
            raise HTTPError(
                503,
                f"the gateway holds too many request bodies at once (server.max_body_in_flight: "
                f"{gateway.max_in_flight} bytes): retry shortly",
                type="server_error",
                code="server_busy",
                headers=[(b"retry-after", b"1")],
                close=True,
            )
        gateway.body_in_flight = held
        self.reserved += size

    def release(self) -> None:
        """Give back what the request held of `Gateway.body_in_flight` (it has ended)."""
        self.gateway.body_in_flight -= self.reserved
        self.reserved = 0

    async def _read_body(self, limit: int) -> bytes:
        """The whole body, within `limit` bytes and the body timeout."""
        first = start(self.receive())
        if not isinstance(first, Pending) and not first.get("more_body", False):
            if first["type"] != "http.request":
                self.gone = True
                raise ClientGone
            body: bytes = first.get("body", b"")  # the usual case: it is all here already
            if len(body) > limit:
                raise _too_large(limit)
            if len(body) > self.reserved:  # no Content-Length was announced
                self._hold(len(body) - self.reserved)
            return body
        timeout = self.gateway.config.body_timeout
        try:
            async with asyncio.timeout(timeout):
                message = await first if isinstance(first, Pending) else first
                return await self._receive_body(limit, message)
        except TimeoutError:
            raise HTTPError(
                408,
                f"the request body did not arrive within {timeout:g}s",
                code="request_timeout",
                close=True,
            ) from None

    async def _receive_body(self, limit: int, message: Message) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            if message["type"] != "http.request":
                self.gone = True
                raise ClientGone
            part: bytes = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise _too_large(limit)
            if size > self.reserved:  # a chunked body: held as it arrives
                self._hold(size - self.reserved)
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)
            message = await self.receive()

    # -------------------------------------------------------------- the client

    def watch(self) -> None:
        """Cancel the request's task if its client disconnects before the answer is sent.

        The next ``receive()`` is started and left waiting: when what it waits
        for completes (uvicorn wakes it on a disconnect, and once the response
        is complete), the task is cancelled unless the answer is on its way.
        """
        task = asyncio.current_task()
        waiting = start(self.receive())
        if not isinstance(waiting, Pending):
            if waiting["type"] == "http.disconnect":
                self.gone = True
                raise ClientGone
            return

        interrupt = self.interrupt = TaskInterrupt(task) if task is not None else None

        def woken(_: object = None) -> None:
            if not self.finished and interrupt is not None:
                self.gone = True
                interrupt.fire()

        future = waiting.waiting
        if isinstance(future, asyncio.Future):
            future.add_done_callback(woken)
            self.watcher = waiting
            return

        async def follow() -> None:  # another ASGI server's receive(): follow it in a task
            with contextlib.suppress(Exception):
                await waiting
            woken()

        self.watcher = asyncio.get_running_loop().create_task(follow())

    def stop_watching(self) -> None:
        """Abandon the watch (the request has ended)."""
        watcher = self.watcher
        if isinstance(watcher, Pending):
            watcher.close()
        elif watcher is not None:
            watcher.cancel()


#: The names a keyless gateway answers to on a loopback address (`GatewayRequest.screen`).
_LOOPBACK_NAMES = frozenset({b"localhost", b"127.0.0.1", b"[::1]"})


def _is_loopback_address(address: object) -> bool:
    return isinstance(address, str) and (address.startswith("127.") or address == "::1")


def _host_name(host: bytes) -> bytes:
    """The name in a ``Host`` value, without its port, lower-cased."""
    if host.startswith(b"["):
        return host[: host.find(b"]") + 1]
    return host.partition(b":")[0].lower()


def _origin_name(origin: bytes) -> bytes:
    """The host name of an ``Origin`` (empty for ``null`` and for schemes other than HTTP)."""
    scheme, sep, rest = origin.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return b""
    return _host_name(rest)


#: A JSON string (its escapes included), to take strings out before counting the structure.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _check_values(body: bytes, limit: int) -> None:
    """Refuse (413) a body of more than `limit` JSON values before it is parsed (a body of
    millions of ``{}`` would become millions of objects). A value is the top one or an
    item of an array or object: at most one more than the commas, plus one per container.
    A body of at most `limit` bytes passes (a value takes a byte at least); a larger one is
    counted on its bytes (an over-count: strings may hold commas and brackets), then, only
    when that passes the limit, on its bytes without their strings."""
    if len(body) <= limit:
        return
    count = 1 + body.count(b",") + body.count(b"{") + body.count(b"[")
    if count <= limit:
        return
    bare = _STRING.sub(b"", body)
    count = 1 + bare.count(b",") + bare.count(b"{") + bare.count(b"[")
    if count > limit:
        raise HTTPError(
            413,
            f"the request body has more than {limit} JSON values (server.max_json_values)",
            code="request_too_large",
            close=True,
        )


def _check_amounts(data: dict[str, Any], config: ServerConfig) -> None:
    """Refuse (400) more choices (`n`) or output tokens than the server allows: each
    multiplies what a request costs, and a budget's estimate."""
    n = data.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > config.max_n:
        raise HTTPError(400, f"n may be at most {config.max_n} here (server.max_n)", param="n")
    limit = config.max_output_tokens
    if limit is None:
        return
    for name in ("max_tokens", "max_completion_tokens"):
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise HTTPError(
                400,
                f"{name} may be at most {limit} here (server.max_output_tokens)",
                param=name,
            )


def _check_messages(messages: list[Any], system: object, config: ServerConfig) -> None:
    """Refuse (413) more messages, or content parts across them, than the server allows."""
    if len(messages) > config.max_messages:
        raise HTTPError(
            413,
            f"the request has more than {config.max_messages} messages (server.max_messages)",
            code="request_too_large",
            param="messages",
        )
    parts = len(system) if isinstance(system, list) else 0
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, list):
                parts += len(content)
    if parts > config.max_content_parts:
        raise HTTPError(
            413,
            f"the request has more than {config.max_content_parts} content parts across its "
            "messages (server.max_content_parts)",
            code="request_too_large",
            param="messages",
        )


def _too_large(limit: int) -> HTTPError:
    return HTTPError(
        413,
        f"the request body is larger than the limit of {limit} bytes",
        code="request_too_large",
        close=True,
    )

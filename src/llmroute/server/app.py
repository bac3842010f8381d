"""The gateway's ASGI application: HTTP in, the router's calls, HTTP out.

The router does the work; this module only translates. Endpoints:

=========================  ====  ==================================================
``/v1/chat/completions``   POST  streamed (SSE) and not
``/v1/embeddings``         POST
``/v1/messages``           POST  Anthropic Messages API (see `llmroute.server.messages`)
``/v1/models``             GET   routes and targets the caller's key may use
``/v1/models/{id}``        GET
``/health``                GET   liveness: the process answers
``/ready``                 GET   readiness: started, not stopping, stores reachable
``/metrics``               GET   Prometheus text format
=========================  ====  ==================================================

The ``/v1`` prefix is optional. Per request: the key is checked before the
body is read; the body is read within `ServerConfig.body_timeout` and
`max_body_size`; then a watcher waits for the client to go away and cancels
the request's task if it does, so the router closes the upstream request (a
stream's tokens so far are recorded as a cancelled request).

Every response carries ``x-llmroute-request-id``: the router's id for the
request (its record's in the request log), which the router puts in a
context variable as it starts the request; for a request refused before the
router saw it, a new id of that form.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic_core import from_json

from .._errors import AllTargetsFailed, LLMRouteError, ProviderError
from .._router import AsyncRouter
from .._types import ChatCompletion, CreateEmbeddingResponse, RouteInfo
from ..pipeline.executor import current_request_id
from ..pipeline.stream import AsyncChatStream
from ._anthropic_wire import error_body
from ._call import Call, ClientGone, Message, Receive, Scope, Send
from .config import ServerConfig
from .errors import HTTPError, from_exception, sse_error_event
from .headers import control_options, route_headers
from .keys import GatewayIdentity, KeyStore
from .messages import serve_messages
from .metrics import CONTENT_TYPE, GatewayMetrics
from .sse import Pending, relay, start

if TYPE_CHECKING:
    pass

__all__ = ["GatewayApp", "create_app"]

logger = logging.getLogger("llmroute.server")


_SSE = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]
_DONE = b"data: [DONE]\n\n"
_CLOSE = (b"connection", b"close")
_completion_json = ChatCompletion.__pydantic_serializer__.to_json
_embeddings_json = CreateEmbeddingResponse.__pydantic_serializer__.to_json
#: How long `/ready` waits for the router's stores to answer.
_READY_TIMEOUT = 2.0


class GatewayApp:
    """The OpenAI-compatible HTTP gateway in front of an `AsyncRouter` (an ASGI 3 application).

    Use `create_app` to make one. It closes the router when the ASGI server
    shuts it down (the ``lifespan`` protocol), after in-flight requests and
    streams have finished or `ServerConfig.shutdown_timeout` has passed; call
    `shutdown` yourself when serving without lifespan events.
    """

    def __init__(
        self, router: AsyncRouter, config: ServerConfig | None = None, *, close_router: bool = True
    ) -> None:
        self.router = router
        self.config = config or router.config.server or ServerConfig()
        self._routes = frozenset(router.config.routes)
        self.keys = KeyStore(self.config.keys, self._routes)
        self.metrics = GatewayMetrics() if self.config.metrics != "off" else None
        self._close_router = close_router
        self._max_body = int(self.config.max_body_size)
        self._state: Literal["starting", "ready", "stopping", "stopped"] = "starting"
        self._active = 0
        self._cut_short = False  # the shutdown did not wait for every request
        self._drained: asyncio.Event | None = None
        self._paths: dict[str, tuple[str, Callable[[Call], Awaitable[None]], str]] = {}
        for path, method, handler, endpoint in (
            ("/v1/chat/completions", "POST", self._chat, "chat"),
            ("/v1/embeddings", "POST", self._embeddings, "embeddings"),
            ("/v1/messages", "POST", self._messages, "messages"),
            ("/v1/models", "GET", self._models, "models"),
            ("/health", "GET", self._health, "health"),
            ("/ready", "GET", self._ready, "ready"),
            ("/metrics", "GET", self._metrics_text, "metrics"),
        ):
            self._paths[path] = (method, handler, endpoint)
            if path.startswith("/v1/"):
                self._paths[path[3:]] = (method, handler, endpoint)

    # -------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            call = Call(scope, receive, send)
            path: str = scope["path"]
            entry = self._paths.get(path)
            if entry is not None and scope["method"] == entry[0]:  # the usual case: answer
                await self._run(call, entry[1], entry[2], counted=entry[0] == "POST")
            else:
                await self._other(call, path, entry)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._state = "ready"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @property
    def drained(self) -> bool:
        """Whether `shutdown` has run to its end without cutting a request short: none was
        cancelled by the ASGI server (uvicorn's graceful shutdown timing out) or still running
        when `ServerConfig.shutdown_timeout` passed."""
        return self._state == "stopped" and not self._cut_short

    async def shutdown(self) -> None:
        """Stop: wait for in-flight requests (up to the shutdown timeout), then close the router."""
        if self._state in ("stopping", "stopped"):
            return
        self._state = "stopping"
        if self._active:
            self._drained = asyncio.Event()
            timeout = self.config.shutdown_timeout
            try:
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
            except TimeoutError:
                self._cut_short = True
                logger.warning("%d request(s) still running after %gs", self._active, timeout)
        if self._close_router:
            await self.router.aclose()
        self._state = "stopped"

    async def _other(
        self,
        call: Call,
        path: str,
        entry: tuple[str, Callable[[Call], Awaitable[None]], str] | None,
    ) -> None:
        """Answer what `_paths` does not: a model's own path, else a 404; a wrong method: a 405."""
        scope = call.scope
        if entry is None and path.startswith(("/v1/models/", "/models/")):
            entry = ("GET", self._model, "models")
        if entry is None:
            await self._fail(call, HTTPError(404, f"unknown path: {scope['method']} {path}"), "")
            return
        method, handler, endpoint = entry
        if scope["method"] != method:
            error = HTTPError(
                405, f"{path} takes {method}, not {scope['method']}",
                code="method_not_allowed", headers=[(b"allow", method.encode())],
            )  # fmt: skip
            await self._fail(call, error, endpoint)
            return
        await self._run(call, handler, endpoint, counted=method == "POST")

    async def _run(
        self,
        call: Call,
        handler: Callable[[Call], Awaitable[None]],
        endpoint: str,
        *,
        counted: bool,
    ) -> None:
        """Answer: map errors to responses, stop if the client goes away; a `counted` request
        (a POST) is in flight until it ends, and shutdown waits for it."""
        task = asyncio.current_task()
        metrics = self.metrics if counted else None
        self._active += counted
        if metrics is not None:
            metrics.in_flight += 1
        current = current_request_id.set(None)  # the router sets it when it starts one
        try:
            await handler(call)
        except asyncio.CancelledError:
            if call.gone and task is not None and task.uncancel() == 0:
                return  # the client went away; the handler has counted it
            self._cut_short = True  # the server cancelled it: a shutdown that did not wait
            raise
        except ClientGone:
            return
        except HTTPError as exc:
            await self._fail(call, exc, endpoint)
        except LLMRouteError as exc:
            await self._fail(call, from_exception(exc), endpoint, exc)
        except Exception:
            logger.exception(
                "internal error answering %s %s (request %s)",
                call.scope["method"], call.scope["path"], call.ensure_id(),
            )  # fmt: skip
            error = HTTPError(500, "internal error (logged by the gateway)", type="server_error")
            await self._fail(call, error, endpoint)
        finally:
            current_request_id.reset(current)
            watcher = call.watcher
            if isinstance(watcher, Pending):
                watcher.close()
            elif watcher is not None:
                watcher.cancel()
            self._active -= counted
            if metrics is not None:
                metrics.in_flight -= 1
            if self._active == 0 and self._drained is not None:
                self._drained.set()

    async def _fail(
        self, call: Call, error: HTTPError, endpoint: str, cause: LLMRouteError | None = None
    ) -> None:
        """Answer with `error` (unless the response has started) and count it."""
        request_id = call.ensure_id()
        if error.status >= 500:
            logger.warning(
                "%s %s -> %d: %s (request %s)", call.scope["method"], call.scope["path"],
                error.status, error.message, request_id,
            )  # fmt: skip
        if not call.started:
            headers = [*error.headers, _CLOSE] if error.close else error.headers
            status, body = (
                error_body(error, request_id)
                if endpoint == "messages"
                else (error.status, error.body(request_id))
            )  # /v1/messages answers in Anthropic's error shape
            await call.respond(status, body, headers, b"application/json")
        metrics = self.metrics
        if metrics is None or endpoint in ("", "health", "ready", "metrics"):
            return
        provider = model = ""
        if isinstance(cause, ProviderError):
            provider, model = cause.provider, cause.model
        elif error.attempts:
            provider, model = error.attempts[-1].provider, error.attempts[-1].model
        route = call.model if call.model in self._routes else ""
        metrics.failed(
            endpoint, error.status, type(cause).__name__ if cause else error.code or error.type,
            route=route or "", provider=provider, model=model, key=call.key,
            attempts=error.attempts if isinstance(cause, AllTargetsFailed) else (),
        )  # fmt: skip

    # -------------------------------------------------------------- request bodies

    async def _read_json(self, call: Call) -> dict[str, Any]:
        """The request's JSON object, read within the size and time limits."""
        content_type = call.content_type
        if (
            content_type is not None
            and content_type != b"application/json"
            and content_type.split(b";")[0].strip().lower() != b"application/json"
        ):
            raise HTTPError(
                415, "send the request body as JSON, with 'Content-Type: application/json'",
                code="unsupported_media_type", close=True,
            )  # fmt: skip
        if (
            call.content_encoding is not None
            and call.content_encoding.strip().lower() != b"identity"
        ):
            raise HTTPError(
                415, "compressed request bodies are not accepted", code="unsupported_media_type",
                close=True,
            )  # fmt: skip
        limit = self._max_body
        if call.content_length is not None:
            try:
                declared = int(call.content_length)
            except ValueError:
                raise HTTPError(400, "invalid Content-Length header", close=True) from None
            if declared > limit:
                raise self._too_large()
        body = await self._read_body(call, limit)
        try:
            data = from_json(body)
        except ValueError as exc:
            raise HTTPError(
                400, f"the request body is not valid JSON: {exc}", code="invalid_json"
            ) from None
        if not isinstance(data, dict):
            raise HTTPError(400, "the request body must be a JSON object", code="invalid_json")
        self._watch(call)
        return data

    def _too_large(self) -> HTTPError:
        return HTTPError(
            413, f"the request body is larger than the limit of {self._max_body} bytes",
            code="request_too_large", close=True,
        )  # fmt: skip

    async def _read_body(self, call: Call, limit: int) -> bytes:
        """The whole body, within `limit` bytes and `body_timeout` seconds."""
        first = start(call.receive())
        if not isinstance(first, Pending) and not first.get("more_body", False):
            if first["type"] != "http.request":
                call.gone = True
                raise ClientGone
            body: bytes = first.get("body", b"")  # the usual case: it is all here already
            if len(body) > limit:
                raise self._too_large()
            return body
        try:
            async with asyncio.timeout(self.config.body_timeout):
                message = await first if isinstance(first, Pending) else first
                return await self._receive_body(call, limit, message)
        except TimeoutError:
            raise HTTPError(
                408, f"the request body did not arrive within {self.config.body_timeout:g}s",
                code="request_timeout", close=True,
            ) from None  # fmt: skip

    async def _receive_body(self, call: Call, limit: int, message: Message) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            if message["type"] != "http.request":
                call.gone = True
                raise ClientGone
            part: bytes = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise self._too_large()
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)
            message = await call.receive()

    @staticmethod
    def _watch(call: Call) -> None:
        """Cancel the request's task if its client disconnects before the answer is sent.

        The next ``receive()`` is started and left waiting: when what it waits
        for completes (uvicorn wakes it on a disconnect, and once the response
        is complete), the task is cancelled unless the answer is on its way.
        """
        task = asyncio.current_task()
        waiting = start(call.receive())
        if not isinstance(waiting, Pending):
            if waiting["type"] == "http.disconnect":
                call.gone = True
                raise ClientGone
            return

        def woken(_: object = None) -> None:
            if not call.finished and task is not None:
                call.gone = True
                task.cancel()

        future = waiting.waiting
        if isinstance(future, asyncio.Future):
            future.add_done_callback(woken)
            call.watcher = waiting
            return

        async def follow() -> None:  # another ASGI server's receive(): follow it in a task
            with contextlib.suppress(Exception):
                await waiting
            woken()

        call.watcher = asyncio.get_running_loop().create_task(follow())

    # -------------------------------------------------------------- endpoints

    def _identity(self, call: Call) -> GatewayIdentity:
        identity = self.keys.authenticate(call.authorization)
        call.key = identity.name
        return identity

    def _allowed(self, identity: GatewayIdentity, call: Call, body: dict[str, Any]) -> None:
        model = body.get("model")
        if isinstance(model, str):
            call.model = model
            if not identity.allows(model):
                raise HTTPError(
                    403, f"this key may not use {model!r}", type="permission_error",
                    code="route_not_allowed", param="model",
                )  # fmt: skip
        if "llmroute" in body:
            raise HTTPError(
                400,
                "llmroute options go in x-llmroute-* headers, not in the body",
                param="llmroute",
            )

    async def _chat(self, call: Call) -> None:
        identity = self._identity(call)
        body = await self._read_json(call)
        self._allowed(identity, call, body)
        options = control_options(identity, call.controls)
        stream = body.pop("stream", None)
        if stream is not None and not isinstance(stream, bool):
            raise HTTPError(400, "stream: expected true or false", param="stream")
        model, messages = body.pop("model", None), body.pop("messages", None)
        completions = self.router.chat.completions
        if stream:
            opened = await completions.create(
                model=model, messages=messages, stream=True, extra_body=body, llmroute=options
            )
            await self._stream(call, opened)
            return
        completion = await completions.create(
            model=model, messages=messages, extra_body=body, llmroute=options
        )
        await self._answer(call, "chat", _completion_json(completion), completion.llmroute)

    async def _messages(self, call: Call) -> None:
        await serve_messages(self, call)

    async def _embeddings(self, call: Call) -> None:
        identity = self._identity(call)
        body = await self._read_json(call)
        self._allowed(identity, call, body)
        options = control_options(identity, call.controls)
        model, inputs = body.pop("model", None), body.pop("input", None)
        result = await self.router.embeddings.create(
            model=model, input=inputs, extra_body=body, llmroute=options
        )
        await self._answer(call, "embeddings", _embeddings_json(result), result.llmroute)

    async def _answer(self, call: Call, endpoint: str, body: bytes, info: RouteInfo) -> None:
        call.request_id = info.request_id
        await call.respond(200, body, route_headers(info, final=True), b"application/json")
        if self.metrics is not None:
            self.metrics.answered(endpoint, info, key=call.key)

    async def _stream(self, call: Call, stream: AsyncChatStream) -> None:
        """Send `stream` as server-sent events; a failure after the first chunk ends it with an
        error event and no ``[DONE]``."""
        info = stream.llmroute
        send = call.send

        async def write(events: bytes) -> None:
            await send({"type": "http.response.body", "body": events, "more_body": True})

        try:
            call.started = True
            call.request_id = info.request_id
            headers = [*_SSE, *call.id_headers()]
            headers += route_headers(info, final=False)
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            failure = await relay(stream, write)
        finally:
            await stream.aclose()
            if call.gone and self.metrics is not None:
                self.metrics.answered("chat", info, status=499, key=call.key)
        call.finished = True
        if failure is not None:
            logger.warning("stream %s failed after its first chunk: %s", info.request_id, failure)
        last = sse_error_event(failure, info.request_id) if failure else _DONE
        await send({"type": "http.response.body", "body": last})
        if self.metrics is not None:
            self.metrics.answered("chat", info, key=call.key)

    async def _models(self, call: Call) -> None:
        identity = self._identity(call)
        listed = await self.router.models.list()
        listed.data = [m for m in listed.data if identity.allows(m.id)]
        await call.respond(200, listed.model_dump_json().encode(), [], b"application/json")

    async def _model(self, call: Call) -> None:
        identity = self._identity(call)
        wanted = call.scope["path"].partition("/models/")[2]
        for model in await self.router.models.list():
            if model.id == wanted and identity.allows(model.id):
                await call.respond(200, model.model_dump_json().encode(), [], b"application/json")
                return
        raise HTTPError(404, f"unknown model {wanted!r}", code="model_not_found", param="model")

    async def _health(self, call: Call) -> None:
        await call.respond(200, b'{"status":"ok"}', [], b"application/json")

    async def _ready(self, call: Call) -> None:
        problems: list[str] = []
        if self._state != "ready":
            problems.append(f"the gateway is {self._state}")
        else:
            try:
                async with asyncio.timeout(_READY_TIMEOUT):
                    problems = await self.router.check()
            except TimeoutError:
                problems = [f"the router's stores did not answer within {_READY_TIMEOUT:g}s"]
        status = 503 if problems else 200
        body = {"status": "unavailable", "problems": problems} if problems else {"status": "ready"}
        await call.respond(status, json.dumps(body).encode(), [], b"application/json")

    async def _metrics_text(self, call: Call) -> None:
        if self.metrics is None:
            raise HTTPError(404, "metrics are off (server.metrics: off)")
        if self.config.metrics == "key":
            self._identity(call)
        await call.respond(200, self.metrics.exposition(), [], CONTENT_TYPE)


def create_app(
    router: AsyncRouter, config: ServerConfig | None = None, *, close_router: bool = True
) -> GatewayApp:
    """The ASGI application serving `router` as an OpenAI-compatible HTTP API.

    Args:
        router: the router that answers every request.
        config: how to serve (keys, limits, metrics); default: the router
            config's ``server`` section, else the defaults.
        close_router: close the router when the app shuts down.

    Run it on any ASGI server (``uvicorn.run(create_app(router))``), or use
    ``llmroute serve``.
    """
    return GatewayApp(router, config, close_router=close_router)

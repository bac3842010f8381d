"""The gateway's ASGI application: HTTP in, the router's calls, HTTP out.

The router does the work; the endpoints (`llmroute.server.endpoints`, one
module each) translate, over a `GatewayRequest` (`llmroute.server.request`)
and the shared writers of `llmroute.server.responses`. This module keeps what
is the app's own: the route table, the lifespan and the shutdown drain, the
404 and 405 answers, and the mapping of what an endpoint raises to an error
response (counted in the metrics). Endpoints:

=========================  ====  ==================================================
``/v1/chat/completions``   POST  streamed (SSE) and not
``/v1/embeddings``         POST
``/v1/messages``           POST  Anthropic Messages API (`llmroute.server.endpoints.messages`)
``/v1/responses``          POST  OpenAI Responses API, streamed (typed SSE) and not
``/v1/responses/{id}``     GET   a stored response (``DELETE``: delete it);
                                 ``.../input_items``: its input items
``/v1/responses/input_tokens`` POST  a request's input tokens (estimated)
``/v1/feedback``           POST  feedback on a request or a sticky key (`llmroute.server.endpoints.feedback`)
``/v1/models``             GET   routes and targets the caller's key may use
``/v1/models/{id}``        GET
``/health``                GET   liveness: the process answers
``/ready``                 GET   readiness: started, not stopping, stores reachable
``/metrics``               GET   Prometheus text format
``/dashboard``             GET   the dashboard page (`llmroute.server.endpoints.dashboard`)
``/api/...``               GET   the dashboard's JSON API (admin keys; loopback without keys)
=========================  ====  ==================================================

The ``/v1`` prefix is optional. Per request: the head's size and header
count are checked first (431), and without gateway keys, on a loopback
address, that ``Host`` and ``Origin`` name this machine (403); the key is
checked before the body is read; the body is read within
`ServerConfig.body_timeout`, `max_body_size` and `max_body_in_flight`, and
counted (`max_json_values`) before it is parsed; then a watcher waits for
the client to go away and cancels the request's task if it does (see
`GatewayRequest.watch`).

Every response carries ``x-llmroute-request-id``: the router's id for the
request (its record's in the request log), which the router puts in a
context variable as it starts the request; for a request refused before the
router saw it, a new id of that form.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .._errors import AllTargetsFailed, LLMRouteError, ProviderError
from .._router import AsyncRouter
from ..pipeline.executor import current_request_id
from ._anthropic_wire import error_body as anthropic_error_body
from .config import ServerConfig
from .endpoints import chat, dashboard, embeddings, feedback, messages, models, ops, responses
from .errors import HTTPError, from_exception
from .keys import KeyStore
from .log_metrics import RecorderMetrics
from .metrics import GatewayMetrics
from .request import ClientGone, Gateway, GatewayRequest
from .responses import JSON
from .scrub import ErrorText, configured_secrets
from .types import Receive, Scope, Send

__all__ = ["GatewayApp", "Route", "create_app"]

logger = logging.getLogger("llmroute.server")

_CLOSE = (b"connection", b"close")
#: The endpoints whose failures the metrics do not count (they are not API calls).
_UNMETERED = frozenset({"health", "ready", "metrics", "dashboard"})


def _openai_error(error: HTTPError, request_id: str) -> tuple[int, bytes]:
    return error.status, error.body(request_id)


class Route:
    """An endpoint and how the app serves it: the one `method` it takes, its `name` (the
    metrics' ``endpoint`` label) and the shape of its error answers (status and body).

    `counted`: in flight until it ends (the metrics' gauge; shutdown waits for
    it), which a POST is; `metered`: its failures are counted in the metrics.
    """

    __slots__ = ("counted", "endpoint", "error_body", "metered", "method", "name")

    def __init__(
        self,
        method: str,
        endpoint: Callable[[GatewayRequest], Awaitable[None]],
        name: str,
        error_body: Callable[[HTTPError, str], tuple[int, bytes]] = _openai_error,
    ) -> None:
        self.method = method
        self.endpoint = endpoint
        self.name = name
        self.error_body = error_body
        self.counted = method == "POST"
        self.metered = name not in _UNMETERED


#: Path -> route; each ``/v1/...`` path is also served without its ``/v1``.
ROUTES = {
    "/v1/chat/completions": Route("POST", chat.create_chat_completion, "chat"),
    "/v1/embeddings": Route("POST", embeddings.create_embeddings, "embeddings"),
    "/v1/messages": Route("POST", messages.create_message, "messages", anthropic_error_body),
    "/v1/messages/count_tokens": Route(
        "POST", messages.count_tokens, "messages", anthropic_error_body
    ),
    "/v1/responses": Route("POST", responses.create_response, "responses"),
    "/v1/responses/input_tokens": Route("POST", responses.count_input_tokens, "responses"),
    "/v1/feedback": Route("POST", feedback.create_feedback, "feedback"),
    "/v1/models": Route("GET", models.list_models, "models"),
    "/health": Route("GET", ops.health, "health"),
    "/ready": Route("GET", ops.ready, "ready"),
    "/metrics": Route("GET", ops.metrics, "metrics"),
    "/dashboard": Route("GET", dashboard.page, "dashboard"),
}
#: ``/dashboard/...`` (the page's files) and ``/api/...`` (its JSON API).
_DASHBOARD_FILE = ROUTES["/dashboard"]
_DASHBOARD_API = Route("GET", dashboard.api, "dashboard")
#: ``/v1/models/{id}``.
_MODEL = Route("GET", models.retrieve_model, "models")
#: ``/v1/responses/{id}`` (GET, DELETE) and ``/v1/responses/{id}/input_items`` (GET): the
#: endpoint checks the method itself.
_STORED_RESPONSE = Route("GET", responses.stored_response, "responses")
_MESSAGES = ROUTES["/v1/messages"]


class GatewayApp:
    """The OpenAI-compatible HTTP gateway in front of an `AsyncRouter` (an ASGI 3 application).

    Use `create_app` to make one. It closes the router when the ASGI server
    shuts it down (the ``lifespan`` protocol), after in-flight requests and
    streams have finished or `ServerConfig.shutdown_timeout` has passed; call
    `startup` and `shutdown` yourself when serving without lifespan events.
    """

    def __init__(
        self, router: AsyncRouter, config: ServerConfig | None = None, *, close_router: bool = True
    ) -> None:
        self.router = router
        self.config = config or router.config.server or ServerConfig()
        routes = frozenset(router.config.routes)
        self.keys = KeyStore(self.config.keys, routes)
        self.metrics = GatewayMetrics() if self.config.metrics != "off" else None
        if self.metrics is not None:
            self.metrics.registry.register(RecorderMetrics(lambda: router.recording))
        config = self.config
        self._gateway = Gateway(
            router, config, self.keys, self.metrics, routes, int(config.max_body_size),
            ErrorText(config.upstream_errors, configured_secrets(router.config)),
            max_in_flight=int(config.max_body_in_flight),
            local_only=not config.keys and not config.allow_unauthenticated,
            forwarded=tuple(config.forward_provider_headers),
        )  # fmt: skip
        self._close_router = close_router
        self._active = 0
        self._cut_short = False  # the shutdown did not wait for every request
        self._drained: asyncio.Event | None = None
        self._paths: dict[str, Route] = {}
        for path, route in ROUTES.items():
            self._paths[path] = route
            if path.startswith("/v1/"):
                self._paths[path[3:]] = route

    # -------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            request = GatewayRequest(scope, receive, send, self._gateway)
            refused = request.screen()
            if refused is not None:
                await self._fail(request, refused, None)
                return
            path: str = scope["path"]
            route = self._paths.get(path)
            if route is not None and scope["method"] == route.method:  # the usual case: answer
                await self._run(request, route)
            else:
                await self._other(request, path, route)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startup()
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
        return self._gateway.state == "stopped" and not self._cut_short

    def startup(self) -> None:
        """Start: ``/ready`` answers ready from now on (the lifespan's startup step).

        First it warms the router up (`AsyncRouter.warm_up`: the HTTP engine and
        genai-prices' data), which its first requests load otherwise (aiohttp and its TLS
        context alone: 0.2-0.4 s of blocked event loop; the prices in the log's worker
        thread, holding the GIL): a gateway taking a burst as soon as it is ready
        would hold every request's Redis call past its timeout meanwhile, and its rate
        limits would fail open (137 and 199 of a limit of 100 let through by three fresh
        gateways, with benchmarks/fleet.py; 65 of 40 in CI with only aiohttp imported
        first; tests/test_fleet_bench.py checks what is loaded)."""
        if self._gateway.state == "starting":
            self._gateway.router.warm_up()
            self._gateway.state = "ready"

    async def shutdown(self) -> None:
        """Stop: wait for in-flight requests (up to the shutdown timeout), then close the router."""
        gateway = self._gateway
        if gateway.state in ("stopping", "stopped"):
            return
        gateway.state = "stopping"
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
        gateway.state = "stopped"

    # -------------------------------------------------------------- answering

    async def _other(self, request: GatewayRequest, path: str, route: Route | None) -> None:
        """Answer what `_paths` does not: a model's own path, else a 404; a wrong method: a 405."""
        method = request.scope["method"]
        if route is None and path.startswith(("/v1/responses/", "/responses/")):
            await self._run(request, _STORED_RESPONSE)
            return
        if route is None and path.startswith(("/v1/models/", "/models/")):
            route = _MODEL
        elif route is None and path.startswith("/dashboard/"):
            route = _DASHBOARD_FILE
        elif route is None and path.startswith("/api/"):
            route = _DASHBOARD_API
        if route is None:
            error = HTTPError(404, f"unknown path: {method} {path}")
            anthropic = path.startswith(("/v1/messages/", "/messages/"))  # its error shape
            await self._fail(request, error, _MESSAGES if anthropic else None)
            return
        if method != route.method:
            error = HTTPError(
                405,
                f"{path} takes {route.method}, not {method}",
                code="method_not_allowed",
                headers=[(b"allow", route.method.encode())],
            )
            await self._fail(request, error, route)
            return
        await self._run(request, route)

    async def _run(self, request: GatewayRequest, route: Route) -> None:
        """Answer: map errors to responses, stop if the client goes away; a counted request
        (a POST) is in flight until it ends, and shutdown waits for it."""
        counted = route.counted
        metrics = self.metrics if counted else None
        self._active += counted
        if metrics is not None:
            metrics.in_flight += 1
        current = current_request_id.set(None)  # the router sets it when it starts one
        try:
            await route.endpoint(request)
        except asyncio.CancelledError as exc:
            interrupt = request.interrupt
            if interrupt is not None and interrupt.claim(exc):
                return  # the client went away (and nothing else cancelled); it was counted
            self._cut_short = True  # the server cancelled it: a shutdown that did not wait
            raise
        except ClientGone:
            return
        except HTTPError as exc:
            await self._fail(request, exc, route)
        except LLMRouteError as exc:
            await self._fail(request, from_exception(exc, self._gateway.error_text), route, exc)
        except Exception:
            scope = request.scope
            logger.exception(
                "internal error answering %s %s (request %s)",
                scope["method"],
                scope["path"],
                request.ensure_id(),
            )
            error = HTTPError(500, "internal error (logged by the gateway)", type="server_error")
            await self._fail(request, error, route)
        finally:
            current_request_id.reset(current)
            request.stop_watching()
            if request.reserved:
                request.release()
            self._active -= counted
            if metrics is not None:
                metrics.in_flight -= 1
            if self._active == 0 and self._drained is not None:
                self._drained.set()

    async def _fail(
        self,
        request: GatewayRequest,
        error: HTTPError,
        route: Route | None,
        cause: LLMRouteError | None = None,
    ) -> None:
        """Answer with `error` in the route's shape (unless the response has started) and
        count it."""
        request_id = request.ensure_id()
        if error.status >= 500:
            scope = request.scope
            logger.warning(
                "%s %s -> %d: %s (request %s)",
                scope["method"],
                scope["path"],
                error.status,
                error.message,
                request_id,
            )
        if not request.started:
            headers = [*error.headers, _CLOSE] if error.close else error.headers
            shape = route.error_body if route is not None else _openai_error
            status, body = shape(error, request_id)
            await request.respond(status, body, headers, JSON)
        metrics = self.metrics
        if metrics is None or route is None or not route.metered:
            return
        provider = model = ""
        if isinstance(cause, ProviderError):
            provider, model = cause.provider, cause.model
        elif error.attempts:
            provider, model = error.attempts[-1].provider, error.attempts[-1].model
        route_name = request.model if request.model in self._gateway.routes else ""
        metrics.failed(
            route.name,
            error.status,
            type(cause).__name__ if cause else error.code or error.type,
            route=route_name or "",
            provider=provider,
            model=model,
            key=request.key,
            attempts=error.attempts if isinstance(cause, AllTargetsFailed) else (),
        )


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

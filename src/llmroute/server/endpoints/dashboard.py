"""``GET /dashboard`` (the page) and ``GET /api/...`` (its JSON API) in the gateway.

The views are `llmroute.dashboard.api`'s, over the router's request log
(``logging.store``) and, for ``/api/health``, the live router itself. The
API shows every key's, user's and team's traffic, so it answers only a key
marked ``admin: true`` when keys are configured, and only a client on a
loopback address when none is (what ``/metrics`` allows in ``auto``, and
stricter: a keyless gateway opened to the network with
``allow_unauthenticated`` still keeps its log to this machine). The page
itself holds no data: it is served to anyone, and asks for a key when the
API wants one.
"""

from __future__ import annotations

import asyncio

from ...dashboard.api import (
    ApiError,
    DashboardSource,
    answer,
    api_path,
    error_body,
    live_health,
    parse_query,
)
from ...dashboard.assets import PAGE_HEADERS, asset
from ...observe.sinks import open_store
from ..errors import HTTPError
from ..request import Gateway, GatewayRequest
from ..responses import JSON

__all__ = ["api", "page", "source"]


async def page(request: GatewayRequest) -> None:
    """The page and its files (``/dashboard``, ``/dashboard/dashboard.js``, ...)."""
    found = asset(request.scope["path"])
    if found is None:
        raise HTTPError(404, f"unknown path: GET {request.scope['path']}")
    content_type, body = found
    await request.respond(200, body, PAGE_HEADERS, content_type)


async def api(request: GatewayRequest) -> None:
    """A view of the API, for whom may read every key's traffic (see the module's docstring)."""
    _check_access(request)
    try:
        view, request_id = api_path(request.scope["path"])
        params = parse_query(request.scope.get("query_string", b""))
    except ApiError as exc:
        await request.respond(exc.status, error_body(exc.status, exc.message, exc.param),
                              PAGE_HEADERS, JSON)  # fmt: skip
        return
    gateway = request.gateway
    if view == "health":
        status, body = 200, live_health(gateway.router, workers=gateway.config.workers)
    else:
        status, body = await asyncio.to_thread(
            answer, source(gateway), view, params, request_id=request_id
        )
    await request.respond(status, body, PAGE_HEADERS, JSON)


def _check_access(request: GatewayRequest) -> None:
    gateway = request.gateway
    if gateway.keys.required:
        identity = request.identity()  # 401 without a valid key
        if identity.name not in gateway.keys.admins:
            raise HTTPError(
                403, "the dashboard API needs a gateway key marked 'admin: true'",
                type="permission_error", code="admin_key_required",
            )  # fmt: skip
        return
    client = request.scope.get("client")
    address = client[0] if client else None
    if not (isinstance(address, str) and (address.startswith("127.") or address == "::1")):
        raise HTTPError(
            403, "without gateway keys the dashboard API answers only clients on this machine "
            "(loopback); configure server.keys with an 'admin: true' key to read it remotely",
            type="permission_error", code="loopback_only",
        )  # fmt: skip


def source(gateway: Gateway) -> DashboardSource:
    """What the gateway's dashboard reads: the router's log store (if it has one), and the
    router; made on first use and kept."""
    found = gateway.dashboard
    if found is None:
        logging = gateway.router.config.logging
        url = logging.store if logging is not None else None
        store = open_store(url) if url else None
        found = gateway.dashboard = DashboardSource(store, gateway.router)
    return found

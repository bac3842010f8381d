"""``llmroute dashboard``: the page and its API alone, read-only, over a store file.

`DashboardApp` is a small ASGI application: ``GET /dashboard`` (the page and
its files) and ``GET /api/...`` (`llmroute.dashboard.api`, the same views
the gateway serves), nothing else. It reads the store an in-process router
writes, while it writes (SQLite's WAL lets readers and one writer work at
once), on connections that refuse writes. There are no keys: who can reach
the address can read the log, so it listens on loopback unless told
otherwise, and on a loopback address it answers only requests whose ``Host``
and ``Origin`` name this machine (a web page elsewhere cannot read it through
a DNS-rebound name).
"""

from __future__ import annotations

import asyncio

from ..server.types import Receive, Scope, Send
from .api import ApiError, DashboardSource, answer, api_path, error_body, live_health, parse_query
from .assets import PAGE_HEADERS, asset

__all__ = ["DashboardApp", "loopback_name", "run"]

_JSON = b"application/json"
#: The names a loopback listener answers to.
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def loopback_name(value: str, *, origin: bool = False) -> bool:
    """Whether a ``Host`` value (or an ``Origin``) names this machine: localhost, 127.0.0.1
    or [::1], with any port."""
    if origin:
        scheme, sep, value = value.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            return False
    if value.startswith("["):
        return value[: value.find("]") + 1] in _LOOPBACK_NAMES
    return value.partition(":")[0].lower() in _LOOPBACK_NAMES


class DashboardApp:
    """The dashboard over `source` as an ASGI application.

    Args:
        source: the store to read (and a live router, if any).
        local_only: answer only requests addressed to a loopback name (set it when
            listening on a loopback address).
    """

    def __init__(self, source: DashboardSource, *, local_only: bool = True) -> None:
        self.source = source
        self.local_only = local_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        status, content_type, body, headers = await self._answer(scope)
        start = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                 *headers]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": start})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        path: str = scope["path"]
        refusal = self._refusal(scope)
        if refusal is not None:
            return 403, _JSON, error_body(403, refusal), PAGE_HEADERS
        if scope["method"] != "GET":
            body = error_body(405, f"{path} takes GET, not {scope['method']}")
            return 405, _JSON, body, [(b"allow", b"GET"), *PAGE_HEADERS]
        if path == "/":
            return 307, b"text/plain", b"", [(b"location", b"/dashboard"), *PAGE_HEADERS]
        if path == "/dashboard" or path.startswith("/dashboard/"):
            found = asset(path)
            if found is not None:
                return 200, found[0], found[1], PAGE_HEADERS
        elif path.startswith("/api/"):
            status, body = await self._api(scope)
            return status, _JSON, body, PAGE_HEADERS
        return 404, _JSON, error_body(404, f"unknown path: {path}"), PAGE_HEADERS

    async def _api(self, scope: Scope) -> tuple[int, bytes]:
        try:
            view, request_id = api_path(scope["path"])
            params = parse_query(scope.get("query_string", b""))
        except ApiError as exc:
            return exc.status, error_body(exc.status, exc.message, exc.param)
        if view == "health":
            return 200, live_health(self.source.router)
        return await asyncio.to_thread(answer, self.source, view, params, request_id=request_id)

    def _refusal(self, scope: Scope) -> str | None:
        """Why a request is refused: on loopback, a ``Host`` or ``Origin`` naming another site."""
        if not self.local_only:
            return None
        for name, value in scope["headers"]:
            if name == b"host" and not loopback_name(value.decode("latin-1")):
                return "the dashboard answers only requests for localhost, 127.0.0.1 or [::1]"
            if name == b"origin" and not loopback_name(value.decode("latin-1"), origin=True):
                return "the dashboard answers only pages of localhost, 127.0.0.1 or [::1]"
        return None


def run(store: str, *, host: str = "127.0.0.1", port: int = 8081, open_page: bool = False) -> int:
    """Serve the dashboard over `store` (a path, a ``sqlite:///`` or a ``postgresql://`` URL)
    until interrupted
    (``llmroute dashboard``); `open_page` opens it in the default browser once listening."""
    import threading
    import webbrowser

    import uvicorn

    from ..observe.sinks import open_store
    from ..server.run import is_loopback

    found = open_store(store)
    found.schema_version()  # a ConfigError now, not on the first page load, if it is not one
    local = is_loopback(host)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/dashboard"
    print(f"llmroute dashboard on {url} (store: {found.location}, read-only)")
    if not local:
        print("  not on loopback: whoever reaches this address can read the whole request log")
    if open_page:
        threading.Timer(0.5, webbrowser.open, [url]).start()
    app = DashboardApp(DashboardSource(found), local_only=local)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
    return 0

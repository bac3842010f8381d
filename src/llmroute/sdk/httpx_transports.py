"""The httpx 0.28 twins of `llmroute.sdk.transports`, for SDK versions built on httpx.

Same behaviour as the httpx2 transports (see that module; both are written
once, in `llmroute.sdk._serve`); httpx is imported when this module is, so it
is only needed by those who use it.
"""

from __future__ import annotations

import httpx

from ._serve import AsyncServing, Serving, body_classes

__all__ = ["AsyncInProcessTransport", "InProcessTransport"]


_AsyncBody, _SyncBody = body_classes(httpx)


class AsyncInProcessTransport(AsyncServing, httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` serving requests by a router's gateway application in
    this process: ``AsyncInProcessTransport(router.gateway)``. Errors: `httpx.ConnectError`
    once the router is closed, `httpx.RemoteProtocolError` if the application fails."""

    http = httpx
    body = _AsyncBody


class InProcessTransport(Serving, httpx.BaseTransport):
    """An ``httpx.BaseTransport`` (blocking) serving requests by a router's gateway application
    on the router's loop thread: ``InProcessTransport(gateway, call)``, `call` running a
    coroutine function there (as ``anyio.from_thread.BlockingPortal.call``)."""

    http = httpx
    body = _SyncBody

"""httpx2 transports that serve each request by the router's gateway application, in process.

`AsyncInProcessTransport` runs the application on the caller's event loop;
`InProcessTransport` (blocking) runs it on the blocking `Router`'s own loop
thread. Both hand the response back as soon as its head is sent and stream
its body as the application writes it; closing a response early tells the
application its client has gone. The httpx 0.28 twins are in
`llmroute.sdk.httpx_transports`; what the two share is written once, in
`llmroute.sdk._serve`.

Timeouts set on the client do not apply: no socket is opened, and the router's
deadlines (a route's ``deadline``, the ``x-llmroute-timeout`` header) bound a
request instead.
"""

from __future__ import annotations

import httpx2

from ._serve import AsyncServing, PortalCall, Serving, body_classes

__all__ = ["AsyncInProcessTransport", "InProcessTransport", "PortalCall"]


_AsyncBody, _SyncBody = body_classes(httpx2)


class AsyncInProcessTransport(AsyncServing, httpx2.AsyncBaseTransport):
    """An ``httpx2.AsyncBaseTransport`` that serves requests by a router's gateway application
    in this process (no socket): ``AsyncInProcessTransport(router.gateway)``. Get a client
    with ``router.http_client()``.

    Errors: `httpx2.ConnectError` once the router is closed;
    `httpx2.RemoteProtocolError` if the application fails (a bug: it answers
    errors with their HTTP status).
    """

    http = httpx2
    body = _AsyncBody


class InProcessTransport(Serving, httpx2.BaseTransport):
    """An ``httpx2.BaseTransport`` (blocking) that serves requests by a router's gateway
    application on the router's own event-loop thread. Get a client with the blocking
    ``Router.http_client()``.

    Args:
        gateway: the router's in-process gateway.
        call: runs a coroutine function on the router's loop thread and returns its result.
    """

    http = httpx2
    body = _SyncBody

"""``GET /health``, ``/ready`` and ``/metrics``: what operators and orchestrators ask."""

from __future__ import annotations

import asyncio
import json

from ..errors import HTTPError
from ..metrics import CONTENT_TYPE
from ..request import GatewayRequest
from ..responses import send_json

__all__ = ["READY_TIMEOUT", "health", "metrics", "ready"]

#: How long `/ready` waits for the router's stores to answer.
READY_TIMEOUT = 2.0


async def health(request: GatewayRequest) -> None:
    """Liveness: the process answers."""
    await send_json(request, b'{"status":"ok"}')


async def ready(request: GatewayRequest) -> None:
    """Readiness: started, not stopping, and every store of the router reachable (else 503).

    What works in a degraded way (`AsyncRouter.degraded`: shared health state while its
    Redis is lost) is listed under ``degraded`` without failing readiness: every replica
    shares that Redis, and a load balancer must not take them all out because it is down.
    """
    gateway = request.gateway
    problems: list[str] = []
    degraded: list[str] = []
    if gateway.state != "ready":
        problems.append(f"the gateway is {gateway.state}")
    else:
        router = gateway.router
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                problems = await router.check()
                degraded = await router.degraded()
        except TimeoutError:
            problems = [f"the router's stores did not answer within {READY_TIMEOUT:g}s"]
    status = 503 if problems else 200
    body: dict[str, object] = (
        {"status": "unavailable", "problems": problems} if problems else {"status": "ready"}
    )
    if degraded:
        body["degraded"] = degraded
    await send_json(request, json.dumps(body).encode(), status=status)


async def metrics(request: GatewayRequest) -> None:
    """The Prometheus exposition, for whom ``server.metrics`` allows: an admin key (the
    default when keys are configured: the metrics name every key, its volumes and costs),
    any key, or anyone."""
    gateway = request.gateway
    if gateway.metrics is None:
        raise HTTPError(404, "metrics are off (server.metrics: off)")
    access = gateway.config.metrics_access
    if access != "public":
        identity = request.identity()
        if access == "admin" and identity.name not in gateway.keys.admins:
            raise HTTPError(
                403,
                "/metrics needs a gateway key marked 'admin: true' (server.metrics: admin)",
                type="permission_error",
                code="admin_key_required",
            )
    await request.respond(200, gateway.metrics.exposition(), [], CONTENT_TYPE)

"""``POST /v1/feedback``: feedback on a request, or on an experiment's sticky key.

The body names what the feedback is about, ``request_id`` (the
``x-llmroute-request-id`` of an answer) or ``experiment`` and ``sticky_key``,
and the metric: ``name``, ``value`` (true, false or a number) and an
optional ``comment``. Feedback is scoped by the caller's gateway key: a key
gives feedback only on requests made with it, and another key's request is
answered as unknown (404), like one that does not exist, so ids leak nothing
across tenants. It needs the request log store (``logging.store``); without
one the endpoint answers 404.
"""

from __future__ import annotations

import json

from ..errors import HTTPError
from ..request import GatewayRequest
from ..responses import send_json

__all__ = ["MAX_FEEDBACK_BODY", "create_feedback"]

#: The largest feedback body accepted, in bytes (a comment is at most 2,000 characters).
MAX_FEEDBACK_BODY = 16 * 1024
_FIELDS = frozenset({"request_id", "experiment", "sticky_key", "name", "value", "comment"})


async def create_feedback(request: GatewayRequest) -> None:
    """Store one feedback through the router; answer with what was stored."""
    identity = request.identity()
    router = request.gateway.router
    log_config = router.config.logging
    if log_config is None or log_config.store is None:
        raise HTTPError(
            404,
            "feedback is off: it is stored in the request log, and this gateway has none "
            "(logging.store)",
            code="feedback_unavailable",
        )
    body = await request.read_json(MAX_FEEDBACK_BODY)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise HTTPError(
            400,
            f"unknown field {unknown[0]!r}: feedback takes request_id (or experiment and "
            "sticky_key), name, value and comment",
            param=unknown[0],
        )
    if "name" not in body or "value" not in body:
        missing = "name" if "name" not in body else "value"
        raise HTTPError(400, f"{missing}: required", param=missing)
    request_id = body.get("request_id")
    by_key = "experiment" in body or "sticky_key" in body
    if (request_id is None) == (not by_key):
        raise HTTPError(
            400,
            "feedback is about a request (request_id) or an experiment's sticky key "
            "(experiment and sticky_key): give one of them",
            param="request_id",
        )
    if request_id is not None:
        given = await router.feedback(
            request_id, body["name"], body["value"], comment=body.get("comment"),
            key=identity.name,
        )  # fmt: skip
    else:
        for field in ("experiment", "sticky_key"):
            if field not in body:
                raise HTTPError(400, f"{field}: required with feedback per sticky key", param=field)
        given = await router.sticky_feedback(
            body["experiment"], body["sticky_key"], body["name"], body["value"],
            comment=body.get("comment"), key=identity.name,
        )  # fmt: skip
    stored = given.to_dict()
    stored.pop("key")  # the caller knows its own key's name
    answer = {"id": stored.pop("feedback_id"), "object": "feedback", **stored}
    await send_json(request, json.dumps(answer, separators=(",", ":")).encode())

"""Errors as the OpenAI API serves them: a status and ``{"error": {message, type, param, code}}``.

`HTTPError` is what the gateway itself refuses with (bad JSON, a missing key,
a body too large...). `from_exception` maps llmroute's errors to the status an
OpenAI SDK expects:

================================  ======  =============================================
error                             status  notes
================================  ======  =============================================
`RequestError`                    400     ``param`` names the bad field
`UnknownModel`                    404     ``code: model_not_found``
`ResponseNotFound`                404     a stored response: unknown, expired or another key's
`UnknownRequest`                  404     feedback on a request not recorded, or another key's
`LocalRateLimitExceeded`          429     ``Retry-After``, ``retry-after-ms``, ``x-ratelimit-*``
`BudgetExceeded`                  429     ``code: budget_exceeded``, ``x-should-retry: false``
provider: the request's fault     400     invalid request, context length, content filter
provider: ``ModelNotFound``       404
provider: ``ProviderTimeout``     504     the request's deadline passed
every attempt failed              502     503 when they were overloaded or rate limited
                                          (or no target could be tried), 504 when every
                                          one timed out; ``attempts`` lists them
================================  ======  =============================================

A budget refusal is a 429, as OpenAI answers an exhausted quota
(``insufficient_quota``), with ``x-should-retry: false`` so that the SDKs do
not retry it.

Beside the four OpenAI fields, the ``error`` object carries the request's id
(``request_id``, as in the ``x-llmroute-request-id`` header) and, when every
attempt failed, the ``attempts``; clients that know only the four ignore them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import (
    AllTargetsFailed,
    BudgetExceeded,
    ContentFiltered,
    ContextLengthExceeded,
    InvalidRequest,
    LLMRouteError,
    LocalRateLimitExceeded,
    MalformedResponse,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
    RequestError,
    ResponseNotFound,
    StreamInterrupted,
    UnknownModel,
    UnknownRequest,
)
from .._types import AttemptInfo
from ..observe.dialect import StoreUnavailable
from .types import Headers

__all__ = ["HTTPError", "from_exception", "sse_error_event"]


class HTTPError(Exception):
    """An error response in the OpenAI error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Headers | None = None,
        attempts: Sequence[AttemptInfo] = (),
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or []
        self.attempts = attempts
        #: Close the connection after answering (the request body was not read to its end).
        self.close = close
        #: Applied to each attempt's error text (upstream text: see `server.scrub`).
        self.attempt_text: Callable[[str], str] | None = None

    def error_object(self, request_id: str | None = None) -> dict[str, Any]:
        """The ``error`` object of the body (with the gateway's `request_id`, when given)."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if request_id is not None:
            error["request_id"] = request_id
        if self.attempts:
            error["attempts"] = [_attempt(a, self.attempt_text) for a in self.attempts]
        return error

    def body(self, request_id: str | None = None) -> bytes:
        """The JSON body (with the gateway's `request_id`, when given)."""
        error = self.error_object(request_id)
        return json.dumps({"error": error}, separators=(",", ":")).encode()


def _attempt(attempt: AttemptInfo, text: Callable[[str], str] | None) -> dict[str, Any]:
    error = attempt.error
    return {
        "target": attempt.target,
        "kind": attempt.kind,
        "outcome": attempt.outcome,
        "status": attempt.status,
        "error_type": attempt.error_type,
        "error": text(error) if text is not None and error is not None else error,
        "latency_ms": round(attempt.latency_s * 1000, 1),
    }


def _seconds(value: float) -> bytes:
    return str(max(1, math.ceil(value))).encode()


def rate_limit_headers(exc: LocalRateLimitExceeded) -> Headers:
    """``Retry-After`` (whole seconds), ``retry-after-ms``, and ``x-ratelimit-*`` when known.

    ``x-ratelimit-limit-<unit>`` and ``x-ratelimit-reset-<unit>`` (as OpenAI
    names them) are sent when the error says which limit it was (its `unit`,
    and its `limit`).
    """
    retry = max(0.0, exc.retry_after)
    headers: Headers = [
        (b"retry-after", _seconds(retry)),
        (b"retry-after-ms", str(math.ceil(retry * 1000)).encode()),
    ]
    if exc.unit is not None:
        unit = exc.unit.encode()
        if exc.limit is not None:
            headers.append((b"x-ratelimit-limit-" + unit, f"{exc.limit:g}".encode()))
        headers.append((b"x-ratelimit-reset-" + unit, f"{retry:.3g}s".encode()))
    return headers


_CLIENT_FAULTS = (InvalidRequest, ContextLengthExceeded, ContentFiltered)


def _provider_error(exc: ProviderError) -> HTTPError:
    """A provider error that ended the request (not failed over)."""
    if isinstance(exc, _CLIENT_FAULTS):
        return HTTPError(400, str(exc), code=exc.code or exc.kind, param=exc.param)
    if isinstance(exc, ModelNotFound):
        return HTTPError(404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, ProviderTimeout):
        return HTTPError(504, str(exc), type="timeout", code=exc.kind)
    retry = [(b"retry-after", _seconds(exc.retry_after))] if exc.retry_after else None
    if isinstance(exc, RateLimited | QuotaExceeded) or (
        isinstance(exc, ProviderUnavailable) and not isinstance(exc, MalformedResponse)
    ):
        return HTTPError(503, str(exc), type="service_unavailable", code=exc.kind, headers=retry)
    # the gateway's own credentials or the upstream's answer: not the client's fault
    return HTTPError(502, str(exc), type="upstream_error", code=exc.kind)


def _all_failed(exc: AllTargetsFailed) -> HTTPError:
    errors = [e for e in exc.errors if isinstance(e, ProviderError)]
    attempts = exc.attempts
    if errors and all(isinstance(e, _CLIENT_FAULTS) for e in errors):
        last = errors[-1]
        return HTTPError(
            400, str(exc), code=last.code or last.kind, param=last.param, attempts=attempts
        )
    if errors and all(isinstance(e, ProviderTimeout) for e in errors):
        return HTTPError(504, str(exc), type="timeout", code="timeout", attempts=attempts)
    overloaded = [
        e
        for e in errors
        if isinstance(e, RateLimited | QuotaExceeded)
        or (isinstance(e, ProviderUnavailable) and not isinstance(e, MalformedResponse))
    ]
    if overloaded or not errors:
        waits = [e.retry_after for e in overloaded if e.retry_after]
        headers = [(b"retry-after", _seconds(min(waits)))] if waits else None
        return HTTPError(
            503, str(exc), type="service_unavailable", code="all_targets_failed",
            headers=headers, attempts=attempts,
        )  # fmt: skip
    return HTTPError(
        502, str(exc), type="upstream_error", code="all_targets_failed", attempts=attempts
    )


def from_exception(exc: LLMRouteError, text: Callable[[str], str] | None = None) -> HTTPError:
    """The error response for an llmroute error raised by the router.

    `text` filters what came from upstream (provider errors' messages and each
    attempt's error: see `server.scrub.ErrorText`); the gateway's own messages
    (limits, budgets, unknown models) are not filtered.
    """
    error = _from_exception(exc)
    if text is not None and isinstance(exc, ProviderError | AllTargetsFailed | StreamInterrupted):
        error.message = text(error.message)
        error.attempt_text = text
    return error


def _from_exception(exc: LLMRouteError) -> HTTPError:
    if isinstance(exc, UnknownModel):
        return HTTPError(404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, ResponseNotFound):
        if exc.param == "previous_response_id":  # creating one: OpenAI's 400, with a code
            return HTTPError(
                400,
                f"Previous response with id '{exc.response_id}' not found.",
                code="previous_response_not_found",
                param=exc.param,
            )
        return HTTPError(404, str(exc), param=exc.param)  # reading one: OpenAI's body, no code
    if isinstance(exc, UnknownRequest):
        return HTTPError(404, str(exc), code="request_not_found", param=exc.param)
    if isinstance(exc, RequestError):
        return HTTPError(400, str(exc), param=exc.param)
    if isinstance(exc, LocalRateLimitExceeded):
        return HTTPError(
            429, str(exc), type="rate_limit_exceeded", code="rate_limit_exceeded",
            headers=rate_limit_headers(exc),
        )  # fmt: skip
    if isinstance(exc, BudgetExceeded):
        headers: Headers = [(b"x-should-retry", b"false")]
        retry: object = getattr(exc, "retry_after", None)
        if isinstance(retry, int | float) and not isinstance(retry, bool) and retry > 0:
            headers.append((b"retry-after", _seconds(retry)))
        return HTTPError(
            429, str(exc), type="insufficient_quota", code="budget_exceeded", headers=headers
        )
    if isinstance(exc, AllTargetsFailed):
        return _all_failed(exc)
    if isinstance(exc, ProviderError):
        return _provider_error(exc)
    return _server_side(exc)


def _server_side(exc: LLMRouteError) -> HTTPError:
    """What went wrong on this side of the gateway (or past the first byte of a stream)."""
    if isinstance(exc, StreamInterrupted):
        return HTTPError(502, str(exc), type="upstream_error", code="stream_interrupted")
    if isinstance(exc, StoreUnavailable):  # the log store's server is down: try again later
        return HTTPError(503, str(exc), type="server_error", code="store_unavailable")
    return HTTPError(500, str(exc), type="server_error", code=type(exc).__name__)


def sse_error_event(
    exc: LLMRouteError, request_id: str | None = None, text: Callable[[str], str] | None = None
) -> bytes:
    """The last event of a stream that failed after its first chunk (no ``[DONE]`` follows).

    The OpenAI SDKs raise an ``APIError`` when they read it.
    """
    error = from_exception(exc, text)
    if isinstance(exc, StreamInterrupted):
        cause = exc.cause
        error.code = cause.kind if isinstance(cause, ProviderError) else "stream_interrupted"
        error.type = "stream_interrupted"
    payload = json.dumps({"error": error.error_object(request_id)}, separators=(",", ":"))
    return b"data: " + payload.encode() + b"\n\n"

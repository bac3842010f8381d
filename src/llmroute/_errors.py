"""The llmroute error hierarchy.

Every error llmroute raises derives from `LLMRouteError`::

    LLMRouteError
    ├── ConfigError                  a bad config: names the field path and what was expected
    ├── RequestError                 an invalid request, caught before any network call
    │   ├── UnknownModel             `model=` names no route and no provider
    │   ├── ResponseNotFound         a stored response asked for is unknown or expired (404)
    │   └── UnknownRequest           feedback names a request (or sticky key) not recorded (404)
    ├── ProviderError                a provider answered with an error (or not at all)
    │   ├── retryable
    │   │   ├── RateLimited              429
    │   │   ├── ProviderUnavailable      5xx, 529 overloaded, 408/409, a stream that ended early
    │   │   │   └── MalformedResponse    a 2xx answer that is not JSON or has the wrong shape
    │   │   ├── ProviderTimeout          connect / first byte / attempt timeout
    │   │   └── ProviderConnectionError  connection refused, reset or dropped
    │   └── fatal
    │       ├── AuthenticationError      401
    │       ├── PermissionDenied         403
    │       ├── ModelNotFound            404
    │       ├── QuotaExceeded            429 ``insufficient_quota``: no credit left
    │       ├── ContextLengthExceeded    the prompt does not fit the model
    │       ├── ContentFiltered          the provider refused on content policy
    │       └── InvalidRequest           400, 413, 422 and other client errors
    ├── LocalRateLimitExceeded       a local rate-limit rule refused the request
    ├── BudgetExceeded               a budget refused the request
    ├── StreamInterrupted            a stream failed after content was sent
    ├── LengthFinishReasonError      parse()/stream(): the answer was cut at its token limit
    ├── ContentFilterFinishReasonError  parse()/stream(): the content filter stopped the answer
    └── AllTargetsFailed             every attempt failed; carries them all, in order

Provider errors are classified from the HTTP status and the vendor's own error
type or code, never from the wording of the message.

`ProviderError.retryable` is said by the branch: every class under "retryable"
is retryable and every class under "fatal" is not, with no subclass turning it
back (a test walks the tree). So ``except RateLimited`` means "wait and try
again" and nothing else: `QuotaExceeded`, a 429 that no wait fixes, is a fatal
sibling of `AuthenticationError`, not a kind of `RateLimited`.

The two finish-reason errors are the openai SDK's (same names, same messages):
``chat.completions.parse()`` and the ``stream()`` helper raise them for an
answer that ended at its token limit or was stopped by the content filter, which
cannot be parsed; the answer is their `completion`. They are not provider errors:
the provider answered (`ContentFiltered` is a provider refusing the request).
"""

# No `from __future__ import annotations`: the class-level annotations stay objects, so
# the classes can carry their public path, ``llmroute``, as `__module__` (see `_lazy`).
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from ._types import AttemptInfo, ChatCompletion

__all__ = [
    "AllTargetsFailed",
    "AuthenticationError",
    "BudgetExceeded",
    "ConfigError",
    "ContentFilterFinishReasonError",
    "ContentFiltered",
    "ContextLengthExceeded",
    "InvalidRequest",
    "LLMRouteError",
    "LengthFinishReasonError",
    "LocalRateLimitExceeded",
    "MalformedResponse",
    "ModelNotFound",
    "PermissionDenied",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QuotaExceeded",
    "RateLimited",
    "RequestError",
    "ResponseNotFound",
    "StreamInterrupted",
    "UnknownModel",
    "UnknownRequest",
]


class LLMRouteError(Exception):
    """The base of every error llmroute raises."""


class ConfigError(LLMRouteError):
    """The configuration is invalid.

    `path` is the dotted location of the (first) bad value
    (``routes.chat.targets.0``), empty when the problem is with the document as
    a whole. `problems` lists every problem found as ``"path: what was expected"``.
    """

    def __init__(self, message: str, *, path: str = "", problems: Sequence[str] = ()) -> None:
        self.path = path
        self.problems = tuple(problems)
        if self.problems:
            text = message + ":\n  " + "\n  ".join(self.problems)
        else:
            text = f"{path}: {message}" if path else message
        super().__init__(text)


class RequestError(LLMRouteError):
    """The request is invalid; raised before any network call."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class UnknownModel(RequestError):
    """`model=` names neither a configured route nor a known provider."""

    def __init__(self, message: str, *, model: str, available: Sequence[str]) -> None:
        self.model = model
        self.available = tuple(available)
        super().__init__(message, param="model")


class ResponseNotFound(RequestError):
    """No stored response has this id (for this caller), or it has expired.

    Raised by the Responses API's conversation state for a `previous_response_id`,
    a response asked for by id, or an ancestor of either; served over HTTP as a
    404 with OpenAI's message. `response_id` is the id that was not found.
    """

    def __init__(self, response_id: str, *, param: str | None = None) -> None:
        self.response_id = response_id
        super().__init__(f"Response with id '{response_id}' not found.", param=param)


class UnknownRequest(RequestError):
    """Feedback names a request the log store does not hold (for this caller): unknown,
    not ended yet, or not recorded (dropped, or kept out by a redactor); or, given per
    sticky key, an experiment in which that key made no recorded request.

    `request_id` is the request's id, or None for feedback per sticky key (then
    `experiment` names the experiment). Served over HTTP as a 404.
    """

    def __init__(self, request_id: str | None, experiment: str | None = None) -> None:
        self.request_id = request_id
        self.experiment = experiment
        if request_id is not None:
            message = (
                f"unknown request {request_id!r}: no recorded request has this id (a request "
                "is recorded once it has ended)"
            )
            param = "request_id"
        else:
            message = f"no recorded request of experiment {experiment!r} has this sticky key"
            param = "sticky_key"
        super().__init__(message, param=param)


class ProviderError(LLMRouteError):
    """A provider answered with an error, or could not be reached.

    `retryable` says whether the same request may succeed if tried again (on
    this target later, or on another target now).
    """

    retryable: ClassVar[bool] = False
    #: The OpenAI-style error type used when this error is served over HTTP.
    kind: ClassVar[str] = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        body: bytes | str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self.body = body
        self.code = code
        #: The request field the provider blamed (OpenAI's ``error.param``), if it said.
        self.param = param
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{status}: {self.message}" if where else f"{self.message}{status}"


class RateLimited(ProviderError):
    """The provider refused the request for its rate limit (HTTP 429)."""

    retryable = True
    kind = "rate_limit_exceeded"


class ProviderUnavailable(ProviderError):
    """The provider failed or is overloaded (5xx, 529, 408, 409)."""

    retryable = True
    kind = "service_unavailable"


class MalformedResponse(ProviderUnavailable):
    """The provider answered 2xx with a body that is not JSON or not the expected shape."""

    kind = "bad_response"


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""

    retryable = True
    kind = "timeout"


class ProviderConnectionError(ProviderError):
    """The connection to the provider failed or dropped."""

    retryable = True
    kind = "connection_error"


class AuthenticationError(ProviderError):
    """The provider rejected the credentials (HTTP 401)."""

    kind = "authentication_error"


class PermissionDenied(ProviderError):
    """The credentials are valid but not allowed to do this (HTTP 403)."""

    kind = "permission_denied"


class ModelNotFound(ProviderError):
    """The provider does not know the model (HTTP 404)."""

    kind = "model_not_found"


class QuotaExceeded(ProviderError):
    """The account behind the target has no quota or credit left (OpenAI's 429
    ``insufficient_quota``).

    Waiting does not fix it, so it is fatal, not a `RateLimited`: code that
    catches `RateLimited` to back off and try again must not wait on an empty
    account. The target is not tried again for this request; the request fails
    over (the ``quota`` kind of `failover_on`), and the error counts against the
    target's health, like a rejected key.
    """

    kind = "insufficient_quota"


class ContextLengthExceeded(ProviderError):
    """The request does not fit the model's context window."""

    kind = "context_length_exceeded"


class ContentFiltered(ProviderError):
    """The provider refused the request or answer on content policy."""

    kind = "content_filter"


class InvalidRequest(ProviderError):
    """The provider rejected the request as invalid (400, 413, 422...)."""

    kind = "invalid_request_error"


class LocalRateLimitExceeded(LLMRouteError):
    """A local rate-limit rule refused the request; try again after `retry_after` seconds.

    When known, `unit` (``requests`` or ``tokens``) and `limit` (that many per
    the rule's period) say which limit it was; the gateway sends them as
    ``x-ratelimit-limit-<unit>`` and ``x-ratelimit-reset-<unit>``.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        limit: float | None = None,
        unit: Literal["requests", "tokens"] | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.limit = limit
        self.unit = unit
        super().__init__(message)


class BudgetExceeded(LLMRouteError):
    """A spending budget refused the request."""


class StreamInterrupted(LLMRouteError):
    """A stream failed after content had been delivered.

    `partial` is the assistant text received before the failure; `cause` (also
    `__cause__`) is the provider error that ended the stream.
    """

    def __init__(self, message: str, *, partial: str, cause: BaseException | None = None) -> None:
        self.partial = partial
        self.cause = cause
        super().__init__(message)


class LengthFinishReasonError(LLMRouteError):
    """``parse()`` or the ``stream()`` helper got an answer cut at its token limit
    (``finish_reason: "length"``), which cannot be parsed, as the openai SDK's error of
    this name. `completion` is the answer (in a stream: as far as it went, without usage).
    """

    def __init__(self, *, completion: "ChatCompletion") -> None:
        message = "Could not parse response content as the length limit was reached"
        if completion.usage:
            message += f" - {completion.usage}"
        super().__init__(message)
        self.completion = completion


class ContentFilterFinishReasonError(LLMRouteError):
    """``parse()`` or the ``stream()`` helper got an answer the content filter stopped
    (``finish_reason: "content_filter"``), as the openai SDK's error of this name.
    `completion` is the answer (in a stream: as far as it went)."""

    def __init__(self, *, completion: "ChatCompletion | None" = None) -> None:
        super().__init__(
            "Could not parse response content as the request was rejected by the content filter"
        )
        self.completion = completion


class AllTargetsFailed(LLMRouteError):
    """Every attempt failed. `attempts` lists them in order; `errors` holds their exceptions."""

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence["AttemptInfo"],
        errors: Sequence[BaseException],
    ) -> None:
        self.attempts = tuple(attempts)
        self.errors = tuple(errors)
        super().__init__(message)

    @property
    def last_error(self) -> BaseException | None:
        """The error of the final attempt."""
        return self.errors[-1] if self.errors else None

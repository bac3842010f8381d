"""llmroute's errors as the openai SDK's exceptions, for code written to catch those.

`to_openai_error(error)` returns the exception the openai SDK would raise if
the same request had gone through the gateway (``llmroute serve``, or the SDK
client served in process): the same status, body and headers, built by the
gateway's own mapping (`llmroute.server.errors.from_exception`), on a
synthesized ``httpx2.Response`` (``httpx`` for SDKs older than httpx2); the
finish-reason errors of ``parse()`` and ``stream()`` become the SDK's
``LengthFinishReasonError`` / ``ContentFilterFinishReasonError``, whose
``completion`` is an ``openai.types.chat.ChatCompletion``. Within
``with openai_errors():``, llmroute errors are re-raised as those exceptions
(the llmroute error is their ``__cause__``). Needs the openai package.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, overload

from ._errors import (
    ContentFilterFinishReasonError,
    LengthFinishReasonError,
    LLMRouteError,
    StreamInterrupted,
)
from .server.errors import from_exception

if TYPE_CHECKING:
    import openai

__all__ = ["openai_errors", "to_openai_error"]

_BASE_URL = "http://llmroute.local"


def _http() -> Any:
    try:
        import httpx2
    except ImportError:  # pragma: no cover - older openai SDKs use httpx
        import httpx

        return httpx
    return httpx2


def _status_class(status: int) -> type[openai.APIStatusError]:
    """The class the openai client picks for `status` (``_make_status_error``)."""
    import openai

    by_status: dict[int, type[openai.APIStatusError]] = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }
    if status >= 500:
        return openai.InternalServerError
    return by_status.get(status, openai.APIStatusError)


FinishReasonError = LengthFinishReasonError | ContentFilterFinishReasonError


def _finish_reason_error(
    error: FinishReasonError,
) -> openai.LengthFinishReasonError | openai.ContentFilterFinishReasonError:
    import openai
    from openai.types.chat import ChatCompletion

    answer = error.completion
    completion = ChatCompletion.model_validate(answer.to_dict()) if answer is not None else None
    if isinstance(error, LengthFinishReasonError):
        assert completion is not None
        return openai.LengthFinishReasonError(completion=completion)
    return openai.ContentFilterFinishReasonError(completion=completion)


@overload
def to_openai_error(  # type: ignore[overload-overlap]
    error: FinishReasonError, *, path: str = ...
) -> openai.LengthFinishReasonError | openai.ContentFilterFinishReasonError: ...
@overload
def to_openai_error(error: LLMRouteError, *, path: str = ...) -> openai.APIError: ...


def to_openai_error(
    error: LLMRouteError, *, path: str = "/v1/chat/completions"
) -> openai.OpenAIError:
    """The openai SDK exception for `error` (see the table in docs/errors.md).

    An error the gateway answers with a status becomes that status's
    ``openai.APIStatusError`` subclass (``RateLimitError`` for a 429, ...), with
    `status_code`, `body` (the ``error`` object), `code`, `param`, `type` and a
    `response` carrying the gateway's headers (``retry-after``...). A
    `StreamInterrupted` becomes ``openai.APIError``, as the SDK raises for an
    error event in a stream. `LengthFinishReasonError` and
    `ContentFilterFinishReasonError` become the SDK's errors of those names, with the
    answer as an ``openai.types.chat.ChatCompletion``. `path` names the endpoint in the
    synthesized request.
    """
    import openai

    if isinstance(error, FinishReasonError):
        return _finish_reason_error(error)

    http = _http()
    served = from_exception(error)
    body: dict[str, Any] = served.error_object()
    request = http.Request("POST", _BASE_URL + path)
    if isinstance(error, StreamInterrupted):
        return openai.APIError(served.message, request, body=body)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in served.headers]
    response = http.Response(
        served.status,
        headers=[("content-type", "application/json"), *headers],
        content=json.dumps({"error": body}).encode(),
        request=request,
    )
    message = f"Error code: {served.status} - {served.message}"
    return _status_class(served.status)(message, response=response, body=body)


@contextmanager
def openai_errors() -> Iterator[None]:
    """Re-raise the llmroute errors raised inside the block as the openai SDK's exceptions
    (`to_openai_error`), for code that catches ``openai.RateLimitError`` and the like."""
    try:
        yield
    except LLMRouteError as error:
        raise to_openai_error(error) from error

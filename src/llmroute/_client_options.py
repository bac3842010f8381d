"""What the resources of the client surface share: a call's client-side keyword arguments
as the pipeline takes them (`RequestOptions`, the extra headers and query of the provider
request), and whether the router is closed."""

from __future__ import annotations

from ._params import ClientParams, timeout_seconds
from ._request import RequestOptions, validate_options
from .providers import ExtraRequest

__all__ = ["NO_EXTRA", "RouterState", "request_options"]

#: No extra headers or query (shared: it is never mutated).
NO_EXTRA = ExtraRequest()


def request_options(client: ClientParams) -> tuple[RequestOptions, ExtraRequest]:
    """The validated `RequestOptions` of a call (its ``timeout`` folded in) and its extras."""
    options = validate_options(client.options)  # type: ignore[arg-type]
    if client.timeout is not None:
        seconds = timeout_seconds(client.timeout)
        if seconds is not None:
            options = options.model_copy(update={"timeout": seconds})
    if client.extra_headers is None and client.extra_query is None:
        return options, NO_EXTRA
    return options, ExtraRequest(headers=client.extra_headers, query=client.extra_query)


class RouterState:
    """Whether a router is closed, read by its resources before each request."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        self.closed = False

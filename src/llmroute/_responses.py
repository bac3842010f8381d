"""Raw and streamed responses: ``with_raw_response`` and ``with_streaming_response``.

As in the openai SDK, ``router.chat.completions.with_raw_response.create(...)``
returns a `RawResponse` (headers, status, request id; `parse()` gives the
result), and ``with_streaming_response.create(...)`` a context manager whose
`AsyncStreamedResponse` / `StreamedResponse` is read inside the block.

The headers are the provider's and llmroute's. The provider's are those of
the attempt whose answer was delivered (`RouteInfo.provider_headers`), less
hop-by-hop headers (``connection`` and those it names, ``keep-alive``,
``transfer-encoding``, ...), the body's framing and encoding
(``content-length``, ``content-encoding``: this body is not the provider's
bytes) and cookies (``set-cookie``). llmroute's take precedence, those the
gateway sends for the same request (built by the same code,
`llmroute.server.headers`): ``content-type``, ``x-request-id`` and
``x-llmroute-request-id``, then ``x-llmroute-route``, ``-provider``,
``-model``, ``-attempts``, ``-cache`` and, once the request has ended,
``-latency-ms`` and ``-cost-usd`` (a stream has ``-ttft-ms`` instead).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ._types import RouteInfo
from .server.headers import OPENAI_REQUEST_ID, REQUEST_ID, route_headers

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "AsyncResponseContext",
    "AsyncStreamedResponse",
    "RawResponse",
    "ResponseHeaders",
    "StreamedResponse",
    "provider_pairs",
    "response_headers",
]

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")


class ResponseHeaders(Mapping[str, str]):
    """Response headers: a read-only mapping with case-insensitive names."""

    __slots__ = ("_items",)

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._items = {name.lower(): value for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._items!r})"


_JSON = ("content-type", "application/json")
_SSE = ("content-type", "text/event-stream")


#: The provider's response headers a raw response leaves out: hop-by-hop ones (RFC 9110
#: 7.6.1), the body's framing and encoding (the body here is not the provider's bytes), and
#: cookies (a provider's session, nothing for the caller to hold on to).
NOT_PASSED = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
    "content-length", "content-encoding", "set-cookie", "set-cookie2",
})  # fmt: skip


def provider_pairs(headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """The provider's response `headers` a raw response passes on (all but `NOT_PASSED` and
    the hop-by-hop headers its ``connection`` header names), in their order."""
    if not headers:
        return []
    dropped = NOT_PASSED
    connection = headers.get("connection")
    if connection:
        dropped = dropped | {name.strip().lower() for name in connection.split(",")}
    return [(name, value) for name, value in headers.items() if name.lower() not in dropped]


def response_headers(info: RouteInfo | None, *, stream: bool = False) -> ResponseHeaders:
    """The headers of an answer described by `info` (None: an answer llmroute made itself,
    such as the model list): the provider's (`provider_pairs`), then those the gateway
    would send, which take precedence."""
    pairs = provider_pairs(info.provider_headers) if info is not None else []
    pairs.append(_SSE if stream else _JSON)
    if info is not None and info.request_id:
        pairs += [
            (REQUEST_ID.decode(), info.request_id),
            (OPENAI_REQUEST_ID.decode(), info.request_id),
        ]
        pairs += [(k.decode(), v.decode()) for k, v in route_headers(info, final=not stream)]
    return ResponseHeaders(pairs)


def _route_info(result: object) -> RouteInfo | None:
    info = getattr(result, "llmroute", None)
    return info if isinstance(info, RouteInfo) else None


class _ResponseBase(Generic[T]):
    """What every response wrapper says about the answer, as the openai SDK's do."""

    status_code = 200
    http_version = "in-process"

    def __init__(self, result: T, *, method: str, path: str, stream: bool = False) -> None:
        self._result = result
        self._info = _route_info(result)
        self._stream = stream
        self.method = method
        #: The gateway path serving the same operation (no request leaves the process).
        self.url = path
        self.headers = response_headers(self._info, stream=stream)

    @property
    def request_id(self) -> str | None:
        """The request's id (``x-request-id``), None for answers llmroute made itself."""
        return self._info.request_id if self._info is not None else None

    @property
    def llmroute(self) -> RouteInfo | None:
        """What llmroute did for the request."""
        return self._info

    @property
    def retries_taken(self) -> int:
        """Attempts after the first (retries, fallbacks and hedges)."""
        return max(0, len(self._info.attempts) - 1) if self._info is not None else 0

    @property
    def elapsed(self) -> timedelta:
        """How long the request took (for a stream: until its first content)."""
        info = self._info
        seconds = (info.latency_s if not self._stream else info.ttft_s) if info else None
        return timedelta(seconds=seconds or 0.0)

    def _as(self, to: type[M] | None) -> T | M:
        result = self._result
        if to is None:
            return result
        dump = getattr(result, "to_dict", None)
        if dump is None:
            raise TypeError(f"parse(to=...) cannot convert a {type(result).__name__}")
        return to.model_validate(dump())


class RawResponse(_ResponseBase[T]):
    """What ``with_raw_response`` methods return, like the openai SDK's
    ``LegacyAPIResponse``: the headers, and `parse()` for the result."""

    @overload
    def parse(self, *, to: None = None) -> T: ...
    @overload
    def parse(self, *, to: type[M]) -> M: ...

    def parse(self, *, to: type[M] | None = None) -> T | M:
        """The result (a stream for ``stream=True``); with `to`, validated into that model
        (``to=openai.types.chat.ChatCompletion``, say)."""
        return self._as(to)

    @property
    def content(self) -> bytes:
        """The JSON body the gateway would send (not for a stream)."""
        return self.text.encode()

    @property
    def text(self) -> str:
        """The JSON body the gateway would send, as text (not for a stream)."""
        dump = getattr(self._result, "to_json", None)
        if self._stream or dump is None:
            raise TypeError("a streamed response has no body to read at once: iterate parse()")
        text: str = dump(indent=None)
        return text


def _sse_lines(chunk: Any) -> list[str]:
    return [f"data: {chunk.to_json(indent=None)}", ""]


class AsyncStreamedResponse(_ResponseBase[T]):
    """A response read inside ``async with ....with_streaming_response.create(...)``, like
    the openai SDK's ``AsyncAPIResponse``."""

    async def parse(self, *, to: type[M] | None = None) -> T | M:
        """The result (the stream, for ``stream=True``)."""
        return self._as(to)

    async def iter_lines(self) -> AsyncIterator[str]:
        """The body's lines as the gateway would send them (SSE lines for a stream)."""
        result: Any = self._result
        if not self._stream:
            yield result.to_json(indent=None)
            return
        async for chunk in result:
            for line in _sse_lines(chunk):
                yield line
        yield "data: [DONE]"

    async def close(self) -> None:
        """Release the stream's connection (done on leaving the block)."""
        closer = getattr(self._result, "aclose", None)
        if self._stream and closer is not None:
            await closer()


class StreamedResponse(_ResponseBase[T]):
    """A response read inside ``with ....with_streaming_response.create(...)`` (blocking)."""

    def parse(self, *, to: type[M] | None = None) -> T | M:
        """The result (the stream, for ``stream=True``)."""
        return self._as(to)

    def iter_lines(self) -> Iterator[str]:
        """The body's lines as the gateway would send them (SSE lines for a stream)."""
        result: Any = self._result
        if not self._stream:
            yield result.to_json(indent=None)
            return
        for chunk in result:
            yield from _sse_lines(chunk)
        yield "data: [DONE]"

    def close(self) -> None:
        """Release the stream's connection (done on leaving the block)."""
        closer = getattr(self._result, "close", None)
        if self._stream and closer is not None:
            closer()


class AsyncResponseContext(Generic[T]):
    """``async with``: makes the request on entry, closes a stream on exit."""

    def __init__(
        self, make: Callable[[], Coroutine[Any, Any, T]], *, method: str, path: str
    ) -> None:
        self._make = make
        self._method, self._path = method, path
        self._response: AsyncStreamedResponse[T] | None = None

    async def __aenter__(self) -> AsyncStreamedResponse[T]:
        result = await self._make()
        stream = hasattr(result, "__aiter__") and hasattr(result, "aclose")
        self._response = AsyncStreamedResponse(
            result, method=self._method, path=self._path, stream=stream
        )
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            await self._response.close()


class ResponseContext(Generic[T]):
    """``with``: makes the request on entry, closes a stream on exit (blocking)."""

    def __init__(self, make: Callable[[], T], *, method: str, path: str) -> None:
        self._make = make
        self._method, self._path = method, path
        self._response: StreamedResponse[T] | None = None

    def __enter__(self) -> StreamedResponse[T]:
        result = self._make()
        stream = hasattr(result, "__iter__") and hasattr(result, "close")
        self._response = StreamedResponse(
            result, method=self._method, path=self._path, stream=stream
        )
        return self._response

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            self._response.close()

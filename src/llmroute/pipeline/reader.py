"""`StreamReader`: what a chat stream and a Responses stream do alike as they read.

Both read the provider's body in batches (one per network read), within the request's
deadline; both end by letting go of the connection (released for reuse when the
provider finished the stream, closed otherwise); both close early the same way. What
they decode and deliver, and what their end means, is each stream's own
(`AsyncChatStream`, `AsyncResponseStream`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Generic, Self, TypeVar

from .._errors import LLMRouteError
from .._timeouts import StreamDeadline
from .._transports import HttpResponse, TransportError, close_iterator

__all__ = ["StreamReader"]

_log = logging.getLogger("llmroute")

T = TypeVar("T")


class StreamReader(ABC, Generic[T]):
    """The reading shared by both streams of `T` (chunks, or events): each sets these
    attributes in its own ``__init__`` (no chained ``super().__init__``: a stream is made
    per request)."""

    _response: HttpResponse
    _batches: AsyncIterator[list[bytes]]
    _pending: deque[T]
    _deadline: StreamDeadline | None
    _ended: bool

    @abstractmethod
    async def _end(self, error: LLMRouteError | None, *, closing: bool = False) -> None:
        """End the stream (`error`: what failed it; `closing`: the caller closed it)."""

    async def _read_batch(self) -> list[bytes]:
        """The next batch of lines; the request's deadline may interrupt the wait for it."""
        deadline = self._deadline
        if deadline is None:
            return await self._batches.__anext__()
        deadline.start_read()
        try:
            batch = await self._batches.__anext__()
        except BaseException as exc:
            if deadline.end_read(exc):
                raise TransportError("the request deadline was reached mid-stream") from None
            raise
        deadline.end_read(None)
        return batch

    async def _stop(self, finished: bool) -> None:
        """Stop reading: the deadline cancelled, the connection released for reuse when the
        provider `finished` the stream, else closed."""
        self._ended = True
        if self._deadline is not None:
            self._deadline.cancel()
        if finished:
            await self._response.release()
        else:
            await self._response.aclose()
        await self._close_batches()

    async def _close_batches(self) -> None:
        """Close the body's iterators now rather than leave them to the event loop's
        finalizer hook (after the release: an engine may read the body's tail through
        them). A failure there is a custom transport's cleanup failing after the stream
        ended: logged, so that the stream still ends and is accounted for."""
        try:
            await close_iterator(self._batches)
        except Exception:
            _log.warning("llmroute: closing a finished stream's body failed", exc_info=True)

    async def aclose(self) -> None:
        """Stop reading and release the connection; safe to call more than once."""
        if not self._ended:
            self._pending.clear()
            await self._end(None, closing=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

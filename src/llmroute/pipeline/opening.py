"""Reading a stream up to its first content: what the chat and the Responses stream
exchanges share as they open a stream (`read_to_content`), and the batches they read."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol, TypeVar

from .._transports import close_iterator

__all__ = ["Feeder", "no_batches", "read_to_content", "single_batches"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


async def single_batches(pieces: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Each piece as a batch of its own (for framings that are not lines). Closing it
    closes `pieces`."""
    try:
        async for piece in pieces:
            yield [piece]
    finally:
        await close_iterator(pieces)


async def no_batches() -> AsyncIterator[list[bytes]]:
    """No more batches (a stream whose body was read to its end while opening)."""
    return
    yield []  # pragma: no cover - makes this an async generator


class Feeder(Protocol[T_co]):
    """What `read_to_content` feeds: a stream decoder (chat chunks, or Responses events)."""

    @property
    def done(self) -> bool:
        """Whether the stream has ended as its protocol ends one."""
        ...

    def feed(self, data: bytes) -> Sequence[T_co]:
        """What one line (or raw chunk) of the body completes."""
        ...


async def read_to_content(
    batches: AsyncIterator[list[bytes]],
    decoder: Feeder[T],
    pending: deque[T],
    has_content: Callable[[Sequence[T]], bool],
) -> deque[bytes] | None:
    """Feed `decoder` the lines of `batches` until what one line makes has content
    (`has_content`, which may raise to fail the attempt); what it makes goes into `pending`.
    Returns the rest of that line's batch, not decoded yet; None when the stream ended
    first (the decoder done, or the body over)."""
    async for batch in batches:
        backlog = deque(batch)
        while backlog:
            made = decoder.feed(backlog.popleft())
            if made:
                pending.extend(made)
                if has_content(made):
                    return backlog
            if decoder.done:
                return None
    return None

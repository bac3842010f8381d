"""Streamed chat completions: the async iterator handed to the caller.

The stream reads and decodes; what its end means for the request (usage,
cost, the stages' `after()`) and continuing on another target belong to
the `StreamSession` the executor gives it, whose methods it calls.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from .._errors import LLMRouteError, ProviderError, ProviderTimeout, StreamInterrupted
from .._timeouts import StreamDeadline
from .._transports import TransportError
from .._types import ChatCompletionChunk, CompletionUsage, RouteInfo
from .._wire import WireChunk, chunk_event, typed_chunk
from .exchange import OpenedStream
from .reader import StreamReader
from .session import StreamSession

__all__ = ["AsyncChatStream", "ChatWireEvents"]


class AsyncChatStream(StreamReader[ChatCompletionChunk | WireChunk]):
    """An async iterator of `ChatCompletionChunk`, like the OpenAI SDK's ``AsyncStream``.

    Use it with ``async for``; close it early with `aclose()` or ``async with``,
    which releases the connection. `llmroute` describes the request; its
    latency, usage and cost are final once the stream has ended. A stream that
    fails after content was delivered raises `StreamInterrupted` carrying the
    text received so far; it never ends as if it were complete. On a route with
    ``mid_stream: continue`` the next target is asked to continue the answer
    instead, and its chunks follow in the same stream (`seams` lists the text
    offsets where a continuation starts).
    """

    def __init__(
        self,
        opened: OpenedStream,
        info: RouteInfo,
        *,
        hide_usage_chunk: bool,
        session: StreamSession,
        time_left: float | None = None,
        keep: bool = False,
    ) -> None:
        self._response = opened.response
        self._batches = opened.batches
        self._backlog = opened.backlog
        self._decoder = opened.decoder
        self._pending = opened.pending
        #: A provider error met while chunks decoded before it still wait to be delivered.
        self._deferred: ProviderError | None = None
        self._hide_usage_chunk = hide_usage_chunk
        self._saw_usage_chunk = False
        self._last: ChatCompletionChunk | WireChunk | None = None
        #: The events decoded and not yet delivered, when read as `wire_events()`.
        self._wire: list[bytes] | None = None
        self._session = session
        self._text: list[str] = []
        self._finished_choices = 0
        self._ended = False
        self._tool_calls = False
        self._deadline = StreamDeadline(time_left) if time_left is not None else None
        self.llmroute = info
        #: Offsets in `text` where a continuation from another target begins.
        self.seams: list[int] = []
        #: Every chunk received (the usage chunk too), when the router's stages asked for them.
        self.kept: list[ChatCompletionChunk] | None = [] if keep else None

    @property
    def _timed_out(self) -> bool:
        """Whether the request's deadline has passed."""
        deadline = self._deadline
        return deadline is not None and deadline.expired

    @property
    def provider_usage(self) -> CompletionUsage | None:
        """The usage the provider reported on this stream, if it did."""
        return self._decoder.usage

    @property
    def text(self) -> str:
        """The assistant text delivered so far (first choice)."""
        return "".join(self._text)

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        pending = self._pending
        while True:
            if pending:
                chunk = pending.popleft()
                if isinstance(chunk, WireChunk):  # opened for the wire, read typed after all
                    chunk = typed_chunk(chunk)
                if self._tally(chunk):
                    return chunk
                continue
            if self._ended:
                raise StopAsyncIteration
            await self._read_more()

    def _tally(self, chunk: ChatCompletionChunk) -> bool:
        """Note what `chunk` delivers (text, tool calls, finishes, usage); False when it is
        the usage chunk the caller did not ask for, which is not delivered."""
        self._last = chunk
        if self.kept is not None:
            self.kept.append(chunk)
        choices = chunk.choices
        if choices:
            choice = choices[0]
            delta = choice.delta
            if delta.content:
                self._text.append(delta.content)
            if delta.tool_calls:
                self._tool_calls = True
            if choice.finish_reason is not None:
                self._finished_choices += 1
        elif chunk.usage is not None:
            if self._hide_usage_chunk:
                return False
            self._saw_usage_chunk = True
        return True

    def wire_events(self) -> ChatWireEvents | None:
        """This stream as OpenAI's server-sent events, to relay it in that format: an async
        iterator of bytes, the ``data:`` events of the chunks that one network read
        completes (the provider's own JSON where it can be forwarded as it is). The
        closing ``data: [DONE]`` (or an error event) is the caller's to write.

        Read it instead of the stream itself, from the start. None when the router's
        stages keep the stream's chunks (they need them typed): iterate the stream then.
        """
        if self.kept is not None:
            return None
        self._wire = []
        return ChatWireEvents(self)

    async def _next_events(self) -> bytes:
        """The events of the next chunks, at least one (`wire_events`)."""
        out = self._wire
        assert out is not None
        pending = self._pending
        while True:
            while pending:
                chunk = pending.popleft()
                if isinstance(chunk, WireChunk):  # the opening's plain chunks (`wire`)
                    self._tally_wire(chunk, out)
                elif self._tally(chunk):
                    out.append(chunk_event(chunk))
            if out:
                events = b"".join(out)
                out.clear()
                return events
            if self._ended:
                raise StopAsyncIteration
            await self._read_more()

    async def _read_more(self) -> None:
        decoder = self._decoder
        if self._timed_out:
            await self._fail(None, "the request deadline was reached mid-stream")
            return
        if decoder.done:  # the provider finished, and every chunk before that was delivered
            await self._end(None)
            return
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            await self._fail(deferred, f"the provider sent an error mid-stream: {deferred}")
            return
        backlog = self._backlog
        if not backlog:
            try:
                backlog.extend(await self._read_batch())
            except StopAsyncIteration:
                await self._body_ended()
                return
            except TransportError as exc:
                await self._fail(exc, str(exc))
                return
        try:
            self._decode_backlog()
        except ProviderError as exc:
            await self._fail(exc, f"the provider sent an error mid-stream: {exc}")
            return
        if decoder.done and not self._pending and not self._wire:
            await self._end(None)  # else it ends once the chunks before the end are delivered

    def _decode_backlog(self) -> None:
        """Decode the lines read so far into chunks. A provider error after some chunks is
        kept for when they have been delivered; before any, it is raised."""
        backlog, pending, decoder = self._backlog, self._pending, self._decoder
        if self._wire is not None:
            self._decode_wire(self._wire)
            return
        while backlog:
            try:
                chunks = decoder.feed(backlog.popleft())
            except ProviderError as exc:
                if not pending:
                    raise
                self._deferred = exc
                return
            if chunks:
                pending.extend(chunks)
            if decoder.done:
                backlog.clear()
                return

    def _decode_wire(self, out: list[bytes]) -> None:
        """`_decode_backlog` for `wire_events`: the chunks' events go to `out`."""
        backlog, decoder, text = self._backlog, self._decoder, self._text
        while backlog:
            try:
                made = decoder.feed_wire(backlog.popleft())
            except ProviderError as exc:
                if not out:
                    raise
                self._deferred = exc
                return
            for chunk in made:
                if isinstance(chunk, WireChunk):
                    # `_tally_wire` inline: most chunks come here, and the call cost ~400
                    # instructions a chunk (1.6% of one; count_gateway.py own-stream)
                    self._last = chunk
                    if chunk.content:
                        text.append(chunk.content)
                    if chunk.finished:
                        self._finished_choices += 1
                    out.append(b"data: " + chunk.data + b"\n\n")
                elif self._tally(chunk):
                    out.append(chunk_event(chunk))
            if decoder.done:
                backlog.clear()
                return

    def _tally_wire(self, chunk: WireChunk, out: list[bytes]) -> None:
        """`_tally` for a plain text chunk relayed as its JSON: its event goes to `out`."""
        self._last = chunk
        if chunk.content:
            self._text.append(chunk.content)
        if chunk.finished:
            self._finished_choices += 1
        out.append(b"data: " + chunk.data + b"\n\n")

    async def _body_ended(self) -> None:
        """The provider's body ended: a finished stream ends, an unfinished one fails."""
        decoder = self._decoder
        try:
            self._pending.extend(decoder.finish())
        except ProviderError as exc:
            await self._fail(exc, f"the provider's last stream event was unusable: {exc}")
            return
        if (decoder.done or self._finished_choices) and not self._timed_out:
            await self._end(None)
            return
        await self._fail(None, "the stream ended before the provider finished it")

    async def _fail(self, cause: BaseException | None, message: str) -> None:
        if self._timed_out:
            cause = ProviderTimeout("the request deadline was reached mid-stream")
            message = str(cause)
        elif self._session.can_continue and not self._tool_calls and await self._continue(cause):
            return
        error = StreamInterrupted(
            f"{message} (after {len(self.text)} characters)", partial=self.text, cause=cause
        )
        await self._end(error)
        raise error from cause

    async def _continue(self, cause: BaseException | None) -> bool:
        """Hand the rest of the answer to the next target; False when none could take it."""
        await self._response.aclose()
        await self._close_batches()
        try:
            opened = await self._session.continue_after(self.text, cause)
        except LLMRouteError:
            return False
        if self._timed_out:  # the deadline passed while the next target was starting
            await opened.response.aclose()
            return False
        self.seams.append(len(self.text))
        self._response, self._batches, self._decoder = (
            opened.response,
            opened.batches,
            opened.decoder,
        )
        self._backlog, self._deferred = opened.backlog, None
        self._pending.extend(opened.pending)
        self._finished_choices = 0
        return True

    async def _end(self, error: LLMRouteError | None, *, closing: bool = False) -> None:
        if self._ended:
            return
        if closing and self._wire:
            self._wire.clear()
        await self._stop(error is None and not closing and self._decoder.done)
        await self._session.ended(self, error)
        if error is None and not closing and not self._hide_usage_chunk and self.completed:
            self._pending.extend(self._usage_chunk())

    def _usage_chunk(self) -> list[ChatCompletionChunk]:
        """The usage chunk the caller asked for, when the provider sent none."""
        usage = self.llmroute.usage
        last = self._last or (self._pending[-1] if self._pending else None)
        if self._saw_usage_chunk or usage is None or last is None:
            return []
        if any(
            isinstance(c, ChatCompletionChunk) and not c.choices and c.usage is not None
            for c in self._pending
        ):
            return []
        reported = CompletionUsage(
            prompt_tokens=usage.input,
            completion_tokens=usage.output,
            total_tokens=usage.total,
        )
        return [
            ChatCompletionChunk(
                id=last.id, created=last.created, model=last.model, choices=[], usage=reported
            )
        ]

    @property
    def completed(self) -> bool:
        """Whether the provider finished the stream (False if it was cut or closed early)."""
        return self._ended and (self._decoder.done or self._finished_choices > 0)


class ChatWireEvents:
    """An `AsyncChatStream` read as OpenAI's server-sent events (`wire_events()`): an async
    iterator of bytes with the stream's `llmroute` and `aclose()`."""

    __slots__ = ("_stream",)

    def __init__(self, stream: AsyncChatStream) -> None:
        self._stream = stream

    def __aiter__(self) -> ChatWireEvents:
        return self

    def __anext__(self) -> Coroutine[Any, Any, bytes]:
        return self._stream._next_events()

    @property
    def llmroute(self) -> RouteInfo:
        """The request's routing metadata (final once the stream has ended)."""
        return self._stream.llmroute

    @property
    def stream(self) -> AsyncChatStream:
        """The chat stream these events are read from (its `text`, `seams`, `completed`)."""
        return self._stream

    async def aclose(self) -> None:
        """Stop reading and release the connection; safe to call more than once."""
        await self._stream.aclose()

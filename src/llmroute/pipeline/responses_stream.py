"""Streamed Responses: the async iterator of events handed to the caller, and its session.

It reads and decodes as `AsyncChatStream` does, over an `EventDecoder` (native
events, or a chat stream translated into them). A stream that fails after its
first content ends as the Responses API ends one: with a ``response.failed``
event (the attempt is recorded as failed and the error kept on `error`); it is
not continued on another target (``mid_stream: continue`` applies to chat
streams).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from .._clock import Clock
from .._errors import LLMRouteError, ProviderError, ProviderTimeout, StreamInterrupted
from .._prices import PriceBook
from .._timeouts import StreamDeadline
from .._transports import TransportError
from .._types import RouteInfo, TokenUsage
from ..responses.types import Response, ResponseStreamEvent
from .driver import Served
from .reader import StreamReader
from .replay import ReplayedResponse
from .responses import EventDecoder, OpenedEvents
from .session import EndedStream, StreamSession
from .stage import RequestContext
from .stages import StageRunner

__all__ = ["AsyncResponseStream", "ResponseHook", "ResponsesStreamSession", "replay_events"]

#: The events that end a stream as the API ends one.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: The events that carry the whole response (the lifecycle events).
_CARRY = _TERMINAL | {"response.created", "response.in_progress", "response.queued"}

#: What `AsyncResponseStream.on_response` is: called, before the event is delivered, with
#: each lifecycle event's type and the `Response` it carries.
ResponseHook = Callable[[str, Response], Awaitable[None]]


class AsyncResponseStream(StreamReader[ResponseStreamEvent]):
    """An async iterator of Responses stream events, like the openai SDK's ``AsyncStream``
    of ``ResponseStreamEvent``.

    Use it with ``async for``; close it early with `aclose()` or ``async with``.
    `llmroute` describes the request (latency, usage and cost are final once the
    stream has ended); `response` is the final `Response` once a terminal event
    (``response.completed``, ``response.incomplete``, ``response.failed``) has
    been read. A failure after content was delivered ends the stream with a
    ``response.failed`` event; `error` then holds what happened. `on_response`, when set,
    sees each lifecycle event's response before the event is delivered (the caller's
    conversation state completes and stores it there).
    """

    def __init__(
        self,
        opened: OpenedEvents,
        info: RouteInfo,
        *,
        session: StreamSession,
        time_left: float | None = None,
        keep: bool = False,
    ) -> None:
        self._response = opened.response
        self._batches = opened.batches
        self._backlog = opened.backlog
        self._decoder: EventDecoder = opened.decoder
        self._pending = opened.pending
        self._deferred: ProviderError | None = None
        self._session = session
        self._ended = False
        self._deadline = StreamDeadline(time_left) if time_left is not None else None
        self.llmroute = info
        #: The final response, once a terminal event was read.
        self.response: Response | None = None
        #: What failed the stream (None: it did not fail).
        self.error: StreamInterrupted | None = None
        #: Every event delivered, when the router's stages asked for them.
        self.kept: list[ResponseStreamEvent] | None = [] if keep else None
        #: Called with each lifecycle event's type and response, before it is delivered.
        self.on_response: ResponseHook | None = None

    def __aiter__(self) -> AsyncResponseStream:
        return self

    async def __anext__(self) -> ResponseStreamEvent:
        pending = self._pending
        while True:
            if pending:
                event = pending.popleft()
                kind = event.type
                if kind in _CARRY:
                    await self._carried(kind, event)
                if self.kept is not None:
                    self.kept.append(event)
                return event
            if self._ended:
                raise StopAsyncIteration
            await self._read_more()

    async def _carried(self, kind: str, event: ResponseStreamEvent) -> None:
        response = event.__dict__.get("response")
        if not isinstance(response, Response):
            return
        if kind in _TERMINAL:
            self.response = response
        hook = self.on_response
        if hook is not None:
            await hook(kind, response)

    @property
    def text(self) -> str:
        """The output text delivered so far."""
        return self._decoder.text

    @property
    def usage(self) -> TokenUsage | None:
        """The response's usage (reported, or estimated), once the stream has finished."""
        return self._decoder.usage

    @property
    def completed(self) -> bool:
        """Whether the provider finished the stream (False if it was cut, failed or closed)."""
        return self._ended and self._decoder.done and self.error is None

    @property
    def seams(self) -> list[int]:
        """Where continuations begin (always none: a Responses stream is not continued)."""
        return []

    async def _read_more(self) -> None:
        decoder = self._decoder
        deadline = self._deadline
        if deadline is not None and deadline.expired:
            await self._fail(ProviderTimeout("the request deadline was reached mid-stream"))
            return
        if decoder.done:
            await self._end(None)
            return
        if self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            await self._fail(deferred)
            return
        backlog = self._backlog
        if not backlog:
            try:
                backlog.extend(await self._read_batch())
            except StopAsyncIteration:
                await self._body_ended()
                return
            except TransportError as exc:
                await self._fail(exc)
                return
        self._decode_backlog()
        if decoder.done and not self._pending:
            await self._end(None)

    def _decode_backlog(self) -> None:
        backlog, pending, decoder = self._backlog, self._pending, self._decoder
        while backlog:
            try:
                events = decoder.feed(backlog.popleft())
            except ProviderError as exc:
                self._deferred = exc  # delivered after the events decoded before it
                backlog.clear()
                return
            if events:
                pending.extend(events)
            if decoder.done:
                backlog.clear()
                return

    async def _body_ended(self) -> None:
        decoder = self._decoder
        try:
            self._pending.extend(decoder.finish())
        except ProviderError as exc:
            await self._fail(exc)
            return
        if decoder.done:
            await self._end(None)
            return
        await self._fail(None)

    async def _fail(self, cause: BaseException | None) -> None:
        """End the stream as failed: a ``response.failed`` event follows what was delivered."""
        if cause is None:
            message = "the stream ended before the provider finished it"
        elif isinstance(cause, ProviderError):
            message = f"the provider failed mid-stream: {cause}"
        else:
            message = str(cause)
        code = "timeout" if isinstance(cause, ProviderTimeout) else "server_error"
        text = self._decoder.text
        error = StreamInterrupted(f"{message} (after {len(text)} characters)", partial=text)
        error.__cause__ = cause
        self.error = error
        self._pending.extend(self._decoder.fail(str(error), code))
        await self._end(error)

    async def _end(self, error: LLMRouteError | None, *, closing: bool = False) -> None:
        if self._ended:
            return
        await self._stop(error is None and not closing and self._decoder.done)
        await self._session.ended(self, error)


class ResponsesStreamSession(StreamSession):
    """The session of a Responses stream a provider serves: ending it settles the served
    attempt's outcome, the usage (reported or estimated) and the cost, then runs every
    stage's `after()`."""

    __slots__ = ("_deadline", "_prices", "_served", "_tier")

    def __init__(
        self,
        ctx: RequestContext,
        stages: StageRunner,
        clock: Clock,
        *,
        served: Served[OpenedEvents],
        prices: PriceBook,
        tier: str | None,
    ) -> None:
        super().__init__(ctx, stages, clock)
        self._served = served
        self._prices = prices
        self._tier = tier
        self._deadline = ctx.started + (ctx.options.timeout or ctx.route.timeout)

    def time_left(self) -> float:
        """Seconds left until the request's deadline (none below zero)."""
        return max(0.0, self._deadline - self._clock.monotonic())

    async def ended(self, stream: EndedStream, error: BaseException | None) -> None:
        assert isinstance(stream, AsyncResponseStream)  # the only stream it is given
        ended_at = self._clock.monotonic()
        cost = (self._prices, self._tier)
        await self._settle(stream, error, self._served, ended_at, stream.usage, cost)


class _ReplayedEvents(EventDecoder):
    """A finished decoder over a stage's answer (a cached stream)."""

    __slots__ = ("_text", "_usage")

    def __init__(self, events: list[ResponseStreamEvent]) -> None:
        final = next(
            (
                e.__dict__["response"]
                for e in reversed(events)
                if e.type in _TERMINAL and isinstance(e.__dict__.get("response"), Response)
            ),
            None,
        )
        usage = final.usage if final is not None else None
        self._usage = usage.normalised() if usage is not None else None
        self._text = final.output_text if final is not None else ""

    @property
    def done(self) -> bool:
        return True

    def feed(self, data: bytes) -> list[ResponseStreamEvent]:
        return []

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    @property
    def text(self) -> str:
        return self._text

    def fail(self, message: str, code: str) -> list[ResponseStreamEvent]:
        return []


def replay_events(
    events: list[ResponseStreamEvent],
    info: RouteInfo,
    *,
    session: StreamSession,
    keep: bool = False,
) -> AsyncResponseStream:
    """A stream that delivers `events` (a cached answer), as a live stream would."""
    response = ReplayedResponse()
    opened = OpenedEvents(
        response, response.aiter_line_batches(), _ReplayedEvents(events), deque(events)
    )
    return AsyncResponseStream(opened, info, session=session, keep=keep)

"""What a stream needs from the pipeline once it is handed to the caller.

A streamed request does not end when the executor returns: it ends when the
caller has read the stream to its end, closed it, or the provider cut it.
The executor gives each stream a session that holds what ending needs (the
request's context, the stages, the served attempt, prices) and, on a route
with ``mid_stream: continue``, what continuing on another target needs (the
driver). The stream calls the session's methods; the session never calls
the stream back, so the stream depends on the session and not the reverse
(`EndedStream` is the little of the stream the session reads).
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from .._clock import Clock
from .._prices import PriceBook
from .._request import AssistantMessage, UserMessage
from .._types import ChatCompletionChunk, CompletionUsage, TokenUsage
from ..responses.types import ResponseStreamEvent
from .accounting import set_cost, stream_usage
from .driver import AttemptDriver, Served
from .exchange import OpenedStream, StreamExchange
from .stage import Outcome, RequestContext
from .stages import StageRunner

__all__ = [
    "CONTINUE_PROMPT",
    "EndedChatStream",
    "EndedStream",
    "LiveStreamSession",
    "StreamSession",
]

#: What the next target is asked when it continues a stream another target left unfinished.
CONTINUE_PROMPT = (
    "Your previous reply was cut off. Continue it exactly where it stopped, "
    "without repeating anything and without any preamble."
)


class EndedStream(Protocol):
    """What a session reads of any stream that has ended (`AsyncChatStream`,
    `AsyncResponseStream`)."""

    @property
    def completed(self) -> bool:
        """Whether the provider finished the stream."""
        ...

    @property
    def kept(self) -> list[ChatCompletionChunk] | list[ResponseStreamEvent] | None:
        """Every chunk (or event) received, when a stage asked for them."""
        ...


class EndedChatStream(EndedStream, Protocol):
    """What a live chat stream's session reads of it (`AsyncChatStream` is one)."""

    @property
    def text(self) -> str:
        """The assistant text delivered."""
        ...

    @property
    def provider_usage(self) -> CompletionUsage | None:
        """The usage the provider reported, if it did."""
        ...

    @property
    def seams(self) -> list[int]:
        """Where continuations begin in `text` (empty: one target wrote it all)."""
        ...


class StreamSession:
    """The session of a stream a stage answered (a cached answer replayed).

    Ending it records the latency and runs every stage's `after()`; such a
    stream cannot be continued.
    """

    __slots__ = ("_answered_by", "_clock", "_ctx", "_stages")

    def __init__(
        self,
        ctx: RequestContext,
        stages: StageRunner,
        clock: Clock,
        answered_by: str | None = None,
    ) -> None:
        self._ctx = ctx
        self._stages = stages
        self._clock = clock
        self._answered_by = answered_by

    @property
    def can_continue(self) -> bool:
        """Whether another target may continue the stream when it fails mid-way."""
        return False

    async def continue_after(self, partial: str, cause: BaseException | None) -> OpenedStream:
        """The stream opened on another target, asked to continue `partial` (the text
        delivered so far), after the served one failed with `cause`. Raises an
        `LLMRouteError` when no target can."""
        raise TypeError(f"{type(self).__name__} cannot continue a stream (see can_continue)")

    async def ended(self, stream: EndedStream, error: BaseException | None) -> None:
        """The stream ended (`error`: what ended it, if it failed): account for it."""
        ctx = self._ctx
        ctx.info.latency_s = self._clock.monotonic() - ctx.started
        if error is not None or not self._stages.idle():
            await self._stages.after(ctx, self._outcome(stream, error))

    async def _settle(
        self,
        stream: EndedStream,
        error: BaseException | None,
        served: Served[Any],
        ended_at: float,
        usage: TokenUsage | None,
        cost: tuple[PriceBook, str | None],
    ) -> None:
        """End a stream a provider served: its latency (to `ended_at`), `usage`, the served
        attempt's outcome (failed, or cancelled when not completed), its cost (the prices
        and the service tier), then every stage's `after()`."""
        ctx = self._ctx
        info = ctx.info
        info.latency_s = ended_at - ctx.started
        info.usage = usage
        last = served.record
        if error is not None:
            last.outcome, last.error_type, last.error = "error", type(error).__name__, str(error)
        elif not stream.completed:
            last.outcome = "cancelled"
        prices, tier = cost
        set_cost(prices, info, served.target, usage, tier)
        if error is not None or not self._stages.idle():
            await self._stages.after(ctx, self._outcome(stream, error))

    def _outcome(self, stream: EndedStream, error: BaseException | None) -> Outcome:
        return Outcome(
            chunks=stream.kept if self._ctx.keep_chunks else None,
            completed=stream.completed,
            error=error,
            answered_by=self._answered_by,
        )


class LiveStreamSession(StreamSession):
    """The session of a stream a provider serves.

    Ending it also settles the served attempt's outcome, the usage (reported,
    or estimated) and the cost. With `continuation` (the route says
    ``mid_stream: continue``), a failure mid-way hands the rest of the answer
    to the next target, through the driver, within the request's deadline.
    """

    __slots__ = ("_continuation", "_deadline", "_exchange", "_prices", "_served")

    def __init__(
        self,
        ctx: RequestContext,
        stages: StageRunner,
        clock: Clock,
        *,
        exchange: StreamExchange,
        served: Served[OpenedStream],
        prices: PriceBook,
        continuation: AttemptDriver | None,
    ) -> None:
        super().__init__(ctx, stages, clock)
        self._exchange = exchange
        self._served = served
        self._prices = prices
        self._continuation = continuation
        self._deadline = ctx.started + (ctx.options.timeout or ctx.route.timeout)

    def time_left(self) -> float:
        """Seconds left until the request's deadline (none below zero)."""
        return max(0.0, self._deadline - self._clock.monotonic())

    @property
    def can_continue(self) -> bool:
        return self._continuation is not None

    async def continue_after(self, partial: str, cause: BaseException | None) -> OpenedStream:
        driver = self._continuation
        if driver is None:
            return await super().continue_after(partial, cause)
        served = self._served
        last = served.record
        last.outcome = "error"
        last.error_type = type(cause).__name__ if cause is not None else "StreamInterrupted"
        last.error = str(cause) if cause is not None else "the stream ended unfinished"
        exchange, ctx = self._exchange, self._ctx
        request = exchange.request
        follow = request.model_copy(
            update={
                "messages": [
                    *request.messages,
                    AssistantMessage(role="assistant", content=partial),
                    UserMessage(role="user", content=CONTINUE_PROMPT),
                ]
            }
        )
        self._served = await driver.run(
            ctx.route,
            ctx.options,
            ctx.info,
            StreamExchange(follow, exchange.options, exchange.extra, timed=False),
            exclude=frozenset({served.target.key}),
            deadline=self._deadline,
        )
        return self._served.value

    async def ended(self, stream: EndedStream, error: BaseException | None) -> None:
        stream = cast(EndedChatStream, stream)  # a live session's stream is a chat stream
        ended_at = self._clock.monotonic()
        request = self._exchange.request
        usage = stream_usage(request, stream.provider_usage, stream.text, bool(stream.seams))
        cost = (self._prices, request.service_tier)
        await self._settle(stream, error, self._served, ended_at, usage, cost)

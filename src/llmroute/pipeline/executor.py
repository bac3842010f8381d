"""The request pipeline for each operation: chat, streamed chat, embeddings.

Each operation builds its per-attempt function (adapter -> transport ->
adapter) and hands it to the `AttemptDriver`, then fills in the routing
metadata: usage, cost, latency, time to first token.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from contextvars import ContextVar
from random import Random
from typing import Literal

import anyio

from .._clock import Clock
from .._errors import ProviderUnavailable
from .._prices import PriceBook
from .._request import AssistantMessage, ChatRequest, EmbeddingsRequest, RequestOptions, UserMessage
from .._tokens import estimate_request_tokens, estimate_text_tokens
from .._transports import HttpResponse, Timeouts
from .._types import (
    AttemptInfo,
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    RouteInfo,
    TokenUsage,
)
from ..providers import ExtraRequest, ProviderAdapter, StreamDecoder
from ..routing.catalog import Catalog
from ..routing.model import Route, Target
from ..routing.select import RequestFacts
from .driver import AttemptDriver
from .stage import Answer, Outcome, RequestContext, Stage
from .stream import AsyncChatStream, OpenedStream, replay, single_batches

__all__ = ["Executor", "new_request_id"]

_log = logging.getLogger("llmroute")

#: What the next target is asked when it continues a stream another target left unfinished.
CONTINUE_PROMPT = (
    "Your previous reply was cut off. Continue it exactly where it stopped, "
    "without repeating anything and without any preamble."
)


#: The id of the request the current task last started: the gateway reads it to name a
#: request that failed in the router (set before any stage runs).
current_request_id: ContextVar[str | None] = ContextVar("llmroute_request_id", default=None)


#: Request ids' own generator: seeded from the OS at import and again in every forked
#: child, and out of reach of `random.seed()` (which would make ids repeat).
_ids = Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)


def new_request_id() -> str:
    """A random request id (``lr-`` and 24 hex digits): unique, without a system call per
    request (not a secret)."""
    return f"lr-{_ids.getrandbits(96):024x}"


def _has_content(chunk: ChatCompletionChunk) -> bool:
    for choice in chunk.choices:
        delta = choice.delta
        if delta.content or delta.tool_calls or delta.refusal or choice.finish_reason:
            return True
    return False


async def _no_batches() -> AsyncIterator[list[bytes]]:
    return
    yield []  # pragma: no cover - makes this an async generator


class Executor:
    """Runs requests through the catalog's routes and fills in `RouteInfo`."""

    def __init__(
        self,
        catalog: Catalog,
        clock: Clock,
        prices: PriceBook,
        driver: AttemptDriver,
        stages: list[Stage] | None = None,
    ) -> None:
        self._catalog = catalog
        self._clock = clock
        self._prices = prices
        self.driver = driver
        #: The pipeline's stages, in order (the router's own list: it may add to it).
        self.stages = stages if stages is not None else []
        #: How many times a stage's after() raised (logged with its traceback).
        self.stage_failures = 0

    # -------------------------------------------------------------- stages

    def _context(
        self,
        operation: Literal["chat", "embeddings"],
        request: ChatRequest | EmbeddingsRequest,
        options: RequestOptions,
        *,
        stream: bool = False,
    ) -> RequestContext:
        route = self._catalog.resolve(request.model)
        request_id = new_request_id()
        current_request_id.set(request_id)
        info = RouteInfo(request_id=request_id, stream=stream)
        clock = self._clock
        return RequestContext(
            operation, request, options, route, info, stream, clock.monotonic(), clock.time()
        )

    async def _before(self, ctx: RequestContext) -> tuple[Answer | None, str | None]:
        for stage in self.stages:
            answer = await stage.before(ctx)
            if answer is not None:
                return answer, stage.name
        return None, None

    async def _after(self, ctx: RequestContext, outcome: Outcome) -> None:
        # Every stage sees every outcome: one stage's failure must not cost the others
        # their accounting (limits, budgets), nor the caller an answer it already has.
        for stage in self.stages:
            try:
                await stage.after(ctx, outcome)
            except Exception:
                self.stage_failures += 1
                _log.exception(
                    "llmroute: stage %r failed after request %s", stage.name, ctx.info.request_id
                )

    async def _after_failure(self, ctx: RequestContext, error: BaseException) -> None:
        # shielded: a cancelled request (a client that went away) is still accounted for
        with anyio.CancelScope(shield=True):
            await self._after(ctx, Outcome(error=error))

    # -------------------------------------------------------------- shared steps

    async def _body(self, response: HttpResponse, target: Target, record: AttemptInfo) -> bytes:
        """Read a whole body; a non-2xx answer raises the adapter's typed error."""
        adapter = target.provider.adapter
        record.status = response.status
        try:
            state = adapter.rate_limit_state(response.headers)
            if state is not None:
                self.driver.limits.saw(target, state, self._clock.monotonic())
            body = await response.read()
        finally:
            await response.aclose()
        if response.status >= 300:
            raise adapter.map_error(response.status, response.headers, body)
        return body

    def _price(
        self, route: Route, info: RouteInfo, usage: TokenUsage | None, tier: str | None
    ) -> None:
        target = route.find_target(info.target or "")
        info.set_cost(self._prices.pricer(target, usage, service_tier=tier))

    # -------------------------------------------------------------- chat

    async def chat(
        self, request: ChatRequest, options: RequestOptions, extra: ExtraRequest
    ) -> ChatCompletion:
        """A non-streamed chat completion."""
        ctx = self._context("chat", request, options)
        info = ctx.info
        try:
            answer, answered_by = await self._before(ctx)
            if answer is not None:
                if not isinstance(answer, ChatCompletion):
                    raise TypeError(
                        f"stage {answered_by!r} answered a chat request with {answer!r}"
                    )
                completion = answer
            else:
                completion = await self._chat(ctx, request, extra)
        except BaseException as exc:
            await self._after_failure(ctx, exc)
            raise
        info.latency_s = self._clock.monotonic() - ctx.started
        completion.attach_route_info(info)
        await self._after(
            ctx, Outcome(response=completion, completed=True, answered_by=answered_by)
        )
        return completion

    async def _chat(
        self, ctx: RequestContext, request: ChatRequest, extra: ExtraRequest
    ) -> ChatCompletion:
        info, route = ctx.info, ctx.route

        async def attempt(
            target: Target, record: AttemptInfo, timeouts: Timeouts
        ) -> ChatCompletion:
            adapter = target.provider.adapter
            http = adapter.chat_request(request, target.model, stream=False, extra=extra)
            if adapter.needs_prepare:
                http = await adapter.prepare(http)
            response = await target.provider.transport.send(http, timeouts)
            body = await self._body(response, target, record)
            return adapter.parse_chat(body, target.model)

        facts = RequestFacts(request, ctx.options, stream=False)
        completion = await self.driver.run(route, ctx.options, info, attempt, facts=facts)
        usage = completion.usage.normalised() if completion.usage is not None else None
        stats, key, served = self.driver.stats, info.target or "", info.served
        if served is not None and served.started is not None:
            took, ended = served.latency_s, served.started + served.latency_s  # no new reading
        else:
            took, ended = 0.0, self._clock.monotonic()
        stats.first_token(key, took)
        stats.answered(key, took, usage.output if usage else 0, ended)
        info.usage = usage
        self._price(route, info, usage, completion.service_tier or request.service_tier)
        return completion

    # -------------------------------------------------------------- streams

    async def chat_stream(
        self, request: ChatRequest, options: RequestOptions, extra: ExtraRequest
    ) -> AsyncChatStream:
        """A streamed chat completion, returned once its first content has arrived."""
        clock = self._clock
        ctx = self._context("chat", request, options, stream=True)
        info, route = ctx.info, ctx.route
        hide = not request.wants_usage_chunk
        try:
            answer, answered_by = await self._before(ctx)
            if answer is not None:
                if not isinstance(answer, list):
                    raise TypeError(f"stage {answered_by!r} answered a stream with {answer!r}")
                info.ttft_s = clock.monotonic() - ctx.started

                async def replayed(stream: AsyncChatStream, error: BaseException | None) -> None:
                    info.latency_s = clock.monotonic() - ctx.started
                    await self._after(ctx, self._stream_outcome(ctx, stream, error, answered_by))

                return replay(
                    answer, info, hide_usage_chunk=hide, on_end=replayed, keep=ctx.keep_chunks
                )
            opened = await self._open_stream(route, request, options, extra, info)
        except BaseException as exc:
            await self._after_failure(ctx, exc)
            raise
        info.ttft_s = clock.monotonic() - ctx.started
        stats, key = self.driver.stats, info.target or ""
        served = info.served
        took = served.latency_s if served else info.ttft_s
        stats.first_token(key, took)
        stats.streamed(key, took, clock.monotonic())
        deadline = ctx.started + (options.timeout or route.timeout)

        async def on_end(stream: AsyncChatStream, error: BaseException | None) -> None:
            info.latency_s = clock.monotonic() - ctx.started
            reported = stream.provider_usage
            if reported is not None and not stream.seams:
                usage = reported.normalised()
            else:
                usage = TokenUsage(
                    input=estimate_request_tokens(request),
                    output=estimate_text_tokens(stream.text),
                    estimated=True,
                )
            info.usage = usage
            last = info.served or info.attempts[-1]
            if error is not None:
                last.outcome, last.error_type, last.error = (
                    "error",
                    type(error).__name__,
                    str(error),
                )
            elif not stream.completed:
                last.outcome = "cancelled"
            self._price(route, info, usage, request.service_tier)
            await self._after(ctx, self._stream_outcome(ctx, stream, error, None))

        resume = None
        if route.config.mid_stream == "continue":

            async def resume(partial: str) -> OpenedStream:
                failed = frozenset({info.target or ""})
                follow = request.model_copy(
                    update={
                        "messages": [
                            *request.messages,
                            AssistantMessage(role="assistant", content=partial),
                            UserMessage(role="user", content=CONTINUE_PROMPT),
                        ]
                    }
                )
                return await self._open_stream(
                    route, follow, options, extra, info, exclude=failed, deadline=deadline
                )

        return AsyncChatStream(
            opened,
            info,
            hide_usage_chunk=hide,
            on_end=on_end,
            resume=resume,
            time_left=max(0.0, deadline - clock.monotonic()),
            keep=ctx.keep_chunks,
        )

    @staticmethod
    def _stream_outcome(
        ctx: RequestContext,
        stream: AsyncChatStream,
        error: BaseException | None,
        answered_by: str | None,
    ) -> Outcome:
        return Outcome(
            chunks=stream.kept if ctx.keep_chunks else None,
            completed=stream.completed,
            error=error,
            answered_by=answered_by,
        )

    async def _open_stream(
        self,
        route: Route,
        request: ChatRequest,
        options: RequestOptions,
        extra: ExtraRequest,
        info: RouteInfo,
        *,
        exclude: frozenset[str] = frozenset(),
        deadline: float | None = None,
    ) -> OpenedStream:
        async def attempt(target: Target, record: AttemptInfo, timeouts: Timeouts) -> OpenedStream:
            adapter = target.provider.adapter
            http = adapter.chat_request(request, target.model, stream=True, extra=extra)
            if adapter.needs_prepare:
                http = await adapter.prepare(http)
            response = await target.provider.transport.send(http, timeouts)
            if response.status >= 300:
                await self._body(response, target, record)  # raises the mapped error
            record.status = response.status
            try:
                state = adapter.rate_limit_state(response.headers)
                if state is not None:
                    self.driver.limits.saw(target, state, self._clock.monotonic())
                decoder = adapter.stream_decoder(request, target.model)
                return await self._first_content(response, adapter, decoder, target)
            except BaseException:
                await response.aclose()
                raise

        async def discard(opened: OpenedStream) -> None:
            await opened.response.aclose()

        return await self.driver.run(
            route,
            options,
            info,
            attempt,
            facts=RequestFacts(request, options, stream=True),
            discard=discard,
            exclude=exclude,
            deadline=deadline,
        )

    async def _first_content(
        self,
        response: HttpResponse,
        adapter: ProviderAdapter,
        decoder: StreamDecoder,
        target: Target,
    ) -> OpenedStream:
        if adapter.stream_framing == "lines":
            batches = response.aiter_line_batches()
        else:
            batches = single_batches(response.aiter_bytes())
        pending: deque[ChatCompletionChunk] = deque()
        done = False
        async for batch in batches:
            backlog = deque(batch)
            while backlog:
                chunks = decoder.feed(backlog.popleft())
                if chunks:
                    pending.extend(chunks)
                    if any(_has_content(c) for c in chunks):
                        # the rest of this batch is decoded as the caller reads
                        return OpenedStream(response, batches, decoder, pending, backlog)
                if decoder.done:
                    done = True
                    break
            if done:
                break
        pending.extend(decoder.finish())
        if any(_has_content(c) for c in pending):
            return OpenedStream(response, _no_batches(), decoder, pending)
        raise ProviderUnavailable(
            "the stream ended before its first content",
            provider=target.provider.name, model=target.model, status=response.status,
        )  # fmt: skip

    # -------------------------------------------------------------- embeddings

    async def embeddings(
        self, request: EmbeddingsRequest, options: RequestOptions, extra: ExtraRequest
    ) -> CreateEmbeddingResponse:
        """An embeddings request."""
        ctx = self._context("embeddings", request, options)
        info = ctx.info
        try:
            answer, answered_by = await self._before(ctx)
            if answer is not None:
                if not isinstance(answer, CreateEmbeddingResponse):
                    raise TypeError(f"stage {answered_by!r} answered embeddings with {answer!r}")
                result = answer
            else:
                result = await self._embeddings(ctx, request, extra)
        except BaseException as exc:
            await self._after_failure(ctx, exc)
            raise
        info.latency_s = self._clock.monotonic() - ctx.started
        result.attach_route_info(info)
        await self._after(ctx, Outcome(response=result, completed=True, answered_by=answered_by))
        return result

    async def _embeddings(
        self, ctx: RequestContext, request: EmbeddingsRequest, extra: ExtraRequest
    ) -> CreateEmbeddingResponse:
        info = ctx.info

        async def attempt(
            target: Target, record: AttemptInfo, timeouts: Timeouts
        ) -> CreateEmbeddingResponse:
            adapter = target.provider.adapter
            http = adapter.embeddings_request(request, target.model, extra=extra)
            if adapter.needs_prepare:
                http = await adapter.prepare(http)
            response = await target.provider.transport.send(http, timeouts)
            body = await self._body(response, target, record)
            return adapter.parse_embeddings(body, target.model)

        facts = RequestFacts(request, ctx.options, stream=False)
        result = await self.driver.run(ctx.route, ctx.options, info, attempt, facts=facts)
        usage = result.usage
        tokens = TokenUsage(input=usage.prompt_tokens) if usage is not None else None
        info.usage = tokens
        self._price(ctx.route, info, tokens, None)
        return result

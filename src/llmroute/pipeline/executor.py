"""The request pipeline: one path through the stages and the route for every operation.

A request reads top to bottom: `RequestPipeline` makes its context and runs
the stages' `before()` (a stage may refuse or answer it); unless a stage
answered, it hands the operation's `Exchange` to the `AttemptDriver`, which
orders the route's targets, plans attempts, and sends each through
`send_attempt()`; the `Served` answer comes back with its usage, and gets
its cost and route info. An answer in one piece then ends the request (the
stages' `after()`); a stream ends later, through the `StreamSession` it is
handed. No layer calls back into the one above it.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from .._clock import Clock
from .._plain_chat import PlainChat, plain_chat
from .._prices import PriceBook
from .._request import ChatRequest, EmbeddingsRequest, RequestOptions, validate_chat_request
from .._route_info import new_request_id
from .._types import ChatCompletion, CreateEmbeddingResponse, RouteInfo
from .._wire_completion import WireCompletion
from ..experiments.runtime import unknown_experiment
from ..providers import ExtraRequest
from ..responses.request_model import ResponsesRequest
from ..responses.types import Response
from ..routing.catalog import Catalog
from ..routing.model import Route
from .accounting import set_cost
from .driver import AttemptDriver
from .exchange import (
    ChatExchange,
    CountTokensExchange,
    EmbeddingsExchange,
    Exchange,
    RelayExchange,
    StreamExchange,
    WholeExchange,
)
from .experiment import ExperimentHook
from .replay import replay
from .responses import ResponsesExchange, ResponsesStreamExchange
from .responses_stream import AsyncResponseStream, ResponsesStreamSession, replay_events
from .session import LiveStreamSession, StreamSession
from .stage import Ended, Outcome, RequestContext, Stage
from .stages import Plan, StageRunner
from .stream import AsyncChatStream

__all__ = ["RequestPipeline", "current_request_id", "new_request_id"]

T = TypeVar("T")
R = TypeVar("R", ChatCompletion, CreateEmbeddingResponse, Response, ChatCompletion | WireCompletion)


#: What idle stages answer (`Stage.idle`): nothing, from no stage. A request skips the
#: stages while all are idle (nothing records, no OpenTelemetry SDK, no cache, limits or
#: budgets): llmroute's own work per chat request 212.1k -> 201.3k (callgrind,
#: count_instructions.py --kinds own, 2026-12-03).
_PASSED_BY: tuple[None, None] = (None, None)

#: The plan of a request that needs a context whatever the stages say (experiments).
_NEEDS_CONTEXT: Plan = (None, None)

#: The id of the request the current task last started: the gateway reads it to name a
#: request that failed in the router (set before any stage runs).
current_request_id: ContextVar[str | None] = ContextVar("llmroute_request_id", default=None)


class RequestPipeline:
    """Runs each request through the stages and the catalog's routes; fills in `RouteInfo`."""

    def __init__(
        self,
        catalog: Catalog,
        clock: Clock,
        prices: PriceBook,
        driver: AttemptDriver,
        stages: list[Stage] | None = None,
        experiments: ExperimentHook | None = None,
    ) -> None:
        self._catalog = catalog
        self._clock = clock
        self._prices = prices
        self.driver = driver
        self._stages = StageRunner(stages if stages is not None else [])
        #: The experiments' assignment and shadow traffic (None: no experiments, no cost).
        self.experiments = experiments

    @property
    def stages(self) -> list[Stage]:
        """The pipeline's stages, in order (the router's own list: it may add to it)."""
        return self._stages.stages

    @property
    def stage_failures(self) -> int:
        """How many times a stage's after() or ended() raised (logged with its traceback)."""
        return self._stages.failures

    def _context(
        self,
        exchange: Exchange[T],
        request: ChatRequest | EmbeddingsRequest,
        source: ResponsesRequest | None = None,
        state: dict[str, object] | None = None,
    ) -> RequestContext:
        """The request's context (with the `state` the stages left as they were asked, if
        any: `Stage.watches`); an experiment on its route gives it its variant here, before
        any stage sees it."""
        route = self._catalog.resolve(request.model)
        request_id = new_request_id()
        current_request_id.set(request_id)
        stream = exchange.stream
        info = RouteInfo(request_id)  # positional: its 21-field __init__ binds keywords slower
        if stream:
            info.stream = True
        clock = self._clock
        options = exchange.options
        ctx = RequestContext(
            exchange.operation,
            request,
            options,
            route,
            info,
            stream,
            clock.monotonic(),
            clock.time(),
            False,
            {} if state is None else state,  # given: the default factory is a call more
            source,
        )
        experiments = self.experiments
        if experiments is not None:
            if exchange.varies:
                ctx.assigning = experiments.enter(ctx, exchange)
        elif options.variant is not None and exchange.varies:
            raise unknown_experiment(options.variant, ())
        return ctx

    # -------------------------------------------------------------- operations

    # Each operation returns the path's own coroutine for its caller to await, rather
    # than awaiting it in a coroutine of its own: one frame less per request (a memory
    # cache hit is 150k instructions, and an extra coroutine about 1% of it).

    def chat(
        self, request: ChatRequest, options: RequestOptions, extra: ExtraRequest
    ) -> Coroutine[None, None, ChatCompletion]:
        """A non-streamed chat completion."""
        return self._whole(ChatExchange(request, options, extra), request, self._watching(options))

    def chat_params(
        self, params: Mapping[str, Any], options: RequestOptions, extra: ExtraRequest
    ) -> Coroutine[None, None, ChatCompletion]:
        """`chat` of a call's API parameters, validated here (`RequestError` if invalid).
        With no stage busy (every one idle or only watching) and no experiment, a plain
        request (`plain_chat`) stays as its parameters (`PlainChat`): no context is made
        for it, so nothing reads it typed, and its body is written from them."""
        plan = self._watching(options)  # asked once for the request: `_whole` is told
        plain = plain_chat(params) if plan[0] is not None else None
        request = plain or validate_chat_request(params)
        return self._whole(ChatExchange(request, options, extra), request, plan)

    def relay_params(
        self, params: Mapping[str, Any], options: RequestOptions, extra: ExtraRequest
    ) -> Coroutine[None, None, ChatCompletion | WireCompletion]:
        """`chat_params`, answered as `chat_relay` answers."""
        plan = self._watching(options)
        plain = plain_chat(params) if plan[0] is not None else None
        request = plain or validate_chat_request(params)
        return self._whole(RelayExchange(request, options, extra), request, plan)

    def chat_relay(
        self, request: ChatRequest, options: RequestOptions, extra: ExtraRequest
    ) -> Coroutine[None, None, ChatCompletion | WireCompletion]:
        """A non-streamed chat completion to relay in OpenAI's format: while the stages are
        idle or only watch it, an OpenAI-format provider's plain answer comes as its own
        JSON (`RelayExchange`)."""
        return self._whole(RelayExchange(request, options, extra), request, self._watching(options))

    def embeddings(
        self, request: EmbeddingsRequest, options: RequestOptions, extra: ExtraRequest
    ) -> Coroutine[None, None, CreateEmbeddingResponse]:
        """An embeddings request."""
        exchange = EmbeddingsExchange(request, options, extra)
        return self._whole(exchange, request, self._watching(options))

    def chat_stream(
        self,
        request: ChatRequest,
        options: RequestOptions,
        extra: ExtraRequest,
        *,
        wire: bool = False,
    ) -> Coroutine[None, None, AsyncChatStream]:
        """A streamed chat completion, returned once its first content has arrived; `wire`:
        it will be read as OpenAI's events (`AsyncChatStream.wire_events`), so plain chunks
        of its opening are kept as their JSON (`StreamExchange`)."""
        return self._stream(StreamExchange(request, options, extra, wire=wire))

    async def count_tokens(
        self, request: ChatRequest, options: RequestOptions, extra: ExtraRequest
    ) -> tuple[int, RouteInfo]:
        """A chat request's input tokens, counted by the first target of its route whose
        provider counts them. No stage runs: a count is not charged, limited, cached or
        recorded, nor part of an experiment (the route as configured counts it). Raises
        the targets' `RequestError` when none can count."""
        exchange = CountTokensExchange(request, options, extra)
        ctx = self._context(exchange, request)
        served = await self.driver.run(ctx.route, ctx.options, ctx.info, exchange)
        return served.value, ctx.info

    def responses(self, exchange: ResponsesExchange) -> Coroutine[None, None, Response]:
        """A non-streamed Responses request (the exchange carries its id and chat view)."""
        plan = self._watching(exchange.options)
        return self._whole(exchange, exchange.chat, plan, exchange.request)

    async def responses_stream(self, exchange: ResponsesStreamExchange) -> AsyncResponseStream:
        """A streamed Responses request, returned once its first content has arrived."""
        clock, stages = self._clock, self._stages
        ctx = self._context(exchange, exchange.chat, exchange.request)
        if ctx.assigning is not None:
            await ctx.assigning
        info = ctx.info
        try:
            answer, answered_by = await stages.before(ctx)
            if answer is not None:
                events = exchange.stage_answer(answer, answered_by)
                info.ttft_s = clock.monotonic() - ctx.started
                session = StreamSession(ctx, stages, clock, answered_by)
                if self.experiments is not None:
                    self.experiments.served(ctx)
                return replay_events(events, info, session=session, keep=ctx.keep_chunks)
            served = await self.driver.run(ctx.route, ctx.options, info, exchange)
        except BaseException as exc:
            await stages.after_failure(ctx, exc)
            raise
        info.ttft_s = served.ended - ctx.started  # the first content, read
        if self.experiments is not None:
            self.experiments.served(ctx)
        live = ResponsesStreamSession(
            ctx,
            stages,
            clock,
            served=served,
            prices=self._prices,
            tier=exchange.request.service_tier,
        )
        return AsyncResponseStream(
            served.value, info, session=live, time_left=live.time_left(), keep=ctx.keep_chunks
        )

    # -------------------------------------------------------------- the path

    def _watching(self, options: RequestOptions) -> Plan:
        """What a request that starts now needs of the stages (`StageRunner.watching`): a
        context when the router runs experiments, whatever the stages say."""
        if self.experiments is not None:
            return _NEEDS_CONTEXT
        return self._stages.watching(options)

    async def _whole(
        self,
        exchange: WholeExchange[R],
        request: ChatRequest | EmbeddingsRequest | PlainChat,
        plan: Plan,
        source: ResponsesRequest | None = None,
    ) -> R:
        """An operation answered in one piece: before, the exchange over the route (unless a
        stage answered), usage and cost, route info, after (a failure's too). `plan`: what
        the stages answered as the request began (`_watching`): unless it needs a context,
        none is made, no stage's before() or after() is called, and each watching stage
        is given its end, success or failure (`Stage.ended`)."""
        watching, state = plan
        if watching is not None:  # (its names differ from the context path's for mypy)
            # Nothing to run around the request, no variant to give it: no context is made
            # (a plain request stays as its parameters; see `_plain_chat`).
            info, route, started = self._open(exchange, request.model)
            started_at = self._clock.time() if watching else 0.0
            try:
                reply = await self.driver.run(route, exchange.options, info, exchange, now=started)
                value = reply.value
                info.usage = reply.usage
                set_cost(self._prices, info, reply.target, reply.usage, exchange.tier(value))
            except BaseException as exc:
                if watching:
                    self._stages.ended(watching, Ended(exchange.operation, request.model,
                        exchange.options, route, info, started, started_at,
                        self._clock.monotonic(), None, exc,
                    ))  # fmt: skip
                raise
            info.latency_s = reply.ended - started
            value.attach_route_info(info)
            if watching:
                self._stages.ended(watching, Ended(exchange.operation, request.model,
                    exchange.options, route, info, started, started_at, reply.ended, value,
                    None,
                ))  # fmt: skip
            return value
        # kept as its parameters only where no context is made (`chat_params`)
        assert not isinstance(request, PlainChat)
        stages = self._stages
        # here with no stage busy only when experiments run (`_watching`): asked again
        idle = self.experiments is not None and stages.idle()
        ctx = self._context(exchange, request, source, state)
        if ctx.assigning is not None:  # an adaptive experiment reads its store first
            await ctx.assigning
        info = ctx.info
        if not idle:
            exchange.read_typed()  # the stages get the answer typed
        try:
            answer, answered_by = _PASSED_BY if idle else await stages.before(ctx)
            if answer is not None:
                result = exchange.stage_answer(answer, answered_by)
                ended = self._clock.monotonic()
            else:
                served = await self.driver.run(ctx.route, ctx.options, info, exchange)
                result = served.value
                info.usage = served.usage
                tier = exchange.tier(result)
                set_cost(self._prices, info, served.target, served.usage, tier)
                ended = served.ended  # the answer's last byte, read
        except BaseException as exc:
            await stages.after_failure(ctx, exc)
            raise
        info.latency_s = ended - ctx.started
        result.attach_route_info(info)
        if not idle:
            await stages.after(
                ctx,
                Outcome(
                    response=exchange.for_stages(result), completed=True, answered_by=answered_by
                ),
            )
        if self.experiments is not None:
            self.experiments.served(ctx)
        return result

    def _open(self, exchange: Exchange[T], model: str) -> tuple[RouteInfo, Route, float]:
        """A request that needs no context: its route info, its route and when it began
        (what `_context` gives one that does)."""
        route = self._catalog.resolve(model)
        request_id = new_request_id()
        current_request_id.set(request_id)
        options = exchange.options
        if options.variant is not None and exchange.varies:
            raise unknown_experiment(options.variant, ())
        return RouteInfo(request_id), route, self._clock.monotonic()

    async def _stream(self, exchange: StreamExchange) -> AsyncChatStream:
        """A stream: the same path up to its first content; its session ends it later."""
        clock, stages = self._clock, self._stages
        ctx = self._context(exchange, exchange.request)
        if ctx.assigning is not None:
            await ctx.assigning
        info, route = ctx.info, ctx.route
        hide = not exchange.request.wants_usage_chunk
        try:
            answer, answered_by = _PASSED_BY if stages.idle() else await stages.before(ctx)
            if answer is not None:
                chunks = exchange.stage_answer(answer, answered_by)
                info.ttft_s = clock.monotonic() - ctx.started
                session = StreamSession(ctx, stages, clock, answered_by)
                if self.experiments is not None:
                    self.experiments.served(ctx)
                return replay(
                    chunks, info, hide_usage_chunk=hide, session=session, keep=ctx.keep_chunks
                )
            if ctx.keep_chunks:
                exchange.read_typed()  # the stages keep typed chunks: open it typed
            served = await self.driver.run(route, ctx.options, info, exchange)
        except BaseException as exc:
            await stages.after_failure(ctx, exc)
            raise
        info.ttft_s = served.ended - ctx.started  # the first content, read
        if self.experiments is not None:
            self.experiments.served(ctx)
        live = LiveStreamSession(
            ctx,
            stages,
            clock,
            exchange=exchange,
            served=served,
            prices=self._prices,
            continuation=self.driver if route.config.mid_stream == "continue" else None,
        )
        return AsyncChatStream(
            served.value,
            info,
            hide_usage_chunk=hide,
            session=live,
            time_left=live.time_left(),
            keep=ctx.keep_chunks,
        )

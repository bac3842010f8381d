"""Experiments on the request path: a request's variant, applied before any stage runs, and
its shadow copy, run in the background once the caller has their answer.

`ExperimentHook.enter` is called where the pipeline makes the request's
context, so that everything after it (limits, budgets, the cache's key,
selection, the record) sees the variant's request and route. It chooses the
variant (forced by the caller, or by the experiment's allocator), rewrites the
context's request, route and exchange, tags the context for the record and
the route info, and decides whether the request gets a shadow copy.

`ExperimentHook.served` starts that copy once the caller's answer is in hand
(a whole answer returned, or a stream opened). The copy is the caller's
original request with the shadow variant applied, non-streamed, sent to the
variant's own targets (no fallback: its failures are what it measures). It
passes only the recorder: no rate limit, budget or cache sees it. It is
recorded as assignment ``shadow`` with property ``shadow_of`` (the caller's
request id), priced like any request.
"""

from __future__ import annotations

import random
from collections.abc import Coroutine
from dataclasses import dataclass
from os import urandom
from typing import TYPE_CHECKING, Any, TypeVar

from .._clock import Clock
from .._config import Config
from .._errors import LLMRouteError
from .._prices import PriceBook
from .._request import ChatRequest, EmbeddingsRequest, RequestOptions
from .._route_info import new_request_id
from .._types import ChatCompletion, CreateEmbeddingResponse, RouteInfo
from ..experiments.adaptive import AdaptiveAllocator
from ..experiments.runtime import Experiment, Experiments, build_experiments
from ..experiments.shadow import ShadowStatus
from ..experiments.variant import Variant
from ..observe.record import EXPERIMENT_STATE, Assignment, ExperimentTag
from ..providers import ExtraRequest
from ..responses.request_model import ResponsesRequest
from ..responses.types import Response
from ..routing.catalog import Catalog
from .accounting import set_cost
from .driver import AttemptDriver
from .exchange import ChatExchange, EmbeddingsExchange, Exchange, WholeExchange
from .responses import ResponsesExchange, chat_view
from .stage import Outcome, RequestContext
from .stages import StageRunner

if TYPE_CHECKING:
    from ..observe.recorder import Recorder

__all__ = ["SHADOW_STATE", "ExperimentHook", "experiment_hook"]

R = TypeVar("R", ChatCompletion, CreateEmbeddingResponse, Response)

#: The `RequestContext.state` key of a request's pending shadow copy.
SHADOW_STATE = "experiment.shadow"


@dataclass(frozen=True, slots=True)
class _Copy:
    """What a shadow copy is made of: the caller's request before any variant."""

    experiment: Experiment
    variant: Variant
    request: ChatRequest | EmbeddingsRequest
    source: ResponsesRequest | None
    options: RequestOptions
    extra: ExtraRequest
    sticky_key: str | None


class ExperimentHook:
    """Assigns requests to the router's experiments and runs their shadow copies."""

    __slots__ = ("_by_route", "_clock", "_driver", "_experiments", "_prices", "_rng", "_stages")

    def __init__(
        self,
        experiments: Experiments,
        driver: AttemptDriver,
        clock: Clock,
        prices: PriceBook,
        stages: StageRunner,
        rng: random.Random,
    ) -> None:
        self._experiments = experiments
        self._by_route = experiments.by_route
        self._driver = driver
        self._clock = clock
        self._prices = prices
        #: What a shadow copy passes: the recorder only.
        self._stages = stages
        self._rng = rng

    # -------------------------------------------------------------- the caller's request

    def enter(
        self, ctx: RequestContext, exchange: Exchange[Any]
    ) -> Coroutine[None, None, None] | None:
        """Give the request its variant, if its route runs an experiment now or the caller
        forces one (`RequestOptions.variant`; a `RequestError` when it names none).

        Returns None once assigned, or, for an adaptive experiment that must first read
        the store (its first refresh, or a sticky key new to this process), a coroutine
        that assigns the request: await it before any stage runs."""
        options = ctx.options
        how: Assignment
        if options.variant is not None:
            experiment, variant = self._experiments.forced(options.variant, ctx.route)
            how, digest = "forced", experiment.key_digest(options, ctx.request)[1]
        else:
            found = self._by_route.get(ctx.route.name)
            if found is None or not found.running(ctx.started_at):
                return None
            experiment = found
            allocator = experiment.allocator
            if isinstance(allocator, AdaptiveAllocator):
                digest = experiment.key_digest(options, ctx.request)[1]
                if allocator.pending(digest):
                    return self._settled(ctx, exchange, experiment, allocator, digest)
            variant, how, digest = experiment.choose(options, ctx.request, self._rng)
        self._assign(ctx, exchange, experiment, variant, how, digest)
        return None

    async def _settled(
        self,
        ctx: RequestContext,
        exchange: Exchange[Any],
        experiment: Experiment,
        allocator: AdaptiveAllocator,
        digest: str | None,
    ) -> None:
        await allocator.settle(digest)
        variant, how, digest = experiment.choose(ctx.options, ctx.request, self._rng)
        self._assign(ctx, exchange, experiment, variant, how, digest)

    def _assign(
        self,
        ctx: RequestContext,
        exchange: Exchange[Any],
        experiment: Experiment,
        variant: Variant,
        how: Assignment,
        digest: str | None,
    ) -> None:
        original, source, options = ctx.request, ctx.source, ctx.options
        self._vary(ctx, exchange, variant)
        ctx.state[EXPERIMENT_STATE] = ExperimentTag(
            experiment.name, variant.name, how, digest, variant.targets
        )
        info = ctx.info
        info.experiment, info.variant = experiment.name, variant.name
        shadow = experiment.shadow
        if (
            shadow is not None
            and shadow is not variant
            and how != "forced"
            and self._rng.random() < experiment.shadow_fraction
        ):
            ctx.state[SHADOW_STATE] = _Copy(
                experiment, shadow, original, source, options, exchange.extra,
                digest,
            )  # fmt: skip

    @staticmethod
    def _vary(ctx: RequestContext, exchange: Exchange[Any], variant: Variant) -> None:
        request, source = _varied(variant, ctx.request, ctx.source, ctx.options)
        if request is not ctx.request or source is not ctx.source:
            exchange.vary(request, source)
            ctx.request, ctx.source = request, source
        ctx.route = variant.route

    # -------------------------------------------------------------- shadow copies

    def served(self, ctx: RequestContext) -> None:
        """Start the request's shadow copy, if it has one (its answer is in hand)."""
        copy = ctx.state.get(SHADOW_STATE)
        if isinstance(copy, _Copy):
            pool = copy.experiment.shadows
            assert pool is not None
            pool.launch(self._shadow(copy, ctx.info.request_id))

    async def _shadow(self, copy: _Copy, of: str) -> None:
        """Send a shadow copy and record it; its failure is recorded, never raised."""
        options = copy.options.model_copy(
            update={
                "properties": {**copy.options.properties, "shadow_of": of},
                "targets": None,
                "variant": None,
                "timeout": None,
            }
        )
        variant = copy.variant
        info = RouteInfo(request_id=new_request_id(), experiment=variant.experiment,
                         variant=variant.name)  # fmt: skip
        clock, stages = self._clock, self._stages
        ctx = RequestContext(
            "chat", copy.request, options, variant.shadow_route, info, False,
            clock.monotonic(), clock.time(),
        )  # fmt: skip
        ctx.state[EXPERIMENT_STATE] = ExperimentTag(
            variant.experiment, variant.name, "shadow", copy.sticky_key, variant.targets
        )
        try:
            _prepare_copy(ctx, copy)
            await stages.before(ctx)
            result = await self._send(ctx, copy.extra)
        except LLMRouteError as exc:  # the copy's outcome (its target failed, a variable
            await stages.after_failure(ctx, exc)  # was missing): recorded; nobody waits for it
            return
        except BaseException as exc:  # cancelled (the router closing), or a bug: recorded,
            await stages.after_failure(ctx, exc)  # then raised (the pool logs a bug)
            raise
        info.latency_s = clock.monotonic() - ctx.started
        result.attach_route_info(info)
        await stages.after(ctx, Outcome(response=result, completed=True))

    async def _send(
        self, ctx: RequestContext, extra: ExtraRequest
    ) -> ChatCompletion | CreateEmbeddingResponse | Response:
        """The copy's answer, by its operation."""
        request, source, options = ctx.request, ctx.source, ctx.options
        if isinstance(request, EmbeddingsRequest):
            return await self._exchange(ctx, EmbeddingsExchange(request, options, extra))
        if source is not None:
            # a response id as responses.resource's new_response_id makes one
            exchange = ResponsesExchange(
                source, request, options, extra, response_id=f"resp_{urandom(24).hex()}",
                created_at=ctx.started_at,
            )  # fmt: skip
            return await self._exchange(ctx, exchange)
        return await self._exchange(ctx, ChatExchange(request, options, extra))

    async def _exchange(self, ctx: RequestContext, exchange: WholeExchange[R]) -> R:
        served = await self._driver.run(ctx.route, ctx.options, ctx.info, exchange)
        result, info = served.value, ctx.info
        info.usage = served.usage
        set_cost(self._prices, info, served.target, served.usage, exchange.tier(result))
        return result

    def shadow_status(self) -> dict[str, ShadowStatus]:
        """Each experiment with shadow traffic: its copies' counters."""
        return {pool.name: pool.status() for pool in self._experiments.pools()}

    async def aclose(self) -> None:
        """Stop the adaptive experiments' refreshing; cancel the shadow copies still
        running and wait for them (each is recorded)."""
        for allocator in self._experiments.adaptive():
            await allocator.aclose()
        for pool in self._experiments.pools():
            await pool.aclose()


def _prepare_copy(ctx: RequestContext, copy: _Copy) -> None:
    """Set the shadow context's operation and request: the caller's original request with
    the shadow variant applied, not streamed."""
    request, source = _varied(copy.variant, copy.request, copy.source, ctx.options)
    if isinstance(request, EmbeddingsRequest):
        ctx.operation, ctx.request = "embeddings", request
    elif source is not None:
        source = source.model_copy(update={"stream": False, "stream_options": None})
        ctx.operation, ctx.request, ctx.source = "responses", chat_view(source), source
    else:
        if request.stream:
            request = request.model_copy(update={"stream": None, "stream_options": None})
        ctx.request = request


def _varied(
    variant: Variant,
    request: ChatRequest | EmbeddingsRequest,
    source: ResponsesRequest | None,
    options: RequestOptions,
) -> tuple[ChatRequest | EmbeddingsRequest, ResponsesRequest | None]:
    """`request` (and `source`, a Responses request's own) as `variant` sends it."""
    if isinstance(request, EmbeddingsRequest):
        return variant.embeddings(request), None
    if source is not None:
        varied = variant.responses(source, options)
        return (request if varied is source else chat_view(varied)), varied
    return variant.chat(request, options), None


def experiment_hook(
    config: Config,
    catalog: Catalog,
    driver: AttemptDriver,
    clock: Clock,
    prices: PriceBook,
    recorder: Recorder,
    rng: random.Random,
) -> ExperimentHook | None:
    """The hook of `config`'s experiments (None without any: requests pay nothing for
    them); shadow copies pass `recorder` alone, adaptive experiments read its store."""
    experiments = build_experiments(config, catalog, recorder.store, clock.time)
    if experiments is None:
        return None
    return ExperimentHook(experiments, driver, clock, prices, StageRunner([recorder]), rng)

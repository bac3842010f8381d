"""Stream sessions: what ending a stream and continuing it do, without a stream around them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import llmroute
from _pipeline_parts import (
    NO_OPTIONS,
    Scripted,
    catalog,
    chat_request,
    driver,
    event,
    failure,
    route_of,
    streamed,
)
from llmroute import ChatCompletionChunk, RouteInfo, SystemClock
from llmroute._prices import PriceBook
from llmroute._types import CompletionUsage
from llmroute.pipeline.driver import AttemptDriver, Served
from llmroute.pipeline.exchange import OpenedStream, StreamExchange
from llmroute.pipeline.session import CONTINUE_PROMPT, LiveStreamSession, StreamSession
from llmroute.pipeline.stage import Outcome, RequestContext, Stage
from llmroute.pipeline.stages import StageRunner
from llmroute.providers import ExtraRequest
from llmroute.routing.model import Route

pytestmark = pytest.mark.anyio


@dataclass
class Ended:
    """A stream that has ended, as a session reads it."""

    completed: bool = True
    text: str = "Hello there"
    provider_usage: CompletionUsage | None = None
    seams: list[int] = field(default_factory=list)
    kept: list[ChatCompletionChunk] | None = None


class Seeing(Stage):
    name = "seeing"

    def __init__(self) -> None:
        self.seen: list[Outcome] = []

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        self.seen.append(outcome)


def context(route: Route, *, keep: bool = False) -> RequestContext:
    request = chat_request(stream=True)
    info = RouteInfo(request_id="r", stream=True)
    now = SystemClock().monotonic()
    ctx = RequestContext("chat", request, NO_OPTIONS, route, info, True, now, 0.0)
    ctx.keep_chunks = keep
    return ctx


async def opened_on(
    route: Route, runner: AttemptDriver, ctx: RequestContext
) -> tuple[StreamExchange, Served[OpenedStream]]:
    exchange = StreamExchange(chat_request(stream=True), NO_OPTIONS, ExtraRequest())
    return exchange, await runner.run(route, NO_OPTIONS, ctx.info, exchange)


def live(
    ctx: RequestContext,
    stage: Stage,
    exchange: StreamExchange,
    served: Served[OpenedStream],
    continuation: AttemptDriver | None = None,
) -> LiveStreamSession:
    return LiveStreamSession(
        ctx,
        StageRunner([stage]),
        SystemClock(),
        exchange=exchange,
        served=served,
        prices=PriceBook(),
        continuation=continuation,
    )


def first_content() -> Scripted:
    return Scripted(streamed(event({"content": "Hello"}), b"data: [DONE]\n\n"))


async def test_a_replayed_streams_session_ends_it_for_the_stages() -> None:
    route = route_of(catalog({"targets": ["a/m"]}, a=Scripted()))
    ctx, stage = context(route, keep=True), Seeing()
    session = StreamSession(ctx, StageRunner([stage]), SystemClock(), "cache")
    chunks: list[ChatCompletionChunk] = []

    assert not session.can_continue
    await session.ended(Ended(kept=chunks), None)

    (outcome,) = stage.seen
    assert (outcome.answered_by, outcome.completed, outcome.error) == ("cache", True, None)
    assert outcome.chunks is chunks
    assert ctx.info.latency_s is not None
    assert ctx.info.usage is None  # a stage's answer costs nothing


async def test_a_live_session_settles_usage_and_cost_from_what_the_provider_reported() -> None:
    route = route_of(catalog({"targets": ["a/m"]}, a=first_content()))
    ctx, stage = context(route), Seeing()
    exchange, served = await opened_on(route, driver(), ctx)
    session = live(ctx, stage, exchange, served)
    reported = CompletionUsage(prompt_tokens=7, completion_tokens=3, total_tokens=10)

    assert not session.can_continue  # no `mid_stream: continue` given
    await session.ended(Ended(provider_usage=reported), None)

    assert ctx.info.usage is not None and (ctx.info.usage.input, ctx.info.usage.output) == (7, 3)
    assert not ctx.info.usage.estimated
    assert served.record.outcome == "ok"
    (outcome,) = stage.seen
    assert (outcome.answered_by, outcome.completed, outcome.chunks) == (None, True, None)
    assert ctx.info.cost_usd is None  # no price for the model `m`: unknown, never 0


@pytest.mark.parametrize(
    ("ended", "error", "outcome"),
    [
        (Ended(completed=False), None, "cancelled"),
        (Ended(completed=False), llmroute.StreamInterrupted("cut", partial="Hel"), "error"),
    ],
    ids=["closed early", "interrupted"],
)
async def test_a_live_session_marks_the_served_attempt_as_the_stream_ended(
    ended: Ended, error: BaseException | None, outcome: str
) -> None:
    route = route_of(catalog({"targets": ["a/m"]}, a=first_content()))
    ctx, stage = context(route), Seeing()
    exchange, served = await opened_on(route, driver(), ctx)

    await live(ctx, stage, exchange, served).ended(ended, error)

    assert served.record.outcome == outcome
    assert ctx.info.usage is not None and ctx.info.usage.estimated  # nothing was reported
    assert stage.seen[0].error is error


async def test_a_continuation_goes_to_another_target_through_the_driver() -> None:
    a, b = first_content(), first_content()
    route = route_of(catalog({"targets": ["a/m", "b/m"], "mid_stream": "continue"}, a=a, b=b))
    runner = driver()
    ctx, stage = context(route), Seeing()
    exchange, served = await opened_on(route, runner, ctx)
    session = live(ctx, stage, exchange, served, continuation=runner)
    cause = llmroute.ProviderError("cut", provider="a", model="m")

    assert session.can_continue
    opened = await session.continue_after("Hel", cause)

    assert served.record.outcome == "error" and served.record.error_type == "ProviderError"
    assert ctx.info.target == "b/m" and ctx.info.served is ctx.info.attempts[-1]
    assert ctx.info.attempts[-1].kind == "fallback"
    assert len(a.sent) == 1
    ((follow, _),) = b.sent
    assert CONTINUE_PROMPT in follow.body.decode() and b"Hel" in follow.body
    assert runner.stats.snapshot("b/m").ttft_p50_s is None  # a continuation is not timed
    await opened.response.aclose()
    await session.ended(Ended(seams=[3]), None)
    assert ctx.info.attempts[-1].outcome == "ok"  # the continuing attempt served the rest


async def test_a_continuation_that_no_target_can_take_raises() -> None:
    a = first_content()
    route = route_of(catalog({"targets": ["a/m"], "mid_stream": "continue"}, a=a))
    runner = driver()
    ctx = context(route)
    exchange, served = await opened_on(route, runner, ctx)
    session = live(ctx, Seeing(), exchange, served, continuation=runner)
    a.answers.append(failure(500))  # the failed target is left out: never asked

    with pytest.raises(llmroute.AllTargetsFailed):
        await session.continue_after("Hel", None)

    assert served.record.error_type == "StreamInterrupted"
    assert len(a.sent) == 1

"""send_attempt() and the exchanges, then the driver's Served: one attempt, then one request.

The parts are built alone (tests/_pipeline_parts.py) over a scripted transport,
with the real OpenAI adapter in between.
"""

from __future__ import annotations

import json

import pytest

import llmroute
from _pipeline_parts import (
    NO_OPTIONS,
    Scripted,
    catalog,
    chat_request,
    completion,
    driver,
    event,
    failure,
    route_of,
    streamed,
)
from llmroute import AttemptInfo, ChatCompletion, RouteInfo, SystemClock, TokenUsage
from llmroute._request import validate_embeddings_request
from llmroute.pipeline.exchange import (
    ChatExchange,
    EmbeddingsExchange,
    OpenedStream,
    StreamExchange,
    send_attempt,
)
from llmroute.providers import ExtraRequest
from llmroute.routing import Selection, SelectionContext
from llmroute.routing.model import Target
from llmroute.routing.rate_limits import RateLimitBoard

pytestmark = pytest.mark.anyio

NO_EXTRA = ExtraRequest()
LIMITS = {"x-ratelimit-remaining-requests": "9", "x-ratelimit-limit-requests": "10"}


def record() -> AttemptInfo:
    return AttemptInfo("a/m", "a", "m", "first")


def timeouts() -> llmroute.Timeouts:
    return llmroute.Timeouts(connect=1.0, read=None)


# ---------------------------------------------------------------- send_attempt


async def test_a_whole_answer_is_built_sent_read_parsed_and_released() -> None:
    upstream = Scripted(completion("Hello!"))
    answer = upstream.answers[0]
    answer.headers.update(LIMITS)
    target = route_of(catalog({"targets": ["a/m"]}, a=upstream)).targets[0]
    sent_record = record()
    exchange = ChatExchange(chat_request(), NO_OPTIONS, NO_EXTRA)

    limits = RateLimitBoard()
    value = await send_attempt(exchange, target, sent_record, timeouts(), SystemClock(), limits)

    assert isinstance(value, ChatCompletion)
    assert value.choices[0].message.content == "Hello!"
    ((request, _),) = upstream.sent
    assert request.url.endswith("/chat/completions")
    assert json.loads(request.body)["model"] == "m"
    assert sent_record.status == 200
    assert answer.closed
    state = limits.state(target.key)
    assert state is not None and state.remaining_requests == 9
    assert exchange.usage(value) == TokenUsage(input=5, output=2)


async def test_an_error_status_raises_the_adapters_error_and_still_notes_the_limits() -> None:
    answer = failure(429, "slow down", {"retry-after": "3", **LIMITS})
    target = route_of(catalog({"targets": ["a/m"]}, a=Scripted(answer))).targets[0]
    sent_record = record()
    exchange = ChatExchange(chat_request(), NO_OPTIONS, NO_EXTRA)

    limits = RateLimitBoard()
    with pytest.raises(llmroute.RateLimited) as caught:
        await send_attempt(exchange, target, sent_record, timeouts(), SystemClock(), limits)

    assert caught.value.retry_after == 3.0
    assert sent_record.status == 429
    assert answer.closed
    assert limits.state(target.key) is not None


async def test_a_stream_opens_up_to_its_first_content_and_stays_open() -> None:
    answer = streamed(
        event({"role": "assistant"}) + event({"content": "Hel"}) + event({"content": "lo"}),
        event({}, "stop") + b"data: [DONE]\n\n",
    )
    target = route_of(catalog({"targets": ["a/m"]}, a=Scripted(answer))).targets[0]
    exchange = StreamExchange(chat_request(stream=True), NO_OPTIONS, NO_EXTRA)

    opened = await send_attempt(
        exchange, target, record(), timeouts(), SystemClock(), RateLimitBoard()
    )

    assert isinstance(opened, OpenedStream)
    assert [c.choices[0].delta.content for c in opened.pending] == [None, "Hel"]
    assert opened.backlog  # the rest of that read is decoded as the caller reads
    assert not answer.closed
    assert exchange.usage(opened) is None
    await exchange.discard(opened)  # a hedge that lost lets go of its connection
    assert answer.closed


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (streamed(event({"role": "assistant"}), b"data: [DONE]\n\n"), llmroute.ProviderUnavailable),
        (failure(503, "overloaded"), llmroute.ProviderError),
    ],
    ids=["no content", "error status"],
)
async def test_a_stream_that_fails_before_its_first_content_is_released(
    answer: llmroute.HttpResponse, error: type[Exception]
) -> None:
    target = route_of(catalog({"targets": ["a/m"]}, a=Scripted(answer))).targets[0]  # type: ignore[arg-type]
    exchange = StreamExchange(chat_request(stream=True), NO_OPTIONS, NO_EXTRA)
    with pytest.raises(error):
        await send_attempt(exchange, target, record(), timeouts(), SystemClock(), RateLimitBoard())
    assert answer.closed  # type: ignore[attr-defined]


async def test_embeddings_are_built_and_parsed_by_their_exchange() -> None:
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
        "model": "m",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    answer = completion()
    answer.parts = [json.dumps(body).encode()]
    target = route_of(catalog({"targets": ["a/m"]}, a=Scripted(answer))).targets[0]
    request = validate_embeddings_request({"model": "chat", "input": "hi"})
    exchange = EmbeddingsExchange(request, NO_OPTIONS, NO_EXTRA)

    value = await send_attempt(
        exchange, target, record(), timeouts(), SystemClock(), RateLimitBoard()
    )

    assert value.data[0].embedding == [0.5, 0.25]
    assert exchange.usage(value) == TokenUsage(input=4)


def test_a_stage_answer_of_the_wrong_type_is_refused_by_name() -> None:
    chat = ChatExchange(chat_request(), NO_OPTIONS, NO_EXTRA)
    stream = StreamExchange(chat_request(stream=True), NO_OPTIONS, NO_EXTRA)
    with pytest.raises(TypeError, match="stage 'x' answered a chat request with"):
        chat.stage_answer([], "x")
    with pytest.raises(TypeError, match="stage 'x' answered a stream with"):
        stream.stage_answer(ChatCompletion.model_validate_json(completion().parts[0]), "x")
    assert stream.stage_answer([], "x") == []


# ---------------------------------------------------------------- the driver's Served


async def test_served_names_the_winner_once_and_times_it() -> None:
    a, b = Scripted(failure(500)), Scripted(completion(output=4))
    route = route_of(catalog({"targets": ["a/m", "b/m"]}, a=a, b=b))
    runner, info = driver(), RouteInfo(request_id="r")
    exchange = ChatExchange(chat_request(), NO_OPTIONS, NO_EXTRA)

    served = await runner.run(route, NO_OPTIONS, info, exchange)

    assert served.target is route.targets[1]
    assert [x.target for x in info.attempts] == ["a/m", "b/m"]
    assert served.record is info.served is info.attempts[1]
    assert (info.target, info.provider, info.model) == ("b/m", "b", "m")
    assert served.usage == TokenUsage(input=5, output=4)
    assert served.value.choices[0].message.content == "Hello!"
    won, lost = runner.stats.snapshot("b/m"), runner.stats.snapshot("a/m")
    assert (won.requests, won.mean_output_tokens) == (1, 4)
    assert won.ttft_p50_s == pytest.approx(served.record.latency_s)
    assert (lost.requests, lost.ttft_p50_s, lost.mean_output_tokens) == (1, None, None)


@pytest.mark.parametrize("timed", [True, False])
async def test_a_served_stream_feeds_the_first_token_statistic_unless_it_continues(
    timed: bool,
) -> None:
    upstream = Scripted(streamed(event({"content": "Hi"}), b"data: [DONE]\n\n"))
    route = route_of(catalog({"targets": ["a/m"]}, a=upstream))
    runner, info = driver(), RouteInfo(request_id="r", stream=True)
    exchange = StreamExchange(chat_request(stream=True), NO_OPTIONS, NO_EXTRA, timed=timed)

    served = await runner.run(route, NO_OPTIONS, info, exchange)

    assert served.record is info.served and served.usage is None
    snapshot = runner.stats.snapshot("a/m")
    assert (snapshot.ewma_ttft_s is not None, snapshot.ttft_p50_s is not None) == (timed, timed)
    assert snapshot.latency_p50_s is not None  # every successful attempt is timed
    await served.value.response.aclose()


class Counting:
    """Config order, counting the routes it was asked to order."""

    name = "counting"

    def __init__(self) -> None:
        self.ordered: list[list[str]] = []

    def order(self, candidates: list[Target], ctx: SelectionContext) -> Selection:
        self.ordered.append([t.key for t in candidates])
        return Selection(list(candidates), "counted")


@pytest.mark.parametrize(("first", "ordered"), [(200, [["a/m"]]), (500, [["a/m"], ["b/m"]])])
async def test_the_driver_orders_a_fallback_route_only_when_the_request_reaches_it(
    first: int, ordered: list[list[str]]
) -> None:
    a = Scripted(completion() if first == 200 else failure(first))
    strategy = Counting()
    route = {"targets": ["a/m"], "strategy": "counting", "fallbacks": ["backup"]}
    route["retry"] = {"attempts": 1}
    backup = {"targets": ["b/m"], "strategy": "counting"}
    upstreams = {"a": a, "b": Scripted(completion())}
    built = catalog(
        route, routes={"backup": backup}, strategies={"counting": strategy}, **upstreams
    )
    info = RouteInfo(request_id="r")
    exchange = ChatExchange(chat_request(), NO_OPTIONS, NO_EXTRA)

    served = await driver().run(route_of(built), NO_OPTIONS, info, exchange)

    assert strategy.ordered == ordered
    assert served.target.key == ordered[-1][0]
    assert info.reason == "counting: counted"  # the first route ordered explains the choice

"""One `Exchange` per operation, and `send_attempt()`: the only code that touches adapter
and transport.

An exchange holds what differs between operations: how the wire request is
built for a target, and how the provider's answer becomes the operation's
value (a parsed completion, an embeddings response, or a stream opened up to
its first content). Everything else about an attempt is the same for every
operation and is written once, in `send_attempt()`: build, optional
`prepare`, send, rate-limit headers, read, `map_error` on a status of 300
or more, parse. The driver calls it for each attempt; the executor picks
the exchange.

Adding an operation (the Responses API, say) is one more `Exchange` subclass
here (`build` plus `parse`, or `open` for a stream) and one more method on
the executor that hands it to the same path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, cast

from .._clock import Clock
from .._errors import ProviderUnavailable
from .._plain_chat import PlainChat
from .._request import ChatRequest, EmbeddingsRequest, RequestOptions
from .._transports import HttpRequest, HttpResponse, Timeouts
from .._types import (
    AttemptInfo,
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    TokenUsage,
)
from .._wire import WireChunk
from .._wire_completion import WireCompletion
from ..providers import ExtraRequest, ProviderAdapter, StreamDecoder
from ..responses.types import Response
from ..routing.model import Target
from ..routing.rate_limits import RateLimitBoard
from ..routing.select import RequestFacts
from .opening import Feeder, no_batches, read_to_content, single_batches
from .stage import Answer

if TYPE_CHECKING:
    from ..responses.request_model import ResponsesRequest

__all__ = [
    "ChatExchange",
    "EmbeddingsExchange",
    "Exchange",
    "Opened",
    "OpenedStream",
    "RelayExchange",
    "StreamExchange",
    "WholeExchange",
    "send_attempt",
]

T = TypeVar("T")
#: What a whole exchange answers: the caller's response, which a stage may give instead.
R = TypeVar("R", ChatCompletion, CreateEmbeddingResponse, Response, ChatCompletion | WireCompletion)

#: Which live statistics a served answer feeds: its time to answer and length
#: (``answer``), its time to first content (``stream``), or none.
Timing = Literal["answer", "stream"] | None


class Exchange(ABC, Generic[T]):
    """One operation's request, as each attempt sends it, and how its answer is read.

    `stream` says how the answer is read: whole (`parse` gets the body, and
    the attempt's limit bounds it as a whole) or as a stream (`open` gets the
    response and reads it up to its first content, with per-read timeouts).
    `timing` says which live statistics the served answer feeds.

    Subclasses set every attribute in their own ``__init__`` (no chained
    ``super().__init__``): an exchange is made for every request, a cache hit
    included, where each call shows in the instruction count.
    """

    __slots__ = ("extra", "options", "timing")

    options: RequestOptions
    extra: ExtraRequest
    timing: Timing

    stream: bool = False
    #: Whether the answer is read to be relayed in OpenAI's format (kept as the provider's
    #: JSON where it can be): set by the exchanges the gateway opens; turned off when the
    #: stages need typed answers.
    wire: bool = False
    #: Whether an experiment on the request's route may vary it (a token count is not
    #: part of any: the route as configured counts it).
    varies: bool = True
    #: The operation, as `RequestContext.operation` names it.
    operation: Literal["chat", "embeddings", "responses"] = "chat"
    #: How the executor's refusal names the operation when a stage answers it with
    #: the wrong type ("stage 'x' answered a chat request with ...").
    described: str = "a request"

    @abstractmethod
    def facts(self) -> RequestFacts:
        """What selection needs to know about the request (made when it is routed)."""

    @abstractmethod
    def build(self, adapter: ProviderAdapter, model: str) -> HttpRequest:
        """The wire request for `model` on `adapter`'s provider."""

    @abstractmethod
    def vary(
        self, request: ChatRequest | EmbeddingsRequest, source: ResponsesRequest | None
    ) -> None:
        """Send `request` instead of the caller's: an experiment's variant of it (with
        `source`, the variant of the operation's own request, when `request` is its chat
        view). Called before the first attempt, on the request's own exchange."""

    def parse(self, adapter: ProviderAdapter, body: bytes, model: str) -> T:
        """A whole answer's body as the operation's value (exchanges that read whole)."""
        raise TypeError(f"{type(self).__name__} streams its answers: send_attempt opens them")

    async def open(self, adapter: ProviderAdapter, response: HttpResponse, target: Target) -> T:
        """A streamed answer read up to its first content (exchanges that stream)."""
        raise TypeError(f"{type(self).__name__} reads whole answers: send_attempt parses them")

    def usage(self, value: T) -> TokenUsage | None:
        """The tokens an answer reports, normalised (None: not reported, or not yet)."""
        return None

    def read_typed(self) -> None:
        """Read answers typed, not `wire` (the stages need them typed)."""
        return None

    async def discard(self, value: T) -> None:
        """Let go of an answer that lost a hedge race to another (release what it holds)."""
        return None

    def wrong_answer(self, answer: Answer, stage: str | None) -> TypeError:
        """The error for a stage that answered this request with the wrong type."""
        return TypeError(f"stage {stage!r} answered {self.described} with {answer!r}")


class WholeExchange(Exchange[R]):
    """An exchange read whole, whose value is the caller's response (and priced at once)."""

    __slots__ = ()

    def tier(self, value: R) -> str | None:
        """The service tier the answer is priced at (None: the provider's default)."""
        return None

    def for_stages(self, value: R) -> ChatCompletion | CreateEmbeddingResponse | Response:
        """The answer as the stages see it (`Outcome.response`): typed."""
        return cast(ChatCompletion | CreateEmbeddingResponse | Response, value)

    @abstractmethod
    def stage_answer(self, answer: Answer, stage: str | None) -> R:
        """A stage's answer to this request, refused when it is of the wrong type."""


class ChatParts(Exchange[T]):
    """What both non-streamed chat exchanges share: the request, what selection reads of
    it, its variant, and each attempt's wire request.

    A plain request may come as its parameters (`PlainChat`: the executor makes no
    context for such a request, so nothing else reads it); each attempt's body is then
    written from them, and selection reads it typed without taking it (`RequestFacts`).
    """

    __slots__ = ("_plain", "_request", "wire")

    _plain: PlainChat | None
    _request: ChatRequest | None
    described = "a chat request"
    #: What `wire` starts as: whether the answer is asked for to be relayed.
    relayed = False

    def __init__(
        self, request: ChatRequest | PlainChat, options: RequestOptions, extra: ExtraRequest
    ) -> None:
        if isinstance(request, PlainChat):
            self._plain, self._request = request, None
        else:
            self._plain, self._request = None, request
        self.options, self.extra, self.timing, self.wire = options, extra, "answer", self.relayed

    def facts(self) -> RequestFacts:
        asked = self._plain or self._request
        assert asked is not None  # one of the two is always set
        return RequestFacts(asked, self.options, stream=False)

    def vary(
        self, request: ChatRequest | EmbeddingsRequest, source: ResponsesRequest | None
    ) -> None:
        assert isinstance(request, ChatRequest)
        self._plain, self._request = None, request

    def build(self, adapter: ProviderAdapter, model: str) -> HttpRequest:
        plain, request = self._plain, self._request
        if plain is not None:
            return adapter.chat_request_plain(plain, model, extra=self.extra)
        assert request is not None  # one of the two is always set
        return adapter.chat_request(request, model, stream=False, extra=self.extra)


def _chat_usage(value: ChatCompletion) -> TokenUsage | None:
    usage = value.usage
    return usage.normalised() if usage is not None else None


def _chat_answer(exchange: Exchange[T], answer: Answer, stage: str | None) -> ChatCompletion:
    if isinstance(answer, ChatCompletion):
        return answer
    raise exchange.wrong_answer(answer, stage)


class ChatExchange(ChatParts[ChatCompletion], WholeExchange[ChatCompletion]):
    """A non-streamed chat completion."""

    __slots__ = ()

    def parse(self, adapter: ProviderAdapter, body: bytes, model: str) -> ChatCompletion:
        return adapter.parse_chat(body, model)

    def usage(self, value: ChatCompletion) -> TokenUsage | None:
        return _chat_usage(value)

    def tier(self, value: ChatCompletion) -> str | None:
        request = self._request  # None: a plain request, which asks for no tier
        return value.service_tier or (request.service_tier if request is not None else None)

    def stage_answer(self, answer: Answer, stage: str | None) -> ChatCompletion:
        return _chat_answer(self, answer, stage)


class RelayExchange(
    ChatParts[ChatCompletion | WireCompletion], WholeExchange[ChatCompletion | WireCompletion]
):
    """A non-streamed chat completion the gateway relays in OpenAI's format: while `wire`
    (the executor turns it off when a stage is busy: stages get typed answers), an
    OpenAI-format provider's plain answer is kept as its JSON (`WireCompletion`).

    Fast path: see `_wire_completion`. Oracle: tests/test_wire_completions.py.
    """

    __slots__ = ()

    relayed = True

    def parse(
        self, adapter: ProviderAdapter, body: bytes, model: str
    ) -> ChatCompletion | WireCompletion:
        if self.wire:
            return adapter.parse_chat_wire(body, model)
        return adapter.parse_chat(body, model)

    def usage(self, value: ChatCompletion | WireCompletion) -> TokenUsage | None:
        return value.usage() if isinstance(value, WireCompletion) else _chat_usage(value)

    def tier(self, value: ChatCompletion | WireCompletion) -> str | None:
        request = self._request  # None: a plain request, which asks for no tier
        return value.service_tier or (request.service_tier if request is not None else None)

    def stage_answer(self, answer: Answer, stage: str | None) -> ChatCompletion:
        return _chat_answer(self, answer, stage)

    def read_typed(self) -> None:
        self.wire = False

    def for_stages(self, value: ChatCompletion | WireCompletion) -> ChatCompletion:
        # a busy stage made the executor read typed (`read_typed`): typed here for the
        # contract's sake, should a wire answer ever get this far
        return value.typed() if isinstance(value, WireCompletion) else value


class EmbeddingsExchange(WholeExchange[CreateEmbeddingResponse]):
    """An embeddings request."""

    __slots__ = ("request",)

    operation = "embeddings"
    described = "embeddings"

    def __init__(
        self, request: EmbeddingsRequest, options: RequestOptions, extra: ExtraRequest
    ) -> None:
        self.request, self.options, self.extra, self.timing = request, options, extra, None

    def facts(self) -> RequestFacts:
        return RequestFacts(self.request, self.options, stream=False)

    def vary(
        self, request: ChatRequest | EmbeddingsRequest, source: ResponsesRequest | None
    ) -> None:
        assert isinstance(request, EmbeddingsRequest)
        self.request = request

    def build(self, adapter: ProviderAdapter, model: str) -> HttpRequest:
        return adapter.embeddings_request(self.request, model, extra=self.extra)

    def parse(self, adapter: ProviderAdapter, body: bytes, model: str) -> CreateEmbeddingResponse:
        return adapter.parse_embeddings(body, model)

    def usage(self, value: CreateEmbeddingResponse) -> TokenUsage | None:
        usage = value.usage
        return TokenUsage(input=usage.prompt_tokens) if usage is not None else None

    def stage_answer(self, answer: Answer, stage: str | None) -> CreateEmbeddingResponse:
        if isinstance(answer, CreateEmbeddingResponse):
            return answer
        raise self.wrong_answer(answer, stage)


class CountTokensExchange(Exchange[int]):
    """Counting a chat request's input tokens, at a provider that counts them (the others
    refuse, so the route's next target is tried)."""

    __slots__ = ("request",)

    described = "a token count"
    varies = False

    def __init__(self, request: ChatRequest, options: RequestOptions, extra: ExtraRequest) -> None:
        self.request, self.options, self.extra, self.timing = request, options, extra, None

    def facts(self) -> RequestFacts:
        return RequestFacts(self.request, self.options, stream=False)

    def vary(
        self, request: ChatRequest | EmbeddingsRequest, source: ResponsesRequest | None
    ) -> None:
        assert isinstance(request, ChatRequest)
        self.request = request

    def build(self, adapter: ProviderAdapter, model: str) -> HttpRequest:
        return adapter.count_tokens_request(self.request, model, extra=self.extra)

    def parse(self, adapter: ProviderAdapter, body: bytes, model: str) -> int:
        return adapter.parse_count_tokens(body)


D = TypeVar("D")


class Opened(Generic[D, T]):
    """A stream whose first content has arrived: what a streaming exchange opens.

    `batches` yields the decoder's inputs (lines, or byte chunks for framings
    that are not lines) in batches, one per network read; `backlog` holds the
    inputs already read but not yet decoded; `pending`, what was decoded and not
    yet delivered (chunks, or events).
    """

    __slots__ = ("backlog", "batches", "decoder", "pending", "response")

    def __init__(
        self,
        response: HttpResponse,
        batches: AsyncIterator[list[bytes]],
        decoder: D,
        pending: deque[T],
        backlog: deque[bytes] | None = None,
    ) -> None:
        self.response = response
        self.batches = batches
        self.decoder = decoder
        self.pending = pending
        self.backlog = backlog if backlog is not None else deque()


class OpenedStream(Opened[StreamDecoder, "ChatCompletionChunk | WireChunk"]):
    """A chat stream opened (`StreamExchange`): its chunks so far are typed, or, opened
    for relaying (`StreamExchange.wire`), plain text chunks kept as their JSON."""

    __slots__ = ()


class StreamExchange(Exchange[OpenedStream]):
    """A streamed chat completion, opened up to its first content.

    Failing before the first content fails over like any other attempt. With
    `timed` False (a continuation of a stream another target left
    unfinished) the served attempt feeds no time-to-first-content statistic:
    its prompt carries the partial answer, so its time says little about
    the target, and only a request's own first opening was ever counted.
    With `wire` (the gateway relays the stream in OpenAI's format) the chunks up to
    the first content are read as `WireChunk`s where they are plain (the stream
    types them if it is read typed after all).

    Fast path: the opening's chunks read by the wire schema, not validated typed
    (see docs/performance.md). Oracle: tests/test_wire_streams.py
    (``test_a_stream_opened_for_the_wire_reads_as_one_opened_typed``).
    """

    __slots__ = ("request", "wire")

    stream = True
    described = "a stream"

    def __init__(
        self,
        request: ChatRequest,
        options: RequestOptions,
        extra: ExtraRequest,
        *,
        timed: bool = True,
        wire: bool = False,
    ) -> None:
        self.request, self.options, self.extra = request, options, extra
        self.timing = "stream" if timed else None
        self.wire = wire

    def read_typed(self) -> None:
        self.wire = False

    def facts(self) -> RequestFacts:
        return RequestFacts(self.request, self.options, stream=True)

    def vary(
        self, request: ChatRequest | EmbeddingsRequest, source: ResponsesRequest | None
    ) -> None:
        assert isinstance(request, ChatRequest)
        self.request = request

    def build(self, adapter: ProviderAdapter, model: str) -> HttpRequest:
        return adapter.chat_request(self.request, model, stream=True, extra=self.extra)

    async def open(
        self, adapter: ProviderAdapter, response: HttpResponse, target: Target
    ) -> OpenedStream:
        decoder = adapter.stream_decoder(self.request, target.model)
        if adapter.stream_framing == "lines":
            batches = response.aiter_line_batches()
        else:
            batches = single_batches(response.aiter_bytes())
        pending: deque[ChatCompletionChunk | WireChunk] = deque()
        feeder: Feeder[ChatCompletionChunk | WireChunk] = (
            _WireOpening(decoder) if self.wire else decoder
        )
        backlog = await read_to_content(batches, feeder, pending, _any_content)
        if backlog is not None:  # the rest of its batch is decoded as the caller reads
            return OpenedStream(response, batches, decoder, pending, backlog)
        pending.extend(decoder.finish())
        if _any_content(pending):
            return OpenedStream(response, no_batches(), decoder, pending)
        raise ProviderUnavailable(
            "the stream ended before its first content",
            provider=target.provider.name,
            model=target.model,
            status=response.status,
        )

    async def discard(self, value: OpenedStream) -> None:
        await value.response.aclose()

    def stage_answer(self, answer: Answer, stage: str | None) -> list[ChatCompletionChunk]:
        """A stage's answer to this request (chunks to replay), refused when it is of the
        wrong type."""
        if isinstance(answer, list):
            return cast(list[ChatCompletionChunk], answer)
        raise self.wrong_answer(answer, stage)


async def send_attempt(
    exchange: Exchange[T],
    target: Target,
    record: AttemptInfo,
    timeouts: Timeouts,
    clock: Clock,
    limits: RateLimitBoard,
) -> T:
    """Send `exchange` to `target` once and read its answer; `record` gets the status and
    the response's headers.

    The provider's rate-limit headers are noted on `limits` whatever the
    status. A status of 300 or more raises the adapter's typed error, read
    from the whole body; the response is always released, except a stream
    handed on open.
    """
    adapter = target.provider.adapter
    request = exchange.build(adapter, target.model)
    if adapter.needs_prepare:
        request = await adapter.prepare(request)
    response = await target.provider.transport.send(request, timeouts)
    status = record.status = response.status
    record.headers = response.headers  # a reference: read only if someone asks
    if status >= 300 or not exchange.stream:
        try:
            _note_limits(adapter, response, target, clock, limits)
            body = await response.read()
        finally:
            await response.aclose()
        if status >= 300:
            raise adapter.map_error(status, response.headers, body)
        return exchange.parse(adapter, body, target.model)
    try:
        _note_limits(adapter, response, target, clock, limits)
        return await exchange.open(adapter, response, target)
    except BaseException:
        await response.aclose()
        raise


def _note_limits(
    adapter: ProviderAdapter,
    response: HttpResponse,
    target: Target,
    clock: Clock,
    limits: RateLimitBoard,
) -> None:
    state = adapter.rate_limit_state(response.headers)
    if state is not None:
        limits.saw(target, state, clock.monotonic())


class _WireOpening:
    """A stream decoder read as `feed_wire` without learning (`StreamExchange.wire`)."""

    __slots__ = ("_decoder",)

    def __init__(self, decoder: StreamDecoder) -> None:
        self._decoder = decoder

    @property
    def done(self) -> bool:
        return self._decoder.done

    def feed(self, data: bytes) -> Sequence[ChatCompletionChunk | WireChunk]:
        return self._decoder.feed_wire(data, learn=False)


def _any_content(chunks: Iterable[ChatCompletionChunk | WireChunk]) -> bool:
    for chunk in chunks:
        if isinstance(chunk, WireChunk):
            if chunk.has_content():
                return True
            continue
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content or delta.tool_calls or delta.refusal or choice.finish_reason:
                return True
    return False

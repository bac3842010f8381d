"""The attempt driver: carries out an `AttemptPlan` for one request.

Decisions live in `_attempts`; this module only sends, times and classifies.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio

from ._attempts import AttemptPlan, Try, is_fatal_for_request
from ._catalog import Catalog, Route, Target
from ._clock import Clock
from ._cost import PriceBook
from ._errors import (
    AllTargetsFailed,
    LLMRouteError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RequestError,
)
from ._request import ChatRequest, EmbeddingsRequest, RequestOptions
from ._stream import AsyncChatStream, OpenedStream
from ._tokens import estimate_request_tokens, estimate_text_tokens
from ._transport import HttpResponse, TimedOut, TransportError
from ._types import (
    AttemptInfo,
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    RouteInfo,
    TokenUsage,
)
from .providers import ExtraRequest, StreamDecoder

__all__ = ["Executor"]

T = TypeVar("T")


def new_request_id() -> str:
    """A random request id (``lr-`` and 24 hex digits)."""
    return "lr-" + os.urandom(12).hex()


def _transport_error(error: TransportError, target: Target) -> ProviderError:
    provider, model = target.provider.name, target.model
    if isinstance(error, TimedOut):
        return ProviderTimeout(str(error), provider=provider, model=model)
    return ProviderConnectionError(str(error), provider=provider, model=model)


def _has_content(chunk: ChatCompletionChunk) -> bool:
    for choice in chunk.choices:
        delta = choice.delta
        if delta.content or delta.tool_calls or delta.refusal or choice.finish_reason:
            return True
    return False


class Executor:
    """Runs requests through the catalog's routes: attempts, failover, deadlines, metadata."""

    def __init__(self, catalog: Catalog, clock: Clock, prices: PriceBook, rng: random.Random):
        self._catalog = catalog
        self._clock = clock
        self._prices = prices
        self._rng = rng

    # -------------------------------------------------------------- the loop

    async def _run(
        self,
        model: str,
        options: RequestOptions,
        info: RouteInfo,
        attempt: Callable[[Target, AttemptInfo], Awaitable[T]],
    ) -> T:
        route = self._catalog.resolve(model)
        info.route, info.strategy = route.name, route.strategy
        allowed = self._allowed(route, options)
        clock = self._clock
        start = clock.monotonic()
        deadline = start + (options.timeout or route.timeout)
        plan = AttemptPlan(route, rng=self._rng, allowed=allowed)
        errors: list[ProviderError] = []
        out_of_time = False
        while (step := plan.next()) is not None:
            remaining = deadline - clock.monotonic()
            if not isinstance(step, Try):
                if step.seconds >= remaining:
                    out_of_time = True
                    break
                await clock.sleep(step.seconds)
                continue
            if remaining <= 0:
                out_of_time = True
                break
            target = step.target
            record = AttemptInfo(target.key, target.provider.name, target.model, step.kind)
            info.attempts.append(record)
            began = clock.monotonic()
            try:
                with anyio.fail_after(min(remaining, target.provider.attempt_timeout)):
                    result = await attempt(target, record)
            except TimeoutError:
                error: ProviderError = ProviderTimeout(
                    f"no answer within {min(remaining, target.provider.attempt_timeout):.3g}s",
                    provider=target.provider.name, model=target.model,
                )  # fmt: skip
            except TransportError as exc:
                error = _transport_error(exc, target)
                error.__cause__ = exc
            except ProviderError as exc:
                error = exc
            else:
                record.latency_s = clock.monotonic() - began
                info.target, info.provider, info.model = (
                    target.key,
                    target.provider.name,
                    target.model,
                )
                return result
            error.provider, error.model = target.provider.name, target.model
            record.outcome, record.status = "error", error.status
            record.error_type, record.error = type(error).__name__, error.message
            record.latency_s = clock.monotonic() - began
            errors.append(error)
            plan.failed(target, error)
            if is_fatal_for_request(error):
                raise error
        raise self._exhausted(info, errors, out_of_time, options.timeout or route.timeout)

    @staticmethod
    def _allowed(route: Route, options: RequestOptions) -> frozenset[str] | None:
        if options.targets is None:
            return None
        allowed = frozenset(options.targets)
        if not any(
            t.key in allowed or t.provider.name in allowed for r in route.chain() for t in r.targets
        ):
            keys = ", ".join(t.key for r in route.chain() for t in r.targets)
            raise RequestError(
                f"none of the allowed targets ({', '.join(sorted(allowed))}) is on this route; "
                f"its targets are: {keys}",
                param="llmroute.targets",
            )
        return allowed

    @staticmethod
    def _exhausted(
        info: RouteInfo, errors: list[ProviderError], out_of_time: bool, timeout: float
    ) -> LLMRouteError:
        last = errors[-1] if errors else None
        if out_of_time:
            error: LLMRouteError = ProviderTimeout(
                f"request deadline of {timeout:g}s reached after {len(errors)} failed attempt(s)"
                + (f"; last error: {last}" if last else ""),
                provider=last.provider if last else "", model=last.model if last else "",
            )  # fmt: skip
        else:
            summary = "; ".join(f"{a.target}: {a.error_type} ({a.error})" for a in info.attempts)
            error = AllTargetsFailed(
                f"all {len(errors)} attempt(s) failed: {summary}",
                attempts=info.attempts,
                errors=errors,
            )
        error.__cause__ = last
        return error

    # -------------------------------------------------------------- chat

    async def chat(
        self, request: ChatRequest, options: RequestOptions, extra: ExtraRequest
    ) -> ChatCompletion:
        """A non-streamed chat completion."""
        clock = self._clock
        started = clock.monotonic()
        info = RouteInfo(request_id=new_request_id())

        async def attempt(target: Target, record: AttemptInfo) -> ChatCompletion:
            adapter = target.provider.adapter
            http = adapter.chat_request(request, target.model, stream=False, extra=extra)
            response = await target.provider.transport.send(http, target.provider.timeouts)
            body = await self._body(response, target, record)
            return adapter.parse_chat(body, target.model)

        completion = await self._run(request.model, options, info, attempt)
        info.latency_s = clock.monotonic() - started
        usage = completion.usage.normalised() if completion.usage is not None else None
        info.usage = usage
        self._price(info, usage, completion.service_tier or request.service_tier)
        completion._llmroute = info
        return completion

    async def _body(self, response: HttpResponse, target: Target, record: AttemptInfo) -> bytes:
        adapter = target.provider.adapter
        record.status = response.status
        try:
            state = adapter.rate_limit_state(response.headers)
            if state is not None:
                target.rate_limit = state
            body = await response.read()
        finally:
            await response.aclose()
        if response.status >= 300:
            raise adapter.map_error(response.status, response.headers, body)
        return body

    def _price(self, info: RouteInfo, usage: TokenUsage | None, tier: str | None) -> None:
        provider = self._catalog.provider_for(info.provider)
        prices_id = provider.adapter.prices_id if provider else None
        info.set_cost(self._prices.pricer(prices_id, info.model or "", usage, service_tier=tier))

    # -------------------------------------------------------------- streams

    async def chat_stream(
        self, request: ChatRequest, options: RequestOptions, extra: ExtraRequest
    ) -> AsyncChatStream:
        """A streamed chat completion, returned once its first content has arrived."""
        clock = self._clock
        started = clock.monotonic()
        info = RouteInfo(request_id=new_request_id(), stream=True)

        async def attempt(target: Target, record: AttemptInfo) -> OpenedStream:
            adapter = target.provider.adapter
            http = adapter.chat_request(request, target.model, stream=True, extra=extra)
            response = await target.provider.transport.send(http, target.provider.timeouts)
            if response.status >= 300:
                await self._body(response, target, record)  # raises the mapped error
            record.status = response.status
            try:
                state = adapter.rate_limit_state(response.headers)
                if state is not None:
                    target.rate_limit = state
                decoder = adapter.stream_decoder(request, target.model)
                return await self._first_content(response, decoder, target)
            except BaseException:
                await response.aclose()
                raise

        opened = await self._run(request.model, options, info, attempt)
        info.ttft_s = clock.monotonic() - started
        provider = self._catalog.provider_for(info.provider)

        def on_end(stream: AsyncChatStream, error: BaseException | None) -> None:
            info.latency_s = clock.monotonic() - started
            reported = stream._decoder.usage
            if reported is not None:
                usage = reported.normalised()
            else:
                usage = TokenUsage(
                    input=estimate_request_tokens(request),
                    output=estimate_text_tokens(stream.text),
                    estimated=True,
                )
            info.usage = usage
            if error is not None or not stream.completed:
                info.attempts[-1].outcome = "error" if error is not None else "cancelled"
                if error is not None:
                    info.attempts[-1].error_type = type(error).__name__
                    info.attempts[-1].error = str(error)
            tier = request.service_tier
            prices_id = provider.adapter.prices_id if provider else None
            info.set_cost(
                self._prices.pricer(prices_id, info.model or "", usage, service_tier=tier)
            )

        hide = not request.wants_usage_chunk
        return AsyncChatStream(opened, info, hide_usage_chunk=hide, on_end=on_end)

    async def _first_content(
        self, response: HttpResponse, decoder: StreamDecoder, target: Target
    ) -> OpenedStream:
        lines = response.aiter_lines()
        pending: deque[ChatCompletionChunk] = deque()
        async for line in lines:
            chunks = decoder.feed(line)
            if chunks:
                pending.extend(chunks)
                if any(_has_content(c) for c in chunks):
                    return OpenedStream(response, lines, decoder, pending)
            if decoder.done:
                break
        pending.extend(decoder.finish())
        if any(_has_content(c) for c in pending):
            return OpenedStream(response, _empty_lines(), decoder, pending)
        raise ProviderUnavailable(
            "the stream ended before its first content",
            provider=target.provider.name, model=target.model, status=response.status,
        )  # fmt: skip

    # -------------------------------------------------------------- embeddings

    async def embeddings(
        self, request: EmbeddingsRequest, options: RequestOptions, extra: ExtraRequest
    ) -> CreateEmbeddingResponse:
        """An embeddings request."""
        clock = self._clock
        started = clock.monotonic()
        info = RouteInfo(request_id=new_request_id())

        async def attempt(target: Target, record: AttemptInfo) -> CreateEmbeddingResponse:
            adapter = target.provider.adapter
            http = adapter.embeddings_request(request, target.model, extra=extra)
            response = await target.provider.transport.send(http, target.provider.timeouts)
            body = await self._body(response, target, record)
            return adapter.parse_embeddings(body, target.model)

        result = await self._run(request.model, options, info, attempt)
        info.latency_s = clock.monotonic() - started
        usage = result.usage
        tokens = TokenUsage(input=usage.prompt_tokens) if usage is not None else None
        info.usage = tokens
        self._price(info, tokens, None)
        result._llmroute = info
        return result


async def _empty_lines() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator

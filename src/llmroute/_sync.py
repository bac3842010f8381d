"""`Router`: the blocking facade. It drives an `AsyncRouter` on llmroute's event-loop thread.

No routing logic lives here: every call is forwarded through an anyio blocking
portal, so `Router` works from plain scripts, from many threads at once, and
from code that already runs an event loop in another thread. The loop thread is
one for all the routers of the process (`llmroute._loop` says why).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, overload

from typing_extensions import Unpack

from ._config import Config
from ._config_load import load_file
from ._loop import BlockingStream, RouterPortal
from ._params import ChatCreateParams, ChatParseParams, ClientOnlyParams, EmbeddingsCreateParams
from ._responses import RawResponse, ResponseContext
from ._router import AsyncRouter, RouterOptions
from ._stream_helper import ChatCompletionStreamManager
from ._structured import ParsedChatCompletion, stream_params
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    Model,
    ModelList,
)
from ._views import ProviderView, RouteView
from .observe.hooks import HookEvent
from .observe.record import RequestRecord
from .observe.recorder import Redactor
from .observe.sinks import Sink
from .observe.status import RecorderStatus
from .pipeline.stage import Stage
from .pipeline.stream import AsyncChatStream
from .responses.blocking import Responses
from .routing.health import TargetHealth
from .routing.stats import TargetStats

if TYPE_CHECKING:
    import anthropic
    import httpx2
    import openai

    from .cache.stage import CacheStats
    from .experiments.report import ExperimentReport
    from .experiments.shadow import ShadowStatus
    from .limits.budget import BudgetStatus
    from .limits.stats import LimitStats
    from .observe.analytics import StatsReport
    from .observe.feedback import Feedback
    from .stores.shared_state import SharedStateStatus

__all__ = ["ChatStream", "Router"]

_CHAT_PATH = "/v1/chat/completions"
_EMBEDDINGS_PATH = "/v1/embeddings"
_MODELS_PATH = "/v1/models"


class ChatStream(BlockingStream[AsyncChatStream, ChatCompletionChunk]):
    """An iterator of `ChatCompletionChunk`, like the OpenAI SDK's ``Stream``.

    Close it early with `close()` or a ``with`` block to release the connection.
    """

    @property
    def text(self) -> str:
        """The assistant text delivered so far (first choice)."""
        return self._stream.text


class Completions:
    """``router.chat.completions``."""

    def __init__(self, router: AsyncRouter, portal: RouterPortal) -> None:
        self._router = router
        self._portal = portal
        self.with_raw_response = CompletionsWithRawResponse(self)
        self.with_streaming_response = CompletionsWithStreamingResponse(self)

    @overload
    def create(
        self, *, stream: Literal[True], **params: Unpack[ChatCreateParams]
    ) -> ChatStream: ...

    @overload
    def create(
        self, *, stream: Literal[False] | None = None, **params: Unpack[ChatCreateParams]
    ) -> ChatCompletion: ...

    @overload
    def create(
        self, *, stream: bool, **params: Unpack[ChatCreateParams]
    ) -> ChatCompletion | ChatStream: ...

    def create(self, *, stream: bool | None = None, **params: Any) -> ChatCompletion | ChatStream:
        """Create a chat completion, as ``openai.OpenAI().chat.completions.create``."""

        async def run() -> ChatCompletion | AsyncChatStream:
            return await self._router.chat.completions.create(stream=stream, **params)

        result = self._portal.call(run)
        if isinstance(result, AsyncChatStream):
            return ChatStream(result, self._portal)
        return result

    def parse(self, **params: Unpack[ChatParseParams]) -> ParsedChatCompletion[Any]:
        """A chat completion parsed into `response_format` (see `AsyncCompletions.parse`)."""

        async def run() -> ParsedChatCompletion[Any]:
            return await self._router.chat.completions.parse(**params)

        return self._portal.call(run)

    def stream(self, **params: Unpack[ChatParseParams]) -> ChatCompletionStreamManager:
        """``with router.chat.completions.stream(...) as stream``: a streamed completion read
        as events (see `AsyncCompletions.stream`)."""
        api, parsing = stream_params(params)
        return ChatCompletionStreamManager(lambda: self.create(stream=True, **api), parsing)


class CompletionsWithRawResponse:
    """``router.chat.completions.with_raw_response`` (see `RawResponse`)."""

    def __init__(self, completions: Completions) -> None:
        self._completions = completions

    def create(self, **params: Any) -> RawResponse[ChatCompletion | ChatStream]:
        """`Completions.create`, with the response's headers."""
        result = self._completions.create(**params)
        stream = isinstance(result, ChatStream)
        return RawResponse(result, method="POST", path=_CHAT_PATH, stream=stream)

    def parse(self, **params: Unpack[ChatParseParams]) -> RawResponse[ParsedChatCompletion[Any]]:
        """`Completions.parse`, with the response's headers."""
        result = self._completions.parse(**params)
        return RawResponse(result, method="POST", path=_CHAT_PATH)


class CompletionsWithStreamingResponse:
    """``router.chat.completions.with_streaming_response``: context managers."""

    def __init__(self, completions: Completions) -> None:
        self._completions = completions

    def create(self, **params: Any) -> ResponseContext[ChatCompletion | ChatStream]:
        """`Completions.create` as a context manager."""
        return ResponseContext(
            lambda: self._completions.create(**params), method="POST", path=_CHAT_PATH
        )

    def parse(
        self, **params: Unpack[ChatParseParams]
    ) -> ResponseContext[ParsedChatCompletion[Any]]:
        """`Completions.parse` as a context manager."""
        return ResponseContext(
            lambda: self._completions.parse(**params), method="POST", path=_CHAT_PATH
        )


class Chat:
    """``router.chat``."""

    def __init__(self, router: AsyncRouter, portal: RouterPortal) -> None:
        self.completions = Completions(router, portal)


class Embeddings:
    """``router.embeddings``."""

    def __init__(self, router: AsyncRouter, portal: RouterPortal) -> None:
        self._router = router
        self._portal = portal
        self.with_raw_response = EmbeddingsWithRawResponse(self)
        self.with_streaming_response = EmbeddingsWithStreamingResponse(self)

    def create(self, **params: Unpack[EmbeddingsCreateParams]) -> CreateEmbeddingResponse:
        """Create embeddings, as ``openai.OpenAI().embeddings.create``."""

        async def run() -> CreateEmbeddingResponse:
            return await self._router.embeddings.create(**params)

        return self._portal.call(run)


class EmbeddingsWithRawResponse:
    """``router.embeddings.with_raw_response``."""

    def __init__(self, embeddings: Embeddings) -> None:
        self._embeddings = embeddings

    def create(
        self, **params: Unpack[EmbeddingsCreateParams]
    ) -> RawResponse[CreateEmbeddingResponse]:
        """`Embeddings.create`, with the response's headers."""
        result = self._embeddings.create(**params)
        return RawResponse(result, method="POST", path=_EMBEDDINGS_PATH)


class EmbeddingsWithStreamingResponse:
    """``router.embeddings.with_streaming_response``."""

    def __init__(self, embeddings: Embeddings) -> None:
        self._embeddings = embeddings

    def create(
        self, **params: Unpack[EmbeddingsCreateParams]
    ) -> ResponseContext[CreateEmbeddingResponse]:
        """`Embeddings.create` as a context manager."""
        return ResponseContext(
            lambda: self._embeddings.create(**params), method="POST", path=_EMBEDDINGS_PATH
        )


class Models:
    """``router.models`` (client-side keyword arguments accepted and ignored)."""

    def __init__(self, router: AsyncRouter, portal: RouterPortal) -> None:
        self._router = router
        self._portal = portal
        self.with_raw_response = ModelsWithRawResponse(self)
        self.with_streaming_response = ModelsWithStreamingResponse(self)

    def list(self, **client: Unpack[ClientOnlyParams]) -> ModelList:
        """The routes and their targets, as ``openai.OpenAI().models.list()`` lists models."""
        return self._portal.call(self._router.models.list)

    def retrieve(self, model: str, **client: Unpack[ClientOnlyParams]) -> Model:
        """One model, as ``openai.OpenAI().models.retrieve(model)`` (see
        `AsyncModels.retrieve`)."""
        return self._portal.call(self._router.models.retrieve, model)


class ModelsWithRawResponse:
    """``router.models.with_raw_response``."""

    def __init__(self, models: Models) -> None:
        self._models = models

    def list(self, **client: Unpack[ClientOnlyParams]) -> RawResponse[ModelList]:
        """`Models.list`, with the response's headers."""
        return RawResponse(self._models.list(), method="GET", path=_MODELS_PATH)

    def retrieve(self, model: str, **client: Unpack[ClientOnlyParams]) -> RawResponse[Model]:
        """`Models.retrieve`, with the response's headers."""
        result = self._models.retrieve(model)
        return RawResponse(result, method="GET", path=f"{_MODELS_PATH}/{model}")


class ModelsWithStreamingResponse:
    """``router.models.with_streaming_response``."""

    def __init__(self, models: Models) -> None:
        self._models = models

    def list(self, **client: Unpack[ClientOnlyParams]) -> ResponseContext[ModelList]:
        """`Models.list` as a context manager."""
        return ResponseContext(self._models.list, method="GET", path=_MODELS_PATH)

    def retrieve(self, model: str, **client: Unpack[ClientOnlyParams]) -> ResponseContext[Model]:
        """`Models.retrieve` as a context manager."""
        return ResponseContext(
            lambda: self._models.retrieve(model), method="GET", path=f"{_MODELS_PATH}/{model}"
        )


class Router:
    """An in-process LLM gateway with the ``openai.OpenAI`` client surface (blocking).

    Takes the same arguments as `AsyncRouter`, which it drives on llmroute's
    event-loop thread (one for the process, started on first use). Like
    ``openai.OpenAI()``, it need not be closed: dropped, or still open at exit,
    it releases its connections by itself; `close()` (or a ``with`` block)
    releases them at a time of your choosing.
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any] | None = None,
        **options: Unpack[RouterOptions],
    ) -> None:
        self._async = AsyncRouter(config, **options)
        # closes the AsyncRouter when nothing holds the portal any more (this router, its
        # streams and its SDK clients do), or at exit
        self._portal = RouterPortal(self._async.aclose)
        self.config = self._async.config
        self.chat = Chat(self._async, self._portal)
        self.embeddings = Embeddings(self._async, self._portal)
        self.models = Models(self._async, self._portal)
        self.responses = Responses(self._async.responses, self._portal)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Unpack[RouterOptions]) -> Self:
        """A router from a YAML, TOML or JSON config file (options as for `AsyncRouter`)."""
        return cls(load_file(path, env=options.get("env")), **options)

    @property
    def async_router(self) -> AsyncRouter:
        """The `AsyncRouter` this facade drives."""
        return self._async

    def routes(self) -> dict[str, RouteView]:
        """Every configured route, as read-only views (see `AsyncRouter.routes`)."""
        return self._portal.run(self._async.routes)

    def providers(self) -> dict[str, ProviderView]:
        """Every known provider, as read-only views (see `AsyncRouter.providers`)."""
        return self._portal.run(self._async.providers)

    def add_stage(self, stage: Stage, *, before: str | None = None) -> None:
        """Run `stage` around every request (see `AsyncRouter.add_stage`); its hooks run on
        the router's event-loop thread."""
        self._portal.run(lambda: self._async.add_stage(stage, before=before))

    def cool_down(self, target: str, seconds: float, reason: str = "cooled down by hand") -> None:
        """Send `target` no traffic for `seconds` (see `AsyncRouter.cool_down`)."""
        self._portal.run(self._async.cool_down, target, seconds, reason)

    def health(self) -> dict[str, TargetHealth]:
        """Each known target's health (see `AsyncRouter.health`)."""
        return self._portal.run(self._async.health)

    def shared_state(self) -> SharedStateStatus | None:
        """How the health shared through Redis is doing (see `AsyncRouter.shared_state`)."""
        return self._portal.call(self._async.shared_state)

    def stats(self) -> dict[str, TargetStats]:
        """Each known target's live statistics (see `AsyncRouter.stats`)."""
        return self._portal.run(self._async.stats)

    def add_hook(self, event: HookEvent, hook: Callable[..., object]) -> None:
        """Call `hook` on each request's start, attempt ends or end (see `AsyncRouter.add_hook`).

        Hooks run on the router's event-loop thread.
        """
        self._portal.run(self._async.add_hook, event, hook)

    def set_redactor(self, redactor: Redactor | None) -> None:
        """Pass every record through `redactor` before anything stores, traces or hooks it."""
        self._portal.run(self._async.set_redactor, redactor)

    def add_sink(self, sink: Sink | str | Callable[[Sequence[RequestRecord]], object]) -> None:
        """Also write every record to `sink`: a `Sink`, a URL, or a function taking a batch."""
        self._portal.run(self._async.add_sink, sink)

    def use_telemetry(
        self, tracer_provider: Any = None, meter_provider: Any = None, *, enabled: bool = True
    ) -> None:
        """Send spans and metrics to these OpenTelemetry providers (default: the global ones)."""
        self._portal.run(
            lambda: self._async.use_telemetry(tracer_provider, meter_provider, enabled=enabled)
        )

    @property
    def recording(self) -> RecorderStatus:
        """The recorder's counters: queued, recorded, dropped, failed."""
        return self._portal.run(lambda: self._async.recording)

    def flush(self) -> None:
        """Write every record queued so far to the sinks."""
        if self._portal.started and not self._portal.closed:
            self._portal.call(self._async.flush)

    def analytics(
        self,
        *,
        by: str | Sequence[str] = (),
        since: float | datetime | str | None = None,
        until: float | datetime | str | None = None,
        where: Sequence[str] = (),
        route: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        user: str | None = None,
        key: str | None = None,
        team: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> StatsReport:
        """Figures from the log store, after flushing (see `AsyncRouter.analytics`)."""

        async def run() -> StatsReport:
            return await self._async.analytics(
                by=by,
                since=since,
                until=until,
                where=where,
                route=route,
                provider=provider,
                model=model,
                user=user,
                key=key,
                team=team,
                properties=properties,
            )

        return self._portal.call(run)

    def feedback(
        self, request_id: str, name: str, value: bool | float, *,
        comment: str | None = None, key: str | None = None,
    ) -> Feedback:  # fmt: skip
        """Store feedback on a request in the log store (see `AsyncRouter.feedback`)."""

        async def run() -> Feedback:
            return await self._async.feedback(request_id, name, value, comment=comment, key=key)

        return self._portal.call(run)

    def sticky_feedback(
        self, experiment: str, sticky_key: str, name: str, value: bool | float, *,
        comment: str | None = None, key: str | None = None,
    ) -> Feedback:  # fmt: skip
        """Store feedback on everything a sticky key did in an experiment (see
        `AsyncRouter.sticky_feedback`)."""

        async def run() -> Feedback:
            return await self._async.sticky_feedback(
                experiment, sticky_key, name, value, comment=comment, key=key
            )

        return self._portal.call(run)

    def experiment_report(
        self, name: str, *, since: float | datetime | str | None = None,
        until: float | datetime | str | None = None, include_off_variant: bool = False,
    ) -> ExperimentReport:  # fmt: skip
        """An experiment's report from the log store, after flushing (see
        `AsyncRouter.experiment_report`)."""

        async def run() -> ExperimentReport:
            return await self._async.experiment_report(
                name, since=since, until=until, include_off_variant=include_off_variant
            )

        return self._portal.call(run)

    def budgets(self) -> list[BudgetStatus]:
        """Every budget's spend and remaining dollars per subject (see `AsyncRouter.budgets`)."""
        return self._portal.call(self._async.budgets)

    def cache_stats(self) -> CacheStats | None:
        """The cache's hits, misses, bypasses, stores and savings; None without a cache."""
        return self._portal.run(self._async.cache_stats)

    def limit_stats(self) -> LimitStats:
        """The rate-limit and budget counters (see `AsyncRouter.limit_stats`)."""
        return self._portal.run(self._async.limit_stats)

    def shadow_status(self) -> dict[str, ShadowStatus]:
        """Each experiment's shadow copies' counters (see `AsyncRouter.shadow_status`)."""
        return self._portal.run(self._async.shadow_status)

    def drain(self) -> None:
        """Wait for the cache's and limits' writes off the request path (see `AsyncRouter.drain`)."""
        if self._portal.started and not self._portal.closed:
            self._portal.call(self._async.drain)

    @property
    def stage_failures(self) -> int:
        """How many times a stage's `after()` or `ended()` raised (see
        `AsyncRouter.stage_failures`)."""
        return self._portal.run(lambda: self._async.stage_failures)

    def count_tokens(self, **params: Unpack[ChatCreateParams]) -> int:
        """How many input tokens a chat request is, counted by a provider that counts them
        (see `AsyncRouter.count_tokens`)."""

        async def run() -> int:
            return await self._async.count_tokens(**params)

        return self._portal.call(run)

    def http_client(self, **options: Any) -> httpx2.Client:
        """An ``httpx2.Client`` served by this router in process, on its event-loop thread
        (docs/sdk-clients.md)."""
        from .sdk import clients

        return clients.http_client(self._async.gateway, self._portal.call, **options)

    def openai_client(self, **options: Any) -> openai.OpenAI:
        """A genuine ``openai.OpenAI`` served by this router in process; `options` as for it,
        but ``base_url`` and ``http_client`` (see docs/sdk-clients.md)."""
        from .sdk import clients

        return clients.openai_client(self._async.gateway, self._portal.call, **options)

    def anthropic_client(self, **options: Any) -> anthropic.Anthropic:
        """A genuine ``anthropic.Anthropic`` served by this router in process."""
        from .sdk import clients

        return clients.anthropic_client(self._async.gateway, self._portal.call, **options)

    def close(self) -> None:
        """Close the connection pools, the in-process gateway and the sinks. Safe to call more
        than once; requests after it raise `RuntimeError`."""
        self._portal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""`AsyncRouter`: the OpenAI-shaped client surface, wired to the request pipeline."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self, overload

from typing_extensions import Unpack

from ._catalog import Catalog
from ._clock import Clock, SystemClock
from ._config import Config
from ._config_load import load_config, load_file
from ._cost import PriceBook
from ._driver import AttemptDriver
from ._errors import RequestError
from ._execute import Executor
from ._params import ChatCreateParams, ClientParams, EmbeddingsCreateParams, split_client_params
from ._pipeline import Stage
from ._request import (
    RequestOptions,
    validate_chat_request,
    validate_embeddings_request,
    validate_options,
)
from ._stream import AsyncChatStream
from ._types import ChatCompletion, CreateEmbeddingResponse, Model, ModelList
from .providers import ExtraRequest
from .routing.health import HealthTracker, TargetHealth
from .routing.stats import LiveStats, TargetStats

__all__ = ["AsyncRouter"]

_NO_EXTRA = ExtraRequest()


def _request_options(client: ClientParams) -> tuple[RequestOptions, ExtraRequest]:
    options = validate_options(client.options)  # type: ignore[arg-type]
    timeout = client.timeout
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise RequestError(
                f"timeout must be a positive number of seconds, got {timeout!r}", param="timeout"
            )
        options = options.model_copy(update={"timeout": float(timeout)})
    if client.extra_headers is None and client.extra_query is None:
        return options, _NO_EXTRA
    return options, ExtraRequest(headers=client.extra_headers, query=client.extra_query)


class AsyncCompletions:
    """``router.chat.completions``."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    @overload
    async def create(
        self, *, stream: Literal[True], **params: Unpack[ChatCreateParams]
    ) -> AsyncChatStream: ...

    @overload
    async def create(
        self, *, stream: Literal[False] | None = None, **params: Unpack[ChatCreateParams]
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self, *, stream: bool, **params: Unpack[ChatCreateParams]
    ) -> ChatCompletion | AsyncChatStream: ...

    async def create(
        self, *, stream: bool | None = None, **params: Any
    ) -> ChatCompletion | AsyncChatStream:
        """Create a chat completion, as ``openai.AsyncOpenAI().chat.completions.create``.

        With ``stream=True`` returns an `AsyncChatStream` once the first content
        has arrived (so failures before it fail over transparently).
        ``llmroute=`` takes the per-request `RequestOptions`.
        """
        api, client = split_client_params(params)
        if stream is not None:
            api["stream"] = stream
        request = validate_chat_request(api)
        options, extra = _request_options(client)
        if stream:
            return await self._executor.chat_stream(request, options, extra)
        return await self._executor.chat(request, options, extra)


class AsyncChat:
    """``router.chat``."""

    def __init__(self, executor: Executor) -> None:
        self.completions = AsyncCompletions(executor)


class AsyncEmbeddings:
    """``router.embeddings``."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def create(self, **params: Unpack[EmbeddingsCreateParams]) -> CreateEmbeddingResponse:
        """Create embeddings, as ``openai.AsyncOpenAI().embeddings.create``."""
        api, client = split_client_params(dict(params))
        request = validate_embeddings_request(api)
        options, extra = _request_options(client)
        return await self._executor.embeddings(request, options, extra)


class AsyncModels:
    """``router.models``."""

    def __init__(self, catalog: Catalog, created: int) -> None:
        self._catalog = catalog
        self._created = created

    async def list(self) -> ModelList:
        """The routes and their targets, as ``openai.AsyncOpenAI().models.list()`` lists models.

        Any ``provider/model`` of a configured provider is accepted too.
        """
        return model_list(self._catalog, self._created)


def model_list(catalog: Catalog, created: int) -> ModelList:
    """The `ModelList` of a catalog."""
    return ModelList(
        data=[Model(id=i, created=created, owned_by=owner) for i, owner in catalog.model_ids()]
    )


class AsyncRouter:
    """An in-process LLM gateway with the ``openai.AsyncOpenAI`` client surface.

    Build it from a `Config`, a dict of the same shape, or nothing (providers
    are then found from the standard environment variables, such as
    ``OPENAI_API_KEY``); `from_file` reads YAML, TOML or JSON.

    Args:
        config: the configuration.
        transports: per provider name, an ``httpx.AsyncClient`` /
            ``httpx2.AsyncClient`` (proxies, mTLS, respx) or an llmroute
            `Transport` to use instead of the default engine.
        clock: the time source (tests inject one).
        seed: seeds the router's random choices (backoff jitter).
        env: the environment to read ``${VAR}`` and API keys from (default
            ``os.environ``).
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any] | None = None,
        *,
        transports: Mapping[str, object] | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self.config = load_config(config if config is not None else {}, env=environ)
        self._clock = clock or SystemClock()
        self._catalog = Catalog(self.config, clock=self._clock, transports=transports, env=environ)
        self._health = HealthTracker(self.config.health)
        self._stats = LiveStats()
        driver = AttemptDriver(self._clock, random.Random(seed), self._health, self._stats)
        self._stages: list[Stage] = []
        executor = Executor(self._catalog, self._clock, PriceBook(), driver, self._stages)
        self.chat = AsyncChat(executor)
        self.embeddings = AsyncEmbeddings(executor)
        self.models = AsyncModels(self._catalog, int(self._clock.time()))
        self._closed = False

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        transports: Mapping[str, object] | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Self:
        """A router from a YAML, TOML or JSON config file."""
        config = load_file(path, env=env)
        return cls(config, transports=transports, clock=clock, seed=seed, env=env)

    def health(self) -> dict[str, TargetHealth]:
        """Each known target's health: circuit state, error ratio, cooldown end, last error."""
        now = self._clock.monotonic()
        return {t.key: self._health.snapshot(t.key, now) for t in self._catalog.targets()}

    def stats(self) -> dict[str, TargetStats]:
        """Each known target's live statistics: in flight, recent latency percentiles."""
        return {t.key: self._stats.snapshot(t.key) for t in self._catalog.targets()}

    async def aclose(self) -> None:
        """Close every provider connection pool. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            for stage in self._stages:
                await stage.aclose()
            await self._catalog.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

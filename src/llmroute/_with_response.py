"""The async resources' ``with_raw_response`` and ``with_streaming_response`` (see `RawResponse`).

``router.chat.completions.with_raw_response.create(...)`` returns what
``create`` does, wrapped in a `RawResponse`; ``with_streaming_response`` gives
the same as a context manager. The blocking `Router`'s twins are in `llmroute._sync`.
"""

from __future__ import annotations

from typing import Any, Protocol

from typing_extensions import Unpack

from ._params import ChatCreateParams, ChatParseParams, ClientOnlyParams, EmbeddingsCreateParams
from ._responses import AsyncResponseContext, RawResponse
from ._structured import ParsedChatCompletion
from ._types import ChatCompletion, CreateEmbeddingResponse, Model, ModelList
from .pipeline.stream import AsyncChatStream

__all__ = [
    "AsyncCompletionsWithRawResponse", "AsyncCompletionsWithStreamingResponse",
    "AsyncEmbeddingsWithRawResponse", "AsyncEmbeddingsWithStreamingResponse",
    "AsyncModelsWithRawResponse", "AsyncModelsWithStreamingResponse",
]  # fmt: skip

_CHAT_PATH = "/v1/chat/completions"
_EMBEDDINGS_PATH = "/v1/embeddings"
_MODELS_PATH = "/v1/models"


class _Completions(Protocol):
    async def create(
        self, *, stream: bool, **params: Unpack[ChatCreateParams]
    ) -> ChatCompletion | AsyncChatStream: ...
    async def parse(self, **params: Unpack[ChatParseParams]) -> ParsedChatCompletion[Any]: ...


class _Embeddings(Protocol):
    async def create(self, **params: Unpack[EmbeddingsCreateParams]) -> CreateEmbeddingResponse: ...


class _Models(Protocol):
    async def list(self, **client: Unpack[ClientOnlyParams]) -> ModelList: ...
    async def retrieve(self, model: str, **client: Unpack[ClientOnlyParams]) -> Model: ...


class AsyncCompletionsWithRawResponse:
    """``router.chat.completions.with_raw_response``: the same methods, returning a
    `RawResponse` (headers, request id; `parse()` gives the result)."""

    def __init__(self, completions: _Completions) -> None:
        self._completions = completions

    async def create(self, **params: Any) -> RawResponse[ChatCompletion | AsyncChatStream]:
        """`AsyncCompletions.create`, with the response's headers."""
        result = await self._completions.create(**params)
        stream = not isinstance(result, ChatCompletion)
        return RawResponse(result, method="POST", path=_CHAT_PATH, stream=stream)

    async def parse(
        self, **params: Unpack[ChatParseParams]
    ) -> RawResponse[ParsedChatCompletion[Any]]:
        """`AsyncCompletions.parse`, with the response's headers."""
        result = await self._completions.parse(**params)
        return RawResponse(result, method="POST", path=_CHAT_PATH)


class AsyncCompletionsWithStreamingResponse:
    """``router.chat.completions.with_streaming_response``: the same methods as context
    managers (``async with ... as response``), a stream closed on leaving the block."""

    def __init__(self, completions: _Completions) -> None:
        self._completions = completions

    def create(self, **params: Any) -> AsyncResponseContext[ChatCompletion | AsyncChatStream]:
        """`AsyncCompletions.create` as a context manager."""
        return AsyncResponseContext(
            lambda: self._completions.create(**params), method="POST", path=_CHAT_PATH
        )

    def parse(
        self, **params: Unpack[ChatParseParams]
    ) -> AsyncResponseContext[ParsedChatCompletion[Any]]:
        """`AsyncCompletions.parse` as a context manager."""
        return AsyncResponseContext(
            lambda: self._completions.parse(**params), method="POST", path=_CHAT_PATH
        )


class AsyncEmbeddingsWithRawResponse:
    """``router.embeddings.with_raw_response``."""

    def __init__(self, embeddings: _Embeddings) -> None:
        self._embeddings = embeddings

    async def create(
        self, **params: Unpack[EmbeddingsCreateParams]
    ) -> RawResponse[CreateEmbeddingResponse]:
        """`AsyncEmbeddings.create`, with the response's headers."""
        result = await self._embeddings.create(**params)
        return RawResponse(result, method="POST", path=_EMBEDDINGS_PATH)


class AsyncEmbeddingsWithStreamingResponse:
    """``router.embeddings.with_streaming_response``."""

    def __init__(self, embeddings: _Embeddings) -> None:
        self._embeddings = embeddings

    def create(
        self, **params: Unpack[EmbeddingsCreateParams]
    ) -> AsyncResponseContext[CreateEmbeddingResponse]:
        """`AsyncEmbeddings.create` as a context manager."""
        return AsyncResponseContext(
            lambda: self._embeddings.create(**params), method="POST", path=_EMBEDDINGS_PATH
        )


class AsyncModelsWithRawResponse:
    """``router.models.with_raw_response``."""

    def __init__(self, models: _Models) -> None:
        self._models = models

    async def list(self, **client: Unpack[ClientOnlyParams]) -> RawResponse[ModelList]:
        """`AsyncModels.list`, with the response's headers."""
        return RawResponse(await self._models.list(), method="GET", path=_MODELS_PATH)

    async def retrieve(self, model: str, **client: Unpack[ClientOnlyParams]) -> RawResponse[Model]:
        """`AsyncModels.retrieve`, with the response's headers."""
        result = await self._models.retrieve(model)
        return RawResponse(result, method="GET", path=f"{_MODELS_PATH}/{model}")


class AsyncModelsWithStreamingResponse:
    """``router.models.with_streaming_response``."""

    def __init__(self, models: _Models) -> None:
        self._models = models

    def list(self, **client: Unpack[ClientOnlyParams]) -> AsyncResponseContext[ModelList]:
        """`AsyncModels.list` as a context manager."""
        return AsyncResponseContext(self._models.list, method="GET", path=_MODELS_PATH)

    def retrieve(
        self, model: str, **client: Unpack[ClientOnlyParams]
    ) -> AsyncResponseContext[Model]:
        """`AsyncModels.retrieve` as a context manager."""
        return AsyncResponseContext(
            lambda: self._models.retrieve(model), method="GET", path=f"{_MODELS_PATH}/{model}"
        )

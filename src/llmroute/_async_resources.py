"""The async client resources of `AsyncRouter`: ``router.chat.completions``,
``router.embeddings`` and ``router.models``, shaped as the openai SDK's (the Responses
API's are in `llmroute.responses.resource`)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Literal, overload

from typing_extensions import Unpack

from ._client_options import NO_EXTRA, RouterState, request_options
from ._loop import RouterClosed
from ._params import (
    ChatCreateParams,
    ChatParseParams,
    ClientOnlyParams,
    EmbeddingsCreateParams,
    is_sentinel,
    split_client_params,
)
from ._request import (
    DEFAULT_OPTIONS,
    ChatRequest,
    RequestOptions,
    plain_chat_request,
    validate_chat_request,
    validate_embeddings_request,
)
from ._stream_helper import AsyncChatCompletionStreamManager
from ._structured import ParsedChatCompletion, parse_completion, stream_params
from ._types import ChatCompletion, CreateEmbeddingResponse, Model, ModelList
from ._wire_completion import WireCompletion
from ._with_response import (
    AsyncCompletionsWithRawResponse,
    AsyncCompletionsWithStreamingResponse,
    AsyncEmbeddingsWithRawResponse,
    AsyncEmbeddingsWithStreamingResponse,
    AsyncModelsWithRawResponse,
    AsyncModelsWithStreamingResponse,
)
from .pipeline.executor import RequestPipeline
from .pipeline.stream import AsyncChatStream
from .routing.catalog import Catalog

__all__ = ["AsyncChat", "AsyncCompletions", "AsyncEmbeddings", "AsyncModels", "model_info",
           "model_list"]  # fmt: skip


def _body_params(body: dict[str, Any]) -> dict[str, Any]:
    """A JSON body's chat parameters, a null `model` or `messages` counting as not given
    (as a None argument to ``create()`` does)."""
    for name in ("model", "messages"):
        if name in body and body[name] is None:
            del body[name]
    return body


def _body_request(body: dict[str, Any]) -> ChatRequest:
    """A JSON body's chat request (`_body_params`, validated)."""
    return validate_chat_request(_body_params(body))


class AsyncCompletions:
    """``router.chat.completions``."""

    def __init__(self, executor: RequestPipeline, state: RouterState) -> None:
        self._executor = executor
        self._state = state
        self.with_raw_response = AsyncCompletionsWithRawResponse(self)
        self.with_streaming_response = AsyncCompletionsWithStreamingResponse(self)

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
        if self._state.closed:
            raise RouterClosed()
        if len(params) == 2 and (stream is None or type(stream) is bool):
            # A model and messages only: no client argument to split. Fast path: llmroute's
            # own work per chat request 249.6k -> 244.7k instructions (callgrind,
            # count_instructions.py --kinds own, 2026-12-03). Oracle: tests/test_fast_paths_requests.py
            # (``test_a_plain_call_reaches_the_pipeline_as_the_general_path_sends_it``).
            if stream is not None:
                params["stream"] = stream  # where the general path below puts it too
            if stream:
                plain = plain_chat_request(params)
                if plain is not None:
                    return await self._executor.chat_stream(plain, DEFAULT_OPTIONS, NO_EXTRA)
            elif type(params.get("model")) is str and type(params.get("messages")) is list:
                # a string model and a list of messages, nothing else: validated as the
                # general path would (a plain request perhaps kept as its parameters)
                return await self._executor.chat_params(params, DEFAULT_OPTIONS, NO_EXTRA)
        api, client = split_client_params(params)
        if stream is not None:
            if type(stream) is not bool and is_sentinel(stream):  # openai-agents: stream=omit
                stream = None
            else:
                api["stream"] = stream
        request = validate_chat_request(api)
        options, extra = request_options(client)
        if stream:
            return await self._executor.chat_stream(request, options, extra)
        return await self._executor.chat(request, options, extra)

    def create_from_body(
        self, body: dict[str, Any], options: RequestOptions
    ) -> Coroutine[None, None, ChatCompletion]:
        """A non-streamed chat completion of a JSON request body's parameters (`body`, its
        `stream` taken out; it is consumed): what ``create(model=body.pop("model"),
        messages=body.pop("messages"), extra_body=body, llmroute=options)`` does (a null
        `model` or `messages` counts as not given, as a None argument does), without the
        keyword arguments to sort out (the gateway's is `relay_from_body`). The request
        starts when this is called, not when the coroutine is awaited: the body is checked,
        the stages asked (`Stage.watches`) and, with an OpenTelemetry SDK, the sampling
        decided under the caller's trace context of the call.

        Fast path: a gateway chat completion ~14k instructions less (the keyword
        arguments' split alone; callgrind, this branch). Oracle: tests/test_fast_paths_requests.py
        (``test_a_body_reaches_the_pipeline_as_create_sends_it``, hypothesis).
        """
        if self._state.closed:
            raise RouterClosed()
        return self._executor.chat_params(_body_params(body), options, NO_EXTRA)

    def relay_from_body(
        self, body: dict[str, Any], options: RequestOptions
    ) -> Coroutine[None, None, ChatCompletion | WireCompletion]:
        """`create_from_body` (started when called, as it is), answered to be relayed in
        OpenAI's format (the gateway's way in): while the router's stages are idle or only
        watch the request, a plain answer from a provider that
        speaks that format comes as a `WireCompletion`, its own JSON to send as it is
        (with its `llmroute` route info); any other answer as the typed completion.

        Fast path: see `_wire_completion` (the typed model's validation and
        serialisation skipped). Oracle: tests/test_wire_completions.py.
        """
        if self._state.closed:
            raise RouterClosed()
        return self._executor.relay_params(_body_params(body), options, NO_EXTRA)

    def stream_from_body(
        self, body: dict[str, Any], options: RequestOptions
    ) -> Coroutine[None, None, AsyncChatStream]:
        """The streamed twin of `create_from_body`: what ``create(model=body.pop("model"),
        messages=body.pop("messages"), stream=True, extra_body=body, llmroute=options)``
        does (`body` without its `stream`; it is consumed), opened to be relayed: read it
        with `wire_events()` (read typed, its opening's plain chunks are typed then).

        Fast path: the gateway's own work per 1-chunk stream 819.4k -> 806.2k instructions
        (the keyword arguments' split; callgrind, ``count_gateway.py --kinds own-stream
        --chunks 1``, 2026-12-03). Oracle: tests/test_fast_paths_requests.py
        (``test_a_body_reaches_the_pipeline_as_create_sends_it``, hypothesis).
        """
        if self._state.closed:
            raise RouterClosed()
        body["stream"] = True
        return self._executor.chat_stream(_body_request(body), options, NO_EXTRA, wire=True)

    async def parse(self, **params: Unpack[ChatParseParams]) -> ParsedChatCompletion[Any]:
        """A chat completion whose content is parsed into `response_format` (a pydantic
        model or another type), as ``openai.AsyncOpenAI().chat.completions.parse``: the
        type's strict JSON schema is sent, and each message's `parsed` holds the result
        (None when the model refused: see `refusal`). Tool calls of strict function tools
        (``openai.pydantic_function_tool(Model)``) have ``function.parsed_arguments``. An
        answer cut at its token limit or stopped by the content filter raises
        `LengthFinishReasonError` / `ContentFilterFinishReasonError`, as in the SDK."""
        api, parsing = stream_params(params)
        completion = await self.create(**api)
        return parse_completion(completion, parsing)

    def stream(self, **params: Unpack[ChatParseParams]) -> AsyncChatCompletionStreamManager:
        """``async with router.chat.completions.stream(...) as stream``: a streamed chat
        completion read as events (``content.delta``, ``content.done``, ``chunk``...), with
        `get_final_completion()`, as the openai SDK's helper."""
        api, parsing = stream_params(params)

        async def open_stream() -> AsyncChatStream:
            stream: AsyncChatStream = await self.create(stream=True, **api)
            return stream

        return AsyncChatCompletionStreamManager(open_stream, parsing)


class AsyncChat:
    """``router.chat``."""

    def __init__(self, executor: RequestPipeline, state: RouterState) -> None:
        self.completions = AsyncCompletions(executor, state)


class AsyncEmbeddings:
    """``router.embeddings``."""

    def __init__(self, executor: RequestPipeline, state: RouterState) -> None:
        self._executor = executor
        self._state = state
        self.with_raw_response = AsyncEmbeddingsWithRawResponse(self)
        self.with_streaming_response = AsyncEmbeddingsWithStreamingResponse(self)

    async def create(self, **params: Unpack[EmbeddingsCreateParams]) -> CreateEmbeddingResponse:
        """Create embeddings, as ``openai.AsyncOpenAI().embeddings.create``."""
        if self._state.closed:
            raise RouterClosed()
        api, client = split_client_params(dict(params))
        request = validate_embeddings_request(api)
        options, extra = request_options(client)
        return await self._executor.embeddings(request, options, extra)


class AsyncModels:
    """``router.models``. The client-side keyword arguments (``extra_headers``,
    ``timeout``...) are accepted and ignored: listing makes no request."""

    def __init__(self, catalog: Catalog, created: int) -> None:
        self._catalog = catalog
        self._created = created
        self.with_raw_response = AsyncModelsWithRawResponse(self)
        self.with_streaming_response = AsyncModelsWithStreamingResponse(self)

    async def list(self, **client: Unpack[ClientOnlyParams]) -> ModelList:
        """The routes and their targets, as ``openai.AsyncOpenAI().models.list()`` lists models.

        Any ``provider/model`` of a configured provider is accepted too.
        """
        return model_list(self._catalog, self._created)

    async def retrieve(self, model: str, **client: Unpack[ClientOnlyParams]) -> Model:
        """One model, as ``openai.AsyncOpenAI().models.retrieve(model)``: a route, a target,
        or any ``provider/model`` of a known provider; `UnknownModel` (a 404 through the
        gateway) otherwise."""
        return model_info(self._catalog, self._created, model)


def model_list(catalog: Catalog, created: int) -> ModelList:
    """The `ModelList` of a catalog."""
    return ModelList(
        data=[Model(id=i, created=created, owned_by=owner) for i, owner in catalog.model_ids()]
    )


def model_info(catalog: Catalog, created: int, model: str) -> Model:
    """The `Model` a catalog knows as `model` (raises `UnknownModel`)."""
    for name, owner in catalog.model_ids():
        if name == model:
            return Model(id=name, created=created, owned_by=owner)
    route = catalog.resolve(model)  # a provider/model of a known provider
    return Model(id=model, created=created, owned_by=route.targets[0].provider.name)

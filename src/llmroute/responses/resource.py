"""``router.responses``: the OpenAI Responses API on the router's pipeline, with conversation
state kept by llmroute so that ``previous_response_id`` works on every provider.

A request naming a ``previous_response_id`` is made self-contained here,
before it is routed: the stored turns it continues are read from the state
store (scoped by the gateway key, "" in process) and put in front of its
input. The pipeline never sees state. Each response gets llmroute's own id
(``resp_`` and 48 hex digits), whatever served it, and is stored unless the
request says ``store: false``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from os import urandom
from types import TracebackType
from typing import Any, Literal, Self, cast, overload

from .._client_options import RouterState, request_options
from .._clock import Clock
from .._config import ResponsesConfig
from .._errors import RequestError, ResponseNotFound
from .._loop import RouterClosed
from .._params import is_sentinel, split_client_params
from .._structured import response_format_param
from .._tokens import estimate_request_tokens
from .._types import OpenAIObject
from ..pipeline.executor import RequestPipeline
from ..pipeline.responses import ResponsesExchange, ResponsesStreamExchange, chat_view
from ..pipeline.responses_stream import AsyncResponseStream
from .request_model import ResponsesRequest, validate_responses_request, with_history
from .state import ResponseStore, StoredResponse, conversation, listed_input_items
from .types import Response

__all__ = [
    "AsyncInputItems",
    "AsyncInputTokens",
    "AsyncResponses",
    "AsyncResponseStreamManager",
    "InputItemList",
    "InputTokensCount",
    "ParsedResponse",
    "new_response_id",
    "parse_response",
    "with_text_format",
]

_log = logging.getLogger("llmroute.responses")

#: The events after which a streamed response is stored (each lifecycle event's response
#: is completed with what the caller asked: its previous_response_id and store).
_STORED_AFTER = frozenset({"response.completed", "response.incomplete"})
#: The fields `_Turn.finish` gives a response.
_FINISHED = ("previous_response_id", "store")


def new_response_id() -> str:
    """A fresh response id: ``resp_`` and 48 hex digits from the OS."""
    return f"resp_{urandom(24).hex()}"


class ParsedResponse(Response):
    """A `Response` whose output text was parsed into the requested type (`output_parsed`;
    None when the model refused)."""

    output_parsed: Any = None


class InputItemList(OpenAIObject):
    """``GET /v1/responses/{id}/input_items``: a page of a response's input items."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class InputTokensCount(OpenAIObject):
    """``POST /v1/responses/input_tokens``: a request's input tokens, estimated."""

    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int


class _Turn:
    """What one call needs to finish its response: the caller's own request, its scope and
    whether to store the answer."""

    __slots__ = ("given", "items", "scope", "store")

    def __init__(self, given: ResponsesRequest, scope: str) -> None:
        self.given, self.scope = given, scope
        self.store = store = given.store is not False
        # as sent (ids are made up only to list them); kept only to be stored
        self.items: list[dict[str, Any]] = list(given.input_items()) if store else []

    def finish(self, response: Response) -> None:
        """Give `response` what the caller asked for, rather than what the upstream saw."""
        # written as pydantic's __setattr__ writes them, without its ~3,600 instructions each
        values = response.__dict__
        values["previous_response_id"] = self.given.previous_response_id
        values["store"] = self.store
        response.__pydantic_fields_set__.update(_FINISHED)


class AsyncResponses:
    """``router.responses``: create, parse, stream, retrieve and delete responses."""

    def __init__(
        self,
        executor: RequestPipeline,
        state: RouterState,
        store: ResponseStore | None,
        config: ResponsesConfig,
        clock: Clock,
    ) -> None:
        self._executor = executor
        self._state = state
        self._store = store
        self._config = config
        self._clock = clock
        self.input_items = AsyncInputItems(self)
        self.input_tokens = AsyncInputTokens(self)

    @property
    def store(self) -> ResponseStore | None:
        """The conversation state store (None: ``responses.store: off``)."""
        return self._store

    # ---------------------------------------------------------------- create

    @overload
    async def create(self, *, stream: Literal[True], **params: Any) -> AsyncResponseStream: ...

    @overload
    async def create(self, *, stream: Literal[False] | None = None, **params: Any) -> Response: ...

    @overload
    async def create(self, *, stream: bool, **params: Any) -> Response | AsyncResponseStream: ...

    async def create(
        self, *, stream: bool | None = None, **params: Any
    ) -> Response | AsyncResponseStream:
        """Create a response, as ``openai.AsyncOpenAI().responses.create``.

        Every parameter of the SDK's method is taken; unknown ones are passed
        through to providers that serve the Responses API natively. With
        ``stream=True`` returns the events once the first content has arrived.
        ``llmroute=`` takes the per-request `RequestOptions`.
        """
        if self._state.closed:
            raise RouterClosed()
        api, client = split_client_params(params)
        if stream is not None and not (type(stream) is not bool and is_sentinel(stream)):
            api["stream"] = stream
        given = validate_responses_request(api)
        options, extra = request_options(client)
        turn = _Turn(given, options.key or "")
        request = given if given.previous_response_id is None else await self._continued(turn)
        chat = chat_view(request)
        response_id, created_at = new_response_id(), self._clock.time()
        if given.stream:
            opened = await self._executor.responses_stream(
                ResponsesStreamExchange(
                    request, chat, options, extra, response_id=response_id, created_at=created_at
                )
            )
            opened.on_response = partial(self._finish_streamed, turn)
            return opened
        response = await self._executor.responses(
            ResponsesExchange(
                request, chat, options, extra, response_id=response_id, created_at=created_at
            )
        )
        turn.finish(response)
        if turn.store and response.status in ("completed", "incomplete"):
            await self._save(turn, response)
        return response

    async def parse(self, *, text_format: object = None, **params: Any) -> ParsedResponse:
        """A response whose output text is parsed into `text_format` (a pydantic model or
        another type), as ``openai.AsyncOpenAI().responses.parse``: the type's strict JSON
        schema is sent as ``text.format``."""
        if text_format is not None:
            params["text"] = with_text_format(params.get("text"), text_format)
        params.pop("stream", None)
        response = await self.create(**params)
        return parse_response(response, text_format)

    def stream(self, **params: Any) -> AsyncResponseStreamManager:
        """``async with router.responses.stream(...) as stream``: the events, then
        `get_final_response()`, as the openai SDK's helper (``text_format`` parses the
        final output)."""
        text_format = params.pop("text_format", None)
        if text_format is not None:
            params["text"] = with_text_format(params.get("text"), text_format)
        params.pop("stream", None)

        async def open_stream() -> AsyncResponseStream:
            return await self.create(stream=True, **params)

        return AsyncResponseStreamManager(open_stream, text_format)

    # ---------------------------------------------------------------- stored responses

    async def retrieve(self, response_id: str, **client: Any) -> Response:
        """A stored response, as ``responses.retrieve(id)``; `ResponseNotFound` (a 404)
        when it is unknown, expired, or stored under another gateway key."""
        stored = await self._stored(response_id, client)
        return Response.model_validate(stored.response)

    async def delete(self, response_id: str, **client: Any) -> None:
        """Delete a stored response, as ``responses.delete(id)``; `ResponseNotFound` when
        there is none to delete."""
        store, scope = self._scope(client)
        if not await store.delete(scope, response_id):
            raise _not_found(response_id)

    async def _stored(self, response_id: str, client: Mapping[str, Any]) -> StoredResponse:
        store, scope = self._scope(client)
        stored = await store.get(scope, response_id)
        if stored is None:
            raise _not_found(response_id)
        return stored

    def _scope(self, client: Mapping[str, Any]) -> tuple[ResponseStore, str]:
        if self._state.closed:
            raise RouterClosed()
        if self._store is None:
            raise RequestError(
                "responses are not stored (responses.store: off), so none can be read",
                param="response_id",
            )
        _, params = split_client_params(dict(client))
        options, _ = request_options(params)
        return self._store, options.key or ""

    async def input_item_list(
        self,
        response_id: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        order: str | None = None,
        **client: Any,
    ) -> InputItemList:
        """The input items of a stored response (`input_items.list`)."""
        store, scope = self._scope(client)
        items = await listed_input_items(store, scope, response_id)
        if order in (None, "desc"):
            items = list(reversed(items))
        elif order != "asc":
            raise RequestError(f"order must be 'asc' or 'desc', got {order!r}", param="order")
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise RequestError(f"no input item with id {after!r}", param="after")
            items = items[ids.index(after) + 1 :]
        count = 20 if limit is None else limit
        if not 1 <= count <= 100:
            raise RequestError("limit must be between 1 and 100", param="limit")
        page = items[:count]
        return InputItemList(
            data=page,
            first_id=page[0].get("id") if page else None,
            last_id=page[-1].get("id") if page else None,
            has_more=len(items) > count,
        )

    async def count_input_tokens(self, **params: Any) -> InputTokensCount:
        """A request's input tokens (`input_tokens.count`), estimated from its text the way
        rate limits estimate them (previous turns included)."""
        if self._state.closed:
            raise RouterClosed()
        api, client = split_client_params(params)
        api.pop("stream", None)
        given = validate_responses_request(api)
        options, _ = request_options(client)
        turn = _Turn(given, options.key or "")
        request = given if given.previous_response_id is None else await self._continued(turn)
        return InputTokensCount(input_tokens=estimate_request_tokens(chat_view(request)))

    # ---------------------------------------------------------------- state

    async def _continued(self, turn: _Turn) -> ResponsesRequest:
        """The caller's request, which names a previous response, with the conversation it
        continues put in front of its input."""
        given = turn.given
        previous = given.previous_response_id
        if previous is None:
            return given
        if self._store is None:
            raise RequestError(
                "previous_response_id needs stored responses, and responses.store is off",
                param="previous_response_id",
            )
        history = await conversation(
            self._store, turn.scope, previous, max_turns=self._config.max_turns
        )
        return with_history(given, history)

    async def _finish_streamed(self, turn: _Turn, kind: str, response: Response) -> None:
        """A streamed response's lifecycle event: its response given what the caller asked,
        and stored once it is complete."""
        turn.finish(response)
        if kind in _STORED_AFTER and turn.store:
            await self._save(turn, response)

    async def _save(self, turn: _Turn, response: Response) -> None:
        store = self._store
        if store is None or not turn.store:
            return
        now = self._clock.time()
        stored = StoredResponse(
            id=response.id,
            scope=turn.scope,
            created_at=now,
            expires_at=store.expires_at(now),
            previous_response_id=turn.given.previous_response_id,
            model=response.model,
            input_items=turn.items,
            output_items=[item.to_dict(mode="json") for item in response.output],
            response=response.to_dict(mode="json"),
        )
        try:
            await store.put(stored)
        except Exception:
            # the answer was made (and paid for): it is returned; continuing it later fails
            _log.exception("llmroute: response %s could not be stored", response.id)


def _not_found(response_id: str) -> ResponseNotFound:
    return ResponseNotFound(response_id, param="response_id")


def with_text_format(text: object, text_format: object) -> dict[str, Any]:
    """The ``text`` parameter `text` with its ``format`` set to `text_format`'s strict JSON
    schema (a type), or to `text_format` itself (a ``text.format`` dict)."""
    param = response_format_param(text_format)
    if isinstance(param, dict) and param.get("type") == "json_schema" and "json_schema" in param:
        form: dict[str, Any] = {"type": "json_schema", **param["json_schema"]}
    elif isinstance(param, dict):
        form = dict(param)
    else:
        raise RequestError(f"text_format must be a type or a dict, got {text_format!r}")
    base = dict(text) if isinstance(text, Mapping) else {}
    return {**base, "format": form}


def parse_response(response: Response, text_format: object) -> ParsedResponse:
    """`response` with its output text parsed into `text_format` (a type): each output text
    part's `parsed`, and `output_parsed` (the last one's)."""
    from pydantic import TypeAdapter

    data = response.model_dump(exclude_unset=True)
    parsed: Any = None
    if text_format is not None and not isinstance(text_format, Mapping):
        adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, text_format))
        for item in data.get("output", []):
            if item.get("type") != "message":
                continue
            for part in item.get("content", []):
                if part.get("type") == "output_text":
                    part["parsed"] = parsed = adapter.validate_json(part["text"])
    result = ParsedResponse.model_validate(data)
    result.output_parsed = parsed
    info = response.llmroute
    if info.request_id:
        result.attach_route_info(info)
    return result


class AsyncResponseStreamManager:
    """``async with router.responses.stream(...) as stream``: the response's events, and
    `get_final_response()` once they are read."""

    def __init__(
        self, open_stream: Callable[[], Awaitable[AsyncResponseStream]], text_format: object
    ) -> None:
        self._open = open_stream
        self._text_format = text_format
        self._stream: AsyncResponseStream | None = None

    async def __aenter__(self) -> AsyncResponseStreamManager:
        self._stream = await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.aclose()

    def __aiter__(self) -> AsyncResponseStream:
        if self._stream is None:
            raise RuntimeError("use the stream inside `async with`")
        return self._stream

    async def until_done(self) -> Self:
        """Read every event."""
        async for _ in self.__aiter__():
            pass
        return self

    async def get_final_response(self) -> ParsedResponse:
        """The final response (reading what is left of the stream first)."""
        await self.until_done()
        assert self._stream is not None
        response = self._stream.response
        if response is None:
            error = self._stream.error
            raise error if error is not None else RuntimeError("the stream ended with no response")
        return parse_response(response, self._text_format)


class AsyncInputItems:
    """``router.responses.input_items``."""

    def __init__(self, responses: AsyncResponses) -> None:
        self._responses = responses

    async def list(self, response_id: str, **params: Any) -> InputItemList:
        """The input items of a stored response, newest first by default (``order``,
        ``after``, ``limit`` as in the API)."""
        return await self._responses.input_item_list(response_id, **params)


class AsyncInputTokens:
    """``router.responses.input_tokens``."""

    def __init__(self, responses: AsyncResponses) -> None:
        self._responses = responses

    async def count(self, **params: Any) -> InputTokensCount:
        """A request's input tokens, estimated (see `AsyncResponses.count_input_tokens`)."""
        return await self._responses.count_input_tokens(**params)

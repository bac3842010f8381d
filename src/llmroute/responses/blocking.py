"""``Router.responses``: the blocking face of `AsyncResponses`, on the router's loop thread."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, Literal, Self, overload

from .._loop import BlockingStream, RouterPortal
from ..pipeline.responses_stream import AsyncResponseStream
from .resource import (
    AsyncResponses,
    InputItemList,
    InputTokensCount,
    ParsedResponse,
    parse_response,
    with_text_format,
)
from .types import Response, ResponseStreamEvent

__all__ = ["InputItems", "InputTokens", "ResponseEventStream", "ResponseStreamManager", "Responses"]


class ResponseEventStream(BlockingStream[AsyncResponseStream, ResponseStreamEvent]):
    """The events of a streamed response (blocking), like the openai SDK's ``Stream``."""

    @property
    def response(self) -> Response | None:
        """The final response, once the stream has delivered it."""
        return self._stream.response

    @property
    def error(self) -> Exception | None:
        """What failed the stream, if it ended with ``response.failed``."""
        return self._stream.error


class ResponseStreamManager:
    """``with router.responses.stream(...) as stream``: the events, then
    `get_final_response()` (blocking)."""

    def __init__(self, responses: Responses, params: dict[str, Any]) -> None:
        self._responses = responses
        self._params = params
        self._text_format = params.pop("text_format", None)
        self._stream: ResponseEventStream | None = None

    def __enter__(self) -> Self:
        params = dict(self._params)
        params.pop("stream", None)
        if self._text_format is not None:
            params["text_format"] = self._text_format
        self._stream = self._responses.create_stream(**params)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()

    def __iter__(self) -> Iterator[ResponseStreamEvent]:
        if self._stream is None:
            raise RuntimeError("use the stream inside `with`")
        return iter(self._stream)

    def until_done(self) -> Self:
        """Read every event."""
        for _ in self:
            pass
        return self

    def get_final_response(self) -> ParsedResponse:
        """The final response (reading what is left of the stream first)."""
        self.until_done()
        assert self._stream is not None
        response = self._stream.response
        if response is None:
            error = self._stream.error
            raise error if error is not None else RuntimeError("the stream ended with no response")
        return parse_response(response, self._text_format)


class Responses:
    """``router.responses`` on a blocking `Router`."""

    def __init__(self, responses: AsyncResponses, portal: RouterPortal) -> None:
        self._async = responses
        self._portal = portal
        self.input_items = InputItems(responses, portal)
        self.input_tokens = InputTokens(responses, portal)

    @overload
    def create(self, *, stream: Literal[True], **params: Any) -> ResponseEventStream: ...

    @overload
    def create(self, *, stream: Literal[False] | None = None, **params: Any) -> Response: ...

    @overload
    def create(self, *, stream: bool, **params: Any) -> Response | ResponseEventStream: ...

    def create(
        self, *, stream: bool | None = None, **params: Any
    ) -> Response | ResponseEventStream:
        """Create a response, as ``openai.OpenAI().responses.create`` (see `AsyncResponses`)."""

        async def run() -> Response | AsyncResponseStream:
            return await self._async.create(stream=stream, **params)

        result = self._portal.call(run)
        if isinstance(result, AsyncResponseStream):
            return ResponseEventStream(result, self._portal)
        return result

    def create_stream(self, **params: Any) -> ResponseEventStream:
        """A streamed response (``create(stream=True)``); ``text_format`` sets its format."""
        text_format = params.pop("text_format", None)
        if text_format is not None:
            params["text"] = with_text_format(params.get("text"), text_format)
        params.pop("stream", None)
        return self.create(stream=True, **params)

    def parse(self, *, text_format: object = None, **params: Any) -> ParsedResponse:
        """A response parsed into `text_format`, as ``openai.OpenAI().responses.parse``."""

        async def run() -> ParsedResponse:
            return await self._async.parse(text_format=text_format, **params)

        return self._portal.call(run)

    def stream(self, **params: Any) -> ResponseStreamManager:
        """``with router.responses.stream(...) as stream``, as the openai SDK's helper."""
        return ResponseStreamManager(self, params)

    def retrieve(self, response_id: str, **client: Any) -> Response:
        """A stored response (`ResponseNotFound` when there is none)."""

        async def run() -> Response:
            return await self._async.retrieve(response_id, **client)

        return self._portal.call(run)

    def delete(self, response_id: str, **client: Any) -> None:
        """Delete a stored response (`ResponseNotFound` when there is none)."""

        async def run() -> None:
            await self._async.delete(response_id, **client)

        self._portal.call(run)


class InputItems:
    """``router.responses.input_items`` (blocking)."""

    def __init__(self, responses: AsyncResponses, portal: RouterPortal) -> None:
        self._async = responses
        self._portal = portal

    def list(self, response_id: str, **params: Any) -> InputItemList:
        """The input items of a stored response."""

        async def run() -> InputItemList:
            return await self._async.input_items.list(response_id, **params)

        return self._portal.call(run)


class InputTokens:
    """``router.responses.input_tokens`` (blocking)."""

    def __init__(self, responses: AsyncResponses, portal: RouterPortal) -> None:
        self._async = responses
        self._portal = portal

    def count(self, **params: Any) -> InputTokensCount:
        """A request's input tokens, estimated."""

        async def run() -> InputTokensCount:
            return await self._async.input_tokens.count(**params)

        return self._portal.call(run)

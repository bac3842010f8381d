"""The OpenAI adapter: Chat Completions and Embeddings, for OpenAI and every compatible preset."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from pydantic_core import from_json, to_json

from .._errors import (
    AuthenticationError,
    ContentFiltered,
    ContextLengthExceeded,
    InvalidRequest,
    MalformedResponse,
    ModelNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
)
from .._plain_chat import PlainChat, plain_messages_json
from .._request import ChatRequest, EmbeddingsRequest
from .._transports import HttpRequest, SseDecoder
from .._types import (
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    keep_provider_json,
    validator,
)
from .._wire import WireChunk, WireReader, wire_chunk
from .._wire_completion import WireCompletion, wire_completion
from ._base import (
    NO_EXTRA,
    ExtraRequest,
    ProviderAdapter,
    RateLimitState,
    StreamDecoder,
    parse_retry_after,
)
from ._presets import PRESETS
from ._translate import VENDOR_OPTION_KEYS
from .configs import OpenAIProviderConfig

__all__ = ["OpenAIAdapter", "OpenAIStreamDecoder", "parse_reset_duration"]

_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
_RESET_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_BARE_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
#: The chat parameters `chat_request` writes itself (and other vendors' options, left out).
_SET_HERE: set[str] = {"model", "stream", "stream_options", *VENDOR_OPTION_KEYS}
_chat_json = ChatRequest.__pydantic_serializer__.to_json
_RESET_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: How many chunks of a stream relayed in OpenAI's format may fail to be plain text before
#: the decoder stops trying (a stream of tool calls would pay for both readings of each).
_MAX_MISSES = 3


def parse_reset_duration(value: str | None) -> float | None:
    """Seconds from OpenAI's reset durations (``"1s"``, ``"6m0s"``, ``"12ms"``, ``"0.5s"``)."""
    if not value:
        return None
    if _BARE_NUMBER.fullmatch(value):
        seconds = float(value)
        return seconds if 0 <= seconds < math.inf else None
    total, position = 0.0, 0
    for match in _RESET_PART.finditer(value):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _RESET_UNITS[match.group(2)]
        position = match.end()
    return total if position == len(value) else None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


#: The longest ``error.param`` kept from an upstream's error body: a field path
#: (``messages[3].content[0].image_url``); anything longer is not one.
_MAX_PARAM = 256


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, code, param) from an OpenAI-style error body, or Nones."""
    try:
        data = from_json(body)
    except ValueError:
        return None, None, None, None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):
        return error, None, None, None
    if not isinstance(error, dict):
        message = data.get("message") if isinstance(data, dict) else None
        return (message if isinstance(message, str) else None), None, None, None
    message, kind, code = error.get("message"), error.get("type"), error.get("code")
    param = error.get("param")
    return (
        message if isinstance(message, str) else None,
        kind if isinstance(kind, str) else None,
        str(code) if code is not None else None,
        param if isinstance(param, str) and 0 < len(param) <= _MAX_PARAM else None,
    )


#: Error `type` (or `code`) values, for errors that arrive without a meaningful
#: HTTP status: inside a stream that started with 200.
_TYPE_CLASSES: dict[str, type[ProviderError]] = {
    "server_error": ProviderUnavailable,
    "api_error": ProviderUnavailable,
    "service_unavailable": ProviderUnavailable,
    "overloaded_error": ProviderUnavailable,
    "timeout": ProviderUnavailable,
    "rate_limit_exceeded": RateLimited,
    "rate_limit_error": RateLimited,
    "requests": RateLimited,
    "tokens": RateLimited,
    "insufficient_quota": QuotaExceeded,
    "authentication_error": AuthenticationError,
    "invalid_api_key": AuthenticationError,
    "permission_error": PermissionDenied,
    "model_not_found": ModelNotFound,
    "not_found_error": ModelNotFound,
    "invalid_request_error": InvalidRequest,
}


def classify_openai_error(status: int, kind: str | None, code: str | None) -> type[ProviderError]:
    """The error class for an OpenAI-style error, from the status, type and code.

    For an error inside a stream (status 200), the vendor's code and type decide;
    an unrecognised one counts as a provider failure (retryable).
    """
    if code in _CONTEXT_CODES:
        return ContextLengthExceeded
    if code in _FILTER_CODES:
        return ContentFiltered
    if status < 400:
        return _TYPE_CLASSES.get(code or "") or _TYPE_CLASSES.get(kind or "") or ProviderUnavailable
    if status == 429:
        return QuotaExceeded if "insufficient_quota" in (code, kind) else RateLimited
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDenied
    if status == 404:
        return ModelNotFound
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable
    return InvalidRequest


class OpenAIStreamDecoder(StreamDecoder):
    """Decodes an OpenAI ``chat.completion.chunk`` SSE stream."""

    __slots__ = ("_adapter", "_misses", "_model", "_sse", "_wire", "done", "usage")

    def __init__(self, adapter: OpenAIAdapter, model: str) -> None:
        self._adapter = adapter
        self._model = model
        self._sse = SseDecoder()
        self._misses = 0
        self._wire: WireReader | None = None  # made by the first feed_wire
        self.done = False
        self.usage = None

    def feed(self, line: bytes) -> list[ChatCompletionChunk]:
        event = self._sse.feed(line)
        if event is None:
            return []
        return self._decode(event.data)

    def finish(self) -> list[ChatCompletionChunk]:
        event = self._sse.flush()
        return [] if event is None else self._decode(event.data)

    def feed_wire(
        self, line: bytes, *, learn: bool = True
    ) -> Sequence[ChatCompletionChunk | WireChunk]:
        data = self._sse.feed_data(line)
        if data is None:
            return ()
        if self._misses < _MAX_MISSES and data != b"[DONE]":
            if learn:
                reader = self._wire
                if reader is None:
                    reader = self._wire = WireReader()
                chunk = reader.read(data)  # an error event is no plain text chunk
            else:
                chunk = wire_chunk(data)
            if chunk is not None:
                return (chunk,)
            self._misses += 1
        return self._decode(data)

    def _decode(self, data: bytes) -> list[ChatCompletionChunk]:
        if data == b"[DONE]":
            self.done = True
            return []
        if b'"error"' in data:
            self._raise_if_error(data)
        try:
            chunk: ChatCompletionChunk = validator(ChatCompletionChunk).validate_json(data)
        except ValidationError as exc:
            raise MalformedResponse(
                f"unexpected stream chunk: {exc.errors(include_url=False)[0]['msg']}",
                provider=self._adapter.name,
                model=self._model,
                status=200,
                body=data,
            ) from exc
        keep_provider_json(chunk, data)
        if chunk.usage is not None:
            self.usage = chunk.usage
        return [chunk]

    def _raise_if_error(self, data: bytes) -> None:
        try:
            parsed = from_json(data)
        except ValueError:
            return  # not JSON at all: model_validate_json reports it
        if isinstance(parsed, dict) and "error" in parsed and "choices" not in parsed:
            raise self._adapter.map_error(200, {}, data)


class OpenAIAdapter(ProviderAdapter):
    """Chat Completions and Embeddings over the OpenAI wire format."""

    config: OpenAIProviderConfig

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        super().__init__(name, config)
        preset = PRESETS[config.type]
        self.preset = preset
        self.base_url = (config.base_url or preset.base_url).rstrip("/")
        self.otel_name = preset.otel_name
        self.prices_id = preset.prices_id
        self._stream_usage = (
            preset.stream_usage if config.stream_usage is None else config.stream_usage
        )
        headers = {"content-type": "application/json", "accept": "application/json"}
        if config.api_key is not None:
            headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        if config.organization:
            headers["openai-organization"] = config.organization
        if config.project:
            headers["openai-project"] = config.project
        headers.update({k.lower(): v for k, v in config.headers.items()})
        self._headers = headers
        self._chat_url = f"{self.base_url}/chat/completions"
        self._model_head: tuple[str, bytes] | None = None
        #: Whether `chat_request` is this class's own: a subclass that writes bodies its
        #: own way gets plain requests typed (`chat_request_plain`).
        self._own_bodies = type(self).chat_request is OpenAIAdapter.chat_request
        self._embeddings_url = f"{self.base_url}/embeddings"
        self._responses_url = f"{self.base_url}/responses"
        native = config.responses_api
        self.native_responses = preset.responses if native is None else native

    @property
    def supports_stream_usage(self) -> bool:
        return self._stream_usage

    def _http_request(
        self, url: str, body: bytes, extra: ExtraRequest, *, stream: bool = False
    ) -> HttpRequest:
        headers = self._headers
        if stream or extra.headers:
            headers = dict(headers)
            if stream:
                headers["accept"] = "text/event-stream"
            if extra.headers:
                headers.update({k.lower(): v for k, v in extra.headers.items()})
        if extra.query:
            url = f"{url}?{urlencode(extra.query, doseq=True)}"
        return HttpRequest("POST", url, headers, body)

    def chat_request(
        self, request: ChatRequest, model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        """The request's own parameters, written straight to JSON, behind the target's
        ``model`` and this call's ``stream`` (and its ``stream_options``).

        Fast path: serialised by the model's serializer, without the dict that
        ``model_dump`` builds and ``to_json`` writes again (3.8 -> 3.3 µs for a
        one-message request, timeit, 2026-12); a plain request's messages written by
        `plain_messages_json` (the whole body ~18.6k instructions, callgrind). Oracle:
        ``tests/test_fast_paths_requests.py::test_the_chat_body_is_the_dumped_request_with_its_changes``.
        """
        rest = plain_messages_json(request)
        if rest is None:
            rest = _chat_json(request, exclude_unset=True, exclude=_SET_HERE)
        head = self._head(model)
        if stream:
            given = request.stream_options
            options = given.model_dump(exclude_unset=True) if given is not None else {}
            if self._stream_usage:
                options["include_usage"] = True
            else:
                # the service rejects it; llmroute supplies the usage chunk itself
                options.pop("include_usage", None)
            head += b',"stream":true'
            if options:
                head += b',"stream_options":' + to_json(options)
        body = head + b"," + rest[1:] if len(rest) > 2 else head + b"}"
        return self._http_request(self._chat_url, body, extra, stream=stream)

    def chat_request_plain(
        self, plain: PlainChat, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        """`chat_request`'s body for the typed request, written from the parameters: the
        target's model and the messages' JSON (`PlainChat`).

        Fast path: see `_plain_chat`. Oracle: tests/test_plain_chat.py."""
        if not self._own_bodies:
            return super().chat_request_plain(plain, model, extra=extra)
        body = self._head(model) + b"," + plain.messages_json()[1:]
        return self._http_request(self._chat_url, body, extra)

    def _head(self, model: str) -> bytes:
        """``{"model":"..."``, a chat body's head for `model`."""
        last = self._model_head  # the head for the model asked for last: one pair, not a
        if last is not None and last[0] == model:  # map (a client may name many models)
            return last[1]
        head = b'{"model":' + to_json(model)
        self._model_head = (model, head)
        return head

    def parse_chat(self, body: bytes, model: str) -> ChatCompletion:
        try:
            completion: ChatCompletion = validator(ChatCompletion).validate_json(body)
        except ValidationError as exc:
            raise MalformedResponse(
                f"unexpected chat completion body: {_first_problem(exc)}",
                provider=self.name,
                model=model,
                status=200,
                body=body,
            ) from exc
        return completion

    def parse_chat_wire(self, body: bytes, model: str) -> ChatCompletion | WireCompletion:
        return wire_completion(body) or self.parse_chat(body, model)

    def stream_decoder(self, request: ChatRequest, model: str) -> StreamDecoder:
        return OpenAIStreamDecoder(self, model)

    def embeddings_request(
        self, request: EmbeddingsRequest, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        if not self.preset.embeddings:
            return super().embeddings_request(request, model, extra=extra)
        body = request.model_dump(exclude_unset=True)
        body["model"] = model
        return self._http_request(self._embeddings_url, to_json(body), extra)

    def responses_request(
        self, body: dict[str, Any], model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        if not self.native_responses:
            return super().responses_request(body, model, stream=stream, extra=extra)
        body["model"] = model
        for key in VENDOR_OPTION_KEYS & body.keys():
            del body[key]  # another vendor's options (for other targets of the same route)
        return self._http_request(self._responses_url, to_json(body), extra, stream=stream)

    def parse_embeddings(self, body: bytes, model: str) -> CreateEmbeddingResponse:
        try:
            return CreateEmbeddingResponse.model_validate_json(body)
        except ValidationError as exc:
            raise MalformedResponse(
                f"unexpected embeddings body: {_first_problem(exc)}",
                provider=self.name,
                model=model,
                status=200,
                body=body,
            ) from exc

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        message, kind, code, param = _error_fields(body)
        cls = classify_openai_error(status, kind, code)
        if message is None:
            text = body[:200].decode("utf-8", "replace").strip() or "(empty body)"
            message = f"HTTP {status} with a non-OpenAI error body: {text}"
        return cls(
            message,
            provider=self.name,
            status=status,
            retry_after=parse_retry_after(headers),
            request_id=headers.get("x-request-id"),
            body=body,
            code=code or kind,
            param=param,
        )

    def rate_limit_state(self, headers: Mapping[str, str]) -> RateLimitState | None:
        if "x-ratelimit-remaining-requests" not in headers and (
            "x-ratelimit-remaining-tokens" not in headers
        ):
            return None
        return RateLimitState(
            limit_requests=_int_header(headers, "x-ratelimit-limit-requests"),
            remaining_requests=_int_header(headers, "x-ratelimit-remaining-requests"),
            reset_requests_s=parse_reset_duration(headers.get("x-ratelimit-reset-requests")),
            limit_tokens=_int_header(headers, "x-ratelimit-limit-tokens"),
            remaining_tokens=_int_header(headers, "x-ratelimit-remaining-tokens"),
            reset_tokens_s=parse_reset_duration(headers.get("x-ratelimit-reset-tokens")),
        )


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])

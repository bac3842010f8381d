"""The provider adapter contract.

An adapter translates between llmroute's OpenAI-shaped types and one vendor's
wire format, and does nothing else: no sockets, no retries, no logging. The
pipeline sends what `chat_request` builds through the provider's transport and
hands the answer back to `parse_chat`, a `StreamDecoder`, or `map_error`.
"""

from __future__ import annotations

import email.utils
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import quote

from .._errors import ProviderError, RequestError
from .._plain_chat import PlainChat
from .._request import ChatRequest, EmbeddingsRequest
from .._transports import HttpRequest
from .._types import ChatCompletion, ChatCompletionChunk, CompletionUsage, CreateEmbeddingResponse
from .._wire import WireChunk
from .._wire_completion import WireCompletion

__all__ = [
    "ErrorMapper",
    "ExtraRequest",
    "ProviderAdapter",
    "RateLimitState",
    "StreamDecoder",
    "model_path",
    "parse_retry_after",
]


def model_path(model: str, *, safe: str = "") -> str:
    """`model` quoted for a URL path, refused if it could climb out of its place.

    HTTP engines (yarl for aiohttp, httpx) resolve ``.`` and ``..`` segments, so a
    model named ``../../admin`` would send the provider's key to another path of its
    host. `safe` lists the characters kept literal (``/`` for Gemini's
    ``tunedModels/x``, ``:`` for Bedrock's signed paths).

    Raises:
        RequestError: a ``.`` or ``..`` segment, or a control character.
    """
    if any(part in {".", ".."} for part in model.split("/")) or not model.isprintable():
        raise RequestError(f"model name {model!r} cannot be part of a URL path", param="model")
    return quote(model, safe=safe)


@dataclass(slots=True, frozen=True)
class ExtraRequest:
    """Headers and query parameters the caller added (the OpenAI SDK's ``extra_*``).

    (``extra_body`` is merged into the request's parameters before validation.)
    """

    headers: Mapping[str, str] | None = None
    query: Mapping[str, object] | None = None


NO_EXTRA = ExtraRequest()


@dataclass(slots=True, frozen=True)
class RateLimitState:
    """What a provider's rate-limit headers said: counts left and seconds to reset."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


class ErrorMapper(Protocol):
    """What a vendor's stream decoder and body reader need of their adapter: its name
    (for error messages) and its error mapping (an error event inside a 200 answer
    is mapped as the same error would be at the HTTP level).

    Decoders in their own module take this rather than the adapter class, so that
    module does not import its adapter back.
    """

    name: str

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The typed error for an error answer."""
        ...


class StreamDecoder(ABC):
    """Turns one response stream into `chat.completion.chunk` objects.

    One decoder per stream; it may keep state between lines. `feed` raises a
    `ProviderError` for an error event inside the stream. `done` becomes true
    when the provider signalled a complete end of stream; `usage` holds the
    latest usage the stream reported. The empty ``__slots__`` lets a decoder's own
    slots take effect (one decoder is made per stream).
    """

    __slots__ = ()

    done: bool = False
    usage: CompletionUsage | None = None

    @abstractmethod
    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        """Take one line of the body (without its ending), or one raw chunk of it when the
        adapter's `stream_framing` is ``"bytes"``; return the chunks it completes."""

    def finish(self) -> list[ChatCompletionChunk]:
        """Called at the end of the body; returns any chunk still held back."""
        return []

    def feed_wire(
        self, data: bytes, *, learn: bool = True
    ) -> Sequence[ChatCompletionChunk | WireChunk]:
        """`feed`, for a stream relayed in OpenAI's format: a decoder of that format may
        return a plain text chunk as a `WireChunk` (its JSON, forwarded as it is). With
        `learn` False it reads each chunk on its own (no template of the stream's chunks
        is learnt: the opening's few chunks are not worth the probes)."""
        return self.feed(data)


class ProviderAdapter(ABC):
    """Translates requests and responses for one configured provider.

    Subclasses are created once per configured provider with its name and its
    validated config. Every method is pure: it builds or parses, never sends.

    Three class attributes describe what the pipeline must do around the adapter:
    `stream_framing` says whether a stream's body reaches the decoder line by
    line (server-sent events) or in raw chunks (binary event streams),
    `needs_prepare` says whether each request must pass through `prepare()`
    (to sign it or attach a fresh token) before it is sent, and
    `thought_signatures` whether the provider takes back Gemini's thought
    signatures (a tool call's ``extra_content.google.thought_signature``): the
    Responses translation leaves them out of the requests of every other one.
    """

    stream_framing: ClassVar[Literal["lines", "bytes"]] = "lines"
    needs_prepare: ClassVar[bool] = False
    thought_signatures: ClassVar[bool] = False

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config
        #: The OpenTelemetry ``gen_ai.provider.name`` of this provider.
        self.otel_name = "openai"
        #: The genai-prices provider id (None: no public prices).
        self.prices_id: str | None = None
        #: Whether the provider serves OpenAI's Responses API itself (`responses_request`);
        #: otherwise a Responses request reaches it translated into a chat completion.
        self.native_responses = False

    @property
    def supports_stream_usage(self) -> bool:
        """Whether streams report token usage (otherwise llmroute estimates it)."""
        return True

    @abstractmethod
    def chat_request(
        self, request: ChatRequest, model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        """Build the HTTP request for a chat completion on `model`."""

    def chat_request_plain(
        self, plain: PlainChat, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        """Build the HTTP request for a plain, non-streamed chat completion (`PlainChat`,
        whose typed request nobody has read) on `model`: by default `chat_request`'s of
        the typed request; an adapter of OpenAI's format writes the parameters' JSON."""
        return self.chat_request(plain.typed(), model, stream=False, extra=extra)

    @abstractmethod
    def parse_chat(self, body: bytes, model: str) -> ChatCompletion:
        """Parse a successful (2xx) chat completion body."""

    def parse_chat_wire(self, body: bytes, model: str) -> ChatCompletion | WireCompletion:
        """A successful chat completion body, for relaying in OpenAI's format: kept as it
        came (`WireCompletion`) where the provider speaks that format and the answer is
        plain, else parsed (`parse_chat`)."""
        return self.parse_chat(body, model)

    @abstractmethod
    def stream_decoder(self, request: ChatRequest, model: str) -> StreamDecoder:
        """A fresh decoder for one streamed chat completion."""

    def embeddings_request(
        self, request: EmbeddingsRequest, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        """Build the HTTP request for embeddings; providers without embeddings refuse."""
        raise RequestError(
            f"provider {self.name!r} ({type(self).__name__}) does not offer embeddings",
            param="model",
        )

    def parse_embeddings(self, body: bytes, model: str) -> CreateEmbeddingResponse:
        """Parse a successful embeddings body."""
        raise RequestError(f"provider {self.name!r} does not offer embeddings", param="model")

    def count_tokens_request(
        self, request: ChatRequest, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        """Build the HTTP request that counts a chat request's input tokens; providers with
        no counting endpoint refuse (the gateway then estimates)."""
        raise RequestError(
            f"provider {self.name!r} ({type(self).__name__}) does not count tokens",
            param="model",
        )

    def parse_count_tokens(self, body: bytes) -> int:
        """The input tokens of a successful counting answer."""
        raise RequestError(f"provider {self.name!r} does not count tokens", param="model")

    def responses_request(
        self, body: dict[str, Any], model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        """Build the HTTP request for a Responses API request on `model` (`body`: the JSON
        body, self-contained; only providers with `native_responses` build it)."""
        raise RequestError(
            f"provider {self.name!r} ({type(self).__name__}) does not serve the Responses API "
            "natively",
            param="model",
        )

    async def prepare(self, request: HttpRequest) -> HttpRequest:
        """Finish a built request just before it is sent: sign it, attach a fresh token.

        Called only when `needs_prepare` is true. It may await credentials (a
        token provider, a credential chain run in a worker thread) but sends
        nothing itself.
        """
        return request

    @abstractmethod
    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The typed error for a non-2xx answer."""

    def rate_limit_state(self, headers: Mapping[str, str]) -> RateLimitState | None:
        """What the response headers say about the provider's rate limits, if anything."""
        return None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date).

    Negative or unparsable values (Azure sometimes sends ``-1``) count as absent.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None

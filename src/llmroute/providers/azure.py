"""The Azure OpenAI adapter: the OpenAI wire format at Azure's URLs, with Azure's credentials.

Two URL schemes, chosen by the provider's `api_version`:

- classic (a dated version such as ``2024-10-21``):
  ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``
- v1 (`api_version` unset or ``v1``): ``{endpoint}/openai/v1/chat/completions``
  with the deployment as ``model``.

Credentials: an Entra ID token (a `token_provider` callable given in code, or
a static `azure_ad_token`) is sent as ``Authorization: Bearer``; otherwise the
API key as ``api-key``. Bodies, streams, errors (including ``content_filter``)
and the ``x-ratelimit-*`` headers are OpenAI's, read by the OpenAI adapter.
"""

from __future__ import annotations

import base64
import inspect
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.to_thread
from pydantic_core import from_json

from .._errors import AuthenticationError, ConfigError, ProviderError
from .._plain_chat import PlainChat
from .._request import ChatRequest, EmbeddingsRequest
from .._transports import HttpRequest
from .._types import ChatCompletion, ChatCompletionChunk, CreateEmbeddingResponse
from .._wire_completion import WireCompletion
from ._base import (
    NO_EXTRA,
    ExtraRequest,
    ProviderAdapter,
    RateLimitState,
    StreamDecoder,
    model_path,
)
from .configs import AzureProviderConfig, OpenAIProviderConfig
from .openai import OpenAIAdapter, OpenAIStreamDecoder

__all__ = ["AzureAdapter", "AzureStreamDecoder", "token_expiry"]

#: A token is refreshed this long before its ``exp``.
_REFRESH_MARGIN_S = 300.0


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it; None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = from_json(base64.urlsafe_b64decode(payload))
    except ValueError:
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class AzureStreamDecoder(OpenAIStreamDecoder):
    """OpenAI's stream decoder, skipping Azure's prompt-filter annotation chunks.

    Azure streams may open with a chunk that only carries ``prompt_filter_results``
    (empty ``id``, ``model`` and ``object``, no choices): it is not a
    ``chat.completion.chunk`` and holds nothing of the answer, so it is dropped.
    """

    __slots__ = ()

    def _decode(self, data: bytes) -> list[ChatCompletionChunk]:
        if b'"prompt_filter_results"' in data:
            try:
                parsed = from_json(data)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and not parsed.get("object") and not parsed.get("choices"):
                return []
        return super()._decode(data)


class AzureAdapter(ProviderAdapter):
    """Chat Completions and Embeddings on Azure OpenAI."""

    needs_prepare = True
    config: AzureProviderConfig

    def __init__(self, name: str, config: AzureProviderConfig) -> None:
        super().__init__(name, config)
        self.otel_name = "azure.ai.openai"
        self.prices_id = "azure"
        if config.endpoint is None:
            raise ConfigError(
                f"provider {name!r} needs an `endpoint` (or AZURE_OPENAI_ENDPOINT)",
                path=f"providers.{name}.endpoint",
            )
        self.base_url = config.endpoint.rstrip("/")
        version = config.api_version
        self.classic = version is not None and version != "v1"
        self._query = {"api-version": version} if self.classic else {}
        headers = dict(config.headers)
        if config.azure_ad_token is not None and config.token_provider is None:
            headers["authorization"] = f"Bearer {config.azure_ad_token.get_secret_value()}"
        elif config.api_key is not None and config.token_provider is None:
            headers["api-key"] = config.api_key.get_secret_value()
        self._wire = OpenAIAdapter(
            name,
            OpenAIProviderConfig(
                type="openai", base_url=f"{self.base_url}/openai/v1", headers=headers,
                stream_usage=config.stream_usage,
            ),
        )  # fmt: skip
        self.native_responses = config.responses_api
        self._token: str | None = None
        self._token_until = 0.0
        self._refreshing: anyio.Lock | None = None

    @property
    def supports_stream_usage(self) -> bool:
        return self._wire.supports_stream_usage

    def _url(self, model: str, operation: str, extra: ExtraRequest) -> str:
        if self.classic and operation == "responses":  # not per deployment: `model` names it
            url = f"{self.base_url}/openai/responses"
        elif self.classic:
            url = f"{self.base_url}/openai/deployments/{model_path(model)}/{operation}"
        else:
            url = f"{self.base_url}/openai/v1/{operation}"
        query = {**self._query, **(extra.query or {})}
        return f"{url}?{urlencode(query, doseq=True)}" if query else url

    def chat_request(
        self, request: ChatRequest, model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        http = self._wire.chat_request(
            request, model, stream=stream, extra=ExtraRequest(headers=extra.headers)
        )
        http.url = self._url(model, "chat/completions", extra)
        return http

    def chat_request_plain(
        self, plain: PlainChat, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        if type(self).chat_request is not AzureAdapter.chat_request:
            # a subclass that writes bodies its own way gets plain requests typed
            return super().chat_request_plain(plain, model, extra=extra)
        http = self._wire.chat_request_plain(
            plain, model, extra=ExtraRequest(headers=extra.headers)
        )
        http.url = self._url(model, "chat/completions", extra)
        return http

    def parse_chat(self, body: bytes, model: str) -> ChatCompletion:
        return self._wire.parse_chat(body, model)

    def parse_chat_wire(self, body: bytes, model: str) -> ChatCompletion | WireCompletion:
        return self._wire.parse_chat_wire(body, model)

    def stream_decoder(self, request: ChatRequest, model: str) -> StreamDecoder:
        return AzureStreamDecoder(self._wire, model)

    def embeddings_request(
        self, request: EmbeddingsRequest, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        http = self._wire.embeddings_request(
            request, model, extra=ExtraRequest(headers=extra.headers)
        )
        http.url = self._url(model, "embeddings", extra)
        return http

    def parse_embeddings(self, body: bytes, model: str) -> CreateEmbeddingResponse:
        return self._wire.parse_embeddings(body, model)

    def responses_request(
        self, body: dict[str, Any], model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        if not self.native_responses:
            return super().responses_request(body, model, stream=stream, extra=extra)
        http = self._wire.responses_request(
            body, model, stream=stream, extra=ExtraRequest(headers=extra.headers)
        )
        http.url = self._url(model, "responses", extra)
        return http

    # ------------------------------------------------------------ credentials

    async def prepare(self, request: HttpRequest) -> HttpRequest:
        if self.config.token_provider is None:
            return request
        token = await self._current_token()
        request.headers = {**request.headers, "authorization": f"Bearer {token}"}
        return request

    async def _current_token(self) -> str:
        token = self._token
        if token is not None and time.time() < self._token_until:
            return token
        if self._refreshing is None:
            self._refreshing = anyio.Lock()
        async with self._refreshing:
            if self._token is not None and time.time() < self._token_until:
                return self._token
            token = await self._call_provider()
            expiry = token_expiry(token)
            if expiry is not None:  # a JWT: reuse it until shortly before it expires
                self._token, self._token_until = token, expiry - _REFRESH_MARGIN_S
            return token

    async def _call_provider(self) -> str:
        provider = self.config.token_provider
        assert provider is not None
        try:
            if inspect.iscoroutinefunction(provider):
                result = await provider()
            else:  # a sync provider may block on a refresh: keep it off the event loop
                result = await anyio.to_thread.run_sync(provider)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            raise AuthenticationError(
                f"the token_provider failed: {type(exc).__name__}: {exc}", provider=self.name
            ) from exc
        if not isinstance(result, str) or not result:
            raise AuthenticationError(
                f"the token_provider returned {type(result).__name__}, not a token string",
                provider=self.name,
            )
        return result

    # ------------------------------------------------------------ errors and limits

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        error = self._wire.map_error(status, headers, body)
        if error.request_id is None:
            error.request_id = headers.get("apim-request-id") or headers.get("x-ms-request-id")
        return error

    def rate_limit_state(self, headers: Mapping[str, str]) -> RateLimitState | None:
        return self._wire.rate_limit_state(headers)

"""The Azure OpenAI adapter: URLs, credentials (keys, static and provided Entra tokens), errors."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from llmroute._errors import (
    AuthenticationError,
    ContentFiltered,
    ModelNotFound,
    ProviderError,
    RateLimited,
)
from llmroute._request import ChatRequest, validate_chat_request, validate_embeddings_request
from llmroute._types import TokenUsage
from llmroute.providers._base import ExtraRequest, RateLimitState
from llmroute.providers.azure import AzureAdapter, token_expiry
from llmroute.providers.configs import AzureProviderConfig

FIXTURES = Path(__file__).parent / "fixtures" / "azure"
ENDPOINT = "https://contoso-eastus.openai.azure.com"
MESSAGES = [{"role": "user", "content": "Hello"}]

pytestmark = pytest.mark.anyio


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_adapter(**config: Any) -> AzureAdapter:
    config.setdefault("endpoint", ENDPOINT + "/")
    if "azure_ad_token" not in config and "token_provider" not in config:
        config.setdefault("api_key", "azure-key-1")
    return AzureAdapter("azure", AzureProviderConfig(type="azure", **config))


def chat(**params: Any) -> ChatRequest:
    return validate_chat_request({"model": "route", "messages": MESSAGES, **params})


def jwt(expires_in: float) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"aud": "https://cognitiveservices.azure.com", "exp": int(time.time() + expires_in)}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


async def test_classic_deployment_urls_with_api_version() -> None:
    adapter = make_adapter(api_version="2024-10-21")
    extra = ExtraRequest(headers={"X-Trace": "t"}, query={"debug": "1"})
    http = adapter.chat_request(
        chat(anthropic={"top_k": 1}), "gpt-4o-prod", stream=True, extra=extra
    )
    assert http.url == (
        f"{ENDPOINT}/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21&debug=1"
    )
    assert http.headers["api-key"] == "azure-key-1"
    assert "authorization" not in http.headers
    assert http.headers["x-trace"] == "t"
    body = json.loads(http.body or b"")
    assert body["stream_options"] == {"include_usage": True}
    assert "anthropic" not in body  # another vendor's options never reach Azure
    assert await adapter.prepare(http) is http
    embeddings = adapter.embeddings_request(
        validate_embeddings_request({"model": "e", "input": "hi"}), "embed-small"
    )
    assert embeddings.url == (
        f"{ENDPOINT}/openai/deployments/embed-small/embeddings?api-version=2024-10-21"
    )


async def test_v1_urls_take_the_deployment_as_model() -> None:
    for version in (None, "v1"):
        http = make_adapter(api_version=version).chat_request(chat(), "gpt-4o-prod", stream=False)
        assert http.url == f"{ENDPOINT}/openai/v1/chat/completions"
        assert json.loads(http.body or b"")["model"] == "gpt-4o-prod"


async def test_static_entra_token() -> None:
    http = make_adapter(azure_ad_token="eyJ0eXAi.static").chat_request(chat(), "d", stream=False)
    assert http.headers["authorization"] == "Bearer eyJ0eXAi.static"
    assert "api-key" not in http.headers


async def test_token_provider_is_called_and_a_jwt_is_reused_until_near_expiry() -> None:
    calls: list[str] = []

    def provider() -> str:
        calls.append("sync")
        return jwt(3600)

    adapter = make_adapter(token_provider=provider)
    first = await adapter.prepare(adapter.chat_request(chat(), "d", stream=False))
    second = await adapter.prepare(adapter.chat_request(chat(), "d", stream=False))
    assert first.headers["authorization"] == second.headers["authorization"]
    assert first.headers["authorization"].startswith("Bearer ey")
    assert "api-key" not in first.headers
    assert calls == ["sync"]

    async def soon_expiring() -> str:
        calls.append("async")
        return jwt(60)  # inside the refresh margin: fetched again every time

    adapter = make_adapter(token_provider=soon_expiring)
    for _ in range(2):
        await adapter.prepare(adapter.chat_request(chat(), "d", stream=False))
    assert calls == ["sync", "async", "async"]

    opaque = make_adapter(token_provider=lambda: "opaque-token")
    signed = await opaque.prepare(opaque.chat_request(chat(), "d", stream=False))
    assert signed.headers["authorization"] == "Bearer opaque-token"


async def test_token_provider_failures_are_authentication_errors() -> None:
    def broken() -> str:
        raise RuntimeError("no managed identity endpoint")

    adapter = make_adapter(token_provider=broken)
    with pytest.raises(AuthenticationError, match="no managed identity endpoint") as info:
        await adapter.prepare(adapter.chat_request(chat(), "d", stream=False))
    assert isinstance(info.value.__cause__, RuntimeError)
    adapter = make_adapter(token_provider=lambda: None)
    with pytest.raises(AuthenticationError, match="not a token string"):
        await adapter.prepare(adapter.chat_request(chat(), "d", stream=False))


def test_token_expiry() -> None:
    assert token_expiry(jwt(100)) == pytest.approx(time.time() + 100, abs=2)
    assert token_expiry("opaque") is None
    assert token_expiry("a.!!!.c") is None


def test_token_provider_stays_out_of_dumps_and_schema() -> None:
    config = AzureProviderConfig(type="azure", endpoint=ENDPOINT, token_provider=lambda: "t")
    assert "token_provider" not in config.model_dump()
    assert "token_provider" not in AzureProviderConfig.model_json_schema()["properties"]


async def test_content_filter_answers_and_errors() -> None:
    adapter = make_adapter()
    completion = adapter.parse_chat(raw("chat_content_filter.json"), "d")
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.usage is not None and completion.usage.normalised() == TokenUsage(31, 12)
    doc = json.loads(raw("error_400_content_filter.json"))
    error = adapter.map_error(400, CIMultiDict(doc["headers"]), json.dumps(doc["body"]).encode())
    assert type(error) is ContentFiltered
    assert (error.code, error.request_id) == ("content_filter", doc["headers"]["apim-request-id"])


@pytest.mark.parametrize(
    ("name", "cls", "retry_after"),
    [("error_429.json", RateLimited, 2.5), ("error_404.json", ModelNotFound, None),
     ("error_401.json", AuthenticationError, None)],
)  # fmt: skip
async def test_errors_and_rate_limits(
    name: str, cls: type[ProviderError], retry_after: float | None
) -> None:
    doc = json.loads(raw(name))
    headers = CIMultiDict(doc["headers"])
    error = make_adapter().map_error(doc["status"], headers, json.dumps(doc["body"]).encode())
    assert type(error) is cls
    assert error.retry_after == retry_after  # retry-after: -1 counts as absent
    assert error.message == doc["body"]["error"]["message"]
    if name == "error_429.json":
        assert error.request_id == headers["x-ms-request-id"]
        assert make_adapter().rate_limit_state(headers) == RateLimitState(
            remaining_requests=0, remaining_tokens=120
        )


async def test_stream_with_prompt_filter_results() -> None:
    decoder = make_adapter().stream_decoder(chat(), "d")
    chunks = [
        c for line in raw("stream_prompt_filter.sse").split(b"\n") for c in decoder.feed(line)
    ]
    assert all(c.object == "chat.completion.chunk" for c in chunks)  # the annotation is dropped
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert decoder.done is True
    assert decoder.usage is not None and decoder.usage.normalised() == TokenUsage(9, 2)

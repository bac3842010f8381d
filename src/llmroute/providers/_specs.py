"""The specs of the built-in provider types (see the registry in ``__init__``)."""

from __future__ import annotations

from .._clock import Clock
from .._transports import Transport
from . import ProviderSpec
from ._base import ProviderAdapter
from ._configs import (
    AnthropicProviderConfig,
    AzureProviderConfig,
    BedrockProviderConfig,
    GeminiProviderConfig,
    MockProviderConfig,
    OpenAIProviderConfig,
)
from .mock import MOCK_BASE_URL, MockTransport
from .openai import OpenAIAdapter

__all__ = ["ANTHROPIC", "AZURE", "BEDROCK", "GEMINI", "MOCK", "OPENAI"]


def _mock_adapter(name: str, config: MockProviderConfig) -> OpenAIAdapter:
    wire = OpenAIProviderConfig(type="openai", base_url=MOCK_BASE_URL, api_key="mock-key")
    adapter = OpenAIAdapter(name, wire)
    adapter.otel_name = "mock"
    adapter.prices_id = None
    return adapter


def _mock_transport(config: MockProviderConfig, clock: Clock) -> Transport:
    return MockTransport(config, clock)


OPENAI = ProviderSpec(adapter=OpenAIAdapter)
MOCK = ProviderSpec(adapter=_mock_adapter, transport=_mock_transport)


# The vendor modules are imported when a provider of their type is built, not before.


def _anthropic(name: str, config: AnthropicProviderConfig) -> ProviderAdapter:
    from .anthropic import AnthropicAdapter

    return AnthropicAdapter(name, config)


def _gemini(name: str, config: GeminiProviderConfig) -> ProviderAdapter:
    from .gemini import GeminiAdapter

    return GeminiAdapter(name, config)


def _azure(name: str, config: AzureProviderConfig) -> ProviderAdapter:
    from .azure import AzureAdapter

    return AzureAdapter(name, config)


def _bedrock(name: str, config: BedrockProviderConfig) -> ProviderAdapter:
    from .bedrock import BedrockAdapter

    return BedrockAdapter(name, config)


ANTHROPIC = ProviderSpec(adapter=_anthropic)
GEMINI = ProviderSpec(adapter=_gemini)
AZURE = ProviderSpec(adapter=_azure)
BEDROCK = ProviderSpec(adapter=_bedrock)

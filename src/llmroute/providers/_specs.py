"""The specs of the built-in provider types (see the registry in ``__init__``)."""

from __future__ import annotations

from .._clock import Clock
from .._transport import Transport
from . import ProviderSpec
from ._configs import MockProviderConfig, OpenAIProviderConfig
from .mock import MOCK_BASE_URL, MockTransport
from .openai import OpenAIAdapter

__all__ = ["MOCK", "OPENAI"]


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

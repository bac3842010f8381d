"""Provider adapters and the registry that maps config `type:` names to them.

Modules are imported only when a provider of their type is configured, so a
vendor's optional dependencies are loaded only by those who use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._clock import Clock
from .._transports import Transport
from ._base import ExtraRequest, ProviderAdapter, RateLimitState, StreamDecoder, parse_retry_after
from ._configs import (
    AnthropicProviderConfig,
    AzureProviderConfig,
    BedrockProviderConfig,
    GeminiProviderConfig,
    TokenProvider,
)
from ._presets import PRESETS, Preset

__all__ = [
    "PRESETS",
    "AnthropicProviderConfig",
    "AzureProviderConfig",
    "BedrockProviderConfig",
    "ExtraRequest",
    "GeminiProviderConfig",
    "Preset",
    "ProviderAdapter",
    "ProviderSpec",
    "RateLimitState",
    "StreamDecoder",
    "TokenProvider",
    "parse_retry_after",
    "provider_spec",
    "provider_types",
]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How to build a provider of one type.

    Attributes:
        adapter: builds the adapter from ``(name, config)``.
        transport: builds a dedicated transport from ``(config, clock)``; None
            means the default HTTP engine.
    """

    adapter: Callable[[str, Any], ProviderAdapter]
    transport: Callable[[Any, Clock], Transport] | None = None


# type name -> "module:attribute" of its ProviderSpec
_REGISTRY: dict[str, str] = {
    **dict.fromkeys(PRESETS, "llmroute.providers._specs:OPENAI"),
    "mock": "llmroute.providers._specs:MOCK",
    "anthropic": "llmroute.providers._specs:ANTHROPIC",
    "gemini": "llmroute.providers._specs:GEMINI",
    "azure": "llmroute.providers._specs:AZURE",
    "bedrock": "llmroute.providers._specs:BEDROCK",
}


def provider_types() -> list[str]:
    """Every provider `type:` name llmroute knows, sorted."""
    return sorted(_REGISTRY)


def provider_spec(type_name: str) -> ProviderSpec:
    """The spec for a provider type, importing its module on first use."""
    try:
        target = _REGISTRY[type_name]
    except KeyError:
        known = ", ".join(provider_types())
        raise LookupError(f"unknown provider type {type_name!r}; known types: {known}") from None
    module_name, _, attribute = target.partition(":")
    spec: ProviderSpec = getattr(importlib.import_module(module_name), attribute)
    return spec

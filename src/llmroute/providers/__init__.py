"""Provider adapters and the registry: one row per config `type:` name.

A row (`ProviderSpec`) says everything llmroute needs to know about a provider
type: its config model (from which `Config`'s provider union is built), the
adapter and, for a provider that is not reached over HTTP, the transport that
serves it, and the environment variables that configure it without a config
file (`env_hint`; the config model's `from_env` and `with_env` read them).

The adapter and transport modules are named, not imported: they are imported
only when a provider of their type is built, so a vendor's code and optional
dependencies are loaded only by those who use it.

Adding a provider type is one adapter module, its config model in `configs`,
and one row in `PROVIDERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._base import (
    ErrorMapper,
    ExtraRequest,
    ProviderAdapter,
    RateLimitState,
    StreamDecoder,
    parse_retry_after,
)
from ._presets import PRESETS, Preset
from .configs import (
    AnthropicProviderConfig,
    AzureProviderConfig,
    BedrockProviderConfig,
    GeminiProviderConfig,
    MockProviderConfig,
    OpenAIProviderConfig,
    ProviderConfigBase,
    TokenProvider,
)

if TYPE_CHECKING:
    from .._clock import Clock
    from .._transports import Transport

__all__ = [
    "PRESETS",
    "PROVIDERS",
    "AnthropicProviderConfig",
    "AzureProviderConfig",
    "BedrockProviderConfig",
    "ErrorMapper",
    "ExtraRequest",
    "GeminiProviderConfig",
    "MockProviderConfig",
    "OpenAIProviderConfig",
    "Preset",
    "ProviderAdapter",
    "ProviderConfigBase",
    "ProviderSpec",
    "RateLimitState",
    "StreamDecoder",
    "TokenProvider",
    "config_models",
    "parse_retry_after",
    "provider_spec",
    "provider_types",
]


def _load(reference: str) -> Any:
    """The object a ``".module:attribute"`` reference names, importing its module."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module, __name__), attribute)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider type.

    Attributes:
        config: the config model; its ``type`` literal lists this row's type name.
        adapter_ref: ``".module:attribute"`` of the adapter factory, called with
            ``(name, config)`` (an adapter class is one).
        transport_ref: ``".module:attribute"`` of a factory of the provider's own
            transport, called with ``(config, clock)``; None: the default HTTP engine.
        env_hint: the environment variables that configure this type without a
            config (named in error messages), if any.
    """

    config: type[ProviderConfigBase]
    adapter_ref: str
    transport_ref: str | None = None
    env_hint: str | None = None

    def adapter(self, name: str, config: Any) -> ProviderAdapter:
        """The adapter of provider `name` (imports the adapter's module on first use)."""
        factory: Callable[[str, Any], ProviderAdapter] = _load(self.adapter_ref)
        return factory(name, config)

    @property
    def transport(self) -> Callable[[Any, Clock], Transport] | None:
        """The factory of the provider's own transport, or None for the default engine."""
        return None if self.transport_ref is None else _load(self.transport_ref)


#: The registry: every provider `type:` llmroute knows, in the order of the config
#: union (and of zero-config detection).
PROVIDERS: dict[str, ProviderSpec] = {
    **{
        type_name: ProviderSpec(OpenAIProviderConfig, ".openai:OpenAIAdapter", None, preset.key_env)
        for type_name, preset in PRESETS.items()
    },
    "mock": ProviderSpec(MockProviderConfig, ".mock:mock_adapter", ".mock:MockTransport"),
    "anthropic": ProviderSpec(
        AnthropicProviderConfig, ".anthropic:AnthropicAdapter", None, "ANTHROPIC_API_KEY"
    ),
    "gemini": ProviderSpec(
        GeminiProviderConfig, ".gemini:GeminiAdapter", None, "GEMINI_API_KEY (or GOOGLE_API_KEY)"
    ),
    "azure": ProviderSpec(
        AzureProviderConfig,
        ".azure:AzureAdapter",
        None,
        "AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY",
    ),
    "bedrock": ProviderSpec(
        BedrockProviderConfig,
        ".bedrock:BedrockAdapter",
        None,
        "AWS_REGION and AWS_BEARER_TOKEN_BEDROCK (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
    ),
}


def provider_types() -> list[str]:
    """Every provider `type:` name llmroute knows, sorted."""
    return sorted(PROVIDERS)


def provider_spec(type_name: str) -> ProviderSpec:
    """The registry row of a provider type."""
    try:
        return PROVIDERS[type_name]
    except KeyError:
        known = ", ".join(provider_types())
        raise LookupError(f"unknown provider type {type_name!r}; known types: {known}") from None


def config_models() -> tuple[type[ProviderConfigBase], ...]:
    """The distinct config models of the registry, in its order: the members of
    `Config`'s provider union."""
    return tuple(dict.fromkeys(spec.config for spec in PROVIDERS.values()))

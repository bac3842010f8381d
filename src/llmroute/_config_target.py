"""A target's configuration (``provider/model``, or a table): shared by routes and by
experiments' variants, and re-exported by `llmroute._config`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = ["Capability", "PriceConfig", "TargetConfig"]

_STRICT = ConfigDict(extra="forbid", defer_build=True)


class PriceConfig(BaseModel):
    """A target's price in US dollars per million tokens, overriding genai-prices.

    Attributes:
        input: per million input tokens (those not read from or written to a cache).
        output: per million output tokens (reasoning included).
        cache_read: per million input tokens read from the provider's cache
            (defaults to `input`).
        cache_write: per million input tokens written to the provider's cache
            (defaults to `input`).
    """

    model_config = _STRICT
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


Capability = Literal["tools", "json_schema", "json_object", "vision", "audio"]


class TargetConfig(BaseModel):
    """One provider and model a route can send to; the string ``"provider/model"`` is shorthand.

    Attributes:
        provider: a provider name.
        model: the model name sent to it.
        weight: the share of traffic under the ``weighted`` strategy (0: only
            as a fallback).
        context_window: the model's context window in tokens, if known.
        price: overrides genai-prices for this target (USD per million tokens).
        capabilities: what the target supports; a request that needs one it
            lacks skips it (unset: assumed to support everything).
        when: a condition on the request (see `llmroute.routing.conditions`);
            the target is only used when it holds.
    """

    model_config = _STRICT
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)
    context_window: int | None = Field(default=None, ge=1)
    price: PriceConfig | None = None
    capabilities: list[Capability] | None = None
    when: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            provider, slash, model = data.partition("/")
            if not slash or not provider or not model:
                raise ValueError(f"expected 'provider/model', got {data!r}")
            return {"provider": provider, "model": model}
        return data

    @property
    def key(self) -> str:
        """The target's name, ``provider/model``."""
        return f"{self.provider}/{self.model}"

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        table = handler(core_schema)
        shorthand = {"type": "string", "pattern": "^[^/]+/.+$", "description": "provider/model"}
        return {"anyOf": [shorthand, table]}
